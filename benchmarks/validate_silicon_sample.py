"""servesim against aiconfigurator-core's silicon sample: measured vLLM TTFT and TPOT at fixed concurrency.

What it does:
    ``systems/silicon_sample.csv`` inside the installed aiconfigurator-core package (Apache-2.0)
    holds real serving measurements: per row an engine and version, a GPU system, a model and
    precision, TP, fixed input and output lengths (isl, osl), a concurrency (``batch_size``,
    closed loop) and the measured mean TTFT and TPOT in ms. This script takes the vLLM rows of
    aggregated (colocated) serving on H100 and H200 for the dense models servesim covers
    (Llama-3.1-8B and Llama-3.1-70B, FP8), simulates each as a closed loop of ``batch_size``
    clients (``workload.concurrency``) sending requests of exactly isl prompt and osl output
    tokens, priced by the imported profile of the same GPU and framework
    (``hardware.profile: aiconfigurator:<system>/vllm/0.24.0``: the only vLLM tables the
    package has for these GPUs; the rows themselves were measured with vLLM 0.12 or an
    unrecorded version), and reports the signed error of servesim's mean TTFT and mean TPOT.

    Nothing here is fitted to the silicon sample: the profile comes from kernel tables, the
    engine settings are servesim's vLLM v1 defaults (chunked prefill, 8,192 batched tokens,
    256 sequences, prefix caching on but never hit by distinct synthetic prompts, bf16 KV
    cache: the sample does not record the KV dtype).

    Each configuration runs ``--waves`` x concurrency requests (the first wave starts together,
    as a benchmark client with no request rate does). TPOT is servesim's (finish - first token)
    / (output tokens - 1), as vLLM's benchmark defines it.

How to run:
    python benchmarks/validate_silicon_sample.py [--waves 4] [--workers 2] [--limit N]

It prints one row per measurement and the median |error| per model and GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

MODELS = {"meta-llama/Llama-3.1-70B": "llama-3.1-70b", "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b"}
GPUS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200"}
QUANT = {"fp8": "fp8", "bf16": "none"}


def sample_rows() -> pd.DataFrame:
    """The vLLM, aggregated, H100/H200, dense-Llama rows of the silicon sample."""
    from profiler.imports.aiconfigurator import package_root

    d = pd.read_csv(package_root() / "silicon_sample.csv")
    d = d[(d.backend == "vllm") & (d["mode"] == "agg") & d.system.isin(list(GPUS)) & d.model_path.isin(list(MODELS)) & d.precision.isin(list(QUANT))]
    return d.reset_index(drop=True)


def simulate_row(row: dict, waves: int) -> dict:
    """Mean TTFT and TPOT (ms) servesim predicts for one silicon-sample row."""
    from simulator.errors import ScenarioError
    from simulator.scenario import load_scenario
    from simulator.simulation import simulate

    conc, isl, osl = int(row["batch_size"]), int(row["isl"]), int(row["osl"])
    overrides = [
        f"name=silicon-{row['id']}", f"model.name={MODELS[row['model_path']]}", f"model.quantization={QUANT[row['precision']]}",
        f"hardware.gpu={GPUS[row['system']]}", f"hardware.profile=aiconfigurator:{row['system']}/vllm/0.24.0",
        f"cluster.tensor_parallel_size={int(row['tp_size'])}", "scheduler.name=vllm_v1",
        f"workload.num_requests={waves * conc}", f"workload.concurrency={conc}",
        f"workload.prompt_tokens={{distribution: fixed, value: {isl}}}", f"workload.output_tokens={{distribution: fixed, value: {osl}}}",
        "slo.ttft_s=null", "slo.tpot_s=null",
    ]
    t0 = time.perf_counter()
    try:
        result = simulate(load_scenario(None, overrides))
    except ScenarioError as e:
        return {"id": row["id"], "error": str(e)}
    df = result.requests
    return {"id": row["id"], "ttft_ms": 1e3 * float(df["ttft_s"].mean()), "tpot_ms": 1e3 * float(df["tpot_s"].mean()),
            "wall_s": time.perf_counter() - t0, "error": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waves", type=int, default=4, help="requests per client")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    args = parser.parse_args()
    rows = sample_rows()
    if args.limit:
        rows = rows.head(args.limit)
    # Import and fit each named profile once, before the workers need it.
    from profiler.imports import named_profile
    from simulator.specs.model import bundled_model_spec

    for (system, model, tp), _ in rows.groupby(["system", "model_path", "tp_size"]):
        named_profile(f"aiconfigurator:{system}/vllm/0.24.0", bundled_model_spec(MODELS[model]), int(tp))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(simulate_row, rows.to_dict("records"), [args.waves] * len(rows)))
    res = pd.DataFrame(results)
    df = rows.merge(res, on="id")
    ok = df[df["error"].isna()].copy()
    ok["ttft_err"] = 100 * (ok["ttft_ms"] / ok["silicon_ttft_ms"] - 1)
    ok["tpot_err"] = 100 * (ok["tpot_ms"] / ok["silicon_tpot_ms"] - 1)
    console = Console(width=160)
    table = Table(title=f"silicon sample, vLLM on H100/H200: servesim vs measured ({len(ok)} rows, {time.perf_counter() - t0:.0f} s)")
    for col in ("model", "GPU", "TP", "isl", "osl", "conc", "TTFT meas", "TTFT sim", "err %", "TPOT meas", "TPOT sim", "err %"):
        table.add_column(col, justify="left" if col in ("model", "GPU") else "right")
    for r in ok.sort_values(["model_path", "system", "tp_size", "isl", "osl", "batch_size"]).itertuples():
        table.add_row(MODELS[r.model_path], r.system, str(int(r.tp_size)), str(r.isl), str(r.osl), str(int(r.batch_size)),
                      f"{r.silicon_ttft_ms:.1f}", f"{r.ttft_ms:.1f}", f"{r.ttft_err:+.0f}", f"{r.silicon_tpot_ms:.2f}", f"{r.tpot_ms:.2f}", f"{r.tpot_err:+.0f}")
    console.print(table)
    summary = Table(title="median |error| % (and median signed error)")
    for col in ("model", "GPU", "rows", "TTFT", "TPOT"):
        summary.add_column(col)
    groups = [((MODELS[m], s), g) for (m, s), g in ok.groupby(["model_path", "system"])] + [(("all", "all"), ok)]
    for (model, system), g in groups:
        summary.add_row(model, system, str(len(g)), f"{g.ttft_err.abs().median():.1f} ({g.ttft_err.median():+.1f})",
                        f"{g.tpot_err.abs().median():.1f} ({g.tpot_err.median():+.1f})")
    console.print(summary)
    failed = df[df["error"].notna()]
    for r in failed.itertuples():
        console.print(f"not simulated: {r.id}: {r.error}")


if __name__ == "__main__":
    main()
