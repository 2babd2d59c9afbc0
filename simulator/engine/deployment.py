"""A deployment resolved from a scenario: specs, parallelism checks and KV-cache capacity.

Everything here can fail on the user's input, and fails with a ``ScenarioError`` naming the
scenario file, the field, the value and the fix.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.engine.memory_plan import (  # noqa: F401  (re-exported: the memory plan's parts)
    GIB,
    NON_TORCH_RESERVE_BYTES,
    QUANTIZED_WEIGHT_BYTES,
    Parallelism,
    activation_reserve_bytes,
    kv_cache_layout,
    stage_layers,
    weight_bytes_per_gpu,
)
from simulator.scenario import PoolConfig, Scenario, SchedulerConfig
from simulator.specs.gpu import GPUS, GPUSpec
from simulator.specs.gpu_file import resolve_gpu
from simulator.specs.model import ModelSpec, bundled_model_names, bundled_model_spec, model_spec_from_hf_config

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2}
# Schedulers that split prompts into chunks, so their per-iteration token budget may be below
# max_model_len; the activation reserve is sized by that budget.
CHUNKED_PREFILL_SCHEDULERS = frozenset({"sarathi", "vllm_v1"})
# vLLM v1's budget when unset: 8,192 for ``vllm serve`` on H100/H200-class GPUs (v0.8
# ``EngineArgs._set_default_args_v1``; v0.9+ ``get_batch_defaults``); A100s and smaller use 2,048.
V1_DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
# GPUs one tensor-parallel group may span: one node. HGX/DGX A100, H100, H200 and B200 boards
# join 8 GPUs over NVSwitch, and PCIe servers hold up to 8; a larger group all-reduces across
# nodes, which servesim has no model of (it would price it at the NVLink or PCIe figure). vLLM's
# multi-node guide sets TP to the GPUs per node and PP to the number of nodes.
MAX_TENSOR_PARALLEL_SIZE = 8
# GPUs one MoE layer may span (TP x DP): eight nodes of eight. Within a node the all-to-all runs
# over NVLink; beyond it the off-node share goes over one InfiniBand NIC per GPU
# (``simulator.cost_models.moe``), as wide expert-parallel deployments do (DeepSeek-V3 Sec. 3.4:
# decoding on 320 GPUs; SGLang's 96-GPU EP deployment).
MAX_MOE_GROUP = 64
# Schedulers for which ``preemption_mode: swap`` means nothing, and why; it is an error with them
# (the rest swap as vLLM v0 does). Every scheduler is either here or swaps (tests check).
NO_SWAP_SCHEDULERS = {
    "orca": "never preempts (it reserves each request's maximum length at admission)",
    "static": "never preempts (a batch runs until all its requests end)",
    "vllm_v1": "preempts by recompute only (vLLM v1 has no swap)",
}
SWAP_SCHEDULERS = frozenset({"vllm", "sarathi", "distserve", "fastserve", "sjf"})


@dataclass(frozen=True, slots=True)
class Deployment:
    """What one replica is: model, GPU, parallelism, context and KV-cache sizes.

    Attributes:
        model: architecture.
        gpu: datasheet numbers.
        tensor_parallel_size, pipeline_parallel_size: GPUs per replica = their product.
        dtype_bytes: bytes per activation/KV element (and per weight when not quantized).
        quantization: the linear layers' weight quantization (``none``, ``w8a8``, ``w4a16``, ``fp8``).
        max_model_len: longest prompt plus output (tokens).
        max_num_batched_tokens: most tokens per iteration.
        num_kv_blocks: KV cache blocks per replica (each holds block_size tokens on every GPU).
        weight_bytes_per_gpu, activation_reserve_bytes, kv_cache_bytes_per_gpu: the memory plan
            (per GPU; with data-parallel attention, of one rank's GPUs).
        data_parallel_size: data-parallel attention ranks (1 without). Each rank has its own
            scheduler limits and KV cache in the engines; servesim runs one scheduler per replica
            holding all ranks' KV blocks (``num_kv_blocks`` counts them all), ``data_parallel_size``
            times the per-rank ``max_num_seqs`` and ``max_num_batched_tokens``
            (``scheduler_config``), and the cost model splits each batch over the ranks.
        expert_parallel: whether the MoE layers place whole experts on the ``tp x dp`` GPUs.
    """

    model: ModelSpec
    gpu: GPUSpec
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype_bytes: int
    max_model_len: int
    quantization: str
    max_num_batched_tokens: int
    num_kv_blocks: int
    weight_bytes_per_gpu: float
    activation_reserve_bytes: float
    kv_cache_bytes_per_gpu: float
    data_parallel_size: int = 1
    expert_parallel: bool = False

    @property
    def parallelism(self) -> Parallelism:
        """TP, PP, DP and expert parallelism of one replica."""
        return Parallelism(self.tensor_parallel_size, self.pipeline_parallel_size, self.data_parallel_size, self.expert_parallel)

    @property
    def num_gpus(self) -> int:
        """GPUs of one replica: TP x PP x DP."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size

    @property
    def scheduler_token_budget(self) -> int:
        """Tokens per iteration of the replica's one scheduler: the per-rank budget times DP."""
        return self.max_num_batched_tokens * self.data_parallel_size

    def scheduler_config(self, config: SchedulerConfig) -> SchedulerConfig:
        """The scheduler limits of the replica's one scheduler: per-rank ``max_num_seqs`` and token budget times DP."""
        if self.data_parallel_size == 1:
            return config
        d = self.data_parallel_size
        return dataclasses.replace(config, max_num_seqs=config.max_num_seqs * d, max_num_batched_tokens=self.scheduler_token_budget)


def _activation_error(scenario: Scenario, model: ModelSpec, tp: int, budget: int, max_model_len: int, activations: float, usable: float, beyond: str, length_fix: str, source: str) -> ScenarioError:
    """The error for an activation reserve larger than the usable memory, naming the field that sized it.

    The reserve is a token-budget part and a logits part (``activation_reserve_bytes``): the
    larger one is blamed; the budget is ``chunk_size`` (sarathi), ``max_num_batched_tokens`` when
    set, else ``max_model_len`` (vLLM v0's default budget).
    """
    sched = scenario.scheduler
    logits = sched.max_num_seqs * model.vocab_size / tp * 4
    what = f"sizes an activation reserve of {activations / GIB:,.1f} GiB per GPU, more than the {usable / GIB:.1f} GiB usable"
    if logits > activations / 2:
        return ScenarioError(source, "scheduler.max_num_seqs", sched.max_num_seqs, f"{what} (fp32 logits of every sequence)", "lower it (vLLM's default is 256)")
    if sched.name == "sarathi":
        return ScenarioError(source, "scheduler.chunk_size", sched.chunk_size, what, "lower it (Sarathi-Serve's evaluation uses 512 and 2048)")
    if sched.max_num_batched_tokens is None and sched.name != "vllm_v1" and budget == max_model_len:
        return ScenarioError(source, "model.max_model_len", max_model_len, f"{beyond}{what} (the token budget defaults to it)", length_fix if beyond else "lower it, or set a smaller scheduler.max_num_batched_tokens with a chunked-prefill scheduler")
    return ScenarioError(source, "scheduler.max_num_batched_tokens", budget, what, "lower it (vLLM v1 uses 8192 on H100-class GPUs)")


def resolve_model(scenario: Scenario, source: str) -> ModelSpec:
    """The model spec named by ``model.config`` (a config.json path) or ``model.name``."""
    if scenario.model.config is not None:
        return model_spec_from_hf_config(scenario.model.config)
    spec = bundled_model_spec(scenario.model.name)
    if spec is None:
        known = ", ".join(bundled_model_names())
        raise ScenarioError(source, "model.name", scenario.model.name, "unknown model", f"use one of {known}, or set model.config to a Hugging Face config.json")
    return spec


def pool_config(scenario: Scenario, role: str) -> PoolConfig:
    """The replicas and parallelism of the pool of ``role`` (``prefill`` or ``decode``).

    A pool the scenario leaves unset is one replica at the cluster's TP and PP.
    """
    assert role in ("prefill", "decode"), f"unknown pool {role!r}"
    cluster = scenario.cluster
    pool = cluster.prefill if role == "prefill" else cluster.decode
    return pool or PoolConfig(1, cluster.tensor_parallel_size, cluster.pipeline_parallel_size, cluster.data_parallel_size, cluster.enable_expert_parallel)


def _parallelism(scenario: Scenario, role: str) -> tuple[int, int, int, bool, str]:
    """TP, PP, DP and expert parallelism of one replica of ``role``, and the scenario section they are read from."""
    cluster = scenario.cluster
    pool = {"prefill": cluster.prefill, "decode": cluster.decode}.get(role)
    if pool is None:
        return cluster.tensor_parallel_size, cluster.pipeline_parallel_size, cluster.data_parallel_size, cluster.enable_expert_parallel, "cluster"
    return pool.tensor_parallel_size, pool.pipeline_parallel_size, pool.data_parallel_size, pool.enable_expert_parallel, f"cluster.{role}"


def _check_moe_parallelism(model: ModelSpec, tp: int, dp: int, ep: bool, field: str, source: str) -> None:
    """Data-parallel attention and expert parallelism are for mixture-of-experts models; the MoE group fits the limit.

    Raises:
        ScenarioError: DP > 1 or expert parallelism on a dense model; an expert width that the
            ``tp x dp`` GPUs do not divide (without expert parallelism); more than
            ``MAX_MOE_GROUP`` GPUs in one MoE layer.
    """
    if model.moe is None:
        if dp > 1:
            raise ScenarioError(source, f"{field}.data_parallel_size", dp, f"splits attention into data-parallel ranks, which only a mixture-of-experts model's shared expert layers join; {model.name} is dense",
                                "for a dense model use num_replicas (independent copies) instead")
        if ep:
            raise ScenarioError(source, f"{field}.enable_expert_parallel", True, f"{model.name} is a dense model: it has no experts to place", "remove it, or pick a mixture-of-experts model (`servesim list`)")
        return
    group = tp * dp
    if group > MAX_MOE_GROUP:
        raise ScenarioError(source, f"{field}.data_parallel_size", dp, f"makes an MoE layer span {group} GPUs (tensor_parallel_size x data_parallel_size), beyond the {MAX_MOE_GROUP} servesim prices", f"use at most {MAX_MOE_GROUP} GPUs per replica's MoE layer")
    if not ep and model.moe.expert_intermediate_size % group:
        name = "tensor_parallel_size x data_parallel_size" if dp > 1 else "tensor_parallel_size"
        raise ScenarioError(source, f"{field}.{'data_parallel_size' if dp > 1 else 'tensor_parallel_size'}", dp if dp > 1 else tp, f"{name} = {group} does not divide the expert MLP width {model.moe.expert_intermediate_size} of {model.name}",
                            "use a degree that divides it, or set enable_expert_parallel: true to place whole experts")


def resolve_deployment(scenario: Scenario, source: str = "<scenario>", role: str = "colocated") -> Deployment:
    """Resolve and check the model, GPU, parallelism and memory plan of ``scenario``.

    ``role`` picks whose parallelism: ``colocated`` (the cluster section's TP and PP), or the
    ``prefill`` / ``decode`` pool of a disaggregated deployment (``cluster.prefill`` /
    ``cluster.decode``, defaulting to the cluster's); errors name the field it came from.

    KV-cache capacity per GPU = memory x gpu_memory_utilization - weights - activation reserve -
    sliding-window layers' share; blocks = that / (block_size x full-attention layers per stage x
    bytes per token and layer: 2 x KV heads per GPU x head_dim x bytes, or MLA's latent;
    ``kv_cache_layout``).

    Raises:
        ScenarioError: unknown model or GPU, or a bad GPU spec file; a TP degree that does not divide the attention
            heads, KV heads or MLP width; more stages than layers; TP beyond one node
            (``MAX_TENSOR_PARALLEL_SIZE``); ``preemption_mode: swap`` with a scheduler that cannot
            swap (``NO_SWAP_SCHEDULERS``) or without room for one block of swap space; a model
            that does not fit; zero KV blocks (naming the field that sized the activation reserve
            or the block); a context longer than the KV cache; a token budget below the context.
            When ``max_model_len`` beyond the model's own context is what makes a check fail,
            the error names it.
    """
    model = resolve_model(scenario, source)
    gpu = resolve_gpu(scenario.hardware.gpu, source)
    tp, pp, dp, ep, field = _parallelism(scenario, role)
    if model.num_attention_heads % tp:
        options = [n for n in range(1, model.num_attention_heads + 1) if model.num_attention_heads % n == 0 and (model.num_kv_heads % n == 0 or n % model.num_kv_heads == 0)]
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"does not divide the {model.num_attention_heads} attention heads of {model.name}", f"use one of {', '.join(map(str, options))}")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"neither divides nor is a multiple of the {model.num_kv_heads} KV heads of {model.name}", "use a TP degree that divides the KV heads or is a multiple of them")
    if model.intermediate_size % tp:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"does not divide the MLP width {model.intermediate_size} of {model.name}", "use a TP degree that divides it")
    _check_moe_parallelism(model, tp, dp, ep, field, source)
    if pp > model.num_layers:
        raise ScenarioError(source, f"{field}.pipeline_parallel_size", pp, f"exceeds the {model.num_layers} layers of {model.name}", f"use at most {model.num_layers}")
    if tp > MAX_TENSOR_PARALLEL_SIZE:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"spans more than one node ({MAX_TENSOR_PARALLEL_SIZE} GPUs): the all-reduce would cross nodes, which servesim cannot price ({gpu.name}'s {gpu.link_kind} figures hold within a node)",
                            f"use at most {MAX_TENSOR_PARALLEL_SIZE} and split across nodes with pipeline_parallel_size (TP within a node, PP across nodes, as vLLM's multi-node guide does)")

    sched = scenario.scheduler
    if sched.preemption_mode == "swap" and sched.name in NO_SWAP_SCHEDULERS:
        raise ScenarioError(source, "scheduler.preemption_mode", "swap", f"the {sched.name} scheduler {NO_SWAP_SCHEDULERS[sched.name]}",
                            f"set scheduler.preemption_mode: recompute (the default), or use a scheduler that swaps ({', '.join(sorted(SWAP_SCHEDULERS))})")
    dtype_bytes = _DTYPE_BYTES[scenario.model.dtype]
    max_model_len = scenario.model.max_model_len or model.max_position_embeddings
    context = model.max_position_embeddings
    # A length beyond the model's context runs (a RoPE-scaled deployment); when it is what makes
    # the deployment impossible, the error says so rather than blaming memory.
    beyond = f"exceeds the {context:,}-token context of {model.name}, and at this length " if max_model_len > context else ""
    length_fix = f"lower model.max_model_len (to at most {context} for {model.name}'s own context)"
    if sched.name == "sarathi":  # the chunk size is its whole per-iteration budget
        max_num_batched_tokens = sched.chunk_size
    elif sched.name == "vllm_v1":
        max_num_batched_tokens = sched.max_num_batched_tokens or V1_DEFAULT_MAX_NUM_BATCHED_TOKENS
    else:
        max_num_batched_tokens = sched.max_num_batched_tokens or max(max_model_len, 2048)
    if sched.name not in CHUNKED_PREFILL_SCHEDULERS and max_num_batched_tokens < max_model_len:
        if beyond:
            raise ScenarioError(source, "model.max_model_len", max_model_len, f"{beyond}it exceeds scheduler.max_num_batched_tokens = {max_num_batched_tokens}, so long prompts could never be scheduled", length_fix)
        raise ScenarioError(source, "scheduler.max_num_batched_tokens", max_num_batched_tokens, f"is below max_model_len {max_model_len}, so long prompts could never be scheduled (vLLM v0 refuses this too)", f"set it to at least {max_model_len} or lower model.max_model_len")

    quantization = scenario.model.quantization
    if quantization == "fp8" and gpu.fp8_flops is None:
        raise ScenarioError(source, "model.quantization", quantization, f"{gpu.name} has no FP8 tensor cores", f"use w8a8 or w4a16 on this GPU, or an FP8-capable GPU ({', '.join(g.name for g in GPUS.values() if g.fp8_flops)})")
    weights = weight_bytes_per_gpu(model, tp, pp, dtype_bytes, quantization, dp, ep)
    activations = activation_reserve_bytes(model, tp, max_num_batched_tokens, sched.max_num_seqs, dtype_bytes)
    usable = gpu.memory_bytes * sched.gpu_memory_utilization
    block_bytes, window_bytes = kv_cache_layout(model, tp, pp, sched.block_size, dtype_bytes, sched.max_num_seqs)
    kv_bytes = usable - weights - activations - window_bytes
    if sched.num_gpu_blocks_override is not None:
        num_blocks = sched.num_gpu_blocks_override * dp  # per rank, as vLLM reads it
    else:
        if weights >= usable:
            raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"{model.name} needs {weights / GIB:.1f} GiB of weights per GPU but {gpu.name} offers {usable / GIB:.1f} GiB at gpu_memory_utilization {sched.gpu_memory_utilization}", "raise tensor_parallel_size or pipeline_parallel_size, or pick a GPU with more memory")
        num_blocks = int(kv_bytes // block_bytes) * dp  # each data-parallel rank caches its own requests
        if num_blocks < 1 and kv_bytes > 0:
            raise ScenarioError(source, "scheduler.block_size", sched.block_size, f"one KV block of {sched.block_size:,} tokens takes {block_bytes / GIB:.1f} GiB per GPU, more than the {kv_bytes / GIB:.1f} GiB left for the KV cache", "use vLLM's default of 16 tokens per block")
        if num_blocks < 1 and activations >= usable:  # the activation reserve alone is too big: name the knob that sized it
            raise _activation_error(scenario, model, tp, max_num_batched_tokens, max_model_len, activations, usable, beyond, length_fix, source)
        if num_blocks < 1:
            raise ScenarioError(source, "scheduler.gpu_memory_utilization", sched.gpu_memory_utilization, f"leaves no memory for KV cache blocks ({weights / GIB:.1f} GiB weights + {activations / GIB:.1f} GiB activations of {usable / GIB:.1f} GiB usable)", "raise gpu_memory_utilization or tensor_parallel_size, or lower max_num_batched_tokens")
    rank_blocks = num_blocks // dp  # a request's KV cache lives on one rank
    if rank_blocks * sched.block_size < max_model_len:
        raise ScenarioError(source, "model.max_model_len", max_model_len, f"{beyond or ''}exceeds the {rank_blocks * sched.block_size} tokens the KV cache holds ({rank_blocks} blocks of {sched.block_size}{' per data-parallel rank' if dp > 1 else ''})", f"{length_fix} or give the KV cache more memory" if beyond else "lower model.max_model_len or give the KV cache more memory")
    # Admission keeps int(watermark x blocks) free (vLLM v0's BlockSpaceManager.can_allocate; v1 has
    # no watermark): a longest request needing more than the rest could never start.
    above = num_blocks - int(sched.watermark * num_blocks)
    if sched.name != "vllm_v1" and -(-max_model_len // sched.block_size) > above:
        raise ScenarioError(source, "scheduler.watermark", sched.watermark, f"leaves {above} of {num_blocks} KV blocks for admission, fewer than the {-(-max_model_len // sched.block_size)} a {max_model_len}-token request needs, so it would wait forever",
                            "lower scheduler.watermark or model.max_model_len, or give the KV cache more blocks")
    if sched.preemption_mode == "swap":
        if sched.swap_space_gib * GIB < block_bytes:  # as SwapSpace.for_deployment counts blocks
            raise ScenarioError(source, "scheduler.swap_space_gib", sched.swap_space_gib, f"holds no KV block ({block_bytes / 2**20:.1f} MiB each per GPU), so preemption_mode swap could never swap",
                                "give swap space (vLLM's default is 4 GiB per GPU) or set scheduler.preemption_mode: recompute")
    return Deployment(
        model=model, gpu=gpu, tensor_parallel_size=tp, pipeline_parallel_size=pp, dtype_bytes=dtype_bytes,
        quantization=quantization, max_model_len=max_model_len, max_num_batched_tokens=max_num_batched_tokens, num_kv_blocks=num_blocks,
        weight_bytes_per_gpu=weights, activation_reserve_bytes=activations, kv_cache_bytes_per_gpu=num_blocks // dp * block_bytes,
        data_parallel_size=dp, expert_parallel=ep,
    )
