"""DistServe (1 prefill + 1 decode replica) against colocated vLLM (2 replicas) on two GPUs.

The DistServe paper's claim (Zhong et al., OSDI'24, Sec. 6.2): under tight TTFT and TPOT SLOs,
disaggregation serves a higher rate per GPU than colocation, because a colocated engine's
prefills stall its running decodes (vLLM v0 runs prefill-only iterations first), so TPOT
degrades with load long before the GPUs are busy. This script sweeps the arrival rate of a
chatbot-like load (the Azure 2023 conversation shape: prompts lognormal mean 1155, median 1020;
outputs mean 211, median 129) on Llama-3-8B, two H100-SXMs, with TTFT <= 250 ms and TPOT <=
15 ms (the chatbot SLO of the paper, scaled to a model that decodes ~10x faster), and prints
each deployment's SLO attainment per rate and its capacity: the highest rate whose attainment
is >= 90 % (DistServe's goodput), from the sweep and refined by bisection
(``simulator.studies.capacity.find_capacity``, 3 % tolerance).

    python benchmarks/distserve_vs_vllm.py [--requests 1000] [--rates 8,10,...] [--seed 0]

Deployments: DistServe over NVLink (one node) and over InfiniBand (two nodes), vLLM v0 with
round robin and with the least-outstanding router, and Sarathi-Serve (chunked prefills, two
replicas) for reference.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

from simulator.studies.capacity import CapacityCriterion, find_capacity
from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate
from profiler.device import cpu_model

WORKLOAD = [
    "workload.prompt_tokens={distribution: lognormal, mean: 1155, median: 1020, max: 7168}",
    "workload.output_tokens={distribution: lognormal, mean: 211, median: 129, max: 1000}",
    "slo.ttft_s=0.25", "slo.tpot_s=0.015",
]
DEPLOYMENTS = {
    "distserve 1P+1D nvlink": ["scheduler.name=distserve"],
    "distserve 1P+1D infiniband": ["scheduler.name=distserve", "cluster.kv_transfer.link=infiniband"],
    "vllm x2 round_robin": ["scheduler.name=vllm", "cluster.num_replicas=2"],
    "vllm x2 least_outstanding": ["scheduler.name=vllm", "cluster.num_replicas=2", "cluster.router=least_outstanding"],
    "sarathi x2 least_outstanding": ["scheduler.name=sarathi", "cluster.num_replicas=2", "cluster.router=least_outstanding"],
}
TARGET = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rates", default="8,10,12,14,16,18,20,22,24,26,28")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bisect", action="store_true", help="capacity from the sweep only")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    common = [f"workload.num_requests={args.requests}", f"seed={args.seed}", *WORKLOAD]
    print(f"date: {datetime.date.today()}  machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Llama-3-8B, 2 x H100-SXM, {args.requests} requests, seed {args.seed}; SLO TTFT <= 250 ms, TPOT <= 15 ms; capacity: attainment >= {TARGET:.0%}")
    print("SLO attainment by arrival rate (req/s):")
    width = max(map(len, DEPLOYMENTS))
    print(" " * width + "".join(f"{r:>7g}" for r in rates))
    wall = time.perf_counter()
    capacities = {}
    for name, overrides in DEPLOYMENTS.items():
        attainment = [simulate(load_scenario(None, common + overrides + [f"workload.arrival.rate={r}"])).summary["slo_attainment"] for r in rates]
        print(f"{name:<{width}}" + "".join(f"{a:>7.1%}" for a in attainment), flush=True)
        met = 0.0
        for r, a in zip(rates, attainment):
            if a < TARGET:
                break
            met = r
        capacities[name] = met
    print("capacity (req/s):")
    for name, overrides in DEPLOYMENTS.items():
        line = f"  {name:<{width}}  sweep {capacities[name]:g}"
        if not args.no_bisect:
            scenario = load_scenario(None, common + overrides)
            found = find_capacity(scenario, CapacityCriterion(attainment_target=TARGET), rel_tol=0.03,
                                  rate_lo=max(capacities[name], rates[0] / 2), rate_hi=capacities[name] + 2 * (rates[1] - rates[0]))
            line += f", bisection {found.capacity_rps:.1f}" if found.capacity_rps is not None else f", bisection: {found.reason}"
        print(line, flush=True)
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
