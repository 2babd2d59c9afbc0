"""servesim against DistServe's real OPT-13B measurements: per-run errors and the goodput headline.

    .venv/bin/python benchmarks/validate_distserve.py [FOLDER] [--workers N] [--no-cache]

FOLDER (default ``../shared/ground-truth/distserve-opt13b-a100``) holds the DistServe authors'
``runs/*.exp`` files (``simulator.validate.distserve_set``). For each file it prints measured
and predicted mean / P50 / P90 TTFT and TPOT (ms) and SLO attainment (TTFT < 200 ms and TPOT <
100 ms, the authors' alignment script's SLOs), then the headline: each system's goodput (the
highest arrival rate whose SLO attainment is >= 90 %, per GPU; DistServe's definition, OSDI'24
Sec. 2.2) and DistServe's over colocated vLLM's, from the measurements and from servesim.

Goodput is also scored with looser TTFT SLOs (``--ttft-slos``, ms; the paper's OPT-13B chatbot
TTFT SLO is 0.2-0.25 s), from the measured per-request times and from servesim's own
per-request predictions of the same runs.

Goodput is read off the measured rates: the highest rate whose attainment is >= 90 % with every
lower rate also >= 90 % ("highest passing"), and the rate where attainment crosses 90 % by linear
interpolation between the last passing and the first failing rate ("crossing"). Where one rate
has several files, the one with the most requests counts. DistServe is the c21d11 placement
(3 GPUs, the placement of the authors' alignment script), vLLM 1 GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.simulation import simulate  # noqa: E402
from simulator.validate.distserve_set import TPOT_SLO_S, distserve_runs, placement  # noqa: E402
from simulator.validate.engine import scenario_for, validate  # noqa: E402

TARGET = 0.9
GPUS = {"vllm": 1, "distserve-c21d11": 3, "distserve-c21d12": 4, "distserve": 3}


def goodput(points: pd.DataFrame, column: str) -> tuple[float, float]:
    """(highest passing rate, interpolated 90 % crossing) in req/s of one system's (rate, attainment) rows."""
    points = points.sort_values("rate")
    passing, crossing = 0.0, 0.0
    prev = None
    for r in points.itertuples():
        value = getattr(r, column)
        if value < TARGET:
            if prev is None:
                crossing = 0.0
            else:
                crossing = prev[0] + (prev[1] - TARGET) / (prev[1] - value) * (r.rate - prev[0])
            return passing, crossing
        passing, prev = r.rate, (r.rate, value)
    return passing, passing  # never fails in the measured range: a lower bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/ground-truth/distserve-opt13b-a100"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--only", default=None, help="keep runs whose name starts with this")
    parser.add_argument("--ttft-slos", default="200,250,300,400", help="TTFT SLOs (ms) of the goodput sweep")
    args = parser.parse_args()
    runs = distserve_runs(args.folder)
    if args.only:
        runs = [r for r in runs if r.name.startswith(args.only)]
    cache = None if args.no_cache else Path("reports/validate/distserve-cache")
    result = validate(runs, cache, workers=args.workers, progress=False)
    rows = []
    for run in runs:
        system, num, rate, _ = placement(run.name, run.name)
        pred = result.predicted[run.name]
        row = {"run": run.name, "system": system, "N": num, "rate": rate,
               "att": run.measured.slo_attainment, "att_pred": pred["summary"]["slo_attainment"]}
        for metric, col in (("ttft_s", "ttft_s"), ("tpot_s", "tpot_s")):
            for stat in ("mean", "p50", "p90"):
                row[f"{metric[:4]}_{stat}"] = 1e3 * getattr(run.measured, metric)[stat]
                row[f"{metric[:4]}_{stat}_pred"] = 1e3 * pred["stats"][col][stat]
        rows.append(row)
    d = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    show = d[["run", "ttft_mean", "ttft_mean_pred", "ttft_p50", "ttft_p50_pred", "ttft_p90", "ttft_p90_pred",
              "tpot_mean", "tpot_mean_pred", "tpot_p50", "tpot_p50_pred", "tpot_p90", "tpot_p90_pred", "att", "att_pred"]]
    print("per run: measured and predicted (ms; attainment as a fraction)")
    print(show.to_string(index=False, float_format=lambda x: f"{x:.3g}" if abs(x) < 1 else f"{x:.0f}"))
    for metric in ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90"):
        err = (d[f"{metric}_pred"] / d[metric] - 1) * 100
        print(f"{metric}: median |error| {err.abs().median():.0f} % (median signed {err.median():+.0f} %)")
    print(f"SLO attainment: median |error| {100 * (d['att_pred'] - d['att']).abs().median():.1f} points")
    headline(d, runs, [float(x) / 1e3 for x in args.ttft_slos.split(",")])


def _attain(ttft: pd.Series, tpot: pd.Series, ttft_slo_s: float) -> float:
    return float(((ttft < ttft_slo_s) & (tpot.isna() | (tpot < TPOT_SLO_S))).mean())


def headline(d: pd.DataFrame, runs: list, ttft_slos: list[float]) -> None:
    """Goodput per GPU of each system and DistServe's over vLLM's, measured and predicted, per TTFT SLO."""
    best = d.sort_values("N").groupby(["system", "rate"]).tail(1)
    by_name = {r.name: r for r in runs}
    per_request = {}
    for name in best["run"]:
        run = by_name[name]
        measured = pd.read_csv(run.requests)
        predicted = simulate(scenario_for(run), str(run.path)).requests
        per_request[name] = (measured, predicted)
    for slo in ttft_slos:
        print(f"\ngoodput at TTFT < {slo * 1e3:.0f} ms, TPOT < {TPOT_SLO_S * 1e3:.0f} ms, >= 90 % attainment: highest passing / crossing (req/s per GPU)")
        out = {}
        for system, g in best.groupby("system"):
            g = g.copy()
            g["m"] = [_attain(per_request[n][0]["ttft_s"], per_request[n][0]["tpot_s"], slo) for n in g["run"]]
            g["p"] = [_attain(per_request[n][1]["ttft_s"], per_request[n][1]["tpot_s"], slo) for n in g["run"]]
            line = f"  {system:18s} ({GPUS[system]} GPU, rates {g['rate'].min():g}-{g['rate'].max():g}):"
            for label, column in (("measured", "m"), ("servesim", "p")):
                passing, crossing = goodput(g, column)
                out[(system, label)] = (passing / GPUS[system], crossing / GPUS[system])
                line += f"  {label} {passing / GPUS[system]:.2f} / {crossing / GPUS[system]:.2f}"
            print(line)
        for system in ("distserve-c21d11", "distserve", "distserve-c21d12"):
            for label in ("measured", "servesim"):
                a, b = out[(system, label)], out[("vllm", label)]
                ratio = " / ".join(f"{x / y:.2f}x" if y else "inf (vLLM below 90 % at every measured rate)" for x, y in zip(a, b))
                print(f"  {system} over vllm, {label}: {ratio}")


if __name__ == "__main__":
    main()
