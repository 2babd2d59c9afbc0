"""Held-out error of runtime models fitted to imported aiconfigurator-core tables, per GPU and operator.

What it does:
    For each GPU system's vLLM tables in the installed aiconfigurator-core package it imports a
    profile bundle of one model (``servesim profile import``'s code path: Llama-3-8B by default,
    at TP 1 and 2), fits it (``servesim fit``: K-fold over shapes, 5 folds) and reports, per
    operator that the tables measure (filled operators are left out: their rows are the
    roofline, so their error says nothing), the median and 95th percentile of the absolute
    percentage error of the out-of-fold predictions, pooled over the TP degrees. The score is
    taken over the rows the tables measured exactly; an operator with none (a shard width
    between two grid widths) is scored on its interpolated rows and marked so.

    For context it also reports the data's own point-to-point predictability: each shape
    predicted from its two neighbours along the sweep axis (linear in log-log, measured
    efficiency held), leaving that shape out. Where even the neighbours miss by more than a
    target, the table has steps no smooth model can see (cuBLAS and FlashAttention pick another
    kernel at some batch sizes: on H100 a 6,144 x 4,096 GEMM takes 21.8 us at 160 rows, 29.7 us
    at 161 and 23.3 us at 193). ``gemm_predictability`` does the same over the whole raw GEMM
    table of each system.

What it reads:
    The installed package's parquet tables (never copied); the system list defaults to H100,
    A100, L40S, H200 and B200.

How to run:
    python benchmarks/imported_fit_error.py [--model llama-3-8b] [--tp 1,2] [--systems h100_sxm,a100_sxm]

It prints one rich table per GPU and a summary; about 10 s per system on one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from profiler import bundle  # noqa: E402
from profiler.catalogue import SHAPE_COLUMNS  # noqa: E402
from profiler.fit import aggregate_repeats, ape, cross_validate, fit_bundle  # noqa: E402
from profiler.features import axes  # noqa: E402
from profiler.imports import import_profile  # noqa: E402
from profiler.imports.aiconfigurator import available  # noqa: E402
from simulator.specs.model import bundled_model_spec  # noqa: E402

SYSTEMS = ("h100_sxm", "a100_sxm", "l40s", "h200_sxm", "b200_sxm")


def neighbour_error(rows: pd.DataFrame, kind: str) -> np.ndarray:
    """|error| (%) of predicting each shape from its two neighbours on the first sweep axis (log-log in time/work)."""
    axis = axes(kind)[0]
    others = [c for c in SHAPE_COLUMNS[kind] if c != axis]
    out = []
    work = np.maximum(rows["flops"].to_numpy(np.float64), rows["nbytes"].to_numpy(np.float64) * 300)  # a ridge near H100's
    rows = rows.assign(_r=np.log(rows["median_s"].to_numpy() / np.maximum(work, 1.0)))
    for _, g in rows.groupby(others + ["tp"]):
        g = g.sort_values(axis)
        x, r = np.log(g[axis].to_numpy(np.float64)), g["_r"].to_numpy()
        for i in range(1, len(x) - 1):
            p = r[i - 1] + (r[i + 1] - r[i - 1]) * (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1])
            out.append(100 * abs(np.exp(p - r[i]) - 1))
    return np.asarray(out)


def gemm_predictability(system: str, version: str) -> dict[str, tuple[float, float]]:
    """Leave-one-out over every bf16 GEMM of the raw table (n, k 1,024 .. 32,768): median and P95 |error| %.

    Each measured (m, n, k) is predicted from the two measured neighbours along m, or along k, at
    its measured efficiency (time over the roofline at the system's datasheet peaks, linear in
    log m or log k), or along m corrected by how far its neighbouring widths (n and k one grid
    step either way) deviate from their own interpolation at that m ("transfer").
    """
    from profiler.imports.aiconfigurator import package_root, system_spec

    root = package_root()
    gpu, _ = system_spec(root, system)
    d = pd.read_parquet(root / "data" / system / "gemm" / "vllm" / version / "gemm_perf.parquet")
    d = d[(d.gemm_dtype == "bfloat16") & d.n.between(1024, 32768) & d.k.between(1024, 32768)]
    flops, nbytes = 2.0 * d.m * d.n * d.k, 2.0 * (d.m * d.k + d.k * d.n + d.m * d.n)
    d = d.assign(r=np.log(d.latency * 1e-3 / np.maximum(flops / gpu.bf16_flops, nbytes / gpu.memory_bandwidth)))
    piv = d.pivot_table(index="m", columns=["n", "k"], values="r")
    ns, ks, x = sorted(d.n.unique()), sorted(d.k.unique()), np.log(piv.index.to_numpy(np.float64))

    def between(col: np.ndarray, xs: np.ndarray, i: int) -> float:
        return col[i - 1] + (col[i + 1] - col[i - 1]) * (xs[i] - xs[i - 1]) / (xs[i + 1] - xs[i - 1])

    errs: dict[str, list[float]] = {"along m": [], "along k": [], "along m + transfer": []}
    for (n, k) in piv.columns:
        col = piv[(n, k)].to_numpy()
        i_n, i_k = ns.index(n), ks.index(k)
        near = [c for c in [(ns[i_n + a], k) for a in (-1, 1) if 0 <= i_n + a < len(ns)] + [(n, ks[i_k + a]) for a in (-1, 1) if 0 <= i_k + a < len(ks)] if c in piv.columns]
        for i in range(1, len(x) - 1):
            lin = between(col, x, i)
            dev = [piv[c].to_numpy()[i] - between(piv[c].to_numpy(), x, i) for c in near]
            errs["along m"].append(abs(np.exp(lin - col[i]) - 1))
            errs["along m + transfer"].append(abs(np.exp(lin + (np.median(dev) if dev else 0.0) - col[i]) - 1))
    for (m, n), g in d.groupby(["m", "n"]):
        g = g.sort_values("k")
        xk, r = np.log(g.k.to_numpy(np.float64)), g.r.to_numpy()
        errs["along k"] += [abs(np.exp(between(r, xk, i) - r[i]) - 1) for i in range(1, len(xk) - 1)]
    return {name: (100 * float(np.median(v)), 100 * float(np.percentile(v, 95))) for name, v in errs.items()}


def system_errors(system: str, version: str, model_name: str, tps: tuple[int, ...]) -> pd.DataFrame:
    """One row per (operator, dtype): the fit's held-out median and P95, the neighbours' median and P95, origins."""
    model = bundled_model_spec(model_name)
    with tempfile.TemporaryDirectory() as tmp:
        out = import_profile(f"aiconfigurator:{system}/vllm/{version}", model, tps, Path(tmp) / "b")
        report = fit_bundle(out, html=False)
        tables = bundle.read_tables(out)
        num_units = int(bundle.read_json(out / bundle.DEVICE).get("num_compute_units") or 1)
        records = []
        for kind, frame in tables.items():
            frame = frame[~frame["timer"].str.endswith((":filled", ":assumed"))]
            for (op, impl, dtype), rows in frame.groupby(["operator", "implementation", "dtype"]):
                # Score on measured rows; interpolated ones (a width between grid widths, a message
                # size between measured sizes) only where an operator has no measured row at all.
                measured = rows[rows["timer"].str.endswith(":measured")]
                origin = "measured" if len(measured) else "interpolated"
                rows = aggregate_repeats(measured if len(measured) else rows, kind, "median_s").reset_index(drop=True)
                pred = cross_validate(rows, kind, num_units, 5)
                entry = next(e for e in report["operators"] if (e["operator"], e["implementation"], e["dtype"]) == (op, impl, dtype))
                err = ape(pred[entry["model"]], rows["median_s"].to_numpy()) if pred else np.array([np.nan])
                nb = neighbour_error(rows, kind)
                records.append({"operator": op, "implementation": impl, "dtype": dtype, "origin": origin, "shapes": len(rows), "model": entry["model"],
                                "median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
                                "neighbour_median": float(np.median(nb)) if len(nb) else np.nan,
                                "neighbour_p95": float(np.percentile(nb, 95)) if len(nb) else np.nan})
    return pd.DataFrame(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="llama-3-8b")
    parser.add_argument("--tp", default="1,2")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    tps = tuple(int(x) for x in args.tp.split(","))
    have = available()
    console = Console(width=140)
    summary = []
    for system in args.systems.split(","):
        version = have[system]["vllm"][-1]
        t0 = time.perf_counter()
        df = system_errors(system, version, args.model, tps)
        table = Table(title=f"{system} vllm {version}: {args.model} TP {args.tp}, held-out |error| % (5-fold over shapes) [{time.perf_counter() - t0:.0f} s]")
        for col in ("operator", "implementation", "dtype", "rows", "shapes", "model", "median", "P95", "neighbours median", "neighbours P95"):
            table.add_column(col, justify="left" if col in ("operator", "implementation", "dtype", "rows", "model") else "right")
        for r in df.itertuples():
            table.add_row(r.operator, r.implementation[:28], r.dtype, r.origin, str(r.shapes), r.model, f"{r.median:.1f}", f"{r.p95:.1f}",
                          f"{r.neighbour_median:.1f}", f"{r.neighbour_p95:.1f}")
        console.print(table)
        loo = gemm_predictability(system, version)
        console.print(f"{system}: the raw GEMM table left one out, median / P95 |error| %: "
                      + "; ".join(f"{name} {med:.1f} / {p95:.1f}" for name, (med, p95) in loo.items()))
        bf16 = df[df["dtype"] == "bfloat16"]
        summary.append((system, version, len(bf16), int((bf16["median"] <= 3).sum()), int((bf16["p95"] <= 8).sum()),
                        float(bf16["median"].max()), float(bf16["p95"].max())))
    t = Table(title="bf16 operators meeting median <= 3 % and P95 <= 8 %")
    for col in ("system", "vllm", "operators", "median <= 3 %", "P95 <= 8 %", "worst median", "worst P95"):
        t.add_column(col)
    for s in summary:
        t.add_row(s[0], s[1], str(s[2]), str(s[3]), str(s[4]), f"{s[5]:.1f}", f"{s[6]:.1f}")
    console.print(t)


if __name__ == "__main__":
    main()
