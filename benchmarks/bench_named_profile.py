"""Whole-process cost of a named imported profile against the roofline, on the Azure conversation trace.

What it does:
    Runs ``servesim run scenarios/azure-conv-llama3-8b-h100.yaml`` (Llama-3-8B, one H100, vLLM,
    the real Azure 2023 conversation trace, 19,366 requests) as separate processes, side by
    side, ``--repeats`` times each, in this order per repeat:

    1. the roofline (no profile);
    2. ``hardware.profile=aiconfigurator:h100_sxm/vllm/0.24.0`` with an empty profile cache:
       first use, so the process imports the tables, fits the runtime models and simulates;
    3. the same name again: the cached, fitted bundle is loaded and the trace simulated.

    It reports each process's wall time (median over repeats), the ratio of (3) and of (2) to
    (1), and the first-use overhead (2) - (1). Targets: (3) / (1) <= 1.5; the import and fit of
    first use under 60 s.

What it reads:
    ``../shared/traces/`` (the scenario's trace) and the installed aiconfigurator-core package.

How to run:
    python benchmarks/bench_named_profile.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "azure-conv-llama3-8b-h100.yaml"
PROFILE = "aiconfigurator:h100_sxm/vllm/0.24.0"


def run(args: list[str], cache: Path, out: Path) -> float:
    """Wall seconds of one ``servesim run`` process."""
    env = dict(os.environ, SERVESIM_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), "--quiet", "--no-report", "--out", str(out), *args],
                   cwd=REPO, env=env, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"roofline": [], "named, first use": [], "named, cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.repeats):
            cache = tmp / f"cache{i}"
            walls["roofline"].append(run([], cache, tmp / "roof"))
            walls["named, first use"].append(run(["--set", f"hardware.profile={PROFILE}"], cache, tmp / "first"))
            walls["named, cached"].append(run(["--set", f"hardware.profile={PROFILE}"], cache, tmp / "cached"))
    med = {k: statistics.median(v) for k, v in walls.items()}
    table = Table(title=f"servesim run {SCENARIO.name}: whole-process wall time, median of {args.repeats}")
    for col in ("run", "wall s", "runs (s)", "/ roofline"):
        table.add_column(col)
    for k, v in walls.items():
        table.add_row(k, f"{med[k]:.2f}", ", ".join(f"{x:.2f}" for x in v), f"{med[k] / med['roofline']:.2f}x")
    Console().print(table)
    Console().print(f"first use adds {med['named, first use'] - med['roofline']:.1f} s (import and fit of {PROFILE})")


if __name__ == "__main__":
    main()
