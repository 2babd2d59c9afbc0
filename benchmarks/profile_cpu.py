"""How long profiling and fitting take on the CPU, per operator class, and how well the fit holds out.

Profiles the tiny Llama model (``profiler/data/tiny-llama.json``, or ``--model``) on the CPU with the default CPU
sweep (``servesim profile --device cpu``), fits it (``servesim fit``), and prints the time spent
per operator kind, the fit time per operator and the held-out error per operator.

    python benchmarks/profile_cpu.py --out /tmp/cpu-tiny --fresh
    python benchmarks/profile_cpu.py --out /tmp/cpu-tiny --fresh --repeats 3
    python benchmarks/profile_cpu.py --model profiler/data/small-llama.json --out /tmp/cpu-small --fresh --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler import TINY_MODEL_CONFIG  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/servesim-cpu-tiny"), help="the bundle folder")
    parser.add_argument("--model", type=Path, default=TINY_MODEL_CONFIG, help="the model's Hugging Face config.json (default: the tiny Llama)")
    parser.add_argument("--fresh", action="store_true", help="delete the bundle first")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the sweep")
    parser.add_argument("--target", default="median_s", help="fit target: median_s, mean_s, p20_s or min_s")
    args = parser.parse_args()
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    cli = [sys.executable, "-m", "simulator.cli"]
    t0 = time.perf_counter()
    subprocess.run([*cli, "profile", "--model", str(args.model), "--device", "cpu", "--out", str(args.out), "--repeats", str(args.repeats), "-q"], check=True)
    t1 = time.perf_counter()
    subprocess.run([*cli, "fit", str(args.out), "--target", args.target, "-q"], check=True)
    t2 = time.perf_counter()

    device = json.loads((args.out / "device.json").read_text())
    report = json.loads((args.out / "fit_report.json").read_text())
    print(f"machine: {device['name']}, {device.get('torch_num_threads')} torch thread(s), torch {device['torch']}; load average at start {device['start'].get('load_average_1min')}")
    print(f"profile: {t1 - t0:.1f} s wall (incl. start-up); fit: {t2 - t1:.1f} s wall ({report['fit_s']:.1f} s fitting)")
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for run in device["runs"]:
        for kind, s in run["seconds_by_kind"].items():
            seconds[kind] = seconds.get(kind, 0.0) + s
            counts[kind] = counts.get(kind, 0) + run["measurements_by_kind"][kind]
    print(f"{'operator kind':20s} {'measurements':>12s} {'seconds':>8s}")
    for kind in seconds:
        print(f"{kind:20s} {counts[kind]:12d} {seconds[kind]:8.1f}")
    print(f"\nheld-out error ({report['folds']}-fold over shapes, target {report['target']}):")
    print(f"{'operator':22s} {'shapes':>6s} {'model':22s} {'median %':>8s} {'P95 %':>7s} {'fit s':>6s}")
    for e in report["operators"]:
        med, p95 = (("-" if v is None else f"{v:.1f}") for v in (e["median_ape_pct"], e["p95_ape_pct"]))
        print(f"{e['operator']:22s} {e['num_shapes']:6d} {e['model']:22s} {med:>8s} {p95:>7s} {e['fit_s']:6.2f}")
    s = report["summary"]
    print(f"pooled: median {s['pooled_median_ape_pct']:.1f} %, P95 {s['pooled_p95_ape_pct']:.1f} %")


if __name__ == "__main__":
    main()
