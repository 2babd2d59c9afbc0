"""Held-out error of the profiled MLA module price (``MLAModuleTables``) against vLLM's measured module rows.

Data: the ``mla.csv`` rows ``servesim profile import aiconfigurator:<system>/vllm/<version>
--model deepseek-v3`` writes (``profiler/imports/aiconfigurator_moe._write_mla``: aiconfigurator's
``mla_context_module_perf`` / ``mla_generation_module_perf``, vLLM's whole DeepseekV2MLAAttention
forward on one GPU, bf16 KV cache), at 128 heads per GPU (data-parallel attention or TP 1) and 16
(TP 8), in bf16 and block FP8.

Splits, per (phase, dtype, heads) grid of (batch, tokens per prompt or context per request):

- ``interpolate``: the profile holds every other point along the tokens / context axis (the
  first, third, ...; every batch size), the error is reported at the others: what bilinear
  interpolation between measured points costs.
- ``tokens``: the profile holds the points up to 2,048 tokens per prompt (prefill) or 4,097
  context tokens (decode); the error is reported above them: the roofline-scaled extrapolation
  along the tokens axis with the edge's efficiency held.
- ``batches``: the profile holds batches up to 16 prompts (prefill) or 64 decodes; the error is
  reported above them: extrapolation along the batch axis, the way skipped cells are filled.

Beside each, the roofline's own price of the module at the same rows
(``MLAModuleTables.roof_prefill`` / ``roof_decode``: ``LatentAttention``'s projections, norms,
rotary and cache write plus its prefill or absorbed decode attention, with H200's calibrated
efficiencies), which no split trains. Errors are pred / measured - 1: median and P90 of |error|.

Then (``--steps``) the decode step of the Azure DeepSeek-V3 scenario's deployment (FP8, 8 x H200,
data-parallel attention 8, EP 8) at 1 and 64 decodes per rank over 1,024 cached tokens each, by
part, priced by the roofline and by the imported profile (experts, router, MLA module, bf16 GEMMs).

    python benchmarks/mla_profile_check.py [--system h200_sxm] [--version 0.24.0] [--steps]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from profiler.imports.aiconfigurator_moe import import_moe
from simulator.cost_models.profiled_mla import MLAModuleTables
from simulator.cost_models.roofline_moe import MoERooflineCostModel
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec

EDGE = {"mla_module_prefill": 2048, "mla_module_decode": 4097}
BATCH_EDGE = {"mla_module_prefill": 16, "mla_module_decode": 64}


def latent(gpu_name: str, tp: int, quantization: str):
    """The roofline ``LatentAttention`` of DeepSeek-V3 on one GPU of TP ``tp`` (attention side)."""
    model = bundled_model_spec("deepseek-v3")
    return MoERooflineCostModel(model, GPUS[gpu_name], tp, 1, RooflineConfig(), 1, quantization, "<check>", 8 // tp, True).latent


def errors(rows: pd.DataFrame, lat, operator: str, axis: str, split: str) -> list[dict]:
    """Profiled and roofline errors of one grid's held-out rows under ``split``."""
    values = sorted(rows[axis].unique())
    if split == "interpolate":
        fit = rows[rows[axis].isin(values[::2])]
    elif split == "tokens":
        fit = rows[rows[axis] <= EDGE[operator]]
    else:
        fit = rows[rows["num_seqs"] <= BATCH_EDGE[operator]]
    held = rows.drop(fit.index)
    points = {(int(r.num_seqs), int(getattr(r, axis))): float(r.median_s) for r in fit.itertuples()}
    other = "mla_module_decode" if operator == "mla_module_prefill" else "mla_module_prefill"
    tables = MLAModuleTables(lat, {operator: points, other: {(1, 1): 1.0, (1, 2): 1.0, (2, 1): 1.0, (2, 2): 1.0}})
    out = []
    for r in held.itertuples():
        b, x = int(r.num_seqs), int(getattr(r, axis))
        if operator == "mla_module_prefill":
            pred, roof = tables.prefill_time([x] * b, [0] * b), tables.roof_prefill(b, x)
        else:
            pred, roof = tables.decode_time(b, b * x), tables.roof_decode(b, x)
        out.append({"profiled": pred / r.median_s - 1, "roofline": roof / r.median_s - 1})
    return out


def steps(system: str, version: str) -> None:
    """Print the decode step by part (ms) at 1 and 64 decodes per rank, roofline against profiled."""
    from profiler.imports.aiconfigurator_moe import named_moe_profile
    from simulator.cost_models import ProfiledMoECostModel
    from simulator.engine.batch import Batch

    model = bundled_model_spec("deepseek-v3")
    args = (model, GPUS["h200"], 1, 1, RooflineConfig(), 1, "fp8", "<check>", 8, True)
    models = {"roofline": MoERooflineCostModel(*args), "profiled": ProfiledMoECostModel(named_moe_profile(f"aiconfigurator:{system}/vllm/{version}", model, 8), *args)}
    for per_rank in (1, 64):
        batch = Batch()
        batch.num_decode_tokens = batch.num_sampled_tokens = 8 * per_rank
        batch.decode_context_tokens = 8 * per_rank * 1025
        parts = {name: c.step_breakdown(batch) for name, c in models.items()}
        keys = sorted({k for p in parts.values() for k, v in p.items() if v})
        print(f"\n{per_rank} decode(s) per rank: " + ", ".join(f"{name} {1e3 * sum(p.values()):.2f} ms" for name, p in parts.items()))
        for k in keys:
            print(f"  {k:24s} " + "  ".join(f"{1e3 * parts[name].get(k, 0.0):8.3f}" for name in models))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", default="h200_sxm")
    ap.add_argument("--version", default="0.24.0")
    ap.add_argument("--steps", action="store_true", help="also print the scenario's decode step by part")
    args = ap.parse_args()
    gpu = {"h200_sxm": "h200", "h100_sxm": "h100-sxm"}[args.system]
    with tempfile.TemporaryDirectory() as tmp:
        import_moe(f"{args.system}/vllm/{args.version}", bundled_model_spec("deepseek-v3"), (8,), Path(tmp))
        mla = pd.read_csv(Path(tmp) / "mla.csv")
    print(f"| phase | dtype | heads/GPU | split | rows fit | rows held out | profiled median / P90 abs error | roofline median / P90 abs error |")
    print("|---|---|---|---|---|---|---|---|")
    for operator, axis in (("mla_module_prefill", "new_tokens"), ("mla_module_decode", "context_tokens")):
        for dtype, quant in (("bfloat16", "none"), ("fp8", "fp8")):
            for heads in (128, 16):
                rows = mla[(mla.operator == operator) & (mla.dtype == dtype) & (mla.num_heads == heads)]
                lat = latent(gpu, 128 // heads, quant)
                for split in ("interpolate", "tokens", "batches"):
                    e = pd.DataFrame(errors(rows, lat, operator, axis, split))
                    n_fit = len(rows) - len(e)
                    p, r = np.abs(e["profiled"]), np.abs(e["roofline"])
                    print(f"| {operator.split('_')[-1]} | {dtype} | {heads} | {split} | {n_fit} | {len(e)} | "
                          f"{100 * p.median():.1f} % / {100 * p.quantile(0.9):.1f} % | {100 * r.median():.1f} % / {100 * r.quantile(0.9):.1f} % |")
    if args.steps:
        steps(args.system, args.version)


if __name__ == "__main__":
    main()
