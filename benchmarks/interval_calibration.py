"""Are servesim's 90 % prediction intervals calibrated? Count how often a fresh seed's figure falls inside.

For each of ten small scenarios (schedulers vllm, vllm_v1, sarathi, orca, static, sjf,
fastserve, distserve; Llama-3-8B, Llama-2-7B, Qwen3-8B, Qwen2.5-32B at TP 2; light to heavy
load; 200 synthetic requests each), and for each of ``--bases`` base seeds, the interval of every
figure comes from ``--replicates`` replicates (``simulator.studies.intervals``: replicate 0 the
base seed, the others re-drawn workloads); then ``--fresh`` runs with independent seeds (never
used by a replicate) are scored: inside the interval or not. Three checks:

* ``workload``: intervals with ``step_time_relative_error: 0`` (workload spread only) against
  fresh plain runs: the interval's own claim, a new seed's figure inside ~90 % of the time
  (nominal (k - j) / (n + 1) = 90.0 % for 19 replicates).
* ``full, plain fresh``: intervals with the roofline's 6.4 % step-time error as well, against
  the same fresh plain runs: wider than the seed spread, so more than 90 % by construction
  (the model error is not in the fresh runs).
* ``full, perturbed fresh``: the same intervals against fresh runs that also carry one draw of
  the step-time error (a world where the cost model is wrong by a draw of its stated error):
  the self-consistency of the combined interval.

    python benchmarks/interval_calibration.py [--replicates 19 --fresh 20 --bases 2 --workers 2]

Prints one row per scenario and check, and the pooled coverage per figure; ``--json PATH``
writes every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import numpy as np

from simulator.cost_models.perturbed import step_time_factor
from simulator.scenario import ROOFLINE_RELATIVE_ERROR, load_scenario
from simulator.studies.executors import make_executor
from simulator.studies.intervals import Replicate, nominal_coverage, plan_replicates, prediction_interval, run_replicate

FIGURES = ("ttft_s.p50", "ttft_s.p90", "tpot_s.p50", "e2e_s.p50", "output_throughput_tps")
COMMON = ["workload.num_requests=200", "output.report=false"]
# name: overrides. Loads chosen around each setting's knee (light, near, past) by short trial runs.
SCENARIOS: dict[str, list[str]] = {
    "vllm 8B light": ["workload.arrival.rate=4"],
    "vllm 8B heavy": ["workload.arrival.rate=20"],
    "vllm_v1 8B": ["scheduler.name=vllm_v1", "workload.arrival.rate=10"],
    "sarathi 8B": ["scheduler.name=sarathi", "workload.arrival.rate=14"],
    "orca 8B": ["scheduler.name=orca", "workload.arrival.rate=8"],
    "static llama-2-7b": ["scheduler.name=static", "model.name=llama-2-7b", "workload.arrival.rate=1", "workload.prompt_tokens.max=3000"],
    "sjf 8B": ["scheduler.name=sjf", "workload.arrival.rate=14"],
    "fastserve qwen3-8b": ["scheduler.name=fastserve", "model.name=qwen3-8b", "workload.arrival.rate=10"],
    "distserve 8B": ["scheduler.name=distserve", "workload.arrival.rate=8"],
    "vllm qwen2.5-32b TP2": ["model.name=qwen2.5-32b", "cluster.tensor_parallel_size=2", "workload.arrival.rate=6"],
}
FRESH_SEED0 = 1_000_000  # fresh seeds 1e6, 1e6 + 1, ...; replicate seeds are spawned 32-bit values, base seeds 0..bases-1


def items_for(name: str, overrides: list[str], args) -> tuple[list[Replicate], dict]:
    """Every run one scenario needs, and where each lands: (kind, base, index) per item."""
    scenario = load_scenario(None, [*COMMON, *overrides, f"uncertainty.replicates={args.replicates}"])
    items: list[Replicate] = []
    where: dict = {}
    for base in range(args.bases):
        seeded = dataclasses.replace(scenario, seed=base)
        for kind, error in (("workload", 0.0), ("full", ROOFLINE_RELATIVE_ERROR)):
            for rep in plan_replicates(seeded, name, error):
                if kind == "full" and rep.index == 0:
                    continue  # the same run as the workload set's replicate 0
                where[len(items)] = (kind, base, rep.index)
                items.append(rep)
    z = np.random.default_rng(np.random.SeedSequence([FRESH_SEED0, 7])).standard_normal(args.fresh)
    for m in range(args.fresh):
        fresh = dataclasses.replace(scenario, seed=FRESH_SEED0 + m)
        for kind, factor in (("plain", 1.0), ("perturbed", step_time_factor(ROOFLINE_RELATIVE_ERROR, float(z[m])))):
            where[len(items)] = (kind, None, m)
            items.append(Replicate(m, fresh, name, factor))
    return items, where


def score(results: dict, args) -> dict:
    """Coverage counts per check and figure for one scenario: {check: {figure: [inside, total]}}."""
    checks = {"workload": ("workload", "plain"), "full, plain fresh": ("full", "plain"), "full, perturbed fresh": ("full", "perturbed")}
    out: dict = {}
    for check, (kind, fresh_kind) in checks.items():
        counts = {f: [0, 0] for f in FIGURES}
        for base in range(args.bases):
            runs = [results[("workload", base, 0)]] + [results[(kind, base, i)] for i in range(1, args.replicates)]
            for figure in FIGURES:
                values = [r.get(figure) for r in runs]
                if any(v is None for v in values):
                    continue
                lo, hi = prediction_interval(values, args.level)
                for m in range(args.fresh):
                    value = results[(fresh_kind, None, m)].get(figure)
                    if value is not None:
                        counts[figure][0] += lo <= value <= hi
                        counts[figure][1] += 1
        out[check] = counts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=19)
    parser.add_argument("--fresh", type=int, default=20)
    parser.add_argument("--bases", type=int, default=2)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    parser.add_argument("--json", help="write every count to this file")
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)
    all_items: list[Replicate] = []
    keys: list[tuple] = []
    for name in names:
        items, where = items_for(name, SCENARIOS[name], args)
        keys += [(name, *where[i]) for i in range(len(items))]
        all_items += items
    start = time.perf_counter()
    results: dict = {}
    for index, figures in make_executor("local", max_workers=args.workers).map(run_replicate, all_items, desc="runs"):
        results[keys[index]] = figures
    wall_s = time.perf_counter() - start
    report = {"machine": f"{platform.processor() or platform.machine()}, {args.workers} workers", "runs": len(all_items),
              "wall_s": round(wall_s, 1), "nominal": nominal_coverage(args.replicates, args.level), "args": vars(args), "scenarios": {}}
    pooled: dict = {}
    print(f"{len(all_items)} runs in {wall_s:.0f} s; nominal coverage {report['nominal']:.1%}")
    print("| scenario | check | " + " | ".join(FIGURES) + " |")
    print("|---|---|" + "---|" * len(FIGURES))
    for name in names:
        mine = {key[1:]: value for key, value in results.items() if key[0] == name}
        counts = score(mine, args)
        report["scenarios"][name] = counts
        for check, by_figure in counts.items():
            cells = [f"{i / t:.0%}" if t else "-" for i, t in by_figure.values()]
            print(f"| {name} | {check} | " + " | ".join(cells) + " |")
            for figure, (i, t) in by_figure.items():
                acc = pooled.setdefault(check, {}).setdefault(figure, [0, 0])
                acc[0] += i
                acc[1] += t
    report["pooled"] = pooled
    for check, by_figure in pooled.items():
        inside = sum(i for i, _ in by_figure.values())
        total = sum(t for _, t in by_figure.values())
        cells = [f"{i / t:.1%}" if t else "-" for i, t in by_figure.values()]
        print(f"| **pooled** | {check} | " + " | ".join(cells) + f" | all {inside / total:.1%} of {total}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
