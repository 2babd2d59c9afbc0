"""The memory plan of one replica: weights, KV-cache blocks and the activation reserve per GPU.

A replica is ``tensor_parallel_size`` (T) x ``pipeline_parallel_size`` (P) x
``data_parallel_size`` (D) GPUs (``Parallelism``). Dense layers and attention are sharded over the
T GPUs of one data-parallel rank (Megatron-LM, Shoeybi et al. 2019, Sec. 3); a mixture-of-experts
layer spans all T x D GPUs of its stage: each expert split over them (vLLM's fused MoE layer
without expert parallelism flattens TP across DP, ``FusedMoEParallelConfig.make``,
``model_executor/layers/fused_moe/config.py``), or, with expert parallelism, whole experts placed
on the T x D GPUs in contiguous ranges (``determine_expert_map``, ``fused_moe/layer.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.specs.model import ModelSpec

GIB = 1024**3
# Bytes per linear-layer weight under each quantization. W4A16 packs two 4-bit weights per byte
# and stores an fp16 scale and zero point per group of 128 weights (AWQ, Lin et al. MLSys'24;
# GPTQ, Frantar et al. ICLR'23): 0.5 + 4 / 128 bytes. Embedding and lm_head stay in the model
# dtype, as vLLM keeps them.
QUANTIZED_WEIGHT_BYTES = {"w8a8": 1.0, "fp8": 1.0, "w4a16": 0.5 + 4 / 128}
# Memory vLLM reserves outside weights, activations and the KV cache: CUDA context, cuBLAS and
# NCCL workspaces, CUDA graphs. About 1.5 GiB on an H100 (vLLM startup logs of "non-torch memory"
# plus CUDA-graph capture); an estimate until a profile bundle measures it.
NON_TORCH_RESERVE_BYTES = 1.5 * GIB


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How one replica's GPUs share the model.

    Attributes:
        tp: tensor-parallel GPUs of one data-parallel rank (attention, dense MLPs, shared experts,
            embedding and lm_head are sharded over them).
        pp: pipeline stages.
        dp: data-parallel attention ranks (1 without data-parallel attention).
        expert_parallel: whether the MoE layers place whole experts on the ``tp x dp`` GPUs.
    """

    tp: int
    pp: int = 1
    dp: int = 1
    expert_parallel: bool = False

    @property
    def num_gpus(self) -> int:
        """GPUs of one replica."""
        return self.tp * self.pp * self.dp

    @property
    def moe_group(self) -> int:
        """GPUs one MoE layer spans (``tp x dp``)."""
        return self.tp * self.dp

    @property
    def expert_parallel_size(self) -> int:
        """GPUs the experts are placed on whole (1 without expert parallelism)."""
        return self.moe_group if self.expert_parallel else 1

    @property
    def expert_tensor_parallel_size(self) -> int:
        """GPUs each expert's intermediate dimension is split over (1 with expert parallelism)."""
        return 1 if self.expert_parallel else self.moe_group


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """The layers of each of ``pp`` pipeline stages: even splits, the first stages taking the remainder."""
    sizes = [num_layers // pp + (1 if s < num_layers % pp else 0) for s in range(pp)]
    starts = [sum(sizes[:s]) for s in range(pp)]
    return [range(start, start + size) for start, size in zip(starts, sizes)]


def expert_ranges(num_experts: int, num_gpus: int) -> list[range]:
    """The experts on each of ``num_gpus`` expert-parallel GPUs: contiguous, the remainder on the first GPUs."""
    base, extra = divmod(num_experts, num_gpus)
    out, start = [], 0
    for r in range(num_gpus):
        size = base + (1 if r < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def experts_per_gpu(num_experts: int, expert_parallel_size: int) -> int:
    """Routed experts on the most loaded GPU, ``ceil(E / EP)``: the first of ``expert_ranges``."""
    return len(expert_ranges(num_experts, expert_parallel_size)[0])


def layer_params_per_gpu(model: ModelSpec, index: int, par: Parallelism) -> float:
    """Parameters of decoder layer ``index`` on one GPU of its stage.

    Attention, norms and a dense MLP: 1 / T. An MoE layer: attention, norms and shared experts
    1 / T; the router replicated (vLLM's ``ReplicatedLinear`` gate in ``mixtral.py``,
    ``deepseek_v2.py``, ``qwen3_moe.py``); the routed experts 1 / (T x D) each, or with expert
    parallelism ``experts_per_gpu`` whole experts.
    """
    moe = model.moe
    if moe is None or index not in moe.moe_layers:
        return model.params_of_layer(index) / par.tp
    router = model.hidden_size * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
    experts = moe.num_experts * model.expert_params
    rest = model.params_of_layer(index) - router - experts  # attention, norms, shared experts
    if par.expert_parallel:
        routed = experts_per_gpu(moe.num_experts, par.expert_parallel_size) * model.expert_params
    else:
        routed = experts / par.moe_group
    return rest / par.tp + router + routed


def weight_bytes_per_gpu(model: ModelSpec, tp: int, pp: int, dtype_bytes: int, quantization: str = "none", dp: int = 1, expert_parallel: bool = False) -> float:
    """Weight bytes on the most loaded GPU of a replica (``Parallelism`` of T, P, D and expert parallelism).

    Layers split evenly over stages (the first stages take the remainder), each stage holding its
    own layers' weights (``layer_params_per_gpu``; DeepSeek-V3's first three layers are dense);
    the embedding (with OPT's position table and projections) sits on the first stage and lm_head
    on the last, both vocab-sharded over T. Quantization shrinks the layers' weights
    (``QUANTIZED_WEIGHT_BYTES``), not the embedding or lm_head.
    """
    par = Parallelism(tp, pp, dp, expert_parallel)
    heaviest = max(sum(layer_params_per_gpu(model, i, par) for i in stage) for stage in stage_layers(model.num_layers, pp))
    table = model.vocab_size * model.embedding_dim
    others = model.num_params - model.layer_params - model.embedding_params  # positions, projections, final norm
    vocab_params = (table if model.tie_word_embeddings or pp > 1 else 2 * table) + others
    layer_bytes = QUANTIZED_WEIGHT_BYTES.get(quantization, dtype_bytes)
    return heaviest * layer_bytes + vocab_params * dtype_bytes / tp


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
    request holding its whole context: a conservative capacity. With data-parallel attention each
    rank caches only its own requests: these are one rank's figures.
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
    """Peak activation memory of a forward pass at ``max_num_batched_tokens`` tokens (bytes), per GPU of one rank.

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
