"""Held-out error of the profiled routed-expert price (``ProfiledMoELayer``) against vLLM's measured fused MoE.

Data: aiconfigurator-core's ``moe/vllm/<version>/moe_perf.parquet`` per system (vLLM's
``fused_experts`` on one GPU, CUDA graph, balanced routing, bf16; rows chosen as
``profiler/imports/aiconfigurator_moe.select_rows`` chooses them: the model's shape, the TP slice
of every expert, vLLM's Triton kernel), for the bundled MoE models whose bf16 shape the table
holds (Mixtral-8x7B, Qwen3-30B-A3B, Qwen3-235B-A22B, ...) at expert-TP 1, 2, 4, 8 and at EP 8, in bf16
and in block FP8 (DeepSeek-V3 has FP8 rows only).

Two held-out splits, each per (system, model, TP) sweep of token counts:

- ``interpolate``: the profile holds every other measured token count (1, 4, 16, 48, ...), and
  the error is reported at the others (2, 8, 32, 64, ...): what linear interpolation between
  measured points costs.
- ``extrapolate``: the profile holds the counts up to 1,024 tokens; the error is reported above
  (1,536 ... 16,384): the roofline-scaled extrapolation (edge efficiency held).

Beside each, the roofline's own price (``MoELayer.experts_time + combine_time`` with the GPU's
calibrated ``moe`` section) at the same rows; note the roofline's four constants per GPU were
fitted on the Mixtral and Qwen3 shapes of these tables (all token counts), so its error on them
is not held out (``benchmarks/moe_kernel_check.py``). Errors are pred / measured - 1, median of
|error| and P90 of |error|.

    python benchmarks/moe_profile_check.py [--systems h100_sxm,h200_sxm]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

from profiler.imports.aiconfigurator_moe import select_rows
from simulator.cost_models.profiled_moe import ProfiledMoELayer
from simulator.cost_models.roofline_moe import MoERooflineCostModel
from simulator.scenario import MoERoutingConfig, RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_names, bundled_model_spec

DTYPES = {"bfloat16": "none", "fp8_block": "fp8"}  # moe_perf moe_dtype -> servesim quantization
SYSTEM_GPU = {"h100_sxm": "h100-sxm", "h200_sxm": "h200", "a100_sxm": "a100-80gb-sxm", "l40s": "l40s", "b200_sxm": "b200"}


def layer(gpu, model, tp: int, ep: bool, quantization: str, tokens: np.ndarray, seconds: np.ndarray) -> ProfiledMoELayer:
    """A profiled MoE layer holding ``tokens`` / ``seconds`` for ``model``'s experts over ``tp`` GPUs (sliced, or whole with ``ep``)."""
    # Attention ranks stand in for the MoE group (heads stay whole), as moe_kernel_check does.
    roof = MoERooflineCostModel(model, gpu, 1, 1, RooflineConfig(), quantization=quantization, data_parallel_size=tp, expert_parallel=ep)
    return ProfiledMoELayer(roof, model, roof.par, MoERoutingConfig(), tokens, seconds)


def rows(system: str, table: pd.DataFrame) -> list[dict]:
    gpu = GPUS[SYSTEM_GPU[system]]
    out = []
    for name in bundled_model_names():
        model = bundled_model_spec(name)
        if model.moe is None:
            continue
        for tp, ep, (moe_dtype, quantization) in itertools.product((1, 2, 4, 8), (1, 8), DTYPES.items()):
            if model.moe.expert_intermediate_size % tp or (ep > 1 and tp != ep) or (moe_dtype != "bfloat16" and gpu.fp8_flops is None):
                continue
            d = select_rows(table, model, tp, ep, moe_dtype)
            if len(d) < 6:
                continue
            m, y = d.num_tokens.to_numpy(np.float64), d.latency.to_numpy(np.float64) * 1e-3
            splits = {"interpolate": np.arange(len(m)) % 2 == 0, "extrapolate": m <= 1024}
            for split, keep in splits.items():
                if split == "interpolate":
                    keep[-1] = True  # both ends measured: every held-out count lies between two kept ones
                lay = layer(gpu, model, tp, ep > 1, quantization, m[keep], y[keep])
                for mi, yi in zip(m[~keep], y[~keep]):
                    n = int(mi)
                    out.append({"system": system, "model": name, "tp": tp, "ep": ep, "dtype": quantization, "split": split, "num_tokens": n, "measured_s": yi,
                                "profiled_s": lay.profiled_experts_time(n), "roofline_s": lay.experts_time(n) + lay.combine_time(n)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="h100_sxm,h200_sxm")
    args = ap.parse_args()
    from profiler.imports.aiconfigurator import package_root, package_version

    root = package_root()
    all_rows = []
    for system in args.systems.split(","):
        paths = sorted((root / "data" / system / "moe" / "vllm").glob("*/moe_perf.parquet"))
        if not paths:
            print(f"{system}: no vLLM moe_perf table")
            continue
        print(f"{system}: {paths[-1].relative_to(root)} (aiconfigurator-core {package_version()})")
        all_rows += rows(system, pd.read_parquet(paths[-1]))
    df = pd.DataFrame(all_rows)
    for col in ("profiled", "roofline"):
        df[f"{col}_err"] = (df[f"{col}_s"] / df.measured_s - 1) * 100
    g = df.groupby(["system", "dtype", "split", "model"])
    summary = g.agg(rows=("measured_s", "size"),
                    profiled_med=("profiled_err", lambda e: np.median(np.abs(e))), profiled_p90=("profiled_err", lambda e: np.percentile(np.abs(e), 90)),
                    roofline_med=("roofline_err", lambda e: np.median(np.abs(e))), roofline_p90=("roofline_err", lambda e: np.percentile(np.abs(e), 90)))
    pd.set_option("display.width", 200)
    print(summary.round(1).to_string())
    overall = df.groupby(["system", "dtype", "split"]).agg(rows=("measured_s", "size"), profiled_med=("profiled_err", lambda e: np.median(np.abs(e))),
                                                  profiled_p90=("profiled_err", lambda e: np.percentile(np.abs(e), 90)),
                                                  roofline_med=("roofline_err", lambda e: np.median(np.abs(e))),
                                                  roofline_p90=("roofline_err", lambda e: np.percentile(np.abs(e), 90)))
    print(overall.round(1).to_string())


if __name__ == "__main__":
    main()
