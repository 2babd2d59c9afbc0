"""FastServe's MLFQ and shortest-predicted-job-first against vLLM's FCFS on heavy-tailed outputs.

The configurations of ``scenarios/compare-heavy-tailed.yaml`` (Llama-3-8B on one H100-SXM, 32
seats, outputs lognormal with median 80 and mean 400 tokens, 1,500 requests) at several Poisson
rates; then shortest-predicted-job-first at 12 req/s as its predictor's error grows; then, where
the Azure 2023 conversation trace is at hand, the three under KV-cache pressure (its first 600
requests replayed 4x faster into 1,500 KV blocks), preempting by recompute and by swap. Prints mean
and P99 job completion time (E2E) and TTFT, and the direction the papers claim:
FastServe (Wu et al. 2023, arXiv 2305.05920, Sec. 6): lower average JCT than vLLM;
Fu et al. (NeurIPS'24, Sec. 5): ranking by predicted length lowers mean latency against FCFS.

    python benchmarks/preemptive_orders.py
"""

import dataclasses
import platform
import time
from pathlib import Path

from simulator.engine.simulation import simulate
from simulator.scenario import load_scenario
from simulator.studies.capacity import with_rate
from simulator.studies.sweep import load_sweep

SWEEP = Path(__file__).resolve().parents[1] / "scenarios" / "compare-heavy-tailed.yaml"
RATES = (8.0, 10.0, 12.0)
SIGMAS = (0.0, 0.5, 1.0, 2.0)
AZURE_CONV = Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"


def row(label: str, summary: dict) -> str:
    e2e, ttft = summary["e2e_s"], summary["ttft_s"]
    return (f"| {label} | {e2e['mean']:.2f} | {e2e['p99']:.1f} | {ttft['mean']:.2f} | {ttft['p99']:.2f} | "
            f"{summary['slo_attainment']:.2f} |")


if __name__ == "__main__":
    start = time.time()
    configs = {c.label: c.scenario for c in load_sweep(SWEEP).configurations}
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| rate, scheduler | E2E mean (s) | E2E P99 (s) | TTFT mean (s) | TTFT P99 (s) | SLO attainment |")
    print("|---|---|---|---|---|---|")
    for rate in RATES:
        means = {}
        for label, scenario in configs.items():
            summary = simulate(with_rate(scenario, rate)).summary
            means[label] = summary["e2e_s"]["mean"]
            print(row(f"{rate:g} req/s, {label}", summary))
        verdict = {name: "lower" if means[name] < means["vllm"] else "NOT lower" for name in ("fastserve", "sjf")}
        print(f"| {rate:g} req/s: mean JCT vs vllm | fastserve {verdict['fastserve']} ({means['fastserve'] / means['vllm']:.2f}x), "
              f"sjf {verdict['sjf']} ({means['sjf'] / means['vllm']:.2f}x) | | | | |")
    print()
    print("| sjf at 12 req/s, predictor sigma | E2E mean (s) | E2E P99 (s) | TTFT mean (s) | TTFT P99 (s) | SLO attainment |")
    print("|---|---|---|---|---|---|")
    sjf = with_rate(configs["sjf"], 12.0)
    for sigma in SIGMAS:
        scenario = dataclasses.replace(sjf, scheduler=dataclasses.replace(sjf.scheduler, sjf_predictor_sigma=sigma))
        print(row(f"sigma {sigma:g}", simulate(scenario).summary))
    if AZURE_CONV.is_file():
        print()
        print("| KV pressure, scheduler, preemption | E2E mean (s) | E2E P99 (s) | TTFT mean (s) | TTFT P99 (s) | SLO attainment | preemptions (swaps) | wall (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in ("recompute", "swap"):
            for name in configs:
                scenario = load_scenario(None, [f"workload.trace={AZURE_CONV}", "workload.on_invalid=skip", "workload.max_requests=600", "workload.time_scale=4",
                                                "scheduler.num_gpu_blocks_override=1500", f"scheduler.name={name}", f"scheduler.preemption_mode={mode}"])
                t = time.time()
                summary = simulate(scenario).summary
                print(f"{row(f'{name}, {mode}', summary)} {summary['num_preemptions']} ({summary['num_swaps']}) | {time.time() - t:.2f} |")
    print(f"\nwall {time.time() - start:.1f} s")
