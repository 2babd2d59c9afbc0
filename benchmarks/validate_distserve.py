"""servesim against DistServe's real OPT-13B measurements: per-run errors and the goodput headline.

    .venv/bin/python benchmarks/validate_distserve.py [FOLDER] [--fit] [--workers N] [--ttft-slos 200,250,300,400]

FOLDER (default ``../shared/ground-truth/distserve-opt13b-a100``) holds the DistServe authors'
``runs/*.exp`` files (``simulator.studies.validate.distserve_set``). Every run is simulated once (in
parallel, as ``servesim validate distserve:FOLDER`` does) and its per-request predictions kept.
For each file it prints measured and predicted mean / P50 / P90 TTFT and TPOT (ms) and SLO
attainment (TTFT < 200 ms and TPOT < 100 ms, the authors' alignment script's SLOs), the median
errors, then the headline: each system's goodput (the highest arrival rate whose SLO
attainment is >= 90 %, per GPU; DistServe's definition, OSDI'24 Sec. 2.2) and DistServe's over
colocated vLLM's, measured and predicted, at each TTFT SLO of ``--ttft-slos`` (ms; the paper's
OPT-13B chatbot TTFT SLO is 0.2-0.25 s).

Goodput is read off the measured rates: the highest rate whose attainment is >= 90 % with every
lower rate also >= 90 % ("highest passing"), and the rate where attainment crosses 90 % by linear
interpolation between the last passing and the first failing rate ("crossing"). Where one rate
has several files, the one with the most requests counts. DistServe c21d11 and the unnamed
placement use 3 GPUs, c21d12 4, vLLM 1.

``--fit`` adds, per engine, one fixed per-request latency outside the GPU steps (the measured
TTFT at zero prompt length that servesim lacks: HTTP API server, tokenization, Ray dispatch;
both servers ran on Ray) to every predicted TTFT, fitted on that engine's lowest-load run only
(vLLM: ``vllm-100-1``; DistServe: ``distserve-c21d11-300-3``) as the difference of the
intercepts of TTFT against prompt length (least squares over the faster half of the requests,
where no queueing is). A pure delay before the engine shifts a request's whole schedule, so TPOT
is unchanged. Errors are then reported on the other runs only (held out).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.engine.simulation import simulate  # noqa: E402
from simulator.studies.validate.distserve_set import TPOT_SLO_S, TTFT_SLO_S, distserve_runs, placement  # noqa: E402
from simulator.studies.validate.engine import scenario_for  # noqa: E402

TARGET = 0.9
GPUS = {"vllm": 1, "distserve-c21d11": 3, "distserve-c21d12": 4, "distserve": 3}
FIT_ON = {"vllm": "vllm-100-1", "distserve": "distserve-c21d11-300-3"}


def _simulate(run) -> pd.DataFrame:
    df = simulate(scenario_for(run), str(run.path)).requests.sort_values("arrival_time", kind="stable")
    return df[["arrival_time", "num_prompt_tokens", "ttft_s", "tpot_s", "e2e_s"]].reset_index(drop=True)


def intercept_s(prompt_len: np.ndarray, ttft_s: np.ndarray) -> float:
    """TTFT at zero prompt tokens (s): least squares of TTFT on prompt length, refitted 5 times on
    the half of the requests below the line (those that did not queue)."""
    a = np.vstack([np.ones(len(prompt_len)), prompt_len]).T
    keep = np.ones(len(prompt_len), dtype=bool)
    for _ in range(6):
        coef = np.linalg.lstsq(a[keep], ttft_s[keep], rcond=None)[0]
        residual = ttft_s - a @ coef
        keep = residual <= np.median(residual)
    return float(coef[0])


def attain(ttft: pd.Series, tpot: pd.Series, ttft_slo_s: float = TTFT_SLO_S) -> float:
    """Fraction of requests with TTFT < ``ttft_slo_s`` and (TPOT < 100 ms or one output token)."""
    return float(((ttft < ttft_slo_s) & (tpot.isna() | (tpot < TPOT_SLO_S))).mean())


def goodput(points: pd.DataFrame, column: str) -> tuple[float, float]:
    """(highest passing rate, interpolated 90 % crossing) in req/s of one system's (rate, attainment) rows."""
    passing, prev = 0.0, None
    for r in points.sort_values("rate").itertuples():
        value = getattr(r, column)
        if value < TARGET:
            crossing = 0.0 if prev is None else prev[0] + (prev[1] - TARGET) / (prev[1] - value) * (r.rate - prev[0])
            return passing, crossing
        passing, prev = r.rate, (r.rate, value)
    return passing, passing  # never fails in the measured range: a lower bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/ground-truth/distserve-opt13b-a100"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--fit", action="store_true", help="add a per-request latency fitted on each engine's lowest-load run")
    parser.add_argument("--ttft-slos", default="200,250,300,400", help="TTFT SLOs (ms) of the goodput sweep")
    args = parser.parse_args()
    runs = distserve_runs(args.folder)
    with ProcessPoolExecutor(args.workers) as pool:
        predicted = dict(zip([r.name for r in runs], pool.map(_simulate, runs)))
    measured = {r.name: pd.read_csv(r.requests) for r in runs}
    offset = dict.fromkeys(FIT_ON, 0.0)
    if args.fit:
        for engine, name in FIT_ON.items():
            m, p = measured[name], predicted[name]
            offset[engine] = intercept_s(m["prompt_len"].to_numpy(float), m["ttft_s"].to_numpy()) - intercept_s(
                p["num_prompt_tokens"].to_numpy(float), p["ttft_s"].to_numpy())
        print("fitted per-request latency (ms): " + ", ".join(f"{e} {1e3 * v:.1f} (on {FIT_ON[e]})" for e, v in offset.items()))
        for run in runs:
            predicted[run.name]["ttft_s"] += offset[run.engine.name]
    rows = []
    for run in runs:
        system, num, rate, _ = placement(run.name, run.name)
        m, p = measured[run.name], predicted[run.name]
        row = {"run": run.name, "system": system, "N": num, "rate": rate}
        for metric in ("ttft_s", "tpot_s"):
            for stat, f in (("mean", np.nanmean), ("p50", lambda v: np.nanpercentile(v, 50)), ("p90", lambda v: np.nanpercentile(v, 90))):
                row[f"{metric[:4]}_{stat}"] = 1e3 * f(m[metric].to_numpy())
                row[f"{metric[:4]}_{stat}_pred"] = 1e3 * f(p[metric].to_numpy())
        row["att"], row["att_pred"] = attain(m["ttft_s"], m["tpot_s"]), attain(p["ttft_s"], p["tpot_s"])
        rows.append(row)
    d = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print("per run: measured and predicted (ms; attainment as a fraction)")
    print(d.drop(columns=["system", "N", "rate"]).to_string(index=False, float_format=lambda x: f"{x:.3g}" if abs(x) < 1 else f"{x:.0f}"))
    held = d[~d["run"].isin(FIT_ON.values())] if args.fit else d
    kind = held["system"].str.startswith("vllm").map({True: "vllm", False: "distserve"})
    for system, g in [("all", held), *held.groupby(kind)]:
        line = f"{system} ({len(g)} runs{', held out' if args.fit else ''}):"
        for metric in ("ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90"):
            err = (g[f"{metric}_pred"] / g[metric] - 1) * 100
            line += f" {metric} {err.abs().median():.0f} % ({err.median():+.0f} %),"
        print(line + f" attainment {100 * (g['att_pred'] - g['att']).abs().median():.1f} points  [median |error| (median signed)]")
    headline(d, measured, predicted, [float(x) / 1e3 for x in args.ttft_slos.split(",")])


def headline(d: pd.DataFrame, measured: dict, predicted: dict, ttft_slos: list[float]) -> None:
    """Goodput per GPU of each system and DistServe's over vLLM's, measured and predicted, per TTFT SLO."""
    best = d.sort_values("N").groupby(["system", "rate"]).tail(1)
    for slo in ttft_slos:
        print(f"\ngoodput at TTFT < {slo * 1e3:.0f} ms, TPOT < {TPOT_SLO_S * 1e3:.0f} ms, >= 90 % attainment: highest passing / crossing (req/s per GPU)")
        out = {}
        for system, g in best.groupby("system"):
            g = g.assign(m=[attain(measured[n]["ttft_s"], measured[n]["tpot_s"], slo) for n in g["run"]],
                         p=[attain(predicted[n]["ttft_s"], predicted[n]["tpot_s"], slo) for n in g["run"]])
            line = f"  {system:18s} ({GPUS[system]} GPU, rates {g['rate'].min():g}-{g['rate'].max():g}):"
            for label, column in (("measured", "m"), ("servesim", "p")):
                passing, crossing = goodput(g, column)
                out[(system, label)] = (passing / GPUS[system], crossing / GPUS[system])
                line += f"  {label} {passing / GPUS[system]:.2f} / {crossing / GPUS[system]:.2f}"
            print(line)
        for system in ("distserve-c21d11", "distserve", "distserve-c21d12"):
            for label in ("measured", "servesim"):
                a, b = out[(system, label)], out[("vllm", label)]
                ratio = " / ".join(f"{x / y:.2f}x" if y else "unbounded (vLLM below 90 % at every measured rate)" for x, y in zip(a, b))
                print(f"  {system} over vllm, {label}: {ratio}")


if __name__ == "__main__":
    main()
