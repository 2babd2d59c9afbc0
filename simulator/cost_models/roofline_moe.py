"""Roofline prices for mixture-of-experts replicas: MoE layers, latent attention, data-parallel attention.

``MoERooflineCostModel`` prices a step of a model with MoE layers (``simulator.cost_models.moe``)
and either grouped-query attention (as ``RooflineCostModel``) or multi-head latent attention
(``simulator.cost_models.mla``), on a replica of T x P x D GPUs (``simulator.engine.memory_plan.Parallelism``).
Per layer, in run order (vLLM ``models/mixtral.py``, ``qwen3_moe.py``, ``deepseek_v2.py``,
``gpt_oss.py``, ``llama4.py``):

    add + RMSNorm -> attention projections, norms, rotary, KV-cache write -> attention
    -> o_proj -> all-reduce (T > 1) -> add + RMSNorm -> the MLP: a dense MLP on the dense layers
    (DeepSeek-V3's first three, Llama 4's non-MoE layers), or the MoE block (router, routed experts,
    shared experts, their all-reduce or all-to-all)

With data-parallel attention (D ranks) a step's batch is the union of the ranks' batches
(``Deployment.scheduler_config``): every token-wise attention-side part, the embedding, lm_head
and sampling run on the most loaded rank's ceil(tokens / D) tokens; prefill chunks are spread over
the ranks by longest-processing-time-first (the heaviest rank is priced); decodes split evenly.
The MoE block sees all D ranks' tokens (``MoELayer.parts``). Each rank's engine core schedules on
its own CPU, so the host time is that of ceil(requests / D) requests.
"""

from __future__ import annotations

import heapq
import math

from simulator.engine.batch import Batch
from simulator.cost_models.mla import LatentAttention
from simulator.cost_models.moe import MoELayer
from simulator.cost_models.roofline import RooflineCostModel
from simulator.cost_models.windows import windowed_decode_context
from simulator.engine.memory_plan import Parallelism
from simulator.scenario import MoERoutingConfig, RooflineConfig
from simulator.specs.gpu import GPUSpec
from simulator.specs.model import ModelSpec

_MLP_ELEMENTWISE = ("silu_mul", "relu")


def spread_prefills(new_tokens: list[int], prefix_tokens: list[int], ranks: int) -> tuple[list[int], list[int]]:
    """The prefill chunks of the most loaded of ``ranks`` data-parallel ranks (new tokens, cached tokens).

    Chunks go, heaviest first, to the rank with the least work so far (Graham's LPT rule), the work
    of a chunk of n new after c cached tokens being its tokens plus its attention pairs / 1024
    (a proxy for linear and attention time together).
    """
    if ranks == 1 or len(new_tokens) <= 1:
        return new_tokens, prefix_tokens
    order = sorted(range(len(new_tokens)), key=lambda i: -(new_tokens[i] + new_tokens[i] * (prefix_tokens[i] + new_tokens[i] / 2) / 1024))
    heap = [(0.0, r) for r in range(ranks)]
    members: list[list[int]] = [[] for _ in range(ranks)]
    loads = [0.0] * ranks
    for i in order:
        load, r = heapq.heappop(heap)
        n, c = new_tokens[i], prefix_tokens[i]
        load += n + n * (c + n / 2) / 1024
        loads[r] = load
        members[r].append(i)
        heapq.heappush(heap, (load, r))
    worst = max(range(ranks), key=lambda r: loads[r])
    return [new_tokens[i] for i in members[worst]], [prefix_tokens[i] for i in members[worst]]


class MoERooflineCostModel(RooflineCostModel):
    """Roofline prices for one replica of a mixture-of-experts model.

    Args: those of ``RooflineCostModel``, plus
        data_parallel_size: attention ranks D of the replica.
        expert_parallel: whether experts are placed whole on the T x D GPUs.
        routing: the scenario's ``model.moe_routing``.
    """

    prices_moe = True

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tensor_parallel_size: int, pipeline_parallel_size: int, params: RooflineConfig,
                 dtype_bytes: int = 2, quantization: str = "none", source: str = "<scenario>", data_parallel_size: int = 1,
                 expert_parallel: bool = False, routing: MoERoutingConfig | None = None) -> None:
        super().__init__(model, gpu, tensor_parallel_size, pipeline_parallel_size, params, dtype_bytes, quantization, source)
        self.dp = data_parallel_size
        self.par = Parallelism(tensor_parallel_size, pipeline_parallel_size, data_parallel_size, expert_parallel)
        self.latent = LatentAttention(self, model) if model.mla is not None else None
        self.moe_layer = MoELayer(self, model, self.par, routing or MoERoutingConfig()) if model.moe is not None else None
        self.num_moe_layers = model.num_moe_layers
        self.num_dense_layers = self.layers - self.num_moe_layers
        self._parts_cache: dict[int, dict[str, float]] = {}

    def rank_tokens(self, num_tokens: int) -> int:
        """Tokens of the most loaded data-parallel rank when ``num_tokens`` spread evenly."""
        return -(-num_tokens // self.dp)

    # -- one layer's halves ------------------------------------------------------------------
    def _attention_side(self, t: int) -> dict[str, float]:
        """Projections, norms, rotary, cache write and the post-attention all-reduce of one layer, ``t`` tokens per rank."""
        h, b = self.model.hidden_size, self.dtype_bytes
        norm = self.elementwise_time(4 * t * h * b)  # the input add + RMSNorm
        if self.latent is not None:
            shapes = self.latent.linear_shapes()
            linear = sum(self.linear_time(t, k, n) for k, n in shapes.values())
            elementwise = self.latent.token_time(t) - linear + norm
        else:
            shapes = self.linear_shapes()
            linear = self.linear_time(t, *shapes["qkv_proj"]) + self.linear_time(t, *shapes["o_proj"])
            elementwise = norm + sum(count * fn(t) for name, count, fn in self.layer_elementwise() if name not in _MLP_ELEMENTWISE + ("add_rmsnorm", "add_layernorm"))
        return {"attention_projections": linear, "elementwise": elementwise, "all_reduce": self.all_reduce_time(t * h * b)}

    def _dense_mlp(self, t: int) -> dict[str, float]:
        """A dense layer's norm, MLP and all-reduce, ``t`` tokens per rank."""
        h, b, inter = self.model.hidden_size, self.dtype_bytes, self.model.intermediate_size // self.tp
        shapes = self.linear_shapes()
        mlp = sum(self.linear_time(t, *shapes[name]) for name in ("gate_up_proj", "up_proj", "down_proj") if name in shapes)
        act = self.elementwise_time(3 * t * inter * b)
        return {"mlp": mlp, "elementwise": self.elementwise_time(4 * t * h * b) + act, "all_reduce": self.all_reduce_time(t * h * b)}

    def token_parts(self, num_tokens: int) -> dict[str, float]:
        """All layers' attention-free time by part for a step of ``num_tokens`` tokens (s), memoized.

        Keys: attention_projections, mlp, router, experts, shared_experts, elementwise,
        all_reduce, all_to_all, embedding, pipeline_sends.
        """
        parts = self._parts_cache.get(num_tokens)
        if parts is not None:
            return parts
        m, t, h, b = num_tokens, self.rank_tokens(num_tokens), self.model.hidden_size, self.dtype_bytes
        parts = dict.fromkeys(("attention_projections", "mlp", "router", "experts", "shared_experts", "elementwise", "all_reduce", "all_to_all"), 0.0)
        for name, value in self._attention_side(t).items():
            parts[name] += self.layers * value
        if self.num_dense_layers:
            for name, value in self._dense_mlp(t).items():
                parts[name] += self.num_dense_layers * value
        if self.moe_layer is not None:
            parts["elementwise"] += self.num_moe_layers * self.elementwise_time(4 * t * h * b)  # post-attention add + RMSNorm
            for name, value in self.moe_layer.parts(m, t).items():
                parts[name] += self.num_moe_layers * value
        parts["embedding"] = self.embedding_time(t) + (self.all_reduce_time(t * h * b) if self.tp > 1 else 0.0)
        parts["pipeline_sends"] = (self.pp - 1) * (t * h * b / self._link_bandwidth + self.gpu.link_latency_s)
        self._parts_cache[num_tokens] = parts
        return parts

    def token_time(self, num_tokens: int) -> float:
        """All layers' attention-free time plus embedding and stage sends (s), memoized."""
        t = self._token_time_cache.get(num_tokens)
        if t is None:
            t = self._token_time_cache[num_tokens] = sum(self.token_parts(num_tokens).values())
        return t

    # -- attention -------------------------------------------------------------------------------
    def _prefill_layer(self, new: list[int], prefix: list[int], window: int | None = None) -> float:
        if self.latent is not None:
            return self.latent.prefill_time(new, prefix, window)
        return self.attention_prefill_time(new, prefix, window)

    def _decode_layer(self, requests: int, context: float) -> float:
        context = int(round(context))
        if self.latent is not None:
            return self.latent.decode_time(requests, context)
        return self.attention_decode_time(requests, context)

    def prefill_attention_time(self, batch: Batch) -> float:
        """All layers' prefill attention of the most loaded rank (s)."""
        new, prefix = spread_prefills(batch.prefill_new_tokens, batch.prefill_prefix_tokens, self.dp)
        t = self.full_layers * self._prefill_layer(new, prefix)
        if self.sliding_layers:
            t += self.sliding_layers * self._prefill_layer(new, prefix, self.window)
        return t

    def decode_attention_time(self, batch: Batch) -> float:
        """All layers' decode attention of one rank holding ceil(decodes / D) of them (s)."""
        n = batch.num_decode_tokens
        r = -(-n // self.dp)
        share = r / n
        t = self.full_layers * self._decode_layer(r, batch.decode_context_tokens * share)
        if self.sliding_layers:
            t += self.sliding_layers * self._decode_layer(r, windowed_decode_context(batch, self.window) * share)
        return t

    def host_time(self, batch: Batch) -> float:
        """Scheduling and output processing of one rank's ceil(requests / D) requests (s)."""
        return self.params.cpu_overhead_s + self.params.cpu_overhead_per_request_s * math.ceil(len(batch.requests) / self.dp)

    # -- a step ------------------------------------------------------------------------------------
    def step_breakdown(self, batch: Batch) -> dict[str, float]:
        """One iteration of ``batch`` by part (s, all layers); the values add up to ``step_time``.

        ``token_parts``' keys, plus attention_prefill, attention_decode, sampling (final norm,
        lm_head, logits gather, sampling) and cpu_overhead.
        """
        out = dict(self.token_parts(batch.num_tokens)) if batch.num_tokens else {}
        if batch.num_prefill_tokens:
            out["attention_prefill"] = self.prefill_attention_time(batch)
        if batch.num_decode_tokens:
            out["attention_decode"] = self.decode_attention_time(batch)
        if batch.num_sampled_tokens:
            out["sampling"] = self.sample_time(self.rank_tokens(batch.num_sampled_tokens))
        out["cpu_overhead"] = self.host_time(batch)
        return out

    def step_time(self, batch: Batch) -> float:
        """Seconds one iteration of ``batch`` takes on this replica."""
        t = self.token_time(batch.num_tokens) if batch.num_tokens else 0.0
        if batch.num_prefill_tokens:
            t += self.prefill_attention_time(batch)
        if batch.num_decode_tokens:
            t += self.decode_attention_time(batch)
        if batch.num_sampled_tokens:
            t += self.sample_time(self.rank_tokens(batch.num_sampled_tokens))
        return t + self.host_time(batch)
