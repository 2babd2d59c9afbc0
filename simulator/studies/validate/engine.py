"""``servesim validate``: simulate each measured run and hold every prediction against the measurement.

Each run (``simulator.studies.validate.run_format``) becomes a scenario (its ``scenario.base`` with its
``scenario.set`` applied; relative paths there are relative to the run file), simulated on the
local processes or Ray as ``compare`` does, each simulation cached by the hash of its full
configuration (``simulator.studies.run_cache``). For every statistic the run measured, the signed error
is ``predicted / measured - 1`` (%; SLO attainment: the difference in points), and the run's
verdict is ``ok`` when every error is within its ``tolerance``, else it names the worst one.
The per-request distributions servesim predicts are kept as quantiles (``CDF_LEVELS``) for the
report's CDF overlays.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.reports.compare_report import CDF_LEVELS
from simulator.errors import ScenarioError
from simulator.studies.run_cache import RunCache, run_key
from simulator.scenario import _PATH_FIELDS, PROFILE_SOURCE_KINDS, Scenario, load_scenario
from simulator.studies.validate.run_format import LATENCIES, RATES, MeasuredRun

# servesim's per-request column (or token gaps) for each measured metric under each definition.
_COLUMNS = {("ttft_s", "send_to_first_token"): "ttft_s", ("tpot_s", "excluding_first_token"): "tpot_s",
            ("tpot_s", "including_first_token"): "normalized_e2e_s", ("e2e_s", None): "e2e_s", ("itl_s", "per_token"): "tbt_s"}


def _column(run: MeasuredRun, metric: str) -> str:
    definition = {"ttft_s": run.metrics.ttft, "tpot_s": run.metrics.tpot, "itl_s": run.metrics.itl}.get(metric)
    return _COLUMNS[(metric, definition)]


def _resolve(key: str, value: Any, folder: Path) -> Any:
    """A path-valued override made relative to the run file's folder."""
    if not isinstance(value, str):
        return value
    if key == "hardware.profile" and value.partition(":")[0] in PROFILE_SOURCE_KINDS:
        kind, _, rest = value.partition(":")
        if kind != "aiconfigurator" and rest and not Path(rest).is_absolute():
            return f"{kind}:{(folder / rest).resolve()}"
        return value
    if (key in _PATH_FIELDS or (key == "hardware.gpu" and value.lower().endswith((".yaml", ".yml")))) and not Path(value).is_absolute():
        return str((folder / value).resolve())
    return value


def scenario_for(run: MeasuredRun) -> Scenario:
    """The scenario that simulates ``run``.

    Raises:
        ScenarioError: the base scenario or an override is invalid (named as the run file's
            ``scenario.base`` / ``scenario.set.FIELD``).
    """
    folder = Path(run.path).parent if run.path else Path.cwd()
    base = None if run.scenario.base is None else folder / run.scenario.base
    overrides = [f"{k}={json.dumps(_resolve(k, v, folder))}" for k, v in run.scenario.set.items()]
    try:
        return dataclasses.replace(load_scenario(base, overrides), name=run.name)
    except ScenarioError as e:
        if e.source.startswith("--set") or "(with --set" in e.source:
            raise ScenarioError(str(run.path), f"scenario.set.{e.field}", e.value, e.problem, e.fix) from None
        raise


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    return {"mean": float(values.mean()), **{f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}}


@dataclass(frozen=True)
class _RunTask:
    """One run's simulation: the summary, each metric's statistics and CDF quantiles (cached)."""

    scenario: Scenario
    source: str
    cache_folder: Path | None

    def __call__(self) -> dict:
        from simulator.engine.simulation import simulate

        cache = RunCache(self.cache_folder)
        key = run_key(self.scenario, {"validate": "stats+cdf", "levels": len(CDF_LEVELS)})
        hit = cache.get(key)
        if hit is not None:
            return hit | {"cached": True}
        result = simulate(self.scenario, self.source)
        done = result.requests[result.requests["finish_time"].notna()]
        series = {c: done[c].to_numpy(np.float64) for c in ("ttft_s", "tpot_s", "normalized_e2e_s", "e2e_s")}
        series["tbt_s"] = result.tbt_s
        value = {"summary": result.summary, "stats": {c: _stats(v) for c, v in series.items()},
                 "cdf": {c: (np.quantile(v[np.isfinite(v)], CDF_LEVELS).tolist() if np.isfinite(v).any() else None) for c, v in series.items()}}
        cache.put(key, value)
        return value | {"cached": False}


def _execute(task: _RunTask) -> dict:
    return task()


@dataclass
class ValidationResult:
    """What ``validate`` found.

    Attributes:
        errors: one row per (run, metric, statistic): measured, predicted, signed error (% or
            points for attainment), within tolerance.
        verdicts: one row per run: verdict, worst error, runs' wall time, cached.
        predicted: per run, the simulation's stats and CDF quantiles (``_RunTask``'s value).
        runs: the runs, in order.
    """

    errors: pd.DataFrame
    verdicts: pd.DataFrame
    predicted: dict[str, dict]
    runs: list[MeasuredRun]


def compare_run(run: MeasuredRun, predicted: dict) -> list[dict]:
    """The error rows of one run against its simulation (``_RunTask`` value)."""
    rows = []
    for metric in LATENCIES:
        column = _column(run, metric)
        for stat, measured in getattr(run.measured, metric).items():
            pred = predicted["stats"][column].get(stat)
            err = None if pred is None else 100.0 * (pred / measured - 1.0)
            rows.append({"run": run.name, "metric": metric, "stat": stat, "measured": measured, "predicted": pred, "error": err,
                         "unit": "%", "tolerance": run.tolerance.latency_pct, "within": err is not None and abs(err) <= run.tolerance.latency_pct})
    for metric in RATES:
        measured = getattr(run.measured, metric)
        if measured is not None:
            pred = predicted["summary"][metric]
            err = 100.0 * (pred / measured - 1.0)
            rows.append({"run": run.name, "metric": metric, "stat": "value", "measured": measured, "predicted": pred, "error": err,
                         "unit": "%", "tolerance": run.tolerance.latency_pct, "within": abs(err) <= run.tolerance.latency_pct})
    if run.measured.slo_attainment is not None:
        pred = predicted["summary"]["slo_attainment"]
        err = 100.0 * (pred - run.measured.slo_attainment)
        rows.append({"run": run.name, "metric": "slo_attainment", "stat": "value", "measured": run.measured.slo_attainment, "predicted": pred,
                     "error": err, "unit": "points", "tolerance": run.tolerance.attainment_points, "within": abs(err) <= run.tolerance.attainment_points})
    return rows


def verdict(rows: list[dict]) -> tuple[str, str]:
    """(``ok`` or ``off``, the worst error as text: the one furthest past its tolerance) of one run's error rows."""
    scored = [r for r in rows if r["error"] is not None and math.isfinite(r["error"])]
    if not scored:
        return "no data", ""
    worst = max(scored, key=lambda r: abs(r["error"]) / r["tolerance"])  # the furthest beyond its own bound
    text = f"{worst['metric']} {worst['stat']} {worst['error']:+.1f} {'%' if worst['unit'] == '%' else 'points'}"
    return ("ok" if all(r["within"] for r in scored) else "off"), text


def validate(runs: list[MeasuredRun], cache_folder: Path | None, executor_kind: str = "local", workers: int | None = None,
             address: str | None = None, progress: bool = True) -> ValidationResult:
    """Simulate every run (in parallel, cached) and compare; see the module docstring.

    Raises:
        ScenarioError: a run's scenario is invalid, or a simulation rejects it.
    """
    from simulator.studies.executors import make_executor

    from simulator.engine.simulation import resolve_deployments, scheduler_policy

    tasks = [_RunTask(scenario_for(run), str(run.path), cache_folder) for run in runs]
    for task in tasks:  # the cheap checks before any work starts: a bad run fails alone, with one line
        scheduler_policy(task.scenario, task.source)
        resolve_deployments(task.scenario, task.source)
    executor = make_executor(executor_kind, max_workers=workers, address=address, progress=progress)
    predicted: dict[str, dict] = {}
    for index, value in executor.map(_execute, tasks, desc="validate"):
        predicted[runs[index].name] = value
    error_rows, verdict_rows = [], []
    for run in runs:
        rows = compare_run(run, predicted[run.name])
        error_rows += rows
        state, worst = verdict(rows)
        verdict_rows.append({"run": run.name, "verdict": state, "worst": worst, "source": run.source.name,
                             "engine": f"{run.engine.name} {run.engine.version or ''}".strip() if run.engine else "",
                             "cached": predicted[run.name]["cached"], "wall_time_s": predicted[run.name]["summary"].get("wall_time_s")})
    return ValidationResult(pd.DataFrame(error_rows), pd.DataFrame(verdict_rows), predicted, runs)
