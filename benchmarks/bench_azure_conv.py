"""Whole-process wall time and peak memory of simulating the full Azure conversation trace.

Runs ``servesim run scenarios/azure-conv-llama3-8b-h100.yaml`` (19,366 requests, Llama-3-8B on
one H100-SXM, vLLM scheduler, roofline cost model) as a fresh process, several times, and
reports the median wall time and the peak resident memory of the process, with the machine and
date. The HTML report is included unless --no-report is given.

    python benchmarks/bench_azure_conv.py [--repeats 3] [--no-report] [--trace PATH]

Needs the public trace at ../shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv (or
--trace).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from profiler.device import cpu_model

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "azure-conv-llama3-8b-h100.yaml"


def run_once(extra: list[str]) -> tuple[float, float]:
    """One fresh ``servesim run`` process: (wall time s, peak RSS MiB)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), "--quiet", "--out", out, *extra]
        start = time.perf_counter()
        # A child per run, so RUSAGE_CHILDREN's max RSS is this run's (runs only grow it; take the max).
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--trace", help="path to AzureLLMInferenceTrace_conv.csv")
    args = parser.parse_args()
    extra = ["--no-report"] if args.no_report else []
    if args.trace:
        extra += ["--set", f"workload.trace={args.trace}"]
    runs = [run_once(extra) for _ in range(args.repeats)]
    walls = [w for w, _ in runs]
    peak = max(m for _, m in runs)
    print(f"date: {datetime.date.today()}  machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"scenario: {SCENARIO.relative_to(REPO)}{' --no-report' if args.no_report else ''}")
    print(f"wall time: median {statistics.median(walls):.2f} s over {len(walls)} runs (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"peak memory: {peak:.0f} MiB (max RSS of the servesim process)")


if __name__ == "__main__":
    main()
