"""aiconfigurator-core's kernel tables, read into tidy rows priced by the roofline's own methods.

Used by ``benchmarks/calibrate_roofline_gpus.py``. The tables are NVIDIA's (aiconfigurator-core,
Apache-2.0), installed with the package under ``aiconfigurator_core/systems/data/<system>/``;
they are read in place, never copied into the project. Every latency there is milliseconds per
call of one kernel (or one attention forward) replayed in a CUDA graph.

Rows kept, and why (servesim prices bf16 dense layers at tensor-parallel shard shapes):
- GEMM (``gemm/<framework>/<version>/gemm_perf.parquet``): ``gemm_dtype`` bfloat16, the bf16
  kernel the framework calls (vLLM: ``torch.nn.functional.linear``, or ``vllm_default`` in
  older tables; SGLang: ``sglang_torch_linear`` or ``sglang``), and n, k in 512..65536: the
  range of real shard widths (Llama-3-8B's O projection at TP 8 has k = 512; Llama-3-405B's
  gate/up at TP 1 has n = 2 x 53248). Narrower GEMMs are no layer servesim prices and would
  weigh a regime (tile padding of tiny n, k) the model never meets.
- Prefill attention (``context_attention_perf.parquet``): batch_size requests of ``isl`` new
  tokens each and no cached prefix (``step`` 0), bf16 KV cache, no sliding window, head_dim
  128 or 64 (Llama, Mistral, Qwen2 use 128; 64 for small models). Priced as
  ``attention_prefill_time([isl] * batch, [0] * batch)`` with the table's per-GPU head counts.
- Decode attention (``generation_attention_perf.parquet``): batch_size requests of one new
  token each over ``step + 1`` context tokens, same filters; ``attention_decode_time(batch,
  batch * (step + 1))``.
Where a table holds several kernels for a filtered shape class, the one with the most rows per
head_dim is kept (vLLM's tables hold the backend vLLM selected for that GPU; SGLang's hold one
main kernel per head_dim and a few rows of a second).

The per-row roofline terms are the model's own: each row is priced with
``RooflineCostModel`` at efficiency 1 and no launch term, once with the FLOPs efficiency at
1e-6 (so FLOPs dominate the max) and once with the bandwidth efficiency at 1e-6, and scaled
back: ``t_flops`` = FLOPs / peak, ``t_bytes`` = bytes / bandwidth.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import sys
from pathlib import Path

import aiconfigurator_core
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from simulator.cost_models.roofline import RooflineCostModel  # noqa: E402
from simulator.scenario import RooflineConfig  # noqa: E402
from simulator.specs.gpu import GPUSpec  # noqa: E402
from simulator.specs.model import ModelSpec  # noqa: E402

PACKAGE = "aiconfigurator-core"
PACKAGE_VERSION = importlib.metadata.version(PACKAGE)
SYSTEMS = Path(aiconfigurator_core.__file__).parent / "systems"

# servesim GPU -> aiconfigurator system, for GPU specs without an ``aiconfigurator_system`` field.
SYSTEM_OF_GPU = {
    "a100-80gb-sxm": "a100_sxm", "a100-80gb-pcie": "a100_pcie", "h100-sxm": "h100_sxm", "h100-pcie": "h100_pcie",
    "h200": "h200_sxm", "b200": "b200_sxm", "b300": "b300_sxm", "l40s": "l40s", "l4": "l4",
    "rtx-pro-6000-server": "rtx_pro_6000_server",
}
# GPUs without tables of their own, calibrated on another GPU of the same silicon or architecture
# (an assumption, labelled in the calibration file): A100 40 GB SXM and 80 GB PCIe are GA100 like
# the measured A100 80 GB SXM; H100 PCIe is GH100 like H100 SXM (fewer SMs and lower clocks, which
# its datasheet peaks already count); L4 (AD104) and RTX 4090 (AD102, the L40S's die) are Ada like
# the L40S. Their all-reduce keeps the ring formula: their links differ from the measured node's.
PROXY_OF_GPU = {
    "a100-40gb-sxm": "a100_sxm", "a100-80gb-pcie": "a100_sxm", "h100-pcie": "h100_sxm",
    "l4": "l40s", "rtx-4090": "l40s",
}
# Kernels of the bf16 GEMM per framework (the ``kernel_source`` column).
GEMM_KERNELS = {"vllm": ("torch.nn.functional.linear", "vllm_default"), "sglang": ("sglang_torch_linear", "sglang")}
GEMM_WIDTHS = (512, 65536)  # n and k kept, inclusive
HEAD_DIMS = (64, 128)
_HUGE = 1e6


@dataclasses.dataclass(frozen=True)
class Table:
    """One table read: where it lies under the package's ``systems/`` folder."""

    system: str
    family: str  # gemm, attention, comm
    framework: str
    version: str
    name: str  # file name

    @property
    def path(self) -> Path:
        return SYSTEMS / "data" / self.system / self.family / self.framework / self.version / self.name

    @property
    def rel(self) -> str:
        return f"systems/data/{self.system}/{self.family}/{self.framework}/{self.version}/{self.name}"


def _version_key(version: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", version)]


def find_table(system: str, family: str, framework: str, name: str, prefer: str | None = None) -> Table | None:
    """The table ``name`` of ``system``: version ``prefer`` if it has one, else the newest version."""
    folder = SYSTEMS / "data" / system / family / framework
    versions = sorted((d.name for d in folder.iterdir() if (d / name).is_file()), key=_version_key) if folder.is_dir() else []
    if not versions:
        return None
    return Table(system, family, framework, prefer if prefer in versions else versions[-1], name)


def system_yaml(system: str) -> dict:
    """The system's spec file (``systems/<system>.yaml``): datasheet peaks, node, NCCL version."""
    with open(SYSTEMS / f"{system}.yaml") as f:
        return yaml.safe_load(f)


def has_tables(system: str, framework: str = "vllm") -> bool:
    return find_table(system, "gemm", framework, "gemm_perf.parquet") is not None


def _majority_kernel(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows of the kernel with the most rows in each ``by`` group."""
    counts = df.groupby([*by, "kernel_source"]).size().rename("n").reset_index()
    best = counts.sort_values("n").groupby(by).tail(1)[[*by, "kernel_source"]]
    return df.merge(best, on=[*by, "kernel_source"])


def read_gemm(system: str, framework: str, prefer: str | None = None) -> tuple[pd.DataFrame, Table] | None:
    """bf16 GEMM rows (op, m, n, k, kernel, measured_s, shape, size = m) of ``system``'s ``framework`` table.

    ``shape`` names the sweep a row belongs to and ``size`` its position along it (the fit
    weighs each octave of ``size`` within a ``shape`` equally).
    """
    table = find_table(system, "gemm", framework, "gemm_perf.parquet", prefer)
    if table is None:
        return None
    df = pd.read_parquet(table.path)
    lo, hi = GEMM_WIDTHS
    df = df[(df.gemm_dtype == "bfloat16") & df.kernel_source.isin(GEMM_KERNELS[framework])
            & df.n.between(lo, hi) & df.k.between(lo, hi)]
    df = _majority_kernel(df.assign(_all=0), ["_all"])
    g = df.groupby(["m", "n", "k", "kernel_source"]).latency.median().reset_index()
    return pd.DataFrame({
        "op": "gemm", "m": g.m, "n": g.n, "k": g.k, "kernel": g.kernel_source, "measured_s": g.latency * 1e-3,
        "shape": "n" + g.n.astype(str) + " k" + g.k.astype(str), "size": g.m,
    }), table


def read_attention(system: str, framework: str, prefer: str | None = None) -> tuple[pd.DataFrame, list[Table]]:
    """Prefill and decode attention rows (op, batch, tokens, context, q_heads, kv_heads, head_dim, kernel,
    measured_s, shape, size), from version ``prefer`` where the framework has it.

    ``tokens`` is new tokens per request (isl for prefill, 1 for decode); ``context`` is the
    tokens each request attends to (isl for prefill, step + 1 for decode).
    """
    frames, tables = [], []
    for op, name in (("prefill attention", "context_attention_perf.parquet"), ("decode attention", "generation_attention_perf.parquet")):
        table = find_table(system, "attention", framework, name, prefer)
        if table is None:
            continue
        df = pd.read_parquet(table.path)
        if "window_size" not in df:  # older tables have no sliding-window column: no window
            df = df.assign(window_size=0)
        df = df[(df.kv_cache_dtype == "bfloat16") & (df.attn_dtype == "bfloat16") & (df.window_size == 0)
                & df.head_dim.isin(HEAD_DIMS) & (df.beam_width == 1)]
        if op == "prefill attention":
            df = df[df.step == 0]
        df = _majority_kernel(df, ["head_dim"])
        keys = ["batch_size", "isl", "step", "num_heads", "num_key_value_heads", "head_dim", "kernel_source"]
        g = df.groupby(keys).latency.median().reset_index()
        prefill = op == "prefill attention"
        frames.append(pd.DataFrame({
            "op": op, "batch": g.batch_size, "tokens": g.isl if prefill else 1, "context": g.isl if prefill else g.step + 1,
            "q_heads": g.num_heads, "kv_heads": g.num_key_value_heads, "head_dim": g.head_dim,
            "kernel": g.kernel_source, "measured_s": g.latency * 1e-3,
            "shape": g.num_heads.astype(str) + "/" + g.num_key_value_heads.astype(str) + " x " + g.head_dim.astype(str),
            # new tokens of a prefill step, context tokens of a decode step
            "size": g.batch_size * (g.isl if prefill else g.step + 1),
        }))
        tables.append(table)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), tables


# -- roofline terms ----------------------------------------------------------------------------
_UNIT = dict(gemm_flops_efficiency=1.0, gemm_bandwidth_efficiency=1.0, attention_flops_efficiency=1.0,
             attention_bandwidth_efficiency=1.0, kernel_launch_s=0.0, attention_launch_s=0.0)


def attention_model(q_heads: int, kv_heads: int, head_dim: int) -> ModelSpec:
    """A one-layer model whose TP-1 attention has these per-GPU head counts (the tables' shapes)."""
    h = q_heads * head_dim
    return ModelSpec(name=f"attention {q_heads}/{kv_heads}x{head_dim}", num_layers=1, hidden_size=h, intermediate_size=h,
                     num_attention_heads=q_heads, num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=1,
                     max_position_embeddings=1 << 20)


def _price(cm: RooflineCostModel, row) -> float:
    if row.op == "gemm":
        return cm.gemm_time(int(row.m), int(row.k), int(row.n))
    b = int(row.batch)
    if row.op == "prefill attention":
        return cm.attention_prefill_time([int(row.tokens)] * b, [0] * b)
    return cm.attention_decode_time(b, b * int(row.context))


def add_terms(df: pd.DataFrame, gpu: GPUSpec) -> pd.DataFrame:
    """``df`` with ``cls`` (gemm or attention), ``t_flops`` and ``t_bytes`` (s) per row on ``gpu``."""
    df = df.reset_index(drop=True)
    t_flops, t_bytes = np.zeros(len(df)), np.zeros(len(df))
    gemm = df.op == "gemm"
    parts = [(attention_model(1, 1, 128), "gemm", df[gemm])]  # a GEMM's price needs no model shape
    if (~gemm).any():
        parts += [(attention_model(*map(int, shape)), "attention", part)
                  for shape, part in df[~gemm].groupby(["q_heads", "kv_heads", "head_dim"])]
    for spec, kind, part in parts:
        cm_f = RooflineCostModel(spec, gpu, 1, 1, RooflineConfig(**{**_UNIT, f"{kind}_flops_efficiency": 1 / _HUGE}))
        cm_b = RooflineCostModel(spec, gpu, 1, 1, RooflineConfig(**{**_UNIT, f"{kind}_bandwidth_efficiency": 1 / _HUGE}))
        for i, row in zip(part.index, part.itertuples()):
            t_flops[i] = _price(cm_f, row) / _HUGE
            t_bytes[i] = _price(cm_b, row) / _HUGE
    return df.assign(cls=np.where(gemm, "gemm", "attention"), t_flops=t_flops, t_bytes=t_bytes)
