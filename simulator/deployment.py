"""A deployment resolved from a scenario: specs, parallelism checks and KV-cache capacity.

Everything here can fail on the user's input, and fails with a ``ScenarioError`` naming the
scenario file, the field, the value and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.scenario import PoolConfig, Scenario
from simulator.specs.gpu import GPUS, GPUSpec
from simulator.specs.gpu_file import resolve_gpu
from simulator.specs.model import ModelSpec, bundled_model_names, bundled_model_spec, model_spec_from_hf_config

GIB = 1024**3
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2}
# Schedulers that split prompts into chunks, so their per-iteration token budget may be below
# max_model_len; the activation reserve is sized by that budget.
CHUNKED_PREFILL_SCHEDULERS = frozenset({"sarathi", "vllm_v1"})
# vLLM v1's budget when unset: 8,192 for ``vllm serve`` on H100/H200-class GPUs (v0.8
# ``EngineArgs._set_default_args_v1``; v0.9+ ``get_batch_defaults``); A100s and smaller use 2,048.
V1_DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
# Bytes per linear-layer weight under each quantization. W4A16 packs two 4-bit weights per byte
# and stores an fp16 scale and zero point per group of 128 weights (AWQ, Lin et al. MLSys'24;
# GPTQ, Frantar et al. ICLR'23): 0.5 + 4 / 128 bytes. Embedding and lm_head stay in the model
# dtype, as vLLM keeps them.
QUANTIZED_WEIGHT_BYTES = {"w8a8": 1.0, "fp8": 1.0, "w4a16": 0.5 + 4 / 128}
# Memory vLLM reserves outside weights, activations and the KV cache: CUDA context, cuBLAS and
# NCCL workspaces, CUDA graphs. About 1.5 GiB on an H100 (vLLM startup logs of "non-torch memory"
# plus CUDA-graph capture); an estimate until a profile bundle measures it.
NON_TORCH_RESERVE_BYTES = 1.5 * GIB
# GPUs one tensor-parallel group may span: one node. HGX/DGX A100, H100, H200 and B200 boards
# join 8 GPUs over NVSwitch, and PCIe servers hold up to 8; a larger group all-reduces across
# nodes, which servesim has no model of (it would price it at the NVLink or PCIe figure). vLLM's
# multi-node guide sets TP to the GPUs per node and PP to the number of nodes.
MAX_TENSOR_PARALLEL_SIZE = 8
# Schedulers for which ``preemption_mode: swap`` means nothing, and why; it is an error with them
# (the rest swap as vLLM v0 does). Every scheduler is either here or swaps (tests check).
NO_SWAP_SCHEDULERS = {
    "orca": "never preempts (it reserves each request's maximum length at admission)",
    "static": "never preempts (a batch runs until all its requests end)",
    "vllm_v1": "preempts by recompute only (vLLM v1 has no swap)",
}
SWAP_SCHEDULERS = frozenset({"vllm", "sarathi", "distserve"})


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
        weight_bytes_per_gpu, activation_reserve_bytes, kv_cache_bytes_per_gpu: the memory plan.
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


def weight_bytes_per_gpu(model: ModelSpec, tp: int, pp: int, dtype_bytes: int, quantization: str = "none") -> float:
    """Weight bytes on the most loaded GPU of a TP x PP replica.

    Layers split evenly over stages (the first stages take the remainder), each stage holding its
    own layers' weights (a mixture-of-experts model's dense and MoE layers differ: DeepSeek-V3's
    first three are dense); the embedding (with OPT's position table and projections) sits on the
    first stage and lm_head on the last, both vocab-sharded over TP. Every weight is sharded over
    TP, the experts too: without expert parallelism vLLM's fused MoE layer splits each expert's
    intermediate dimension over the TP ranks (``model_executor/layers/fused_moe/layer.py``).
    Quantization shrinks the layers' weights (``QUANTIZED_WEIGHT_BYTES``), not the embedding or lm_head.
    """
    heaviest = max(sum(model.params_of_layer(i) for i in stage) for stage in stage_layers(model.num_layers, pp))
    table = model.vocab_size * model.embedding_dim
    others = model.num_params - model.layer_params - model.embedding_params  # positions, projections, final norm
    vocab_params = (table if model.tie_word_embeddings or pp > 1 else 2 * table) + others
    layer_bytes = QUANTIZED_WEIGHT_BYTES.get(quantization, dtype_bytes)
    return (heaviest * layer_bytes + vocab_params * dtype_bytes) / tp


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """The layers of each of ``pp`` pipeline stages: even splits, the first stages taking the remainder."""
    sizes = [num_layers // pp + (1 if s < num_layers % pp else 0) for s in range(pp)]
    starts = [sum(sizes[:s]) for s in range(pp)]
    return [range(start, start + size) for start, size in zip(starts, sizes)]


def kv_cache_layout(model: ModelSpec, tp: int, pp: int, block_size: int, dtype_bytes: int, max_num_seqs: int) -> tuple[float, float]:
    """(bytes of one KV-cache block on the most loaded GPU, bytes that GPU sets aside for sliding-window layers).

    Per layer and token a GPU caches K and V of its KV heads (replicated past their count, as
    vLLM does), or for multi-head latent attention the latent and the shared rotary key,
    ``kv_lora_rank + qk_rope_head_dim`` elements, the same on every TP rank (vLLM's MLA backends
    cache one such vector per token; DeepSeek-V2 Sec. 2.1.2). A block holds ``block_size`` tokens
    of the layers whose cache grows with the context. Sliding-window layers keep only their
    window: vLLM v1's hybrid KV cache manager gives each attention type a block table of its own
    (``v1/core/kv_cache_coordinator.py``) and frees a sliding-window layer's blocks once they fall
    behind the window (``SlidingWindowManager.remove_skipped_blocks``,
    ``v1/core/single_type_kv_cache_manager.py``). servesim's block manager keeps one table per
    request, so it sets aside ``ceil(window / block_size) + 1`` blocks of those layers for each of
    ``max_num_seqs`` requests (an upper bound: the most requests that run at once) and sizes the
    pool by the full-attention layers. When every layer slides (Mistral) the pool keeps them all, a
    request holding its whole context: a conservative capacity.
    """
    per_layer_token = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim if model.mla is not None
                       else 2 * max(1, model.num_kv_heads // tp) * model.head_dim) * dtype_bytes
    sliding = set(model.sliding_layers)
    stages = stage_layers(model.num_layers, pp)
    if not sliding or len(sliding) == model.num_layers:
        return block_size * len(stages[0]) * per_layer_token, 0.0
    full_per_stage = max(sum(1 for i in stage if i not in sliding) for stage in stages)
    sliding_per_stage = max(sum(1 for i in stage if i in sliding) for stage in stages)
    window_blocks = math.ceil(model.sliding_window / block_size) + 1
    reserve = max_num_seqs * window_blocks * block_size * sliding_per_stage * per_layer_token
    return block_size * full_per_stage * per_layer_token, float(reserve)


def activation_reserve_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int, max_num_seqs: int, dtype_bytes: int) -> float:
    """Peak activation memory of a forward pass at ``max_num_batched_tokens`` tokens (bytes).

    vLLM sizes the KV cache after a profiling forward pass at this size (``determine_num_
    available_blocks``). Peak: the gate/up output and the activation (3 I / tp per token; for a
    mixture of experts I is the larger of the dense width and top-k x expert width plus shared), the
    QKV output, four hidden-size buffers (residual, normed input, attention output, MLP output),
    fp32 logits for ``max_num_seqs`` sampled tokens, plus the non-torch reserve.
    """
    mlp = model.intermediate_size
    if model.moe is not None:  # the routed experts' outputs of each token, and the shared experts'
        mlp = max(mlp, model.moe.num_experts_per_token * model.moe.expert_intermediate_size + model.moe.shared_intermediate_size)
    per_token = 3 * mlp / tp + (model.num_attention_heads + 2 * model.num_kv_heads) * model.head_dim / tp + 4 * model.hidden_size
    logits = max_num_seqs * model.vocab_size / tp * 4
    return max_num_batched_tokens * per_token * dtype_bytes + logits + NON_TORCH_RESERVE_BYTES


def pool_config(scenario: Scenario, role: str) -> PoolConfig:
    """The replicas and parallelism of the pool of ``role`` (``prefill`` or ``decode``).

    A pool the scenario leaves unset is one replica at the cluster's TP and PP.
    """
    assert role in ("prefill", "decode"), f"unknown pool {role!r}"
    cluster = scenario.cluster
    pool = cluster.prefill if role == "prefill" else cluster.decode
    return pool or PoolConfig(1, cluster.tensor_parallel_size, cluster.pipeline_parallel_size)


def _parallelism(scenario: Scenario, role: str) -> tuple[int, int, str]:
    """TP and PP of one replica of ``role`` and the scenario section they are read from."""
    cluster = scenario.cluster
    pool = {"prefill": cluster.prefill, "decode": cluster.decode}.get(role)
    if pool is None:
        return cluster.tensor_parallel_size, cluster.pipeline_parallel_size, "cluster"
    return pool.tensor_parallel_size, pool.pipeline_parallel_size, f"cluster.{role}"


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
    tp, pp, field = _parallelism(scenario, role)
    if model.num_attention_heads % tp:
        options = [n for n in range(1, model.num_attention_heads + 1) if model.num_attention_heads % n == 0 and (model.num_kv_heads % n == 0 or n % model.num_kv_heads == 0)]
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"does not divide the {model.num_attention_heads} attention heads of {model.name}", f"use one of {', '.join(map(str, options))}")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"neither divides nor is a multiple of the {model.num_kv_heads} KV heads of {model.name}", "use a TP degree that divides the KV heads or is a multiple of them")
    if model.intermediate_size % tp:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"does not divide the MLP width {model.intermediate_size} of {model.name}", "use a TP degree that divides it")
    if model.moe is not None and model.moe.expert_intermediate_size % tp:
        raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"does not divide the expert MLP width {model.moe.expert_intermediate_size} of {model.name}", "use a TP degree that divides it")
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
    weights = weight_bytes_per_gpu(model, tp, pp, dtype_bytes, quantization)
    activations = activation_reserve_bytes(model, tp, max_num_batched_tokens, sched.max_num_seqs, dtype_bytes)
    usable = gpu.memory_bytes * sched.gpu_memory_utilization
    block_bytes, window_bytes = kv_cache_layout(model, tp, pp, sched.block_size, dtype_bytes, sched.max_num_seqs)
    kv_bytes = usable - weights - activations - window_bytes
    if sched.num_gpu_blocks_override is not None:
        num_blocks = sched.num_gpu_blocks_override
    else:
        if weights >= usable:
            raise ScenarioError(source, f"{field}.tensor_parallel_size", tp, f"{model.name} needs {weights / GIB:.1f} GiB of weights per GPU but {gpu.name} offers {usable / GIB:.1f} GiB at gpu_memory_utilization {sched.gpu_memory_utilization}", "raise tensor_parallel_size or pipeline_parallel_size, or pick a GPU with more memory")
        num_blocks = int(kv_bytes // block_bytes)
        if num_blocks < 1 and kv_bytes > 0:
            raise ScenarioError(source, "scheduler.block_size", sched.block_size, f"one KV block of {sched.block_size:,} tokens takes {block_bytes / GIB:.1f} GiB per GPU, more than the {kv_bytes / GIB:.1f} GiB left for the KV cache", "use vLLM's default of 16 tokens per block")
        if num_blocks < 1 and activations >= usable:  # the activation reserve alone is too big: name the knob that sized it
            raise _activation_error(scenario, model, tp, max_num_batched_tokens, max_model_len, activations, usable, beyond, length_fix, source)
        if num_blocks < 1:
            raise ScenarioError(source, "scheduler.gpu_memory_utilization", sched.gpu_memory_utilization, f"leaves no memory for KV cache blocks ({weights / GIB:.1f} GiB weights + {activations / GIB:.1f} GiB activations of {usable / GIB:.1f} GiB usable)", "raise gpu_memory_utilization or tensor_parallel_size, or lower max_num_batched_tokens")
    if num_blocks * sched.block_size < max_model_len:
        raise ScenarioError(source, "model.max_model_len", max_model_len, f"{beyond or ''}exceeds the {num_blocks * sched.block_size} tokens the KV cache holds ({num_blocks} blocks of {sched.block_size})", f"{length_fix} or give the KV cache more memory" if beyond else "lower model.max_model_len or give the KV cache more memory")
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
        weight_bytes_per_gpu=weights, activation_reserve_bytes=activations, kv_cache_bytes_per_gpu=num_blocks * block_bytes,
    )
