"""The mixture-of-experts and latent-attention operators of the catalogue, at one GPU's shard shapes.

One MoE block per GPU, as vLLM's fused MoE layer runs it (``model_executor/layers/fused_moe/``,
vLLM 0.24), and as ``simulator/cost_models/moe.py`` prices it:

    router_gemm   [m, h] x [h, E]: the replicated bf16 gate            (kind ``gemm``: m, n = E, k = h)
    moe_experts   align tokens to experts, grouped gate/up GEMM, SiLU * mul, grouped down GEMM
                  and the sum of each token's k outputs (vLLM ``fused_experts``; the
                  ``moe_perf`` tables of aiconfigurator-core time exactly this)  (kind ``moe``)
    moe_sum       each token's k expert outputs added: read k, write 1 hidden vector
                  (kind ``elementwise``: width (k + 1) x h; inside ``moe_experts`` where measured together)

``moe`` rows are keyed by ``MOE_SHAPE_COLUMNS``: the tokens on the GPU, the experts it holds
(E / EP, the remainder going to the first GPUs as vLLM's ``determine_expert_map``), top-k, the
hidden size, one expert's intermediate width on this GPU (w / expert-TP), and the expert-parallel
and expert-tensor-parallel degrees. The distinct experts a step touches set the weight bytes; under
balanced routing each expert is among a token's k with probability k / E, so m tokens touch
``expected_distinct`` of the GPU's experts (``simulator.cost_models.moe``; the same formula prices
the step).

Multi-head latent attention (DeepSeek-V2 Sec. 2.1, DeepSeek-V3), per GPU with H / TP heads:

    mla_decode    absorbed decode attention: each query head attends over the compressed cache of
                  kv_lora_rank (512) latent plus qk_rope_head_dim (64) rope entries per token
                  (vLLM ``attention/backends/mla``), shape (num_seqs, context_tokens, num_heads,
                  kv_lora_rank, rope_dim)
    mla_prefill   prefill attention on the up-projected heads: q/k of qk_nope + rope (128 + 64),
                  v of 128, shape (num_seqs, new_tokens, prefix_tokens, num_heads, qk_head_dim, v_head_dim)

Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.cost_models.moe import expected_distinct
from simulator.engine.memory_plan import expert_ranges
from simulator.errors import ScenarioError
from simulator.specs.model import ModelSpec

MOE, MLA_DECODE, MLA_PREFILL = "moe", "mla_decode", "mla_prefill"
MOE_SHAPE_COLUMNS = ("num_tokens", "num_local_experts", "top_k", "hidden", "expert_width", "ep", "moe_tp")
MLA_SHAPE_COLUMNS = {
    MLA_DECODE: ("num_seqs", "context_tokens", "num_heads", "kv_lora_rank", "rope_dim"),
    MLA_PREFILL: ("num_seqs", "new_tokens", "prefix_tokens", "num_heads", "qk_head_dim", "v_head_dim"),
}
MOE_OPERATORS = ("router_gemm", "moe_experts", "moe_sum")
MLA_OPERATORS = (MLA_DECODE, MLA_PREFILL)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True, slots=True)
class ExpertShape:
    """One GPU's routed experts of a model's MoE block.

    Attributes:
        num_experts: routed experts E of the model.
        num_local_experts: experts this GPU holds (the most loaded GPU: ceil(E / EP)).
        top_k: experts per token k.
        hidden: hidden size h.
        expert_width: one expert's intermediate width on this GPU (w / expert-TP).
        ep, moe_tp: expert-parallel and expert-tensor-parallel degrees (one of them is 1).
    """

    num_experts: int
    num_local_experts: int
    top_k: int
    hidden: int
    expert_width: int
    ep: int
    moe_tp: int

    def key(self, num_tokens: int) -> tuple[int, ...]:
        """The ``MOE_SHAPE_COLUMNS`` values of a row at ``num_tokens`` tokens."""
        return (num_tokens, self.num_local_experts, self.top_k, self.hidden, self.expert_width, self.ep, self.moe_tp)


def expert_shape(model: ModelSpec, tp: int, ep: int = 1) -> ExpertShape:
    """The expert shape of ``model`` on one GPU: EP over ``ep`` GPUs, else every expert sliced over ``tp``.

    Raises:
        ScenarioError: ``model`` has no MoE layers, or ``tp`` does not divide the expert width.
    """
    if model.moe is None:
        raise ScenarioError("--model", "", model.name, "is a dense model: it has no MoE operators", "profile a mixture-of-experts model (`servesim list`)")
    moe = model.moe
    moe_tp = 1 if ep > 1 else tp
    if moe.expert_intermediate_size % moe_tp:
        raise ScenarioError("--tp", "", moe_tp, f"does not divide {model.name}'s expert width {moe.expert_intermediate_size}", "use a TP degree that divides it")
    local = max(len(r) for r in expert_ranges(moe.num_experts, ep))
    return ExpertShape(moe.num_experts, local, moe.num_experts_per_token, model.hidden_size, moe.expert_intermediate_size // moe_tp, ep, moe_tp)


def distinct_local_experts(shape: ExpertShape, num_tokens: float) -> float:
    """Expected distinct experts of this GPU that ``num_tokens`` tokens touch under balanced routing (pi = k / E)."""
    inclusion = np.full(shape.num_local_experts, shape.top_k / shape.num_experts)
    return expected_distinct(inclusion, num_tokens)


def expert_counts(shape: ExpertShape, num_tokens: int, dtype_bytes: float = 2.0, weight_bytes: float = 2.0) -> tuple[float, float]:
    """(FLOPs, bytes) of ``moe_experts`` on one GPU for ``num_tokens`` tokens, balanced routing.

    Pairs routed to this GPU: m * k * local / E. Gate/up: 2 * pairs * h * 2w FLOPs; down:
    2 * pairs * w * h. Bytes: the distinct experts' weight slices (3 * h * w each) plus the pairs'
    activations in and out of both GEMMs (the terms of ``MoELayer.expert_terms``).
    """
    h, w = shape.hidden, shape.expert_width
    pairs = num_tokens * shape.top_k * shape.num_local_experts / shape.num_experts
    experts = distinct_local_experts(shape, num_tokens)
    flops = 6.0 * pairs * h * w
    nbytes = experts * 3.0 * h * w * weight_bytes + pairs * (2 * h + 3 * w) * dtype_bytes
    return flops, nbytes


def router_counts(model: ModelSpec, num_tokens: int, dtype_bytes: float = 2.0) -> tuple[float, float]:
    """(FLOPs, bytes) of the router GEMM [m, h] x [h, E] (bf16 gate, replicated on every GPU)."""
    assert model.moe is not None
    m, h, e = num_tokens, model.hidden_size, model.moe.num_experts
    return 2.0 * m * h * e, (m * h + h * e + m * e) * dtype_bytes


def moe_sum_width(model: ModelSpec) -> int:
    """Elements per token ``moe_sum`` moves: k expert outputs read and one written, (k + 1) x h."""
    assert model.moe is not None
    return (model.moe.num_experts_per_token + 1) * model.hidden_size


def mla_decode_counts(num_seqs: int, context: int, num_heads: int, kv_lora_rank: int = 512, rope_dim: int = 64,
                      dtype_bytes: float = 2.0) -> tuple[float, float]:
    """(FLOPs, bytes) of absorbed MLA decode: scores over latent + rope, values over the latent.

    FLOPs: 2 * H * ctx * (r + d_rope) for scores plus 2 * H * ctx * r for the weighted sum, per
    request; bytes: the compressed cache (r + d_rope per token, shared by all heads) plus the queries
    and outputs (DeepSeek-V2 Sec. 2.1.2, the absorbed form vLLM's MLA backends run).
    """
    flops = 2.0 * num_seqs * num_heads * context * (2 * kv_lora_rank + rope_dim)
    nbytes = (num_seqs * context * (kv_lora_rank + rope_dim) + num_seqs * num_heads * (2 * kv_lora_rank + rope_dim)) * dtype_bytes
    return flops, nbytes


def mla_prefill_counts(num_seqs: int, new: int, prefix: int, num_heads: int, qk_head_dim: int = 192, v_head_dim: int = 128,
                       dtype_bytes: float = 2.0) -> tuple[float, float]:
    """(FLOPs, bytes) of causal MLA prefill on up-projected heads (q/k of ``qk_head_dim``, v of ``v_head_dim``)."""
    pairs = num_seqs * new * (prefix + (new + 1) / 2)
    flops = 2.0 * num_heads * pairs * (qk_head_dim + v_head_dim)
    tokens = num_seqs * (prefix + new)
    nbytes = (num_seqs * new * num_heads * (qk_head_dim + v_head_dim) + tokens * num_heads * (qk_head_dim + v_head_dim)) * dtype_bytes
    return flops, nbytes


def moe_plan(model: ModelSpec, tps: list[int], token_counts: list[int], dtype: str, ep: int = 1) -> list[tuple[str, str, int, tuple[int, ...], float, float]]:
    """The MoE measurements of ``model``: (operator, kind, tp, shape, flops, bytes) per row, in run order.

    ``router_gemm`` rows use the ``gemm`` shape (m, E, h), ``moe_sum`` the ``elementwise`` shape
    (m, (k + 1) h), ``moe_experts`` the ``MOE_SHAPE_COLUMNS``.

    Raises:
        ScenarioError: ``model`` is dense (``expert_shape``).
    """
    b = DTYPE_BYTES[dtype]
    out: list[tuple[str, str, int, tuple[int, ...], float, float]] = []
    for tp in tps:
        shape = expert_shape(model, tp, ep)
        for m in token_counts:
            out.append(("router_gemm", "gemm", tp, (m, shape.num_experts, shape.hidden), *router_counts(model, m, b)))
            out.append(("moe_experts", MOE, tp, shape.key(m), *expert_counts(shape, m, b, b)))
            w = moe_sum_width(model)
            out.append(("moe_sum", "elementwise", tp, (m, w), 0.0, float(m * w * b)))
    return out
