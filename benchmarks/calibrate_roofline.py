"""Check and calibrate the roofline cost model's efficiencies against measured kernel timings.

What it does:
    For every measured shape of Vidur's public H100 and A100 layer profiles it prices each
    token-level operator with ``RooflineCostModel``'s own methods (``gemm_time`` for the QKV, O,
    fused gate/up and down GEMMs; ``elementwise_time`` for RMSNorm, the residual add, rotary and
    SiLU-and-mul) and compares with the measured median kernel time. It then

    1. reports, per GPU and operator class (GEMM compute-bound, GEMM memory-bound, elementwise),
       the ratio predicted / measured under the H100 defaults (``calibration.FALLBACK``: launch term
       set to 0, so the pure roofline is compared), and the achieved efficiency
       (roofline time at efficiency 1 / measured);
    2. fits ``gemm_flops_efficiency``, ``gemm_bandwidth_efficiency``,
       ``elementwise_bandwidth_efficiency`` and one additive per-kernel floor (the model's
       ``kernel_launch_s``) to the model's own functional form
       ``max(FLOPs / (peak * e_f), bytes / (bandwidth * e_b)) + floor`` by minimizing the mean
       absolute log error (coordinate descent over grids), per GPU and pooled. Each octave of
       num_tokens weighs the same: the sweeps are linear in num_tokens, so unweighted the
       decode-sized shapes (1..64 tokens) would hardly count;
    3. compares the per-layer sum of the token-level operators (attention, KV-cache write and
       all-reduce excluded: the reference files do not time them) before and after calibration,
       and the decode floor at 1..16 tokens;
    4. fits the ring all-reduce formula ``2 (p-1)/p * size / (link_bandwidth * eff) +
       2 (p-1) * latency`` to the NCCL all-reduce measurements of one node: the efficiency for
       messages of 16 MB and more, the per-hop latency that fits messages of 64 KB and less, and
       a joint fit of both per GPU over all sizes (the recommended values; NVSwitch nodes only).

What it reads (never copied into the project):
    ``<profiles>/vidur-microsoft/compute/{h100,a100}/meta-llama/<model>/mlp.csv`` and
    ``<profiles>/vidur-microsoft/network/<topology>/all_reduce.csv``, where ``<profiles>``
    defaults to ``../shared/reference-profiles`` relative to the repository root. The data is
    Vidur's (Microsoft, MIT licence; https://github.com/microsoft/vidur): per-operator CUDA kernel
    times (kineto, so kernel execution only, no launch gaps) in ms per layer per tensor-parallel
    worker, fp16, measured with Sarathi's layers (cuBLAS GEMMs, vLLM-style RMSNorm, rotary and
    SiLU-and-mul kernels; RMSNorm and the residual add are separate kernels there, while
    servesim prices one fused add + RMSNorm). The all-reduce ``size`` column is bytes.

How to run:
    python benchmarks/calibrate_roofline.py [--profiles PATH]

It prints rich tables and the recommended ``RooflineConfig`` values; it takes a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from simulator.cost_models.roofline import RooflineCostModel  # noqa: E402
from simulator.scenario import RooflineConfig  # noqa: E402
from simulator.specs import calibration  # noqa: E402
from simulator.specs.calibration import FALLBACK  # noqa: E402
from simulator.specs.gpu import GPUS  # noqa: E402
from simulator.specs.model import ModelSpec, bundled_model_spec  # noqa: E402

DTYPE_BYTES = 2  # the reference profiles are fp16
# The H100 defaults (this script's H100 fit), which servesim applies to GPUs without a calibration.
CURRENT = RooflineConfig(**FALLBACK)
# Fits never read the calibration file (calibrate_roofline_gpus.py writes it): every price here
# sets the fields it depends on, and the others take FALLBACK.
calibration.for_gpu = lambda name: None

# (label, servesim GPU, Vidur folder under compute/, bundled model)
COMPUTE_SETS = [
    ("H100", "h100-sxm", "h100/meta-llama/Llama-2-7b-hf", "llama-2-7b"),
    ("H100", "h100-sxm", "h100/meta-llama/Llama-2-70b-hf", "llama-2-70b"),
    ("A100", "a100-80gb-sxm", "a100/meta-llama/Llama-2-7b-hf", "llama-2-7b"),
    ("A100", "a100-80gb-sxm", "a100/meta-llama/Meta-Llama-3-8B", "llama-3-8b"),
]
GPU_OF_LABEL = {"H100": "h100-sxm", "A100": "a100-80gb-sxm"}

# (Vidur topology folder, servesim GPU, whether its links match the GPU spec: SXM on NVSwitch)
NETWORK_SETS = [
    ("h100_dgx", "h100-sxm", True),
    ("a100_dgx", "a100-80gb-sxm", True),
    ("h100_pairwise_nvlink", "h100-sxm", False),
    ("a100_pairwise_nvlink", "a100-80gb-sxm", False),
]


# -- per-operator shape mapping ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Dims:
    """Per-GPU (TP-sharded) widths of one layer, as ``RooflineCostModel.layer_token_time`` uses."""

    h: int
    q: int
    kv: int
    inter: int
    b: int

    @classmethod
    def of(cls, cm: RooflineCostModel) -> Dims:
        d = cm.model.head_dim
        return cls(cm.model.hidden_size, cm.q_heads * d, cm.kv_heads * d, cm.model.intermediate_size // cm.tp, cm.dtype_bytes)


OpFn = Callable[[RooflineCostModel, Dims, int], float]

# Vidur operator -> (class, price of that kernel for m tokens). Bytes are those the measured
# kernel moves: Vidur times RMSNorm (read 1, write 1) and the residual add (read 2, write 1)
# separately; mlp_up_proj is the fused gate+up GEMM of width 2I (n_expanded_embd is I).
VIDUR_OPS: dict[str, tuple[str, OpFn]] = {
    "attn_pre_proj": ("gemm", lambda cm, d, m: cm.gemm_time(m, d.h, d.q + 2 * d.kv)),
    "attn_post_proj": ("gemm", lambda cm, d, m: cm.gemm_time(m, d.q, d.h)),
    "mlp_up_proj": ("gemm", lambda cm, d, m: cm.gemm_time(m, d.h, 2 * d.inter)),
    "mlp_down_proj": ("gemm", lambda cm, d, m: cm.gemm_time(m, d.inter, d.h)),
    "input_layernorm": ("elementwise", lambda cm, d, m: cm.elementwise_time(2 * m * d.h * d.b)),
    "post_attention_layernorm": ("elementwise", lambda cm, d, m: cm.elementwise_time(2 * m * d.h * d.b)),
    "add": ("elementwise", lambda cm, d, m: cm.elementwise_time(3 * m * d.h * d.b)),
    "attn_rope": ("elementwise", lambda cm, d, m: cm.elementwise_time(2 * m * (d.q + d.kv) * d.b)),
    "mlp_act": ("elementwise", lambda cm, d, m: cm.elementwise_time(3 * m * d.inter * d.b)),
    # The embedding gather: priced like token_time's, but reported apart (gathers are not streams).
    "emb": ("embedding", lambda cm, d, m: cm.elementwise_time(2 * m * d.h * d.b)),
}

# servesim's own per-layer token-level operators (layer_token_time without the KV-cache write
# and the all-reduces, which the reference mlp.csv does not time), and the measured ops that
# make up the same layer. Vidur times one of the two residual adds; it is counted twice.
SERVESIM_LAYER_OPS: list[OpFn] = [
    lambda cm, d, m: cm.gemm_time(m, d.h, d.q + 2 * d.kv),
    lambda cm, d, m: cm.gemm_time(m, d.q, d.h),
    lambda cm, d, m: cm.gemm_time(m, d.h, 2 * d.inter),
    lambda cm, d, m: cm.gemm_time(m, d.inter, d.h),
    lambda cm, d, m: 2 * cm.elementwise_time(4 * m * d.h * d.b),  # fused add + RMSNorm, twice
    lambda cm, d, m: cm.elementwise_time(2 * m * (d.q + d.kv) * d.b),
    lambda cm, d, m: cm.elementwise_time(3 * m * d.inter * d.b),
]
MEASURED_LAYER_OPS = {
    "attn_pre_proj": 1, "attn_post_proj": 1, "mlp_up_proj": 1, "mlp_down_proj": 1, "mlp_act": 1,
    "attn_rope": 1, "input_layernorm": 1, "post_attention_layernorm": 1, "add": 2,
}


def _model(spec: ModelSpec, gpu: str, tp: int, cfg: RooflineConfig) -> RooflineCostModel:
    return RooflineCostModel(spec, GPUS[gpu], tp, 1, cfg, dtype_bytes=DTYPE_BYTES)


def _servesim_layer(cm: RooflineCostModel, m: int) -> float:
    d = Dims.of(cm)
    return sum(fn(cm, d, m) for fn in SERVESIM_LAYER_OPS)


def _check_layer_mapping(spec: ModelSpec, gpu: str) -> str | None:
    """Whether the replicated layer equals layer_token_time minus the KV write (TP 1)."""
    cm = _model(spec, gpu, 1, CURRENT)
    d, m = Dims.of(cm), 512
    expected = cm.layer_token_time(m) - cm.elementwise_time(2 * m * 2 * d.kv * d.b)
    got = _servesim_layer(cm, m)
    if abs(got - expected) > 1e-9 * max(1.0, expected) + 1e-12:
        return (f"replicated layer ({got * 1e6:.1f} us) != layer_token_time - KV write ({expected * 1e6:.1f} us) "
                f"for {spec.name}: roofline.py changed; update SERVESIM_LAYER_OPS")
    return None


# -- reading -------------------------------------------------------------------------------
def read_compute(profiles: Path) -> pd.DataFrame:
    """One row per (GPU, model, TP, num_tokens, op) with the measured median kernel time (s)."""
    frames = []
    for label, gpu, folder, model_name in COMPUTE_SETS:
        path = profiles / "vidur-microsoft" / "compute" / folder / "mlp.csv"
        df = pd.read_csv(path)
        spec = bundled_model_spec(model_name)
        assert spec is not None, model_name
        shape = df[["n_embd", "n_expanded_embd", "n_head", "n_kv_head"]].drop_duplicates()
        if len(shape) != 1 or tuple(shape.iloc[0]) != (spec.hidden_size, spec.intermediate_size, spec.num_attention_heads, spec.num_kv_heads):
            raise SystemExit(f"{path}: shape columns {shape.to_dict('records')} do not match the bundled {model_name}")
        cols = {f"time_stats.{op}.median": op for op in VIDUR_OPS}
        # Rows repeat each shape; take the median of the repeats.
        g = df.groupby(["num_tensor_parallel_workers", "num_tokens"])[list(cols)].median().rename(columns=cols)
        long = g.stack().rename("measured_s").reset_index().rename(columns={"num_tensor_parallel_workers": "tp", "num_tokens": "m", "level_2": "op"})
        long["measured_s"] *= 1e-3
        long["gpu_label"], long["gpu"], long["model"] = label, gpu, model_name
        frames.append(long)
    out = pd.concat(frames, ignore_index=True)
    return out[out.measured_s > 0].reset_index(drop=True)


def read_all_reduce(profiles: Path) -> pd.DataFrame:
    frames = []
    for topo, gpu, matches_spec in NETWORK_SETS:
        path = profiles / "vidur-microsoft" / "network" / topo / "all_reduce.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        df = df[df.num_workers == df.devices_per_node]  # one node only: NVLink, not the inter-node network
        g = df.groupby(["num_workers", "size"])["time_stats.all_reduce.median"].median().rename("measured_s").reset_index()
        g["measured_s"] *= 1e-3
        g["topology"], g["gpu"], g["matches_spec"] = topo, gpu, matches_spec
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


# -- pricing -------------------------------------------------------------------------------
_HUGE = 1e6  # an efficiency of 1/_HUGE makes one roofline term dominate the max()


def add_roofline_terms(df: pd.DataFrame) -> pd.DataFrame:
    """Per row, the model's roofline terms at efficiency 1 with no launch term, via its methods.

    ``t_flops``: FLOPs / peak; ``t_bytes``: bytes / bandwidth (GEMM or elementwise bandwidth).
    The GEMM terms are separated by pricing with the other term's efficiency set to 1e-6 (so
    it dominates the max()) and scaling back.
    """
    unit = dict(gemm_flops_efficiency=1.0, gemm_bandwidth_efficiency=1.0, elementwise_bandwidth_efficiency=1.0, kernel_launch_s=0.0)
    cfg_flops = RooflineConfig(**{**unit, "gemm_flops_efficiency": 1 / _HUGE})
    cfg_bytes = RooflineConfig(**{**unit, "gemm_bandwidth_efficiency": 1 / _HUGE})
    cfg_unit = RooflineConfig(**unit)
    t_flops = np.zeros(len(df))
    t_bytes = np.zeros(len(df))
    for (gpu, model_name, tp), idx in df.groupby(["gpu", "model", "tp"]).groups.items():
        spec = bundled_model_spec(model_name)
        cms = {k: _model(spec, gpu, int(tp), c) for k, c in (("f", cfg_flops), ("b", cfg_bytes), ("u", cfg_unit))}
        d = Dims.of(cms["u"])
        for i in idx:
            op, m = df.at[i, "op"], int(df.at[i, "m"])
            cls, fn = VIDUR_OPS[op]
            if cls == "gemm":
                t_flops[i] = fn(cms["f"], d, m) / _HUGE
                t_bytes[i] = fn(cms["b"], d, m) / _HUGE
            else:
                t_bytes[i] = fn(cms["u"], d, m)
    df = df.copy()
    df["cls"] = df.op.map(lambda op: VIDUR_OPS[op][0])
    df["t_flops"], df["t_bytes"] = t_flops, t_bytes
    return df


def predict(df: pd.DataFrame, e_f: float, e_b: float, e_el: float, floor: float) -> np.ndarray:
    """The model's formula on the precomputed terms (equals calling its methods with these values)."""
    gemm = np.maximum(df.t_flops.to_numpy() / e_f, df.t_bytes.to_numpy() / e_b)
    elem = df.t_bytes.to_numpy() / e_el
    return np.where(df.cls.to_numpy() == "gemm", gemm, elem) + floor


# -- fitting -------------------------------------------------------------------------------
EFF_GRID = np.round(np.arange(0.10, 1.0001, 0.005), 4)
FLOOR_GRID = np.arange(0.0, 12.01e-6, 0.1e-6)


def _abs_log_err(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.log(pred / y))


def octave_weights(df: pd.DataFrame, keys: list[str], size_col: str = "m") -> np.ndarray:
    """1 / (rows in the same group and octave of ``size_col``): each octave counts equally.

    The reference sweeps are linear in num_tokens (steps of 8 up to 4096 or 32768) and in
    message size, so without this nearly all rows are large shapes and the small shapes of
    decode batches would hardly count.
    """
    octave = np.floor(np.log2(df[size_col].to_numpy(float))).astype(int)
    counts = df.assign(_oct=octave).groupby([*keys, "_oct"])[size_col].transform("count").to_numpy()
    return 1.0 / counts


def fit(df: pd.DataFrame, iters: int = 8) -> dict[str, float]:
    """Coordinate descent on the weighted mean |log(pred / measured)| of GEMM and elementwise rows.

    Weights: each octave of num_tokens equal within one (model, TP, op), and GEMM and
    elementwise rows half each. Returns the efficiencies ``e_f``, ``e_b``, ``e_el`` and the floor ``c``.
    """
    d = df[df.cls.isin(["gemm", "elementwise"])]
    y = d.measured_s.to_numpy()
    is_gemm = d.cls.to_numpy() == "gemm"
    tf, tb = d.t_flops.to_numpy(), d.t_bytes.to_numpy()
    w = octave_weights(d, ["gpu_label", "model", "tp", "op"])
    w = np.where(is_gemm, 0.5 * w / w[is_gemm].sum(), 0.5 * w / w[~is_gemm].sum())

    def loss(e_f, e_b, e_el, c):  # broadcasts over a leading grid axis
        pred = np.where(is_gemm, np.maximum(tf / e_f, tb / e_b), tb / e_el) + c
        return (_abs_log_err(pred, y) * w).sum(axis=-1)

    grids = {"e_f": EFF_GRID, "e_b": EFF_GRID, "e_el": EFF_GRID, "c": FLOOR_GRID}
    return coordinate_descent(loss, {"e_f": 0.7, "e_b": 0.8, "e_el": 0.6, "c": 3e-6}, grids, iters)


def coordinate_descent(loss: Callable[..., np.ndarray], start: dict[str, float], grids: dict[str, np.ndarray],
                       iters: int = 8) -> dict[str, float]:
    """Minimize ``loss(**params)`` one parameter at a time over its grid, ``iters`` sweeps.

    ``loss`` must broadcast: called with one parameter as a column ``grid[:, None]`` it returns
    one loss per grid value.
    """
    p = dict(start)
    for _ in range(iters):
        for k, grid in grids.items():
            p[k] = float(grid[np.argmin(loss(**{**p, k: grid[:, None]}))])
    return p


def config_from_fit(p: dict[str, float], base: RooflineConfig | None = None, **extra: float) -> RooflineConfig:
    base = base or CURRENT
    return dataclasses.replace(
        base, gemm_flops_efficiency=p["e_f"], gemm_bandwidth_efficiency=p["e_b"],
        elementwise_bandwidth_efficiency=p["e_el"], kernel_launch_s=round(p["c"], 7), **extra,
    )


# -- reports -------------------------------------------------------------------------------
def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def regime_classes(df: pd.DataFrame, cfg: RooflineConfig) -> pd.Series:
    """GEMM regime by which roofline term dominates under ``cfg``'s efficiencies."""
    compute = df.t_flops / cfg.gemm_flops_efficiency >= df.t_bytes / cfg.gemm_bandwidth_efficiency
    return pd.Series(np.where(df.cls == "gemm", np.where(compute, "gemm compute-bound", "gemm memory-bound"), df.cls), index=df.index)


def operator_table(console: Console, df: pd.DataFrame, fits: dict[str, dict[str, float]]) -> None:
    cur = CURRENT
    df = df.copy()
    df["klass"] = regime_classes(df, cur)
    df["pred_cur"] = predict(df, cur.gemm_flops_efficiency, cur.gemm_bandwidth_efficiency, cur.elementwise_bandwidth_efficiency, 0.0)
    t = Table(title="Per operator: roofline (launch 0) vs measured kernel time; fitted model max(F/(P e_f), B/(W e_b)) + floor")
    for c in ("GPU", "class", "rows\n(op x shape)", "pred/meas\ncurrent med", "P10", "P90", "achieved eff\nmedian (eff=1)",
              "achieved eff\nfloor removed", "current\neff", "recommended\neff", "med |err|\nafter", "P90 |err|\nafter"):
        t.add_column(c, justify="left" if c in ("GPU", "class") else "right")
    for label in ("H100", "A100"):
        p = fits[label]
        for klass in ("gemm compute-bound", "gemm memory-bound", "elementwise", "embedding"):
            d = df[(df.gpu_label == label) & (df.klass == klass)]
            if d.empty:
                continue
            y = d.measured_s.to_numpy()
            ratio = d.pred_cur.to_numpy() / y
            term = d.t_flops.to_numpy() if klass == "gemm compute-bound" else d.t_bytes.to_numpy()
            ach = term / y
            net = y - p["c"]
            ach_floor = term[net > 0] / net[net > 0]
            cur_eff, rec = {
                "gemm compute-bound": (cur.gemm_flops_efficiency, p["e_f"]),
                "gemm memory-bound": (cur.gemm_bandwidth_efficiency, p["e_b"]),
                "elementwise": (cur.elementwise_bandwidth_efficiency, p["e_el"]),
                "embedding": (cur.elementwise_bandwidth_efficiency, float("nan")),
            }[klass]
            after = np.abs(predict(d, p["e_f"], p["e_b"], p["e_el"], p["c"]) / y - 1) * 100
            t.add_row(label, klass, str(len(d)), f"{np.median(ratio):.2f}", f"{pct(ratio, 10):.2f}", f"{pct(ratio, 90):.2f}",
                      f"{np.median(ach):.2f}", f"{np.median(ach_floor):.2f}", f"{cur_eff:.2f}",
                      "-" if np.isnan(rec) else f"{rec:.3f}", f"{np.median(after):.0f}%", f"{pct(after, 90):.0f}%")
        t.add_section()
    console.print(t)
    # Per-op detail of achieved efficiency at large shapes (floor negligible) helps explain the classes.
    t2 = Table(title="Achieved efficiency per op, num_tokens >= 1024\n(GEMMs: of FLOP peak; others: of HBM bandwidth)")
    t2.add_column("op")
    for label in ("H100", "A100"):
        t2.add_column(label, justify="right")
    big = df[df.m >= 1024]
    for op, (cls, _) in VIDUR_OPS.items():
        row = [op]
        for label in ("H100", "A100"):
            d = big[(big.gpu_label == label) & (big.op == op)]
            term = d.t_flops if cls == "gemm" else d.t_bytes
            row.append(f"{np.median(term / d.measured_s):.2f}")
        t2.add_row(*row)
    console.print(t2)


ConfigByGPU = dict[str, RooflineConfig]  # GPU label -> config


def layer_sums(df: pd.DataFrame, cfgs: dict[str, ConfigByGPU]) -> pd.DataFrame:
    """Per (GPU, model, TP, m): measured layer sum and servesim's layer under each config."""
    meas = df[df.op.isin(list(MEASURED_LAYER_OPS))].copy()
    meas["wt"] = meas.measured_s * meas.op.map(MEASURED_LAYER_OPS)
    g = meas.groupby(["gpu_label", "gpu", "model", "tp", "m"]).agg(measured=("wt", "sum"), n=("op", "count")).reset_index()
    g = g[g.n == len(MEASURED_LAYER_OPS)].reset_index(drop=True)
    for name, by_gpu in cfgs.items():
        vals = np.zeros(len(g))
        for (label, gpu, model_name, tp), idx in g.groupby(["gpu_label", "gpu", "model", "tp"]).groups.items():
            cm = _model(bundled_model_spec(model_name), gpu, int(tp), by_gpu[label])
            for i in idx:
                vals[i] = _servesim_layer(cm, int(g.at[i, "m"]))
        g[name] = vals
    g["band"] = pd.cut(g.m, [0, 64, 1024, np.inf], labels=["1-64", "65-1024", ">1024"]).astype(str)
    return g


def layer_table(console: Console, g: pd.DataFrame, names: list[str]) -> None:
    t = Table(title="Per-layer sum of token-level ops, servesim's layer (fused add+RMSNorm) vs the measured kernels "
                    "(attention, KV write, all-reduce excluded); bands of num_tokens")
    for c in ("GPU", "tokens", "shapes"):
        t.add_column(c, justify="right" if c == "shapes" else "left")
    for n in names:
        t.add_column(f"{n}\nmed pred/meas", justify="right")
        t.add_column(f"{n}\nmed |err|", justify="right")
        t.add_column(f"{n}\nP90 |err|", justify="right")
    for label in ("H100", "A100"):
        for band in ("1-64", "65-1024", ">1024", "all"):
            d = g[(g.gpu_label == label) & ((g.band == band) | (band == "all"))]
            row = [label, band, str(len(d))]
            for n in names:
                r = (d[n] / d.measured).to_numpy()
                e = np.abs(r - 1) * 100
                row += [f"{np.median(r):.2f}", f"{np.median(e):.1f}%", f"{pct(e, 90):.1f}%"]
            t.add_row(*row, end_section=band == "all")
    console.print(t)
    t = Table(title="... per model and TP (median pred/meas over all num_tokens)")
    for c in ("GPU", "model", "TP"):
        t.add_column(c)
    for n in names:
        t.add_column(n, justify="right")
    for (label, model_name, tp), d in g.groupby(["gpu_label", "model", "tp"], sort=False):
        t.add_row(label, model_name, str(tp), *(f"{np.median(d[n] / d.measured):.2f}" for n in names))
    console.print(t)


def decode_floor_table(console: Console, df: pd.DataFrame, g: pd.DataFrame, cfgs: dict[str, ConfigByGPU]) -> None:
    t = Table(title="Decode floor: Llama-2-7B layer on H100, TP 1 (us per layer, token-level ops)")
    t.add_column("num_tokens", justify="right")
    t.add_column("measured", justify="right")
    for n in cfgs:
        t.add_column(n, justify="right")
    d = g[(g.gpu_label == "H100") & (g.model == "llama-2-7b") & (g.tp == 1) & (g.m <= 16)].sort_values("m")
    for _, r in d.iterrows():
        t.add_row(str(r.m), f"{r.measured * 1e6:.0f}", *(f"{r[n] * 1e6:.0f}" for n in cfgs))
    console.print(t)
    t = Table(title="... per measured kernel at num_tokens = 1 (us; servesim prices each kernel as in the operator fit)")
    t.add_column("op")
    t.add_column("measured", justify="right")
    for n in cfgs:
        t.add_column(n, justify="right")
    spec = bundled_model_spec("llama-2-7b")
    cms = {n: _model(spec, "h100-sxm", 1, c["H100"]) for n, c in cfgs.items()}
    one = df[(df.gpu_label == "H100") & (df.model == "llama-2-7b") & (df.tp == 1) & (df.m == 1)].set_index("op")
    for op in MEASURED_LAYER_OPS:
        fn = VIDUR_OPS[op][1]
        t.add_row(op, f"{one.at[op, 'measured_s'] * 1e6:.1f}", *(f"{fn(cm, Dims.of(cm), 1) * 1e6:.1f}" for cm in cms.values()))
    console.print(t)


def _ring(d: pd.DataFrame, link_bandwidth: float, eff, latency) -> np.ndarray:
    p, s = d.num_workers.to_numpy(float), d["size"].to_numpy(float)
    return 2 * (p - 1) / p * s / (link_bandwidth * eff) + 2 * (p - 1) * latency


SIZE_BANDS = (("<=64KB", 0, 64 * 2**10), ("64KB-16MB", 64 * 2**10 + 1, 16 * 2**20 - 1), (">=16MB", 16 * 2**20, np.inf))


def ring_joint_fits(ar: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per GPU (NVSwitch nodes of ``read_all_reduce``), the ring formula's (efficiency, per-hop
    latency) fitted over p = 2, 4, 8 and all sizes, each octave of size weighing the same."""
    lat_grid = np.arange(0.0, 15.01e-6, 0.1e-6)
    out = {}
    for gpu_name, d in ar[ar.matches_spec].groupby("gpu", sort=False):
        gpu = GPUS[gpu_name]
        y = d.measured_s.to_numpy()
        w = octave_weights(d, ["num_workers"], size_col="size")
        w = w / w.sum()
        best = (np.inf, 0.0, 0.0)
        for e in EFF_GRID:
            losses = (_abs_log_err(_ring(d, gpu.link_bandwidth, e, lat_grid[:, None]), y) * w).sum(axis=1)
            i = int(np.argmin(losses))
            if losses[i] < best[0]:
                best = (float(losses[i]), float(e), float(lat_grid[i]))
        out[gpu_name] = best[1:]
    return out


def all_reduce_report(console: Console, ar: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Ring-formula fits per topology and GPU count, and a joint fit per GPU (NVSwitch nodes)."""
    cur = CURRENT
    t = Table(title="All-reduce (NCCL, one node) vs ring formula 2(p-1)/p*S/(link_bw*eff) + 2(p-1)*latency")
    for c in ("topology", "GPUs", "link spec\nGB/s/dir", "eff >=16MB\nmedian", "P10", "P90", "busbw >=16MB\nGB/s",
              "latency/hop\nfit <=64KB (us)", "<=64KB\nmedian (us)", "pred/meas cur\n>=16MB", "pred/meas cur\n<=64KB"):
        t.add_column(c, justify="left" if c == "topology" else "right")
    for (topo, p), d in ar.groupby(["topology", "num_workers"], sort=False):
        gpu = GPUS[d.gpu.iloc[0]]
        s, y = d["size"].to_numpy(float), d.measured_s.to_numpy()
        ring_bytes, hops = 2 * (p - 1) / p * s, 2 * (p - 1)
        large, small = s >= 16 * 2**20, s <= 64 * 2**10
        eff = ring_bytes[large] / gpu.link_bandwidth / np.maximum(y[large] - hops * gpu.link_latency_s, 1e-9)
        e_med = float(np.median(eff))
        lat = float(np.median((y[small] - ring_bytes[small] / (gpu.link_bandwidth * e_med)) / hops))
        pred = _ring(d, gpu.link_bandwidth, cur.link_bandwidth_efficiency, gpu.link_latency_s)
        t.add_row(topo + ("" if d.matches_spec.iloc[0] else " *"), str(p), f"{gpu.link_bandwidth / 1e9:.0f}",
                  f"{e_med:.2f}", f"{pct(eff, 10):.2f}", f"{pct(eff, 90):.2f}", f"{np.median(ring_bytes[large] / y[large]) / 1e9:.0f}",
                  f"{lat * 1e6:.1f}", f"{np.median(y[small]) * 1e6:.0f}",
                  f"{np.median(pred[large] / y[large]):.2f}", f"{np.median(pred[small] / y[small]):.2f}")
    console.print(t)
    console.print("* pairwise NVLink: GPUs bridged in pairs (traffic between pairs crosses PCIe); not the SXM/NVSwitch "
                  "links the GPU spec describes, so not used for the recommendation.")

    # Joint fit of (eff, latency) per GPU over p = 2, 4, 8 and all sizes (octaves of size weighted equally).
    out: dict[str, dict[str, float]] = {}
    t = Table(title="All-reduce joint fit per GPU (NVSwitch node, p = 2/4/8, all sizes): median |err| by message size")
    for c in ("GPU", "eff", "latency/hop (us)", *(f"{b}\ncurrent" for b, _, _ in SIZE_BANDS), *(f"{b}\nfit" for b, _, _ in SIZE_BANDS)):
        t.add_column(c, justify="left" if c == "GPU" else "right")
    for gpu_name, (e_fit, lat_fit) in ring_joint_fits(ar).items():
        gpu, d = GPUS[gpu_name], ar[ar.gpu == gpu_name]
        y = d.measured_s.to_numpy()
        out[gpu_name] = {"eff": e_fit, "lat": lat_fit}
        errs = []
        for eff_, lat_ in ((cur.link_bandwidth_efficiency, gpu.link_latency_s), (e_fit, lat_fit)):
            rel = np.abs(_ring(d, gpu.link_bandwidth, eff_, lat_) / y - 1) * 100
            s = d["size"].to_numpy()
            errs += [f"{np.median(rel[(s >= lo) & (s <= hi)]):.0f}%" for _, lo, hi in SIZE_BANDS]
        t.add_row(gpu_name, f"{e_fit:.3f}", f"{lat_fit * 1e6:.1f}", *errs[:3], *errs[3:])
    console.print(t)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=Path, default=REPO.parent / "shared" / "reference-profiles",
                    help="folder holding vidur-microsoft/ (default: ../shared/reference-profiles from the repo root)")
    args = ap.parse_args(argv)
    if not (args.profiles / "vidur-microsoft").is_dir():
        raise SystemExit(f"no vidur-microsoft/ under {args.profiles}; pass --profiles PATH")
    t0 = time.perf_counter()
    console = Console(width=220)

    for model_name, gpu in (("llama-2-7b", "h100-sxm"), ("llama-2-70b", "h100-sxm"), ("llama-3-8b", "a100-80gb-sxm")):
        msg = _check_layer_mapping(bundled_model_spec(model_name), gpu)
        if msg:
            console.print(f"[yellow]warning:[/] {msg}")

    df = add_roofline_terms(read_compute(args.profiles))

    # n_expanded_embd is I; the fused gate/up GEMM is h x 2I: check on the largest TP 1 shapes.
    big = df[(df.tp == 1) & (df.m == df.groupby("model").m.transform("max"))].set_index(["gpu_label", "model", "op"])
    notes = []
    for lbl, mdl in big.index.droplevel(2).unique():
        up, down = big.loc[(lbl, mdl, "mlp_up_proj")], big.loc[(lbl, mdl, "mlp_down_proj")]
        peak = GPUS[GPU_OF_LABEL[lbl]].bf16_flops
        f_up2, f_down = up.t_flops * peak / up.measured_s, down.t_flops * peak / down.measured_s
        notes.append(f"{lbl} {mdl}: gate/up {f_up2 / 1e12:.0f} TFLOP/s as h x 2I ({f_up2 / 2e12:.0f} as h x I), down {f_down / 1e12:.0f}")
    console.print("[bold]mlp_up_proj width[/] (n_expanded_embd = I; h x 2I matches the down GEMM's throughput): " + "; ".join(notes))

    fits = {label: fit(df[df.gpu_label == label]) for label in ("H100", "A100")}
    fits["pooled"] = fit(df)
    operator_table(console, df, fits)

    t = Table(title="Kernel floor: measured at num_tokens <= 16 (us) and the fitted additive floor")
    for c in ("GPU", "elementwise\nmedian", "elementwise\nmin", "elementwise\nmax", "GEMM measured -\nroofline(fit eff), median", "fitted floor\n(kernel_launch_s)"):
        t.add_column(c, justify="left" if c == "GPU" else "right")
    for label in ("H100", "A100"):
        p = fits[label]
        d = df[(df.gpu_label == label) & (df.m <= 16)]
        el, gm = d[d.cls == "elementwise"], d[d.cls == "gemm"]
        gres = gm.measured_s - predict(gm, p["e_f"], p["e_b"], p["e_el"], 0.0)
        t.add_row(label, f"{el.measured_s.median() * 1e6:.1f}", f"{el.measured_s.min() * 1e6:.1f}", f"{el.measured_s.max() * 1e6:.1f}",
                  f"{gres.median() * 1e6:.1f}", f"{p['c'] * 1e6:.1f}")
    console.print(t)

    ar_fit = all_reduce_report(console, read_all_reduce(args.profiles))

    current = CURRENT
    per_gpu = {}
    for label in ("H100", "A100"):
        extra = {"link_bandwidth_efficiency": ar_fit[GPU_OF_LABEL[label]]["eff"]} if GPU_OF_LABEL[label] in ar_fit else {}
        per_gpu[label] = config_from_fit(fits[label], **extra)
    link_pooled = float(np.median([v["eff"] for v in ar_fit.values()])) if ar_fit else current.link_bandwidth_efficiency
    pooled = config_from_fit(fits["pooled"], link_bandwidth_efficiency=round(link_pooled, 3))
    cfgs = {
        "current": {"H100": current, "A100": current},
        "own GPU fit": per_gpu,
        "pooled fit": {"H100": pooled, "A100": pooled},
    }
    g = layer_sums(df, cfgs)
    layer_table(console, g, list(cfgs))
    decode_floor_table(console, df, g, cfgs)

    t = Table(title="Recommended RooflineConfig values (efficiencies from the operator fit, link from the all-reduce joint fit)")
    t.add_column("field")
    columns = {"current": current, "H100 fit": per_gpu["H100"], "A100 fit": per_gpu["A100"], "pooled fit": pooled}
    for n in columns:
        t.add_column(n, justify="right")
    fields = ("gemm_flops_efficiency", "gemm_bandwidth_efficiency", "elementwise_bandwidth_efficiency",
              "link_bandwidth_efficiency", "kernel_launch_s")
    for f in fields:
        t.add_row(f, *(f"{getattr(c, f):.3g}" for c in columns.values()))
    lat = {lbl: ar_fit.get(GPU_OF_LABEL[lbl], {}).get("lat") for lbl in ("H100", "A100")}
    t.add_row("(GPUSpec) link_latency_s", f"{GPUS['h100-sxm'].link_latency_s:.2g}",
              *(f"{v:.2g}" if v is not None else "-" for v in lat.values()),
              f"{np.median([v for v in lat.values() if v is not None]):.2g}" if any(v is not None for v in lat.values()) else "-")
    console.print(t)
    console.print("[bold]Recommended (pooled):[/] RooflineConfig(" + ", ".join(f"{f}={getattr(pooled, f):.3g}" for f in fields) + ")")
    console.print(f"[dim]done in {time.perf_counter() - t0:.1f} s; data: Vidur (github.com/microsoft/vidur, MIT)[/]")


if __name__ == "__main__":
    main()
