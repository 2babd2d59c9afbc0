"""Check servesim's routed-expert and latent-attention prices against vLLM's measured kernels; fit the experts per GPU.

Data: NVIDIA's aiconfigurator-core tables (Apache-2.0), read in place under
``aiconfigurator_core/systems/data/<system>/``:

- ``moe/vllm/<newest>/moe_perf.parquet`` (SGLang's where a system has no vLLM table): the
  collector (aiconfigurator ``collector/vllm/collect_moe.py``) times vLLM's ``fused_experts``
  alone, in a CUDA graph, on one GPU holding its expert-parallel share of the experts
  (``determine_expert_map``) or its tensor-parallel slice of every expert, with every one of
  ``num_tokens`` tokens on that GPU. The router GEMM and top-k are outside the timing (top-k ids
  and weights are made beforehand); alignment of the tokens to experts, the gate/up GEMM,
  SiLU * mul, the down GEMM and the sum of each token's k outputs are inside. So the measured
  latency is compared with ``MoELayer.experts_time(num_tokens) + MoELayer.combine_time(num_tokens)``.
  Rows kept: ``distribution == balanced`` (the collector's ``balanced_logits``: every expert
  gets the same share of the pairs, servesim's ``balanced`` routing), ``moe_dtype`` bfloat16
  (servesim quantization ``none``) or fp8_block (e4m3 weights in 128 x 128 blocks, dynamic
  per-token-group activations: the FP8 checkpoints of DeepSeek-V3 and Qwen3, servesim ``fp8``),
  vLLM's Triton fused MoE kernel where the table holds it (the default; FlashInfer's are opt-in),
  else the one kernel collected. Per-tensor FP8 (ModelOpt) rows are left out: on H100 and H200
  the only kernel collected for them is FlashInfer's CUTLASS path, slower than bf16 there.
- ``mla/vllm/<newest>/mla_context_module_perf.parquet`` and ``mla_generation_module_perf.parquet``:
  vLLM's whole ``DeepseekV2MLAAttention`` forward (projections, norms, rotary, cache write,
  attention, o_proj; aiconfigurator ``collector/vllm/collect_mla_module.py``) at DeepSeek-V3's
  dimensions with ``num_heads`` heads on one GPU, bf16 GEMMs and bf16 KV cache. Compared with
  ``LatentAttention.token_time + prefill_time`` (batch_size prompts of isl tokens, no prefix)
  and ``token_time + decode_time`` (batch_size decodes over step tokens each). Reported only:
  not fitted.

Fit (experts only): per GPU and dtype, ``moe_flops_efficiency``, ``moe_bandwidth_efficiency``,
the per-call floor ``moe_call_s`` and a cost per distinct expert touched ``moe_expert_s`` (each
expert's tokens are padded to the kernel's tile of rows, and each expert's weight tiles are
scheduled apart: work that grows with experts, not FLOPs or bytes), minimizing the weighted mean
|log(pred / measured)| by coordinate descent on the model's own terms (``MoELayer.expert_terms``),
each (shape, TP, EP) sweep weighing the same. Fitted on the Mixtral (8 experts, top 2) and
Qwen3-MoE (128 experts, top 8) shapes; held out: DeepSeek-V3's shape (7168, 2048, 256 experts,
top 8) and every other shape in the tables. Errors are signed (pred / measured - 1), median and
P90, per GPU, dtype, shape set and regime (bandwidth-bound where the fallback's bytes term of the
gate/up GEMM exceeds its FLOPs term, else compute-bound).

Writes the ``moe`` section of ``simulator/specs/roofline_calibration.json`` (run it after
``calibrate_roofline_gpus.py``, which rewrites the file). About a minute on 2 cores:
    python benchmarks/moe_kernel_check.py [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import time

import numpy as np
import pandas as pd
from calibrate_roofline import coordinate_descent, pct
from calibrate_roofline_tables import PACKAGE, PACKAGE_VERSION, SYSTEM_OF_GPU, find_table
from rich.console import Console
from rich.table import Table as RichTable

from simulator.cost_models import MoERooflineCostModel
from simulator.scenario import RooflineConfig
from simulator.specs import calibration
from simulator.specs.calibration import CALIBRATION_FILE, MOE_FIELDS
from simulator.specs.gpu import GPUS, GPUSpec
from simulator.specs.model import bundled_model_spec
from simulator.specs.model_spec import MoESpec

SCRIPT = "benchmarks/moe_kernel_check.py"
DTYPES = {"bfloat16": ("bf16", "none"), "fp8_block": ("fp8", "fp8")}  # table moe_dtype -> (calibration key, servesim quantization)
# (hidden, expert width, experts, top-k) -> shape set
SHAPES = {
    (4096, 14336, 8, 2): "Mixtral-8x7B", (6144, 16384, 8, 2): "Mixtral-8x22B",
    (2048, 768, 128, 8): "Qwen3-30B-A3B", (4096, 1536, 128, 8): "Qwen3-235B-A22B",
    (7168, 2048, 256, 8): "DeepSeek-V3",
}
FITTED = ("Mixtral-8x7B", "Mixtral-8x22B", "Qwen3-30B-A3B", "Qwen3-235B-A22B")
EFF_GRID = np.round(np.arange(0.05, 1.0001, 0.005), 3)
CALL_GRID = np.arange(0.0, 80.01e-6, 0.25e-6)
EXPERT_GRID = np.arange(0.0, 3.001e-6, 0.01e-6)


def shape_set(h: int, w: int, e: int, k: int) -> str:
    name = SHAPES.get((h, w, e, k))
    return name if name else f"other (h {h}, w {w}, E {e}, k {k})"


def moe_layer(gpu: GPUSpec, h: int, w: int, e: int, k: int, tp: int, ep: int, quantization: str, params: RooflineConfig):
    """servesim's MoE layer for one table sweep: the GPU's EP share of ``e`` experts, or a 1 / tp slice of each."""
    base = bundled_model_spec("mixtral-8x7b")
    model = dataclasses.replace(base, hidden_size=h, moe=MoESpec(e, k, w, tuple(range(base.num_layers))))
    group = ep if ep > 1 else tp  # the table's GPUs: data-parallel ranks so attention heads stay whole
    cost = MoERooflineCostModel(model, gpu, 1, 1, params, quantization=quantization, data_parallel_size=group, expert_parallel=ep > 1)
    return cost.moe_layer


def targets() -> list[tuple[GPUSpec, str]]:
    """Bundled GPUs whose aiconfigurator system has MoE tables."""
    out = []
    for name, gpu in GPUS.items():
        system = gpu.aiconfigurator_system or SYSTEM_OF_GPU.get(name)
        if system and any(find_table(system, "moe", fw, "moe_perf.parquet") for fw in ("vllm", "sglang")):
            out.append((gpu, system))
    return out


def read_moe(gpu: GPUSpec, system: str) -> tuple[pd.DataFrame, str] | None:
    """The GPU's balanced bf16 / block-FP8 rows with servesim's terms and fallback price, and the table read.

    Terms are those of GPU 0, the most loaded under balanced routing (it holds the remainder
    experts). None without balanced rows (A100's vLLM 0.14 table holds power-law routing only).
    """
    table = find_table(system, "moe", "vllm", "moe_perf.parquet") or find_table(system, "moe", "sglang", "moe_perf.parquet")
    df = pd.read_parquet(table.path)
    df = df[(df.distribution == "balanced") & df.moe_dtype.isin(list(DTYPES))]
    if gpu.fp8_flops is None:
        df = df[df.moe_dtype == "bfloat16"]
    # vLLM's default kernel per dtype: the Triton fused MoE where the table has it (FlashInfer's MoE kernels are opt-in,
    # VLLM_USE_FLASHINFER_MOE_FP8 / _FP16), else the kernel with the most rows (the only one collected there).
    counts = df.groupby(["moe_dtype", "kernel_source"]).size().rename("n").reset_index()
    counts["triton"] = counts.kernel_source.str.contains("triton_tritonexperts")
    best = counts.sort_values(["triton", "n"]).groupby("moe_dtype").tail(1)
    df = df.merge(best[["moe_dtype", "kernel_source"]], on=["moe_dtype", "kernel_source"]).copy()
    df = df[~((df.moe_tp_size > 1) & (df.moe_ep_size > 1))]  # vLLM runs experts either TP or EP
    rows = []
    for key, g in df.groupby(["moe_dtype", "hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size", "moe_ep_size"]):
        dtype, h, w, e, k, tp, ep = key
        if ep > e or w % tp:
            continue
        layer = moe_layer(gpu, h, w, e, k, tp, ep, DTYPES[dtype][1], RooflineConfig())
        layer.prices = calibration.moe_fallback(layer.roof.resolved.values)  # "before": the GPU's GEMM values
        kernel = g.kernel_source.iloc[0]
        for n, lat in zip(g.num_tokens, g.latency):
            terms = layer.expert_terms(int(n), 0 if ep > 1 else None)
            combine = layer.combine_time(int(n))
            rows.append({"dtype": dtype, "kernel": kernel, "shape": shape_set(h, w, e, k), "h": h, "w": w, "E": e, "k": k, "tp": tp, "ep": ep,
                         "num_tokens": int(n), "measured_s": lat * 1e-3, **terms, "rest_s": terms["elementwise_s"] + combine,
                         "peak": layer.roof.linear_peak / layer.roof.resolved.values["gemm_flops_efficiency"],
                         "bandwidth": gpu.memory_bandwidth, "before_s": layer.price_terms(terms) + combine,
                         "bandwidth_bound": terms["gate_up_bytes"] / layer.expert_bandwidth > terms["gate_up_flops"] / layer.expert_peak})
    out = pd.DataFrame(rows)
    if out.empty:
        return None
    out["fitted"] = out["shape"].isin(FITTED)
    return out, f"{table.framework} {table.version} moe_perf ({table.rel})"


def predict(d: pd.DataFrame, e_f, e_b, call, expert) -> np.ndarray:
    """The routed-expert price of ``d``'s rows (broadcasts over a leading grid axis), plus moe_sum."""
    f, b = d.peak.to_numpy() * e_f, d.bandwidth.to_numpy() * e_b
    gate_up = np.maximum(d.gate_up_flops.to_numpy() / f, d.gate_up_bytes.to_numpy() / b)
    down = np.maximum(d.down_flops.to_numpy() / f, d.down_bytes.to_numpy() / b)
    return gate_up + down + call + expert * d.experts.to_numpy() + d.rest_s.to_numpy()


def fit_moe(d: pd.DataFrame) -> dict[str, float]:
    """Coordinate descent on the mean |log(pred / measured)| of ``d``, each (shape, TP, EP) sweep weighing the same."""
    y = d.measured_s.to_numpy()
    w = 1.0 / d.groupby(["shape", "tp", "ep"]).num_tokens.transform("count").to_numpy()
    w = w / w.sum()

    def loss(moe_flops_efficiency, moe_bandwidth_efficiency, moe_call_s, moe_expert_s):
        pred = predict(d, moe_flops_efficiency, moe_bandwidth_efficiency, moe_call_s, moe_expert_s)
        return (np.abs(np.log(pred / y)) * w).sum(axis=-1)

    grids = dict(zip(MOE_FIELDS, (EFF_GRID, EFF_GRID, CALL_GRID, EXPERT_GRID)))
    return coordinate_descent(loss, dict(zip(MOE_FIELDS, (0.6, 0.7, 10e-6, 0.0))), grids, iters=10)


def signed(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Median and P90 of pred / measured - 1 (%); P90 of the signed error, so a model too slow at the tail shows positive."""
    e = (pred / y - 1) * 100
    return pct(e, 50), pct(e, 90)


def after_prices(gpu: GPUSpec, d: pd.DataFrame) -> np.ndarray:
    """servesim's own ``experts_time + combine_time`` for every row, with the calibration file as it now is."""
    out = np.empty(len(d))
    for key, g in d.groupby(["dtype", "h", "w", "E", "k", "tp", "ep"]):
        dtype, h, w, e, k, tp, ep = key
        layer = moe_layer(gpu, h, w, e, k, tp, ep, DTYPES[dtype][1], RooflineConfig())
        out[d.index.get_indexer(g.index)] = [layer.experts_time(n) + layer.combine_time(n) for n in g.num_tokens]
    return out


# -- latent attention ------------------------------------------------------------------------------
def mla_check(gpu: GPUSpec, system: str) -> list[tuple]:
    """Signed error of LatentAttention (module: projections + attention) against vLLM's MLA module tables, per phase."""
    out = []
    deepseek = bundled_model_spec("deepseek-v3")
    for phase in ("context", "generation"):
        table = find_table(system, "mla", "vllm", f"mla_{phase}_module_perf.parquet")
        if table is None:
            continue
        df = pd.read_parquet(table.path)
        df = df[(df.gemm_type == "bfloat16") & (df.kv_cache_dtype == "bfloat16") & (df.tp_size == 1)]
        df = df[df.kernel_source == df.kernel_source.value_counts().index[0]]
        pred, y, tokens = [], [], []
        for heads, g in df.groupby("num_heads"):
            model = dataclasses.replace(deepseek, num_attention_heads=int(heads), num_kv_heads=int(heads))
            mla = MoERooflineCostModel(model, gpu, 1, 1, RooflineConfig()).latent
            for b, isl, step, lat in zip(g.batch_size, g.isl, g.step, g.latency):
                b, isl, step = int(b), int(isl), int(step)
                if phase == "context":
                    t = mla.token_time(b * isl) + mla.prefill_time([isl] * b, [0] * b)
                    tokens.append(b * isl)
                else:
                    t = mla.token_time(b) + mla.decode_time(b, b * step)
                    tokens.append(b * step)
                pred.append(t)
                y.append(lat * 1e-3)
        pred, y, tokens = map(np.array, (pred, y, tokens))
        small = tokens <= 4096
        for label, sel in (("all", np.ones_like(small)), ("<= 4096 tokens", small), ("> 4096 tokens", ~small)):
            if sel.any():
                out.append((gpu.name, phase, df.kernel_source.iloc[0], label, int(sel.sum()), *signed(pred[sel], y[sel])))
    return out


# -- the run ----------------------------------------------------------------------------------------
def report_rows(name: str, d: pd.DataFrame, after: np.ndarray) -> list[tuple]:
    rows = []
    y = d.measured_s.to_numpy()
    for dtype in sorted(d.dtype.unique()):
        for set_name, sel_set in (("fitted", d.fitted), ("held out: DeepSeek-V3", d["shape"] == "DeepSeek-V3"),
                                  ("held out: other shapes", ~d.fitted & (d["shape"] != "DeepSeek-V3"))):
            for regime, sel_r in (("bandwidth-bound", d.bandwidth_bound), ("compute-bound", ~d.bandwidth_bound)):
                sel = ((d.dtype == dtype) & sel_set & sel_r).to_numpy()
                if sel.any():
                    rows.append((name, dtype, set_name, regime, int(sel.sum()), *signed(d.before_s.to_numpy()[sel], y[sel]),
                                 *signed(after[sel], y[sel])))
    return rows


def shape_rows(name: str, d: pd.DataFrame, after: np.ndarray) -> list[tuple]:
    """Per GPU, dtype and named shape (others pooled): rows, signed median and P90 before and after (%)."""
    rows, y = [], d.measured_s.to_numpy()
    named = d["shape"].where(d["shape"].isin(list(SHAPES.values())), "other shapes")
    for (dtype, shape), g in d.groupby([d.dtype, named]):
        sel = d.index.get_indexer(g.index)
        rows.append((name, dtype, shape, "fitted" if shape in FITTED else "held out", len(g), *signed(d.before_s.to_numpy()[sel], y[sel]),
                     *signed(after[sel], y[sel])))
    return rows


def table(title: str, columns: list[str], rows: list[tuple], lead: int) -> RichTable:
    t = RichTable(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < lead else "right")
    for r in rows:
        t.add_row(*(f"{x:+.0f}" if isinstance(x, float) else str(x) for x in r))
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-write", action="store_true", help="report only; the 'after' columns then price with the fits in memory")
    args = ap.parse_args(argv)
    t0, date = time.perf_counter(), datetime.date.today().isoformat()
    console = Console(width=200)
    data, fits, sources = {}, {}, {}
    for gpu, system in targets():
        read = read_moe(gpu, system)
        if read is None:
            console.print(f"[dim]{gpu.name} ({system}): no balanced bf16/fp8 rows; keeps the fallback[/]")
            continue
        d, source = read
        data[gpu.name], sources[gpu.name] = (gpu, d), source
        fits[gpu.name] = {}
        for dtype, g in d.groupby("dtype"):
            p = fit_moe(g[g.fitted])
            fits[gpu.name][DTYPES[dtype][0]] = {**{k: round(v, 9) for k, v in p.items()},
                                                "source": f"fitted: {source}, {dtype} {g.kernel.iloc[0]}, balanced; shapes {', '.join(FITTED)}"}
        console.print(f"[dim]fitted {gpu.name} ({system}, {len(d)} rows) at {time.perf_counter() - t0:.0f} s[/]")
    if not args.no_write:
        doc = json.loads(CALIBRATION_FILE.read_text())
        doc["moe"] = {"generated_by": SCRIPT, "fit_date": date, "package": {"name": PACKAGE, "version": PACKAGE_VERSION},
                      "fitted_on": list(FITTED), "held_out": ["DeepSeek-V3", "every other shape in the tables"], "gpus": fits}
        CALIBRATION_FILE.write_text(json.dumps(doc, indent=1) + "\n")
        calibration._read.cache_clear()
        calibration.load.cache_clear()
        calibration.load_moe.cache_clear()
    rows, by_shape = [], []
    for name, (gpu, d) in data.items():
        if args.no_write:
            after = np.empty(len(d))
            for dtype, g in d.groupby("dtype"):
                p = fits[name][DTYPES[dtype][0]]
                after[d.index.get_indexer(g.index)] = predict(g, *(p[f] for f in MOE_FIELDS))
        else:
            after = after_prices(gpu, d)
        rows += report_rows(name, d, after)
        by_shape += shape_rows(name, d, after)
    cols = ["GPU", "dtype", "shapes", "regime", "rows", "before\nmedian", "before\nP90", "after\nmedian", "after\nP90"]
    console.print(table("Routed experts: servesim experts_time + combine_time vs vLLM fused_experts, signed error % "
                        "(before: GEMM efficiencies; after: the MoE fit)", cols, rows, 4))
    console.print(table("Routed experts per model shape (all token counts), signed error %", ["GPU", "dtype", "shape", "set", *cols[4:]], by_shape, 4))
    vals = [(n, k, *(f"{v[f] * (1e6 if f.endswith('_s') else 1):.3g}" for f in MOE_FIELDS)) for n, by in fits.items() for k, v in by.items()]
    console.print(table("Fitted MoE prices", ["GPU", "dtype", "flops eff", "bandwidth eff", "call us", "per expert us"], vals, 2))
    mla = [r for gpu, system in targets() for r in mla_check(gpu, system)]
    console.print(table("Latent attention module (projections + attention): servesim vs vLLM MLA module tables, signed error %, "
                        "not fitted", ["GPU", "phase", "kernel", "tokens", "rows", "median", "P90"], mla, 4))
    for name, s in sources.items():
        console.print(f"[dim]{name}: {s}[/]")
    console.print(f"[dim]done in {time.perf_counter() - t0:.0f} s; data: NVIDIA aiconfigurator-core {PACKAGE_VERSION} (Apache-2.0)[/]")


if __name__ == "__main__":
    main()
