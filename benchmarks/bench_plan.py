"""Capacity-planning speed: configurations per minute, each a full bisection, and where the time goes.

Runs the capacity search (``find_capacity`` to the plan's tolerance) of the candidates of a plan
file on the local executor, with no cache, and reports configurations per minute (wall clock),
CPU seconds per configuration (summed over the worker processes, so it does not depend on what
else the machine runs) and the projected time of 1,000 configurations on this machine's cores.
``--profile`` runs a few bisections in this process under cProfile and splits the time into the
simulation hot loop, workload loading, metrics (pandas), the capacity search's own bookkeeping
and pickling of tasks and results.

    python benchmarks/bench_plan.py [--plan scenarios/plan-llama3-8b-azure-conv.yaml]
        [--configs 40] [--workers 2] [--max-requests 1000] [--rel-tol 0.05] [--profile]

Needs the trace the plan names (../shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import os
import pickle
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.studies.executors import make_executor  # noqa: E402
from simulator.studies.plan import CapacityTask, enumerate_candidates, load_plan, run_capacity_task  # noqa: E402
from profiler.device import cpu_model

# Profile split: cumulative time of these entry points (file suffix, function name).
ENTRY_POINTS = {
    "run": ("simulator/engine/simulation.py", "run"),
    "workload": ("simulator/workload.py", "load_workload"),
    "request_table": ("simulator/engine/metrics.py", "request_table"),
    "iteration_table": ("simulator/engine/metrics.py", "iteration_table"),
    "token_gaps": ("simulator/engine/metrics.py", "token_gaps"),
    "summarize": ("simulator/engine/metrics.py", "summarize"),
    "stopped_summary": ("simulator/studies/probe.py", "_stopped_summary"),
    "watch": ("simulator/studies/probe.py", "missed"),
    "estimate": ("simulator/studies/rates.py", "estimate_max_rate"),
    "cache": ("simulator/studies/run_cache.py", "run_key"),
    "total": ("simulator/studies/plan/tasks.py", "run_capacity_task"),
}


def timed_capacity_task(task: CapacityTask) -> tuple[float, int, float | None]:
    """(CPU seconds, probes, capacity) of one bisection, measured in the worker."""
    start = time.process_time()
    outcome = run_capacity_task(task)
    return time.process_time() - start, len(outcome.points), outcome.capacity_rps


def make_tasks(args: argparse.Namespace) -> list[CapacityTask]:
    plan = load_plan(args.plan)
    cfg = plan.config.capacity
    tasks = []
    for c in enumerate_candidates(plan):
        if c.scenario is None:
            continue
        scenario = c.scenario
        if args.max_requests:
            scenario = dataclasses.replace(scenario, workload=dataclasses.replace(scenario.workload, max_requests=args.max_requests))
        tasks.append(CapacityTask(scenario, plan.criterion, args.rel_tol or cfg.rel_tol, cfg.max_runs, cfg.rate_lo_rps, cfg.rate_hi_rps, None))
    # Interleave GPU types and parallelism so a prefix of the list is a fair sample.
    tasks = tasks[::2] + tasks[1::2]
    return tasks[: args.configs]


def profile(tasks: list[CapacityTask], num: int) -> None:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    outcomes = [run_capacity_task(t) for t in tasks[:num]]
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    cum = dict.fromkeys(ENTRY_POINTS, 0.0)
    for (filename, _, function), (_, _, _, cumtime, _) in stats.stats.items():
        for key, (suffix, name) in ENTRY_POINTS.items():
            if filename.endswith(suffix) and function == name:
                cum[key] += cumtime
    metrics = cum["request_table"] + cum["iteration_table"] + cum["token_gaps"] + cum["summarize"]
    # Simulation.run computes the metrics after the loop (directly, or in _stopped_summary);
    # the early-stop check (missed) runs inside the loop; loading the workload is part of building.
    split = {
        "simulation hot loop (replica, scheduler, KV cache, cost model, SimPy)": cum["run"] - metrics - cum["watch"],
        "early-stop check per finished request": cum["watch"],
        "metrics after each run (pandas, numpy)": metrics,
        "workload loading (trace CSV parse, per run)": cum["workload"],
        "building simulations, first-guess estimate, cache keys, other": cum["total"] - cum["run"] - cum["workload"],
    }
    print(f"profile of {num} bisections in one process ({wall:.1f} s under cProfile, {sum(len(o.points) for o in outcomes)} probes):")
    for name, seconds in split.items():
        print(f"  {name:72s} {seconds:6.2f} s  {seconds / cum['total']:6.1%}")
    # Pickling: what a worker receives and sends back per configuration.
    start = time.perf_counter()
    sizes = [len(pickle.dumps(t)) + len(pickle.dumps(o)) for t, o in zip(tasks[:num], outcomes)]
    for t, o in zip(tasks[:num], outcomes):
        pickle.loads(pickle.dumps(t))
        pickle.loads(pickle.dumps(o))
    print(f"  pickling task + result: {statistics.mean(sizes) / 1024:.1f} KiB and {(time.perf_counter() - start) / num * 1e3:.2f} ms per configuration")
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(REPO / "scenarios" / "plan-llama3-8b-azure-conv.yaml"))
    parser.add_argument("--configs", type=int, default=40, help="configurations to search (a sample of the plan's candidates)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--max-requests", type=int, help="requests per capacity run (default: the plan's)")
    parser.add_argument("--rel-tol", type=float, help="bisection tolerance (default: the plan's)")
    parser.add_argument("--profile", action="store_true", help="profile a few bisections in this process instead")
    args = parser.parse_args()
    tasks = make_tasks(args)
    print(f"date: {datetime.date.today()}  machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"plan: {Path(args.plan).name}; {len(tasks)} configurations; requests per run: {tasks[0].scenario.workload.max_requests}; rel_tol {tasks[0].rel_tol}")
    if args.profile:
        profile(tasks, min(len(tasks), 6))
        return
    executor = make_executor("local", max_workers=args.workers, progress=False)
    start = time.perf_counter()
    results = [r for _, r in executor.map(timed_capacity_task, tasks)]
    wall = time.perf_counter() - start
    cpu = [r[0] for r in results]
    probes = [r[1] for r in results]
    per_min = len(tasks) / wall * 60
    ideal = 60 / statistics.mean(cpu) * args.workers
    print(f"wall: {wall:.1f} s with {args.workers} workers -> {per_min:.1f} configurations/min; 1,000 would take {1000 / per_min:.1f} min")
    print(f"CPU per configuration: mean {statistics.mean(cpu):.2f} s, median {statistics.median(cpu):.2f} s; probes: mean {statistics.mean(probes):.1f}")
    print(f"on {args.workers} otherwise idle cores: {ideal:.1f} configurations/min; 1,000 in {1000 / ideal:.1f} min")


if __name__ == "__main__":
    main()
