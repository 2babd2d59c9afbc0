"""Roofline cost model: every operator of a step priced from datasheet peaks.

Each operator costs ``max(FLOPs / (peak * efficiency), bytes / (bandwidth * efficiency))`` plus
one kernel floor, an attention call a floor of its own (Williams et al., "Roofline", CACM 2009).
A step runs, per layer at the tensor-parallel shard shapes of Megatron-LM (Shoeybi et al. 2019,
Sec. 3):

    fused add + RMSNorm -> QKV GEMM -> rotary -> KV-cache write -> attention (prefill, decode)
    -> O GEMM -> all-reduce -> fused add + RMSNorm -> gate/up GEMM -> SiLU*mul -> down GEMM
    -> all-reduce

plus the embedding lookup, the final norm, lm_head and sampling for the requests that sample a
token, pipeline-stage sends, and a per-iteration CPU overhead. Other dense families change the
layer where their modelling code does (``linear_shapes``, ``layer_elementwise``): OPT runs an up
GEMM of ``ffn_dim`` and a ReLU instead of gate/up and SiLU*mul, LayerNorm after an unfused
residual add instead of the fused add + RMSNorm, and adds a learned position embedding to the
token embedding instead of rotary (vLLM ``model_executor/models/opt.py``); Qwen3 normalizes q
and k per head before rotary (``models/qwen3.py``). Sliding-window layers (Mistral, gpt-oss's
alternate layers) attend to at most ``sliding_window`` keys per query, so their decode reads at
most that many tokens of each request's context (FlashAttention's ``window_size``, which vLLM
passes for those layers). Mixture-of-experts models are priced by the subclass in ``roofline_moe.py``. A step's layers run stage after
stage for one batch; pipelining several batches across stages is not modelled.

Efficiencies and the per-kernel floor are the GPU's calibrated values unless the scenario sets
them (``simulator.specs.calibration.resolve``). The TP all-reduce of a calibrated GPU is priced
by alpha-beta fits to its measured vLLM custom all-reduce (below vLLM's 8 MiB limit, where it
applies: two GPUs or an NVLink group) and NCCL tables, the cheaper of the two where both apply;
otherwise by the ring algorithm, ``2 (p - 1) / p * bytes / link bandwidth`` plus ``2 (p - 1)``
hops of link latency (Patarasuk & Yuan, JPDC 2009).

Token-count-only parts are memoized per token count, so pricing a step is a dict lookup plus
O(1) attention terms for decodes and O(prefills) for prefills.
"""

from __future__ import annotations

import math
from typing import Callable

from simulator.engine.batch import Batch
from simulator.cost_models.windows import windowed_decode_context, windowed_prefill  # noqa: F401  (re-exported)
from simulator.errors import ScenarioError
from simulator.scenario import RooflineConfig
from simulator.specs.calibration import resolve
from simulator.specs.gpu import GPUSpec
from simulator.specs.model import ModelSpec


class RooflineCostModel:
    """Roofline prices for one replica (TP x PP GPUs of one kind) of a dense model.

    Args:
        model: the model's architecture.
        gpu: datasheet numbers of each GPU.
        tensor_parallel_size: GPUs a layer is sharded over.
        pipeline_parallel_size: stages the layers are split into.
        params: efficiencies, launch and CPU overheads; unset fields take the GPU's calibration
            (``self.resolved`` holds the values used and where each came from).
        dtype_bytes: bytes per weight, activation and KV element (2 for bf16/fp16).
        quantization: the linear layers' weight quantization: ``none``; ``w8a8`` (int8 weights
            and per-token int8 activations, int8 tensor cores); ``fp8`` (e4m3 weights and
            activations, FP8 tensor cores); ``w4a16`` (int4 weights dequantized in the GEMM,
            bf16 tensor cores). lm_head stays unquantized.
        source: the scenario file, for error messages.

    Raises:
        ScenarioError: the model is a mixture of experts (``MoERooflineCostModel`` prices those).
    """

    prices_moe = False

    def __init__(
        self,
        model: ModelSpec,
        gpu: GPUSpec,
        tensor_parallel_size: int,
        pipeline_parallel_size: int,
        params: RooflineConfig,
        dtype_bytes: int = 2,
        quantization: str = "none",
        source: str = "<scenario>",
    ) -> None:
        if model.moe is not None and not self.prices_moe:
            raise ScenarioError(source, "model", model.name, f"is a mixture-of-experts model ({model.architecture}, {model.moe.num_experts} experts, "
                                f"top {model.moe.num_experts_per_token}): MoE step pricing is not available yet",
                                "simulate a dense model (`servesim list`); `servesim check` gives this model's memory plan")
        tp = tensor_parallel_size
        self.model, self.gpu, self.tp, self.pp, self.params = model, gpu, tp, pipeline_parallel_size, params
        self.dtype_bytes = dtype_bytes
        self.quantization = quantization
        self.resolved = resolve(params, gpu.name, gpu.aiconfigurator_system)
        eff = self.resolved.values
        if quantization == "w8a8":
            self._linear_flops = gpu.int8_ops * eff["gemm_flops_efficiency"]
        elif quantization == "fp8":
            assert gpu.fp8_flops is not None, f"{gpu.name} has no FP8 tensor cores"
            self._linear_flops = gpu.fp8_flops * eff["gemm_flops_efficiency"]
        else:
            self._linear_flops = gpu.bf16_flops * eff["gemm_flops_efficiency"]
        # Bytes per weight of the linear layers (int4 adds an fp16 scale and zero per 128 weights).
        self._weight_bytes = {"none": dtype_bytes, "w8a8": 1.0, "fp8": 1.0, "w4a16": 0.5 + 4 / 128}[quantization]
        self._gemm_flops = gpu.bf16_flops * eff["gemm_flops_efficiency"]
        self._gemm_bandwidth = gpu.memory_bandwidth * eff["gemm_bandwidth_efficiency"]
        self._attention_flops = gpu.bf16_flops * eff["attention_flops_efficiency"]
        self._attention_bandwidth = gpu.memory_bandwidth * eff["attention_bandwidth_efficiency"]
        self._elementwise_bandwidth = gpu.memory_bandwidth * eff["elementwise_bandwidth_efficiency"]
        self._link_bandwidth = gpu.link_bandwidth * eff["link_bandwidth_efficiency"]
        self._launch_s = eff["kernel_launch_s"]
        self._attention_launch_s = eff["attention_launch_s"]
        self._all_reduce = self.resolved.all_reduce
        # Per-GPU head counts; KV heads are replicated when TP exceeds them (vLLM does the same).
        self.q_heads = model.num_attention_heads // tp
        self.kv_heads = max(1, model.num_kv_heads // tp)
        self.layers = model.num_layers
        # Layers attending within a sliding window (priced by their window) and the others.
        self.window = model.sliding_window
        self.sliding_layers = model.num_sliding_layers
        self.full_layers = self.layers - self.sliding_layers
        self._token_time_cache: dict[int, float] = {}
        self._sample_time_cache: dict[int, float] = {}

    # -- peaks the layer pricers share (simulator.cost_models.moe, .mla) -----------------------
    @property
    def linear_peak(self) -> float:
        """FLOP/s the linear layers reach under the quantization (the calibrated GEMM efficiency applied)."""
        return self._linear_flops

    @property
    def weight_bytes(self) -> float:
        """Bytes per linear-layer weight under the quantization."""
        return self._weight_bytes

    @property
    def gemm_bandwidth(self) -> float:
        """Bytes/s a GEMM streams (calibrated)."""
        return self._gemm_bandwidth

    @property
    def attention_flops(self) -> float:
        """FLOP/s of attention kernels (calibrated)."""
        return self._attention_flops

    @property
    def attention_bandwidth(self) -> float:
        """Bytes/s of attention kernels (calibrated)."""
        return self._attention_bandwidth

    @property
    def attention_launch_s(self) -> float:
        """Fixed cost of one attention call (s)."""
        return self._attention_launch_s

    @property
    def launch_s(self) -> float:
        """Fixed cost of one kernel (s)."""
        return self._launch_s

    @property
    def link_bandwidth(self) -> float:
        """Bytes/s one GPU sends over its link (calibrated link efficiency applied)."""
        return self._link_bandwidth

    # -- operators -------------------------------------------------------------------------
    def bmm_time(self, batch: int, m: int, k: int, n: int) -> float:
        """Time of ``batch`` independent [m, k] x [k, n] GEMMs in one batched kernel (s)."""
        flops = 2.0 * batch * m * k * n
        nbytes = batch * (m * k + k * n + m * n) * self.dtype_bytes
        return max(flops / self._gemm_flops, nbytes / self._gemm_bandwidth) + self._launch_s

    def gemm_time(self, m: int, k: int, n: int) -> float:
        """Time of an [m, k] x [k, n] GEMM (s): 2mkn FLOPs; reads A and B, writes C."""
        flops = 2.0 * m * k * n
        nbytes = (m * k + k * n + m * n) * self.dtype_bytes
        return max(flops / self._gemm_flops, nbytes / self._gemm_bandwidth) + self._launch_s

    def linear_time(self, m: int, k: int, n: int) -> float:
        """Time of a layer's linear projection, [m, k] x [k, n], under the quantization (s).

        W8A8 and FP8 read 1-byte activations and weights on the int8/FP8 tensor-core peak and pay
        one extra elementwise pass quantizing the activations per token (SmoothQuant, Xiao et al.
        ICML'23, Sec. 4); W4A16 reads packed int4 weights and runs at the bf16 peak (AWQ, Lin et
        al. MLSys'24). Unquantized, it is ``gemm_time``.
        """
        if self.quantization == "none":
            return self.gemm_time(m, k, n)
        b = self.dtype_bytes
        flops = 2.0 * m * k * n
        if self.quantization == "w4a16":
            nbytes = m * k * b + k * n * self._weight_bytes + m * n * b
            return max(flops / self._linear_flops, nbytes / self._gemm_bandwidth) + self._launch_s
        nbytes = m * k + k * n + m * n * b
        t = max(flops / self._linear_flops, nbytes / self._gemm_bandwidth) + self._launch_s
        return t + self.elementwise_time(m * k * (b + 1))  # quantize the activations

    def elementwise_time(self, nbytes: float) -> float:
        """Time of a memory-bound elementwise kernel moving ``nbytes`` bytes (s)."""
        return nbytes / self._elementwise_bandwidth + self._launch_s

    def all_reduce_time(self, nbytes: float) -> float:
        """All-reduce of ``nbytes`` bytes over the TP group (s); 0 without TP.

        The GPU's measured all-reduce fits where it has them for this TP degree (see the module
        docstring), else the ring formula over the link.
        """
        p = self.tp
        if p == 1:
            return 0.0
        if self._all_reduce is not None:
            t = self._all_reduce.time(p, nbytes)
            if t is not None:
                return t
        return self.ring_all_reduce_time(nbytes)

    def collective_latency_s(self, num_gpus: int) -> float:
        """Fixed cost of one collective among ``num_gpus`` GPUs of a node (s): the measured all-reduce's
        intercept at that group size where calibrated (vLLM's one-shot custom all-reduce, every GPU
        reading every peer: the all-to-all's pattern), else one link latency plus a kernel floor."""
        if self._all_reduce is not None and num_gpus > 1:
            t = self._all_reduce.time(num_gpus, 0.0)
            if t is not None:
                return t
        return self.gpu.link_latency_s + self._launch_s

    def ring_all_reduce_time(self, nbytes: float) -> float:
        """Ring all-reduce of ``nbytes`` bytes over the TP group's link (s): bandwidth and per-hop latency."""
        p = self.tp
        return 2 * (p - 1) / p * nbytes / self._link_bandwidth + 2 * (p - 1) * self.gpu.link_latency_s

    def attention_prefill_time(self, new_tokens: list[int], prefix_tokens: list[int], window: int | None = None) -> float:
        """One layer's prefill attention (varlen FlashAttention over all prefill entries) (s).

        Each of an entry's n new tokens attends causally to its c cached tokens and the new
        tokens before it: QK^T and PV cost 4 * heads * head_dim * n * (c + (n + 1) / 2) FLOPs.
        Bytes: Q and O of the new tokens, K and V of cached plus new tokens. With a ``window``
        (a sliding-window layer) each query sees at most that many keys (``windowed_prefill``).
        """
        d, b = self.model.head_dim, self.dtype_bytes
        work = kv_tokens = q_tokens = 0.0
        for n, c in zip(new_tokens, prefix_tokens):
            if window is None:
                work += n * (c + (n + 1) / 2)
                kv_tokens += c + n
            else:
                pairs, keys = windowed_prefill(n, c, window)
                work += pairs
                kv_tokens += keys
            q_tokens += n
        flops = 4.0 * self.q_heads * d * work
        nbytes = (2 * q_tokens * self.q_heads + 2 * kv_tokens * self.kv_heads) * d * b
        return max(flops / self._attention_flops, nbytes / self._attention_bandwidth) + self._attention_launch_s

    def attention_decode_time(self, num_requests: int, context_tokens: int) -> float:
        """One layer's decode attention (PagedAttention over the block tables) (s).

        Reads K and V of every context token of every request (memory-bound); 4 * heads *
        head_dim FLOPs per context token; Q and O per request. A sliding-window layer is priced
        with the context it reads, ``windowed_decode_context``.
        """
        d, b = self.model.head_dim, self.dtype_bytes
        flops = 4.0 * self.q_heads * d * context_tokens
        nbytes = (2 * context_tokens * self.kv_heads + 2 * num_requests * self.q_heads) * d * b
        return max(flops / self._attention_flops, nbytes / self._attention_bandwidth) + self._attention_launch_s

    # -- the layer's operators (the catalogue's names, profiler/catalogue.py) ----------------
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(k, n) of each linear layer of one layer at this TP degree, in run order.

        QKV and O (Megatron column and row parallel); gate and up fused (``gate_up_proj``, 2 I / p
        wide) for a gated MLP, else the up projection alone (``up_proj``, I / p: OPT's fc1); down.
        """
        h, d, inter = self.model.hidden_size, self.model.head_dim, self.model.intermediate_size // self.tp
        q_width, kv_width = self.q_heads * d, self.kv_heads * d
        mlp_in = {"gate_up_proj": (h, 2 * inter)} if self.model.ffn_kind == "gated_silu" else {"up_proj": (h, inter)}
        return {"qkv_proj": (h, q_width + 2 * kv_width), "o_proj": (q_width, h), **mlp_in, "down_proj": (inter, h)}

    def layer_elementwise(self) -> list[tuple[str, int, Callable[[float], float]]]:
        """The memory-bound operators of one layer: (name, runs per layer, seconds for m tokens), in run order.

        Bytes each moves: fused add + RMSNorm reads x and the residual and writes both (4 m h);
        OPT's residual add (read 2, write 1) then LayerNorm (read 1, write 1) are two kernels;
        Qwen3's q and k norms read and write Q and K per head (two kernels); rotary reads and
        writes Q and K; the KV-cache write reads K and V and writes them to the cache; SiLU(gate)
        * up reads 2 and writes 1, ReLU reads 1 and writes 1, of the MLP width.
        """
        e, b, model = self.elementwise_time, self.dtype_bytes, self.model
        h, d, inter = model.hidden_size, model.head_dim, model.intermediate_size // self.tp
        q_width, kv_width = self.q_heads * d, self.kv_heads * d
        ops: list[tuple[str, int, Callable[[float], float]]] = []
        if model.norm_kind == "rmsnorm":
            ops.append(("add_rmsnorm", 2, lambda m: e(4 * m * h * b)))
        else:
            ops.append(("add_layernorm", 2, lambda m: e(3 * m * h * b) + e(2 * m * h * b)))
        if model.qk_norm != "none":
            ops.append(("qk_norm", 1, lambda m: e(2 * m * q_width * b) + e(2 * m * kv_width * b)))
        if model.position_kind == "rotary":
            ops.append(("rotary", 1, lambda m: e(2 * m * (q_width + kv_width) * b)))
        ops.append(("kv_cache_write", 1, lambda m: e(2 * m * 2 * kv_width * b)))
        if model.ffn_kind == "gated_silu":
            ops.append(("silu_mul", 1, lambda m: e(3 * m * inter * b)))
        else:
            ops.append(("relu", 1, lambda m: e(2 * m * inter * b)))
        return ops

    # -- parts of a step -------------------------------------------------------------------
    def layer_token_time(self, num_tokens: int) -> float:
        """One layer's time for ``num_tokens`` tokens, attention excluded (s)."""
        m, b, h = num_tokens, self.dtype_bytes, self.model.hidden_size
        t = 0.0
        for k, n in self.linear_shapes().values():
            t += self.linear_time(m, k, n)
        for _, count, time in self.layer_elementwise():
            t += count * time(m)
        t += 2 * self.all_reduce_time(m * h * b)  # after O and after down
        return t

    def embedding_time(self, num_tokens: int) -> float:
        """The embedding of ``num_tokens`` tokens before the first layer (s), TP all-reduce excluded.

        A gather of the token rows (read and write the embedding width); OPT adds its learned
        positions (a second gather, then the add: read 2, write 1) and, when its embedding is
        narrower than h, ``project_in``.
        """
        m, b, model = num_tokens, self.dtype_bytes, self.model
        h, width = model.hidden_size, model.embedding_dim
        t = self.elementwise_time(2 * m * width * b)
        if model.word_embed_proj_dim:
            t += self.gemm_time(m, width, h)  # project_in
        if model.position_kind == "learned":
            t += self.elementwise_time(2 * m * h * b) + self.elementwise_time(3 * m * h * b)
        return t

    def token_time(self, num_tokens: int) -> float:
        """All layers' attention-free time plus embedding and stage sends (s), memoized."""
        t = self._token_time_cache.get(num_tokens)
        if t is None:
            h, b = self.model.hidden_size, self.dtype_bytes
            t = self.layers * self.layer_token_time(num_tokens)
            t += self.embedding_time(num_tokens)
            if self.tp > 1:
                t += self.all_reduce_time(num_tokens * h * b)  # vocab-parallel embedding
            # Activations cross each pipeline-stage boundary once.
            t += (self.pp - 1) * (num_tokens * h * b / self._link_bandwidth + self.gpu.link_latency_s)
            self._token_time_cache[num_tokens] = t
        return t

    def sample_time(self, num_sampled: int) -> float:
        """Final norm, lm_head, logits gather and sampling for ``num_sampled`` requests (s).

        The final RMSNorm or LayerNorm reads and writes h per request; OPT's ``project_out``
        narrows to the embedding width before lm_head when it differs from h.
        """
        t = self._sample_time_cache.get(num_sampled)
        if t is None:
            h, vocab, b, s = self.model.hidden_size, self.model.vocab_size, self.dtype_bytes, num_sampled
            width = self.model.embedding_dim
            t = self.elementwise_time(2 * s * h * b)  # final norm
            if self.model.word_embed_proj_dim:
                t += self.gemm_time(s, h, width)  # project_out
            t += self.gemm_time(s, width, math.ceil(vocab / self.tp))
            if self.tp > 1:  # gather the vocab shards of the logits
                t += (self.tp - 1) / self.tp * s * vocab * 4 / self._link_bandwidth + self.gpu.link_latency_s
            t += self.elementwise_time(3 * s * vocab * 4)  # fp32 softmax and sampling passes
            self._sample_time_cache[num_sampled] = t
        return t

    def host_time(self, batch: Batch) -> float:
        """The host (CPU) part of ``step_time`` (s): scheduling, input preparation and output
        processing, ``cpu_overhead_s`` plus ``cpu_overhead_per_request_s`` per request (estimates,
        ``RooflineConfig``). A replica overlaps it with the GPU under vLLM's async scheduling."""
        return self.params.cpu_overhead_s + self.params.cpu_overhead_per_request_s * len(batch.requests)

    def step_time(self, batch: Batch) -> float:
        """Seconds one iteration of ``batch`` takes on this replica."""
        t = self.token_time(batch.num_tokens)
        if batch.num_prefill_tokens:
            t += self.full_layers * self.attention_prefill_time(batch.prefill_new_tokens, batch.prefill_prefix_tokens)
            if self.sliding_layers:
                t += self.sliding_layers * self.attention_prefill_time(batch.prefill_new_tokens, batch.prefill_prefix_tokens, self.window)
        if batch.num_decode_tokens:
            t += self.full_layers * self.attention_decode_time(batch.num_decode_tokens, batch.decode_context_tokens)
            if self.sliding_layers:
                t += self.sliding_layers * self.attention_decode_time(batch.num_decode_tokens, windowed_decode_context(batch, self.window))
        if batch.num_sampled_tokens:
            t += self.sample_time(batch.num_sampled_tokens)
        return t + self.params.cpu_overhead_s + self.params.cpu_overhead_per_request_s * len(batch.requests)
