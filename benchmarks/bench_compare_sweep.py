"""How long a 20-point compare sweep on the Azure conversation trace takes, and where the time goes.

The sweep: the base scenario scenarios/azure-conv-llama3-8b-h100.yaml (Llama-3-8B, one H100-SXM,
roofline cost model) on the first 2,000 requests of the Azure 2023 conversation trace, four
schedulers (vllm, sarathi with chunk 512, orca, vllm_v1) x five rates (2, 5, 8, 11, 14 req/s) =
20 runs, on local processes, without the run cache. With ``--capacity`` each scheduler's capacity
(DistServe attainment >= 90 %, TTFT <= 2 s, TPOT <= 100 ms; 5 % tolerance) is found as well.

Then one run (vllm at 8 req/s) is taken apart: loading the trace, building the simulation, the
event loop, metrics, latency quantiles, and the bytes a worker sends back.

    python benchmarks/bench_compare_sweep.py                 # grid only, every CPU
    python benchmarks/bench_compare_sweep.py --capacity      # grid plus the four capacities
    python benchmarks/bench_compare_sweep.py --workers 1     # serial, for the speed-up
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path

from simulator.engine import metrics
from simulator.studies.capacity import with_rate
from simulator.studies.compare import _quantiles, run_compare
from simulator.scenario import load_scenario
from simulator.engine.simulation import Simulation
from simulator.workload import load_workload

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "scenarios" / "azure-conv-llama3-8b-h100.yaml"
SCHEDULERS = ["vllm", "sarathi", "orca", "vllm_v1"]
RATES = [2, 5, 8, 11, 14]


def sweep_text(num_requests: int, capacity: bool) -> str:
    return f"""
name: bench-compare-azure-conv
base: {BASE}
base_overrides:
  workload.max_requests: {num_requests}
  scheduler.chunk_size: 512
axes:
  scheduler.name: {SCHEDULERS}
  rate: {RATES}
capacity:
  enabled: {str(capacity).lower()}
  attainment_target: 0.9
  rel_tol: 0.05
"""


def time_sweep(num_requests: int, capacity: bool, workers: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.yaml"
        path.write_text(sweep_text(num_requests, capacity))
        start = time.perf_counter()
        result = run_compare(path, workers=workers, out=Path(folder) / "out", use_cache=False, progress=False)
        wall = time.perf_counter() - start
        html_mb = (Path(folder) / "out" / "compare.html").stat().st_size / 1e6
    runs = result.results
    run_s = runs["wall_time_s"].sum()
    print(f"grid: {len(runs)} runs of {num_requests} requests; sum of per-run wall times {run_s:.1f} s "
          f"(per run: median {runs['wall_time_s'].median():.2f} s, max {runs['wall_time_s'].max():.2f} s)")
    if capacity:
        cap = result.capacity
        print(f"capacity: {cap['num_runs'].sum()} bisection runs ({cap['num_stopped_early'].sum()} stopped early), "
              f"sum of their wall times {cap['run_wall_time_s'].sum():.1f} s")
        for _, row in cap.iterrows():
            print(f"  {row['series']:8s} {row['capacity_rps']:.3g} req/s in {row['num_runs']} runs")
    print(f"sweep wall time {wall:.1f} s with {workers or os.cpu_count()} worker(s), compare.html {html_mb:.1f} MB")


def take_apart(num_requests: int) -> None:
    scenario = with_rate(load_scenario(BASE, [f"workload.max_requests={num_requests}"]), 8.0)
    t0 = time.perf_counter()
    load_workload(scenario.workload, scenario.seed, 16384)
    t1 = time.perf_counter()
    sim = Simulation(scenario)  # loads the workload again, builds deployment, cost model, replicas
    t2 = time.perf_counter()
    result = sim.run()
    t3 = time.perf_counter()
    requests = sim.workload.requests
    df = metrics.request_table(requests, scenario.slo)
    it = metrics.iteration_table([row for r in sim.replicas for row in r.records])
    tbt = metrics.token_gaps(requests)
    metrics.summarize(df, it, tbt, scenario.slo)
    t4 = time.perf_counter()
    done = result.requests[result.requests["finish_time"].notna()]
    cdf = {name: _quantiles(done[name].to_numpy(float)) for name in ("ttft_s", "tpot_s", "e2e_s")} | {"tbt_s": _quantiles(result.tbt_s)}
    t5 = time.perf_counter()
    size = len(pickle.dumps({"summary": result.summary, "cdf": cdf}))
    loop = (t3 - t2) - (t4 - t3)
    print(f"one run (vllm, 8 req/s, {num_requests} requests, {len(result.iterations):,} iterations):")
    print(f"  load trace {1e3 * (t1 - t0):.0f} ms | build (trace, deployment, cost model, replicas) {1e3 * (t2 - t1):.0f} ms | "
          f"event loop {1e3 * loop:.0f} ms | metrics {1e3 * (t4 - t3):.0f} ms | quantiles {1e3 * (t5 - t4):.1f} ms | "
          f"sent back {size / 1e3:.1f} kB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: every CPU)")
    parser.add_argument("--capacity", action="store_true", help="also find each scheduler's capacity")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    time_sweep(args.requests, args.capacity, args.workers)
    take_apart(args.requests)
