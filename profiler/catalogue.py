"""The operator catalogue: what one iteration of a model runs, at tensor-parallel shard shapes.

The same operators the roofline cost model prices (``simulator/cost_models/roofline.py``), so the
profiled and roofline models compare operator by operator. Per layer, at TP degree p (Megatron-LM
sharding, Shoeybi et al. 2019, Sec. 3):

    add_rmsnorm -> qkv_proj -> rotary -> kv_cache_write -> attention_prefill / attention_decode
    -> o_proj -> all_reduce -> add_rmsnorm -> gate_up_proj -> silu_mul -> down_proj -> all_reduce

and per step: ``embedding`` (plus an all-reduce of the vocab-parallel lookup), the final
``rmsnorm``, ``lm_head`` and ``sampling`` for the sampled requests, and ``cpu_overhead`` (input
preparation on the host). With a quantized model the four linear layers also run as ``w8a8``,
``w4a16`` or ``fp8`` GEMMs, with ``quantize_activations`` before W8A8 and FP8 GEMMs.

That is the Llama layout (``OPERATORS``); other dense families swap operators where their layers
differ (``FAMILY_OPERATORS``, ``model_operators``), as the roofline prices them: OPT runs
``up_proj`` (no gate), ``relu``, ``add_layernorm`` (residual add then LayerNorm), a learned
``position_embedding`` after the token embedding and a final ``layernorm``, and no rotary; Qwen3
adds ``qk_norm`` (per-head RMSNorm of Q and K).

Each measurement is one row of a tidy CSV, one file per operator kind (``KINDS``); its shape
columns are the kind's ``SHAPE_COLUMNS``. FLOPs and bytes moved are computed here, with the
roofline's formulas, and stored with every row so the fit can use them as features. Nothing here
imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from profiler.sweeps import SweepConfig
from simulator.errors import ScenarioError
from simulator.specs.model import ModelSpec

GEMM, ELEMENTWISE, ATTENTION_PREFILL, ATTENTION_DECODE, ALL_REDUCE, CPU_OVERHEAD = (
    "gemm", "elementwise", "attention_prefill", "attention_decode", "all_reduce", "cpu_overhead",
)
KINDS = (GEMM, ELEMENTWISE, ATTENTION_PREFILL, ATTENTION_DECODE, ALL_REDUCE, CPU_OVERHEAD)

# Shape columns of each kind's CSV, in order (all integers).
SHAPE_COLUMNS: dict[str, tuple[str, ...]] = {
    GEMM: ("m", "n", "k"),
    ELEMENTWISE: ("num_tokens", "width"),
    ATTENTION_PREFILL: ("num_seqs", "new_tokens", "prefix_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"),
    ATTENTION_DECODE: ("num_seqs", "context_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"),
    ALL_REDUCE: ("num_tokens", "width"),
    CPU_OVERHEAD: ("num_seqs", "context_tokens", "block_size"),
}
KEY_COLUMNS = ("operator", "implementation", "dtype", "tp")
TIMING_COLUMNS = ("flops", "nbytes", "median_s", "p20_s", "p80_s", "min_s", "mean_s", "num_samples", "timer", "repeat", "measured_at")

LINEAR_OPERATORS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
QUANTIZATIONS = ("w8a8", "w4a16", "fp8")
# Bytes per element of activations (A), weights (W) and outputs (C) of a quantized GEMM; int4
# weights carry an fp16 scale and zero per group of 128 (as the roofline and deployment count).
_QUANT_BYTES = {"w8a8": (1.0, 1.0, 2.0), "fp8": (1.0, 1.0, 2.0), "w4a16": (2.0, 0.5 + 4 / 128, 2.0)}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """One operator of the catalogue.

    Attributes:
        name: the operator's name (the ``operator`` column).
        kind: its CSV family (``KINDS``).
        sweep: which sweep it runs over: ``tokens`` (tokens per step), ``sampled`` (sampled
            requests), ``decode`` / ``prefill`` (attention grids), ``batch`` (requests per step).
        per_layer: how many times a layer runs it (0 for per-step operators).
        tp_dependent: whether its shape changes with TP (TP-independent ones are measured once,
            at the first TP degree asked for, and reused for every degree).
    """

    name: str
    kind: str
    sweep: str
    per_layer: int
    tp_dependent: bool


OPERATORS: dict[str, OperatorSpec] = {
    op.name: op
    for op in (
        OperatorSpec("qkv_proj", GEMM, "tokens", 1, True),
        OperatorSpec("o_proj", GEMM, "tokens", 1, True),
        OperatorSpec("gate_up_proj", GEMM, "tokens", 1, True),
        OperatorSpec("down_proj", GEMM, "tokens", 1, True),
        OperatorSpec("add_rmsnorm", ELEMENTWISE, "tokens", 2, False),
        OperatorSpec("rotary", ELEMENTWISE, "tokens", 1, True),
        OperatorSpec("kv_cache_write", ELEMENTWISE, "tokens", 1, True),
        OperatorSpec("silu_mul", ELEMENTWISE, "tokens", 1, True),
        OperatorSpec("quantize_activations", ELEMENTWISE, "tokens", 0, True),
        OperatorSpec("attention_prefill", ATTENTION_PREFILL, "prefill", 1, True),
        OperatorSpec("attention_decode", ATTENTION_DECODE, "decode", 1, True),
        OperatorSpec("all_reduce", ALL_REDUCE, "tokens", 2, True),
        OperatorSpec("embedding", ELEMENTWISE, "tokens", 0, False),
        OperatorSpec("rmsnorm", ELEMENTWISE, "sampled", 0, False),
        OperatorSpec("lm_head", GEMM, "sampled", 0, True),
        OperatorSpec("sampling", ELEMENTWISE, "sampled", 0, False),
        OperatorSpec("cpu_overhead", CPU_OVERHEAD, "batch", 0, False),
    )
}
# Operators of the other dense families. The norms and the position embedding do not change with TP,
# but are measured at every TP degree: the fit reuses one degree's table for the others only for
# the operators above.
FAMILY_OPERATORS: dict[str, OperatorSpec] = {
    op.name: op
    for op in (
        OperatorSpec("up_proj", GEMM, "tokens", 1, True),
        OperatorSpec("add_layernorm", ELEMENTWISE, "tokens", 2, True),
        OperatorSpec("qk_norm", ELEMENTWISE, "tokens", 1, True),
        OperatorSpec("relu", ELEMENTWISE, "tokens", 1, True),
        OperatorSpec("position_embedding", ELEMENTWISE, "tokens", 0, True),
        OperatorSpec("layernorm", ELEMENTWISE, "sampled", 0, True),
    )
}
ALL_OPERATORS: dict[str, OperatorSpec] = {**OPERATORS, **FAMILY_OPERATORS}


def model_operators(model: ModelSpec) -> list[OperatorSpec]:
    """The operators one step of ``model`` runs, in catalogue order (``OPERATORS`` for the Llama layout).

    A ReLU MLP runs ``up_proj`` and ``relu`` instead of ``gate_up_proj`` and ``silu_mul``;
    LayerNorm runs ``add_layernorm`` and a final ``layernorm`` instead of ``add_rmsnorm`` and
    ``rmsnorm``; learned positions run ``position_embedding`` instead of ``rotary``; a q/k norm
    adds ``qk_norm``.

    Raises:
        ScenarioError: ``model`` is a mixture of experts (its MoE block's operators are ``profiler/catalogue_moe.py``'s).
    """
    if model.moe is not None:
        raise ScenarioError("--model", "", model.name, f"is a mixture-of-experts model ({model.architecture}); the profiler measures dense layers only",
                            "profile a dense model (`servesim list`)")
    swap: dict[str, str | None] = {}
    if model.ffn_kind == "relu":
        swap |= {"gate_up_proj": "up_proj", "silu_mul": "relu"}
    if model.norm_kind == "layernorm":
        swap |= {"add_rmsnorm": "add_layernorm", "rmsnorm": "layernorm"}
    if model.position_kind == "learned":
        swap |= {"rotary": None}
    out: list[OperatorSpec] = []
    for name, op in OPERATORS.items():
        if name == "rotary" and model.qk_norm != "none":
            out.append(FAMILY_OPERATORS["qk_norm"])
        if name == "embedding" and model.position_kind == "learned":
            out += [op, FAMILY_OPERATORS["position_embedding"]]
            continue
        new = swap.get(name, name)
        if new is not None:
            out.append(ALL_OPERATORS[new])
    return out


def linear_operators(model: ModelSpec) -> tuple[str, ...]:
    """The linear layers of one layer of ``model`` (the quantizable GEMMs), in run order."""
    return tuple(op.name for op in model_operators(model) if op.kind == GEMM and op.name != "lm_head")


@dataclass(frozen=True, slots=True)
class LayerDims:
    """One GPU's share of a layer at TP degree ``tp`` (KV heads replicated past their count, as vLLM)."""

    tp: int
    hidden: int
    head_dim: int
    q_heads: int
    kv_heads: int
    intermediate: int
    vocab_shard: int
    vocab: int
    embedding: int = 0  # the token embedding's width (lm_head's input): h unless OPT's word_embed_proj_dim

    @property
    def q_width(self) -> int:
        return self.q_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


def layer_dims(model: ModelSpec, tp: int) -> LayerDims:
    """The per-GPU dimensions of ``model``'s layers at TP degree ``tp``."""
    return LayerDims(
        tp=tp, hidden=model.hidden_size, head_dim=model.head_dim,
        q_heads=model.num_attention_heads // tp, kv_heads=max(1, model.num_kv_heads // tp),
        intermediate=model.intermediate_size // tp, vocab_shard=math.ceil(model.vocab_size / tp), vocab=model.vocab_size,
        embedding=model.embedding_dim,
    )


def check_tp(model: ModelSpec, tp: int) -> str | None:
    """Why ``model`` cannot be sharded over ``tp`` GPUs, or None when it can (the simulator's rules)."""
    if tp < 1:
        return "must be >= 1"
    if model.num_attention_heads % tp:
        return f"does not divide the {model.num_attention_heads} attention heads"
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        return f"neither divides nor is a multiple of the {model.num_kv_heads} KV heads"
    if model.intermediate_size % tp:
        return f"does not divide the MLP width {model.intermediate_size}"
    return None


def gemm_shape(operator: str, dims: LayerDims) -> tuple[int, int]:
    """(n, k) of ``operator``'s GEMM: output width and reduction width."""
    h, q, kv, inter = dims.hidden, dims.q_width, dims.kv_width, dims.intermediate
    return {
        "qkv_proj": (q + 2 * kv, h),
        "o_proj": (h, q),
        "gate_up_proj": (2 * inter, h),
        "up_proj": (inter, h),
        "down_proj": (h, inter),
        "lm_head": (dims.vocab_shard, dims.embedding or h),
    }[operator]


def elementwise_width(operator: str, dims: LayerDims) -> int:
    """The width (elements per token) ``operator`` works on."""
    return {
        "add_rmsnorm": dims.hidden,
        "rmsnorm": dims.hidden,
        "rotary": dims.q_width + dims.kv_width,
        "kv_cache_write": dims.kv_width,
        "silu_mul": dims.intermediate,
        "embedding": dims.embedding or dims.hidden,
        "sampling": dims.vocab,
        "add_layernorm": dims.hidden,
        "layernorm": dims.hidden,
        "qk_norm": dims.q_width + dims.kv_width,
        "relu": dims.intermediate,
        "position_embedding": dims.hidden,
    }[operator]


def elementwise_bytes(operator: str, num_tokens: int, width: int, dtype_bytes: float) -> float:
    """Bytes an elementwise operator moves (the roofline's counts)."""
    m, w, b = num_tokens, width, dtype_bytes
    if operator == "add_rmsnorm":
        return 4.0 * m * w * b  # read x and residual, write both
    if operator in ("rmsnorm", "embedding", "layernorm", "relu", "qk_norm"):
        return 2.0 * m * w * b  # read and write once (qk_norm: Q and K)
    if operator in ("add_layernorm", "position_embedding"):
        return 5.0 * m * w * b  # unfused: add (read 2, write 1), then the norm or the gather (read 1, write 1)
    if operator == "rotary":
        return 2.0 * m * w * b  # read and write Q and K
    if operator == "kv_cache_write":
        return 4.0 * m * w * b  # read K and V, write them into the cache
    if operator == "silu_mul":
        return 3.0 * m * w * b  # read gate and up, write the product
    if operator == "sampling":
        return 3.0 * m * w * 4  # fp32 softmax and sampling passes over the logits
    if operator == "quantize_activations":
        return m * w * (b + 1.0)  # read 16-bit, write 8-bit
    raise KeyError(operator)


def gemm_counts(m: int, n: int, k: int, dtype: str) -> tuple[float, float]:
    """(FLOPs, bytes moved) of an [m, k] x [k, n] GEMM in ``dtype`` (a float dtype or a quantization)."""
    if dtype in _QUANT_BYTES:
        a, w, c = _QUANT_BYTES[dtype]
    else:
        a = w = c = DTYPE_BYTES[dtype]
    return 2.0 * m * n * k, m * k * a + k * n * w + m * n * c


def prefill_counts(num_seqs: int, new: int, prefix: int, q_heads: int, kv_heads: int, head_dim: int, dtype_bytes: float) -> tuple[float, float]:
    """(FLOPs, bytes) of causal prefill attention over ``num_seqs`` chunks of ``new`` tokens after ``prefix`` cached ones."""
    flops = 4.0 * q_heads * head_dim * num_seqs * new * (prefix + (new + 1) / 2)
    nbytes = (2.0 * new * q_heads + 2.0 * (prefix + new) * kv_heads) * head_dim * dtype_bytes * num_seqs
    return flops, nbytes


def decode_counts(num_seqs: int, context: int, q_heads: int, kv_heads: int, head_dim: int, dtype_bytes: float) -> tuple[float, float]:
    """(FLOPs, bytes) of paged decode attention: ``num_seqs`` requests of ``context`` tokens each."""
    flops = 4.0 * q_heads * head_dim * num_seqs * context
    nbytes = (2.0 * num_seqs * context * kv_heads + 2.0 * num_seqs * q_heads) * head_dim * dtype_bytes
    return flops, nbytes


@dataclass(frozen=True, slots=True)
class Measurement:
    """One row to measure: an operator, its implementation and dtype, a TP degree and a shape.

    ``shape`` lists the kind's ``SHAPE_COLUMNS`` in order. ``key`` identifies the row on disk
    (what a resumed run skips).
    """

    kind: str
    operator: str
    implementation: str
    dtype: str
    tp: int
    shape: tuple[int, ...]
    flops: float
    nbytes: float
    repeat: int = 0
    key: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.operator, self.implementation, self.dtype, str(self.tp), *map(str, self.shape), str(self.repeat))
        object.__setattr__(self, "key", key)

    @property
    def shape_dict(self) -> dict[str, int]:
        return dict(zip(SHAPE_COLUMNS[self.kind], self.shape))


def row_key(kind: str, row: dict[str, str]) -> tuple[str, ...]:
    """The ``Measurement.key`` of a CSV row (values as the CSV holds them)."""
    cols = (*KEY_COLUMNS, *SHAPE_COLUMNS[kind], "repeat")
    return tuple(str(int(float(row[c]))) if c not in ("operator", "implementation", "dtype") else row[c] for c in cols)


def plan(
    model: ModelSpec,
    tps: list[int],
    sweep: SweepConfig,
    dtype: str,
    implementations: dict[str, tuple[str, ...]],
    quantizations: tuple[str, ...] = (),
    all_reduce_implementation: dict[int, str] | None = None,
    operators: set[str] | None = None,
) -> list[Measurement]:
    """Every measurement a profile of ``model`` at TP degrees ``tps`` takes, in run order.

    Args:
        model: the architecture.
        tps: TP degrees (each must pass ``check_tp``).
        sweep: the shape sweep.
        dtype: activation/weight/KV dtype of unquantized operators (``bfloat16`` on GPUs,
            ``float32`` on the CPU).
        implementations: per kind (and per quantization name for quantized GEMMs), the
            implementations to measure, e.g. ``{"gemm": ("torch", "triton")}``; a kind missing
            here uses ``("torch",)``.
        quantizations: quantized GEMM variants to add (``QUANTIZATIONS``).
        all_reduce_implementation: per TP degree > 1, ``nccl``/``gloo`` (measured) or
            ``link_model`` (priced by the ring formula); default ``link_model``.
        operators: measure only these operators (default: all).

    Returns:
        measurements ordered by kind, operator, TP and shape; then the same again for each
        further repeat (``sweep.repeats`` passes).
    """
    b = DTYPE_BYTES[dtype]
    max_context = model.max_position_embeddings
    tokens, sampled = sweep.token_counts(), sweep.sampled_counts()
    ar_impl = all_reduce_implementation or {}
    out: list[Measurement] = []

    def add(kind: str, operator: str, impl: str, dt: str, tp: int, shape: tuple[int, ...], flops: float, nbytes: float) -> None:
        out.append(Measurement(kind, operator, impl, dt, tp, shape, flops, nbytes))

    def impls(key: str) -> tuple[str, ...]:
        return implementations.get(key, ("torch",))

    wanted = [op for op in model_operators(model) if operators is None or op.name in operators]
    for op in wanted:
        for tp in tps if op.tp_dependent else tps[:1]:
            d = layer_dims(model, tp)
            if op.kind == GEMM:
                n, k = gemm_shape(op.name, d)
                counts = tokens if op.sweep == "tokens" else sampled
                variants = [(dtype, impls(GEMM))]
                if op.name in linear_operators(model):
                    variants += [(q, impls(q)) for q in quantizations]
                for dt, names in variants:
                    for impl in names:
                        for m in counts:
                            add(GEMM, op.name, impl, dt, tp, (m, n, k), *gemm_counts(m, n, k, dt))
            elif op.name == "quantize_activations":
                widths = sorted({gemm_shape(name, d)[1] for name in linear_operators(model)})
                for q in quantizations:
                    if q == "w4a16":
                        continue  # W4A16 keeps 16-bit activations
                    for w in widths:
                        for m in tokens:
                            add(ELEMENTWISE, op.name, "torch", q, tp, (m, w), 0.0, elementwise_bytes(op.name, m, w, b))
            elif op.kind == ELEMENTWISE:
                w = elementwise_width(op.name, d)
                for impl in impls(ELEMENTWISE):
                    for m in tokens if op.sweep == "tokens" else sampled:
                        add(ELEMENTWISE, op.name, impl, dtype, tp, (m, w), 0.0, elementwise_bytes(op.name, m, w, b))
            elif op.kind == ATTENTION_PREFILL:
                grid = sweep.prefill_grid(max_context)
                small = sorted(n for n, _ in grid)[: max(1, len(grid) // 2)]
                for impl in impls(ATTENTION_PREFILL):
                    for n, c in grid:
                        seqs = [1] + [s for s in sweep.prefill_num_seqs if s > 1 and n <= small[-1]]
                        for s in seqs:
                            shape = (s, n, c, d.q_heads, d.kv_heads, d.head_dim, sweep.block_size)
                            add(ATTENTION_PREFILL, op.name, impl, dtype, tp, shape, *prefill_counts(s, n, c, d.q_heads, d.kv_heads, d.head_dim, b))
            elif op.kind == ATTENTION_DECODE:
                for impl in impls(ATTENTION_DECODE):
                    for s, c in sweep.decode_grid(max_context):
                        shape = (s, c, d.q_heads, d.kv_heads, d.head_dim, sweep.block_size)
                        add(ATTENTION_DECODE, op.name, impl, dtype, tp, shape, *decode_counts(s, c, d.q_heads, d.kv_heads, d.head_dim, b))
            elif op.kind == ALL_REDUCE:
                if tp == 1:
                    continue
                for m in tokens:
                    add(ALL_REDUCE, op.name, ar_impl.get(tp, "link_model"), dtype, tp, (m, d.hidden), 0.0, float(m * d.hidden * b))
            elif op.kind == CPU_OVERHEAD:
                for s in sweep.cpu_overhead_batches():
                    add(CPU_OVERHEAD, op.name, "python", "none", tp, (s, sweep.cpu_overhead_context, sweep.block_size), 0.0, 0.0)
    # Repeats are whole passes, so the repeats of one shape are minutes apart (drift and
    # neighbours' load average out instead of hitting one shape's repeats together).
    return [dataclasses.replace(m, repeat=r) for r in range(sweep.repeats) for m in out]
