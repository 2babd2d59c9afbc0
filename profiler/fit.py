"""``servesim fit``: one regressor per operator, its held-out error, and the runtime model's tables.

For every (operator, implementation, dtype) of the bundle, each candidate of
``profiler.estimators`` is scored by K-fold cross-validation over shapes (``GroupKFold`` with one
group per shape, so repeats of a shape never sit on both sides of a split): the absolute
percentage error |predicted - measured| / measured of every held-out row, summarized by its
median and 95th percentile. The candidate with the lowest median + P95 is refitted on all rows.
(Picking the best of three on the same folds makes the reported error slightly optimistic.)

The simulator never runs these regressors per step. The fit evaluates them once over dense grids
of the measured range, at the bundle's TP shard shapes, and saves the tables
(``runtime_model.npz``, described by ``runtime_model.json``):

    token operators       every integer token count 1 .. the largest measured
    sampled operators     every integer 1 .. the most sampled requests measured
    attention_decode      every batch size 1 .. max measured x a log grid of context tokens
    attention_prefill     chunk tokens (every integer to 256, then a 1.5 % log grid) x cached
                          prefix (0 and a log grid), one sequence per chunk
    cpu_overhead          every request count 1 .. max measured

Every grid point that was measured holds its measurement (the least disturbed repeat); the
model fills in between and beyond. Where several implementations were measured (PyTorch and
Triton on a GPU), the table keeps the faster at every grid point: a serving engine runs the
best kernel it has for each shape.
Measuring several prefill chunks per launch gives ``prefill_saving_s``, what each extra chunk
saves over launching it alone (a launch and a ramp-up on a GPU; about zero for the CPU loop).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiler import bundle
from profiler.catalogue import (
    ALL_REDUCE, ATTENTION_DECODE, ATTENTION_PREFILL, CPU_OVERHEAD, DTYPE_BYTES, ELEMENTWISE, GEMM, OPERATORS,
    SHAPE_COLUMNS, decode_counts, elementwise_bytes, gemm_counts, prefill_counts,
)
from profiler.estimators import CANDIDATES, PhysicsInterpolated
from simulator.errors import ScenarioError

RUNTIME_MODEL = "runtime_model.json"
RUNTIME_TABLES = "runtime_model.npz"
FIT_REPORT = "fit_report.json"
FIT_HTML = "fit_report.html"
RUNTIME_FORMAT = 1


def ape(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Absolute percentage error (%)."""
    return 100.0 * np.abs(predicted - measured) / measured


def aggregate_repeats(frame: pd.DataFrame, kind: str, target: str) -> pd.DataFrame:
    """One row per measured shape: the minimum of its repeats' ``target``; ``num_repeats`` counts them.

    Each repeat is a separate pass over the sweep, minutes apart, and each pass's statistic is
    the operator's cost plus whatever other processes added while that pass measured it (cache
    and memory-bandwidth contention, which the thread's CPU time still counts). That addition is
    never negative, so the least disturbed pass is the smallest (Chen and Revels, "Robust
    benchmarking in noisy environments", HPEC 2016). On the two-core development host, with
    three passes of the tiny model, a median of three still kept shapes that two of the passes
    had measured slow.
    """
    keys = ["operator", "implementation", "dtype", "tp", *SHAPE_COLUMNS[kind]]
    agg = frame.groupby(keys, sort=True).agg(**{target: (target, "min"),
                                              "flops": ("flops", "first"), "nbytes": ("nbytes", "first"),
                                              "num_repeats": (target, "size")})
    return agg.reset_index()


def _shape_groups(frame: pd.DataFrame, kind: str) -> np.ndarray:
    cols = ["tp", *SHAPE_COLUMNS[kind]]
    return frame[cols].astype(str).agg("|".join, axis=1).to_numpy()


def cross_validate(frame: pd.DataFrame, kind: str, num_units: int, folds: int, target: str = "median_s") -> dict[str, np.ndarray] | None:
    """Out-of-fold predictions (s) of every candidate over ``folds`` shape groups, or None with too few shapes.

    One ``PhysicsInterpolated`` per fold yields all three candidates' predictions (it holds the
    boosted model, which holds the linear prior), so each fold fits one tree ensemble.
    """
    from sklearn.model_selection import GroupKFold

    groups = _shape_groups(frame, kind)
    n_shapes = len(set(groups))
    if n_shapes < 4:
        return None
    y = frame[target].to_numpy(np.float64)
    pred = {name: np.empty_like(y) for name in CANDIDATES}
    for train, test in GroupKFold(n_splits=min(folds, n_shapes)).split(frame, y, groups):
        est = PhysicsInterpolated(kind, num_units).fit(frame.iloc[train], y[train])
        held_out = frame.iloc[test]
        pred["physics_linear"][test] = est.fallback_.prior_.predict(held_out)
        pred["physics_boosted"][test] = est.fallback_.predict(held_out)
        pred["physics_interpolated"][test] = est.predict(held_out)
    return pred


def _fit_operator(frame: pd.DataFrame, kind: str, num_units: int, folds: int, target: str) -> tuple[Any, dict[str, Any], np.ndarray | None]:
    """Score every candidate, refit the best on all rows: (estimator, report entry, out-of-fold predictions)."""
    import sklearn

    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):  # hundreds of small fits
        return _fit_operator_unchecked(frame, kind, num_units, folds, target)


def _fit_operator_unchecked(frame: pd.DataFrame, kind: str, num_units: int, folds: int, target: str) -> tuple[Any, dict[str, Any], np.ndarray | None]:
    t0 = time.perf_counter()
    y = frame[target].to_numpy(np.float64)
    oof = cross_validate(frame, kind, num_units, folds, target) or {}
    scores = {}
    for name, pred in oof.items():
        errors = ape(pred, y)
        scores[name] = {"median_ape_pct": float(np.median(errors)), "p95_ape_pct": float(np.percentile(errors, 95))}
    if scores:
        best = min(scores, key=lambda n: scores[n]["median_ape_pct"] + scores[n]["p95_ape_pct"])
    else:
        best = "physics_boosted"
    estimator = CANDIDATES[best](kind, num_units).fit(frame, y)
    entry: dict[str, Any] = {
        "num_rows": int(len(frame)), "num_shapes": int(len(set(_shape_groups(frame, kind)))), "model": best,
        "median_ape_pct": scores.get(best, {}).get("median_ape_pct"), "p95_ape_pct": scores.get(best, {}).get("p95_ape_pct"),
        "max_ape_pct": float(np.max(ape(oof[best], y))) if best in oof else None,
        "candidates": scores, "fit_s": round(time.perf_counter() - t0, 3),
    }
    return estimator, entry, oof.get(best)


# -- grids ---------------------------------------------------------------------------------------
def _int_axis(high: int) -> np.ndarray:
    return np.arange(1, int(high) + 1, dtype=np.int64)


def _log_axis(low: int, high: int, num: int, measured: np.ndarray, dense_below: int = 0) -> np.ndarray:
    """Integers: every one up to ``dense_below``, ``num`` log-spaced to ``high``, and the measured values."""
    values = [np.asarray(measured, dtype=np.int64)]
    if dense_below:
        values.append(np.arange(low, min(high, dense_below) + 1))
    if high > low:
        values.append(np.round(np.geomspace(max(low, 1), high, num)).astype(np.int64))
    axis = np.unique(np.concatenate(values))
    return axis[(axis >= low) & (axis <= high)]


def _grid_frame(kind: str, operator: str, dtype: str, rows: pd.DataFrame, axes: list[np.ndarray], float_dtype: str) -> pd.DataFrame:
    """The rows to predict for one table: the measured fixed columns with the axes' cartesian product."""
    fixed = rows.iloc[0]
    mesh = np.meshgrid(*axes, indexing="ij")
    flat = [a.ravel() for a in mesh]
    b = DTYPE_BYTES[float_dtype]
    n = len(flat[0])
    frame: dict[str, np.ndarray] = {c: np.full(n, fixed[c]) for c in SHAPE_COLUMNS[kind]}
    if kind == GEMM:
        frame["m"] = flat[0]
        frame["flops"], frame["nbytes"] = gemm_counts(flat[0].astype(np.float64), float(fixed["n"]), float(fixed["k"]), dtype)
    elif kind == ELEMENTWISE:
        frame["num_tokens"] = flat[0]
        frame["flops"] = np.zeros(n)
        frame["nbytes"] = elementwise_bytes(operator, flat[0].astype(np.float64), float(fixed["width"]), b)
    elif kind == ALL_REDUCE:
        frame["num_tokens"] = flat[0]
        frame["flops"], frame["nbytes"] = np.zeros(n), flat[0] * float(fixed["width"]) * b
    elif kind == CPU_OVERHEAD:
        frame["num_seqs"] = flat[0]
        frame["flops"], frame["nbytes"] = np.zeros(n), np.zeros(n)
    elif kind == ATTENTION_DECODE:
        frame["num_seqs"], frame["context_tokens"] = flat
        frame["flops"], frame["nbytes"] = decode_counts(flat[0].astype(np.float64), flat[1].astype(np.float64),
                                                        float(fixed["num_heads"]), float(fixed["num_kv_heads"]), float(fixed["head_dim"]), b)
    elif kind == ATTENTION_PREFILL:
        frame["num_seqs"] = np.ones(n, dtype=np.int64)
        frame["new_tokens"], frame["prefix_tokens"] = flat
        frame["flops"], frame["nbytes"] = prefill_counts(1.0, flat[0].astype(np.float64), flat[1].astype(np.float64),
                                                         float(fixed["num_heads"]), float(fixed["num_kv_heads"]), float(fixed["head_dim"]), b)
    return pd.DataFrame(frame)


def _table_axes(kind: str, rows: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """The axis names and grid values of one table, spanning the measured range of ``rows``."""
    if kind in (GEMM, ELEMENTWISE, ALL_REDUCE):
        col = "m" if kind == GEMM else "num_tokens"
        return ["num_tokens"], [_int_axis(rows[col].max())]
    if kind == CPU_OVERHEAD:
        return ["num_seqs"], [_int_axis(rows["num_seqs"].max())]
    if kind == ATTENTION_DECODE:
        ctx = rows["context_tokens"].to_numpy()
        return ["num_seqs", "context_tokens"], [_int_axis(rows["num_seqs"].max()), _log_axis(int(ctx.min()), int(ctx.max()), 48, ctx)]
    single = rows[rows["num_seqs"] == 1]
    single = single if len(single) else rows
    new, prefix = single["new_tokens"].to_numpy(), single["prefix_tokens"].to_numpy()
    high = int(new.max())
    num = math.ceil(math.log(high / 256) / math.log(1.015)) + 1 if high > 256 else 2  # 1.5 % steps past 256
    n_axis = _log_axis(int(new.min()), high, num, new, dense_below=256)
    nonzero = prefix[prefix > 0]
    c_axis = np.unique(np.concatenate([[0] if (prefix == 0).any() else [], _log_axis(int(nonzero.min()), int(nonzero.max()), 24, nonzero) if len(nonzero) else []])).astype(np.int64)
    return ["new_tokens", "prefix_tokens"], [n_axis, c_axis]


def _covered(kind: str, rows: pd.DataFrame, grid: pd.DataFrame) -> np.ndarray:
    """Grid points at or below some measured shape of ``rows`` on every sweep axis (booleans)."""
    from profiler import features

    names = features.axes(kind)
    measured = rows[names].to_numpy(np.float64)
    points = grid[names].to_numpy(np.float64)
    cover = np.zeros(len(points), dtype=bool)
    for shape in np.unique(measured, axis=0):
        cover |= (points <= shape).all(axis=1)
    return cover


def _snap_to_measured(kind: str, predicted: np.ndarray, grid: pd.DataFrame, rows: pd.DataFrame, target: str) -> np.ndarray:
    """``predicted`` (s, one per grid row) with every grid point that was measured set to its measurement.

    A measured shape is priced by what was measured there (``rows``: one aggregated row per
    shape); the fitted model fills in between. The selected model is the one that predicts
    unmeasured shapes best, which need not pass through every measured one: on the CPU, GEMMs of
    2 and 3 rows run kernels no other row count runs, and the linear model chosen for the small
    Llama's gate/up projection did not pass through its own measurement at 3 rows.
    """
    from profiler import features

    names = features.axes(kind)
    if kind == ATTENTION_PREFILL:  # the tables hold one chunk per launch
        rows = rows[rows["num_seqs"] == 1]
    measured = rows.astype({n: np.int64 for n in names}).groupby(names, as_index=False)[target].min()
    found = grid[names].astype(np.int64).merge(measured, on=names, how="left")[target].to_numpy(np.float64)  # grid order kept
    return np.where(np.isfinite(found), found, predicted)


def _prefill_saving(rows: pd.DataFrame, target: str) -> float:
    """Median over measured (chunk, prefix) of (k T_1 - T_k) / (k - 1): what each extra chunk in a launch saves (s), >= 0."""
    single = rows[rows["num_seqs"] == 1].groupby(["new_tokens", "prefix_tokens"])[target].median()
    savings = []
    for (k, n, c), t_k in rows[rows["num_seqs"] > 1].groupby(["num_seqs", "new_tokens", "prefix_tokens"])[target].median().items():
        if (n, c) in single.index:
            t1 = single[(n, c)]
            savings.append(min(max((k * t1 - t_k) / (k - 1), 0.0), t1))
    return float(np.median(savings)) if savings else 0.0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def table_name(operator: str, dtype: str, tp: int, width: int | None = None) -> str:
    """Key of a table in runtime_model.npz/json: ``operator|dtype|tpN`` (``|wW`` for per-width tables)."""
    return f"{operator}|{dtype}|tp{tp}" + (f"|w{width}" if width is not None else "")


# -- the fit ---------------------------------------------------------------------------------
def fit_bundle(root: Path, folds: int = 5, html: bool = True, progress: bool = False, target: str = "median_s") -> dict[str, Any]:
    """Fit every operator of the bundle at ``root``; write the runtime model and the fit report.

    Args:
        root: the profile bundle folder.
        folds: K of the K-fold cross-validation over shapes.
        html: also write ``fit_report.html``.
        progress: print one line per operator to stderr.
        target: the timing column fitted: ``median_s`` (the default), ``mean_s``, ``p20_s`` or
            ``min_s``. On a dedicated machine they agree within a few percent. On a shared host
            the minimum is the least disturbed estimate of an operator's own cost (Chen and
            Revels, "Robust benchmarking in noisy environments", HPEC 2016), but a step is a sum
            of operators and sums add means, not minima: to predict steps on the host that was
            measured, fit the median or the mean. Repeats of a shape (separate passes) are
            combined first, by their minimum: the least disturbed pass (``aggregate_repeats``).

    Returns:
        the fit report (also written to ``fit_report.json``).

    Raises:
        ScenarioError: ``root`` is not a profile bundle or holds no measurements.
    """
    import sys

    t_start = time.perf_counter()
    root = Path(root)
    manifest = bundle.read_json(root / bundle.MANIFEST) if root.is_dir() else None
    if manifest is None:
        raise ScenarioError(str(root), "", ..., "not a profile bundle (no profile.json)", "give a folder written by `servesim profile --out DIR`")
    device = bundle.read_json(root / bundle.DEVICE) or {}
    num_units = int(device.get("num_compute_units") or 1)
    float_dtype = manifest["dtype"]
    tables = bundle.read_tables(root)
    if not tables:
        raise ScenarioError(str(root), "", ..., "holds no measurements yet", "run `servesim profile` into it first (it resumes)")
    tps = list(manifest["tensor_parallel_sizes"])
    if target not in ("median_s", "mean_s", "p20_s", "min_s"):
        raise ScenarioError("--target", "", target, "unknown timing column", "use median_s, mean_s, p20_s or min_s")
    report_ops: list[dict[str, Any]] = []
    oof_points: list[pd.DataFrame] = []
    arrays: dict[str, np.ndarray] = {}
    table_meta: dict[str, dict[str, Any]] = {}
    estimators: dict[tuple[str, str, str], Any] = {}
    prefill_saving: dict[str, float] = {}

    for kind, frame in tables.items():
        frame = frame[frame["implementation"] != "link_model"]
        frame = aggregate_repeats(frame[frame[target] > 0], kind, target)
        for (operator, impl, dtype), rows in frame.groupby(["operator", "implementation", "dtype"], sort=True):
            rows = rows.reset_index(drop=True)
            est, entry, oof = _fit_operator(rows, kind, num_units, folds, target)
            estimators[operator, impl, dtype] = est
            entry = {"operator": operator, "kind": kind, "implementation": impl, "dtype": dtype, **entry}
            report_ops.append(entry)
            if oof is not None:
                oof_points.append(pd.DataFrame({"operator": operator, "implementation": impl, "dtype": dtype, "tp": rows["tp"],
                                                "measured_s": rows[target], "predicted_s": oof,
                                                "shape": _shape_groups(rows, kind)}))
            if progress:
                print(f"fit {operator} [{impl}, {dtype}]: {entry['model']}, held-out median {_pct(entry['median_ape_pct'])}, "
                      f"P95 {_pct(entry['p95_ape_pct'])} ({entry['num_shapes']} shapes, {entry['fit_s']:.1f} s)", file=sys.stderr)
            if kind == ATTENTION_PREFILL:
                for tp, tp_rows in rows.groupby("tp"):
                    prefill_saving[str(int(tp))] = max(prefill_saving.get(str(int(tp)), 0.0), _prefill_saving(tp_rows, target))

        # Tables: one per (operator, dtype, tp[, width]), the fastest implementation at each point.
        for (operator, dtype), rows in frame.groupby(["operator", "dtype"], sort=True):
            spec = OPERATORS.get(operator)
            by_tp = {int(tp): r for tp, r in rows.groupby("tp")}
            for tp in tps:
                if tp in by_tp:
                    tp_rows = by_tp[tp]
                elif spec is not None and not spec.tp_dependent and by_tp:
                    tp_rows = next(iter(by_tp.values()))
                else:
                    continue
                widths = sorted(tp_rows["width"].unique()) if operator == "quantize_activations" else [None]
                for width in widths:
                    sub = tp_rows if width is None else tp_rows[tp_rows["width"] == width]
                    axis_names, axes = _table_axes(kind, sub)
                    grid = _grid_frame(kind, operator, dtype, sub, axes, float_dtype)
                    impls = sorted(sub["implementation"].unique())
                    preds = np.stack([_snap_to_measured(kind, estimators[operator, impl, dtype].predict(grid), grid,
                                                        sub[sub["implementation"] == impl], target) for impl in impls])
                    # An implementation competes only where its measurements reach (one that ran
                    # out of memory at large shapes must not win there on an extrapolation).
                    covered = np.stack([_covered(kind, sub[sub["implementation"] == impl], grid) for impl in impls])
                    competing = np.where(covered, preds, np.inf)
                    best = np.where(covered.any(axis=0), competing.min(axis=0), preds.min(axis=0))
                    preds = np.where(covered.any(axis=0), competing, preds)
                    name = table_name(operator, dtype, tp, None if width is None else int(width))
                    arrays[name + "/values"] = best.reshape([len(a) for a in axes]).astype(np.float64)
                    for i, a in enumerate(axes):
                        arrays[f"{name}/axis{i}"] = a.astype(np.int64)
                    wins = np.bincount(preds.argmin(axis=0), minlength=len(impls)) / preds.shape[1]
                    table_meta[name] = {"operator": operator, "kind": kind, "dtype": dtype, "tp": tp, "axes": axis_names,
                                        "implementations": {impl: round(float(w), 4) for impl, w in zip(impls, wins)}}

    link_model = sorted({int(tp) for tp in tables.get(ALL_REDUCE, pd.DataFrame({"tp": [], "implementation": []})).query("implementation == 'link_model'")["tp"]})
    runtime = {
        "format": RUNTIME_FORMAT, "fingerprint": bundle.fingerprint(root), "model": manifest["model"], "dtype": float_dtype,
        "device": {k: device.get(k) for k in ("device", "name", "num_compute_units")}, "tensor_parallel_sizes": tps,
        "quantizations": manifest.get("quantizations", []), "all_reduce_link_model_tps": link_model,
        "prefill_saving_s": prefill_saving, "target": target, "tables": table_meta,
    }
    # Tables first, then the JSON naming their fingerprint, each replaced atomically: simulations
    # loading the bundle in parallel never read a half-written file.
    tmp = root / f"{RUNTIME_TABLES}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, root / RUNTIME_TABLES)
    bundle.write_json(root / RUNTIME_MODEL, runtime)

    measured = [e for e in report_ops if e["median_ape_pct"] is not None]
    pooled = pd.concat(oof_points) if oof_points else None
    report = {
        "bundle": str(root), "model": manifest["model"]["name"], "device": device.get("name"), "folds": folds, "target": target,
        "fit_s": round(time.perf_counter() - t_start, 3),
        "summary": {
            "num_operators": len(report_ops),
            "worst_median_ape_pct": max((e["median_ape_pct"] for e in measured), default=None),
            "worst_p95_ape_pct": max((e["p95_ape_pct"] for e in measured), default=None),
            "pooled_median_ape_pct": float(np.median(ape(pooled["predicted_s"].to_numpy(), pooled["measured_s"].to_numpy()))) if pooled is not None else None,
            "pooled_p95_ape_pct": float(np.percentile(ape(pooled["predicted_s"].to_numpy(), pooled["measured_s"].to_numpy()), 95)) if pooled is not None else None,
        },
        "operators": report_ops,
    }
    bundle.write_json(root / FIT_REPORT, report)
    if html:
        from profiler.fit_report import write_fit_html

        write_fit_html(report, pooled, root / FIT_HTML)
    return report
