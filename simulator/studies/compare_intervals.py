"""Prediction intervals in ``servesim compare``: replicates per grid point, interval columns, separation.

When a grid run's scenario sets ``uncertainty.replicates`` N > 1 (in the sweep's base scenario,
``base_overrides`` or an axis), the run's own result is replicate 0 and replicates 1..N-1 are
planned by ``simulator.studies.intervals.plan_replicates`` (same seeds, factors and bootstrap
draws as ``servesim run --replicates N``). Each replicate is one task on the sweep's executor,
cached by ``run_key`` in ``<out>/cache`` like the grid runs, so an interrupted sweep resumes.

``results.csv`` gains ``<column>_lo`` and ``<column>_hi`` for each column in ``INTERVAL_COLUMNS``
(latencies in seconds, rates in req/s); ``separation.csv`` says, for each pair of
configurations at each load and each figure of ``HEADLINE``, whether their intervals are
disjoint (the difference is larger than the spread of either).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simulator.studies.intervals import Replicate, plan_replicates, prediction_interval, run_replicate, step_time_error
from simulator.studies.run_cache import RunCache, run_key

__all__ = ["HEADLINE", "INTERVAL_COLUMNS", "ReplicateTask", "add_intervals", "interval_columns", "intervals_separate", "replicate_tasks", "separation_table"]

# Columns of results.csv given an interval: the figures the report plots.
INTERVAL_COLUMNS = tuple(f"{m}_{p}_s" for m in ("ttft", "tpot", "tbt", "e2e") for p in ("p50", "p90", "p99")) + (
    "goodput_rps", "slo_attainment", "request_throughput_rps", "output_throughput_tps")
# The figures whose separation is tabulated: TTFT P90 (s), TPOT P50 (s), goodput (req/s).
HEADLINE = ("ttft_p90_s", "tpot_p50_s", "goodput_rps")


@dataclass(frozen=True)
class ReplicateTask:
    """One perturbed replicate of a grid run; its figures cached by ``run_key``."""

    replicate: Replicate
    cache_folder: Path | None

    def __call__(self) -> dict[str, float]:
        rep = self.replicate
        cache = RunCache(self.cache_folder)
        key = run_key(rep.scenario, {"compare": "replicate-figures", "index": rep.index,
                                     "step_time_factor": rep.step_time_factor, "bootstrap_seed": rep.bootstrap_seed})
        hit = cache.get(key)
        if hit is not None:
            return hit
        value = run_replicate(rep)
        cache.put(key, value)
        return value


def replicate_tasks(runs, summaries: dict[int, dict], sources: dict[int, str], cache_folder: Path | None) -> list[tuple[int, ReplicateTask]]:
    """(grid-run index, task) for replicates 1..N-1 of every grid run with N > 1.

    ``summaries`` holds each grid run's unperturbed summary (its cost model names the profile
    whose held-out error sets the step-time spread).
    """
    out = []
    for i, run in enumerate(runs):
        if run.scenario.uncertainty.replicates <= 1:
            continue
        relative_error, _ = step_time_error(run.scenario, summaries[i])
        for rep in plan_replicates(run.scenario, sources[i], relative_error)[1:]:
            out.append((i, ReplicateTask(rep, cache_folder)))
    return out


def interval_columns(draws: list[dict[str, float]], level: float) -> dict[str, float]:
    """``<column>_lo`` / ``<column>_hi`` for ``INTERVAL_COLUMNS`` from replicates' ``figures``.

    ``draws[0]`` is the unperturbed run's. A figure missing from any draw gets no interval.
    """
    from simulator.studies.compare import flatten_summary

    out: dict[str, float] = {}
    names = [n for n in draws[0] if all(n in d for d in draws)]
    for name in names:
        section, _, key = name.partition(".")
        column = next(iter(flatten_summary({section: {key: 0.0}} if key else {section: 0.0})))
        if column in INTERVAL_COLUMNS:
            lo, hi = prediction_interval([d[name] for d in draws], level)
            out[f"{column}_lo"], out[f"{column}_hi"] = lo, hi
    return out


def intervals_separate(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the intervals ``a`` = (lo, hi) and ``b`` are disjoint (touching ends overlap)."""
    return a[0] > b[1] or b[0] > a[1]


def separation_table(results: pd.DataFrame, headline: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """Per load, pair of series and headline figure: both intervals and whether they separate.

    Columns: ``rate_rps``, ``series_a``, ``series_b``, ``figure``, ``a_lo``, ``a_hi``, ``b_lo``,
    ``b_hi``, ``separated`` (bool), ``lower`` (the series with the lower interval when
    separated, else empty). Rows only for figures both series have an interval for.
    """
    rows = []
    for rate, frame in results.groupby("rate_rps", sort=True):
        by_series = {row["series"]: row for _, row in frame.iterrows()}
        for (la, ra), (lb, rb) in itertools.combinations(by_series.items(), 2):
            for figure in headline:
                cols = [f"{figure}_lo", f"{figure}_hi"]
                if not all(c in results.columns for c in cols) or any(pd.isna(r[c]) for r in (ra, rb) for c in cols):
                    continue
                a, b = (float(ra[cols[0]]), float(ra[cols[1]])), (float(rb[cols[0]]), float(rb[cols[1]]))
                separated = intervals_separate(a, b)
                lower = (la if a[1] < b[0] else lb) if separated else ""
                rows.append({"rate_rps": rate, "series_a": la, "series_b": lb, "figure": figure, "a_lo": a[0], "a_hi": a[1],
                             "b_lo": b[0], "b_hi": b[1], "separated": separated, "lower": lower})
    return pd.DataFrame(rows, columns=["rate_rps", "series_a", "series_b", "figure", "a_lo", "a_hi", "b_lo", "b_hi", "separated", "lower"])


def add_intervals(results: pd.DataFrame, runs, base_figures: dict[int, dict], draws: dict[int, list]) -> pd.DataFrame:
    """``results`` with the interval columns of each grid run that has replicates."""
    extra = {}
    for i, run in enumerate(runs):
        if i in draws:
            extra[i] = interval_columns([base_figures[i], *draws[i]], run.scenario.uncertainty.level)
    if not extra:
        return results
    return pd.concat([results, pd.DataFrame.from_dict(extra, orient="index").reindex(results.index)], axis=1)
