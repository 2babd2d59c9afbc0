"""``servesim compare SWEEP.yaml``: run a sweep's grid and capacities in parallel, tabulate, plot.

For each configuration of the sweep (one combination of its non-load axes, e.g. one scheduler)
it runs the scenario at every rate of the load axis, and, with capacity on, finds the
configuration's capacity by bisection (``simulator.studies.capacity.find_capacity``). All of these are
independent tasks handed to one executor (local processes or Ray): the capacity searches first,
since each is a chain of runs, then the grid runs. Every run is cached by ``run_key`` in
``<out>/cache``, so an interrupted sweep resumes where it stopped.

Outputs in the results folder (default ``reports/compare/<sweep name>``):

* ``results.csv`` and ``results.parquet``: one row per grid run: the series label, every axis
  value, the rate, and the flattened run summary (``ttft_p50_s``, ..., ``goodput_rps``,
  ``slo_attainment``, ``num_preemptions``, ``wall_time_s``; latencies in seconds);
* with ``uncertainty.replicates`` > 1, ``<figure>_lo`` / ``<figure>_hi`` columns in
  ``results.csv`` and ``separation.csv`` (``simulator.studies.compare_intervals``);
* ``capacity.csv``: per configuration, the capacity (req/s), the number of runs and the rates
  tried;
* ``compare.html``: one self-contained plotly page (``simulator.reports.compare_report``).

Workers send back the run summary and, per latency (TTFT, TPOT, TBT, E2E), its quantiles at
``simulator.reports.compare_report.CDF_LEVELS``: enough to draw the CDFs, a few kB per run however many requests.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.studies.capacity import CapacityCriterion, CapacityResult, find_capacity
from simulator.reports.compare_report import CDF_LEVELS, CompareData, write_compare_report
from simulator.studies.compare_intervals import add_intervals, replicate_tasks, separation_table
from simulator.studies.executors import make_executor
from simulator.studies.intervals import figures
from simulator.studies.run_cache import RunCache, run_key
from simulator.scenario import Scenario
from simulator.studies.sweep import Sweep, load_sweep

__all__ = ["CompareResult", "flatten_summary", "run_compare"]



@dataclass(frozen=True)
class _GridTask:
    """One grid run: simulate, keep the summary and latency quantiles (cached)."""

    scenario: Scenario
    source: str
    cache_folder: Path | None

    def __call__(self) -> dict:
        from simulator.engine.simulation import simulate

        cache = RunCache(self.cache_folder)
        key = run_key(self.scenario, {"compare": "summary+cdf", "levels": len(CDF_LEVELS)})
        hit = cache.get(key)
        if hit is not None:
            return hit | {"cached": True}
        result = simulate(self.scenario, self.source)
        done = result.requests[result.requests["finish_time"].notna()]
        cdf = {name: _quantiles(done[name].to_numpy(np.float64)) for name in ("ttft_s", "tpot_s", "e2e_s")}
        cdf["tbt_s"] = _quantiles(result.tbt_s)
        value = {"summary": result.summary, "cdf": cdf}
        cache.put(key, value)
        return value | {"cached": False}


@dataclass(frozen=True)
class _CapacityTask:
    """One capacity search (a chain of runs, each cached)."""

    scenario: Scenario
    criterion: CapacityCriterion
    kwargs: dict
    source: str
    cache_folder: Path | None

    def __call__(self) -> CapacityResult:
        return find_capacity(self.scenario, self.criterion, cache=RunCache(self.cache_folder), source=self.source, **self.kwargs)


def _execute(task: _GridTask | _CapacityTask) -> Any:
    """The executor's function (module level, so it pickles by reference)."""
    return task()


def _quantiles(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return np.quantile(values, CDF_LEVELS).tolist()


def flatten_summary(summary: dict) -> dict[str, Any]:
    """A run summary as flat columns: ``{"ttft_s": {"p50": x}}`` -> ``{"ttft_p50_s": x}``.

    Nested dicts of statistics (names ending in ``_s``) put the statistic before the unit;
    other nested dicts join with ``_`` (``slo_ttft_s``). Scalars keep their names. The ``run``
    section (what ran, ``simulator.reports.run_header``) is left out: the series columns say it.
    """
    flat: dict[str, Any] = {}
    for name, value in summary.items():
        if name == "run":
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                if name == "slo":
                    flat[f"slo_{key}"] = sub
                elif name.endswith("_s"):
                    flat[f"{name.removesuffix('_s')}_{key}_s"] = sub
                else:
                    flat[f"{name}_{key}"] = sub
        else:
            flat[name] = value
    return flat


@dataclass
class CompareResult:
    """What ``run_compare`` produced.

    Attributes:
        sweep: the expanded sweep.
        out: the results folder.
        results: one row per grid run (the ``results.csv`` table).
        capacity: one row per configuration (the ``capacity.csv`` table); empty with capacity off.
        capacity_results: per configuration index, the search's result.
        cdfs: per grid-run index, its latency quantiles (at ``CDF_LEVELS``).
        wall_time_s: the whole sweep, including writing the outputs.
        separation: with replicates, the ``separation.csv`` table
            (``simulator.studies.compare_intervals.separation_table``); else None.
    """

    sweep: Sweep
    out: Path
    results: pd.DataFrame
    capacity: pd.DataFrame
    capacity_results: dict[int, CapacityResult] = field(default_factory=dict)
    cdfs: dict[int, dict] = field(default_factory=dict)
    wall_time_s: float = 0.0
    separation: pd.DataFrame | None = None


def run_compare(
    sweep_path: str | Path,
    *,
    executor: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    out: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    report: bool = True,
) -> CompareResult:
    """Run the sweep in ``sweep_path`` and write its results folder (module docstring).

    Args:
        sweep_path: the sweep YAML.
        executor: ``"local"`` or ``"ray"`` (default: the file's ``executor``).
        address: Ray cluster address (default: the file's, else a local instance).
        workers: local processes or Ray tasks in flight (default: the file's ``max_workers``,
            else every CPU).
        out: results folder (default ``reports/compare/<sweep name>``).
        use_cache: read and write ``<out>/cache``.
        progress: show the progress bar on stderr.
        report: write ``compare.html``.

    Raises:
        ScenarioError: the sweep file, a scenario or a trace is invalid, or the results folder
            cannot be written.
    """
    from simulator.errors import ScenarioError

    wall_start = time.perf_counter()
    sweep = load_sweep(sweep_path)
    out = Path(out) if out is not None else Path("reports") / "compare" / sweep.name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScenarioError("--out", "", str(out), f"cannot create the results folder ({e.strerror})", "choose a writable folder") from None
    cache_folder = (out / "cache").resolve() if use_cache else None

    tasks: list[_GridTask | _CapacityTask] = []
    if sweep.criterion is not None:
        cap = sweep.capacity
        kwargs = {"rate_lo": cap.rate_lo, "rate_hi": cap.rate_hi, "rel_tol": cap.rel_tol, "max_runs": cap.max_runs, "early_stop": cap.early_stop}
        tasks += [_CapacityTask(c.scenario, sweep.criterion, kwargs, f"{sweep.source} ({c.label})", cache_folder) for c in sweep.configurations]
    num_capacity = len(tasks)
    tasks += [_GridTask(run.scenario, f"{sweep.source} ({sweep.configurations[run.config_index].label}, {run.rate_rps:.4g} req/s)", cache_folder) for run in sweep.runs]

    pool = make_executor(executor or sweep.file.executor, max_workers=workers or sweep.file.max_workers, address=address or sweep.file.address, progress=progress)
    outputs: dict[int, Any] = dict(pool.map(_execute, tasks, desc=f"compare {sweep.name}"))

    capacity_results = {i: outputs[i] for i in range(num_capacity)}
    draws = _run_replicates(sweep, pool, {i: outputs[num_capacity + i]["summary"] for i in range(len(sweep.runs))},
                            {i: t.source for i, t in enumerate(tasks[num_capacity:])}, cache_folder)
    rows, cdfs = [], {}
    for i, run in enumerate(sweep.runs):
        value = outputs[num_capacity + i]
        config = sweep.configurations[run.config_index]
        row: dict[str, Any] = {"series": config.label, **config.values, "rate_rps": run.rate_rps}
        if sweep.load_axis == "rate_scale":
            row["rate_scale"] = run.load_value
        row |= flatten_summary(value["summary"])
        row["cached"] = value["cached"]
        rows.append(row)
        cdfs[i] = value["cdf"]
    results = pd.DataFrame(rows)
    separation = None
    if draws:
        base_figures = {i: figures(outputs[num_capacity + i]["summary"]) for i in draws}
        results = add_intervals(results, sweep.runs, base_figures, draws)
        separation = separation_table(results)
        separation.to_csv(out / "separation.csv", index=False)
    capacity = _capacity_table(sweep, capacity_results)

    results.to_csv(out / "results.csv", index=False)
    _parquet_safe(results).to_parquet(out / "results.parquet", index=False)
    if sweep.criterion is not None:
        capacity.to_csv(out / "capacity.csv", index=False)
    result = CompareResult(sweep, out, results, capacity, capacity_results, cdfs, separation=separation)
    if report:
        data = CompareData(sweep, results, capacity, capacity_results, cdfs, time.perf_counter() - wall_start)
        write_compare_report(data, out / "compare.html")
    result.wall_time_s = time.perf_counter() - wall_start
    return result


def _run_replicates(sweep: Sweep, pool, summaries: dict[int, dict], sources: dict[int, str], cache_folder: Path | None) -> dict[int, list]:
    """Replicates 1..N-1 of every grid run whose scenario sets ``uncertainty.replicates`` > 1.

    Returns, per grid-run index, the replicates' ``figures`` in replicate order (empty when no
    run has replicates). A second pass on the same executor: each replicate's step-time spread
    depends on the unperturbed run's cost model (``simulator.studies.intervals.step_time_error``).
    """
    planned = replicate_tasks(sweep.runs, summaries, sources, cache_folder)
    if not planned:
        return {}
    done = dict(pool.map(_execute, [task for _, task in planned], desc=f"replicates {sweep.name}"))
    draws: dict[int, list] = {}
    for j, (i, _) in enumerate(planned):
        draws.setdefault(i, []).append(done[j])
    return draws


def _capacity_table(sweep: Sweep, found: dict[int, CapacityResult]) -> pd.DataFrame:
    """One row per configuration: capacity (req/s), runs, rates tried (``rate:met|missed``)."""
    rows = []
    for index, config in enumerate(sweep.configurations):
        if index not in found:
            continue
        res = found[index]
        rows.append({
            "series": config.label, **config.values,
            "capacity_rps": res.capacity_rps,
            "num_runs": res.num_runs,
            "num_stopped_early": sum(bool(s.get("stopped_early")) for _, _, s in res.points),
            "run_wall_time_s": sum(s.get("wall_time_s", 0.0) for _, _, s in res.points),
            "criterion": sweep.criterion.describe(dataclasses.asdict(config.scenario.slo)),
            "rates_tried": " ".join(f"{rate:.4g}:{'met' if met else 'missed'}" for rate, met, _ in res.points),
            "reason": res.reason,
        })
    return pd.DataFrame(rows)


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed Python types (an axis of ints and strings) as strings, for Arrow."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    return frame


def capacity_console_table(result: CompareResult):
    """A rich table of each series' capacity (req/s), its ratio to the first series', and runs."""
    from rich.table import Table

    sweep = result.sweep
    base = sweep.configurations[0].scenario
    title = f"capacity: {sweep.criterion.describe(dataclasses.asdict(base.slo))}" if sweep.criterion else "capacity"
    table = Table(title=title, header_style="bold")
    for column, justify in (("series", "left"), ("capacity (req/s)", "right"), ("vs first", "right"), ("runs", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    first = result.capacity["capacity_rps"].iloc[0] if len(result.capacity) else None
    for _, row in result.capacity.iterrows():
        value = row["capacity_rps"]
        known = value is not None and not (isinstance(value, float) and math.isnan(value))
        ratio = f"{value / first:.2f}x" if known and first and not math.isnan(first) else "-"
        table.add_row(row["series"], f"{value:.3g}" if known else "none", ratio, str(row["num_runs"]), row["reason"])
    return table
