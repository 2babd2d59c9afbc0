"""Capacity intervals in ``servesim plan``: each top candidate's capacity found on perturbed replicates.

With ``uncertainty.replicates`` N > 1 in the plan's base scenario (its ``overrides``), the
cheapest ``INTERVAL_TOP`` feasible candidates after the point search (rank 1..3; the others keep
their point capacity, so the cost stays about 3 x (N - 1) bisections more, not one per candidate)
are searched again on replicates 1..N-1 of their one-replica scenario
(``simulator.studies.intervals.plan_replicates``: reseeded or bootstrapped workload, one
lognormal step-time factor per replicate; replicate 0 is the point search). Each replicate runs
``find_capacity`` with the plan's criterion and tolerance. The interval of the N capacities is
the order-statistic interval at ``uncertainty.level`` (``prediction_interval``; a replicate
with no rate meeting the SLOs counts as capacity 0).

Replicas and cost follow from the capacity bounds: ``replicas_lo`` = ceil(R / capacity_hi) and
``replicas_hi`` = ceil(R / capacity_lo), each plus the replicas the check at R added to the
point estimate (``num_replicas - replicas_estimate``); ``usd_per_hour_lo/hi`` = replicas x USD
per replica-hour (not checked at R). The winner is "clearly cheaper" than the runner-up when
its ``usd_per_hour_hi`` is below the runner-up's ``usd_per_hour_lo``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.studies.intervals import Replicate, _bootstrapped, plan_replicates, prediction_interval, step_time_error

INTERVAL_TOP = 3  # feasible candidates, cheapest first, whose capacity gets an interval
INTERVAL_COLUMNS = ("capacity_lo", "capacity_hi", "replicas_lo", "replicas_hi", "usd_per_hour_lo", "usd_per_hour_hi")


@dataclass(frozen=True)
class ReplicateCapacityTask:
    """One candidate's capacity search on one perturbed replicate."""

    replicate: Replicate
    criterion: object
    rel_tol: float
    max_runs: int
    rate_lo_rps: float | None
    rate_hi_rps: float | None
    cache_dir: str | None


def run_replicate_capacity(task: ReplicateCapacityTask) -> float:
    """The replicate's capacity (req/s; 0.0 when no rate meets the SLOs or it cannot run).

    Cached in ``<cache_dir>/replicates/<factor>`` (the step-time factor is not part of the
    scenario, so it names the folder); a bootstrapped trace is written under the cache so its
    path, and so the run keys, are the same when an interrupted plan resumes.
    """
    import tempfile

    from simulator.errors import ScenarioError
    from simulator.studies.capacity import find_capacity
    from simulator.studies.run_cache import RunCache

    rep = task.replicate
    tag = hashlib.sha256(repr((rep.step_time_factor, rep.bootstrap_seed)).encode()).hexdigest()[:16]
    cache = RunCache(str(Path(task.cache_dir) / "replicates" / tag)) if task.cache_dir else None
    kwargs = {"rel_tol": task.rel_tol, "max_runs": task.max_runs}
    if task.rate_lo_rps is not None:
        kwargs["rate_lo"] = task.rate_lo_rps
    if task.rate_hi_rps is not None:
        kwargs["rate_hi"] = task.rate_hi_rps
    with tempfile.TemporaryDirectory(prefix="servesim-plan-bootstrap-") as tmp:
        scenario = rep.scenario
        if rep.bootstrap_seed is not None:
            folder = Path(task.cache_dir) / "replicates" / tag if task.cache_dir else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            scenario = _bootstrapped(scenario, rep.source, rep.bootstrap_seed, folder)
        try:
            result = find_capacity(scenario, task.criterion, cache=cache, source=rep.source, step_time_factor=rep.step_time_factor, **kwargs)
        except ScenarioError:
            return 0.0
    return float(result.capacity_rps or 0.0)


def _cost_model_header(scenario, source: str) -> dict:
    """The part of a run summary ``step_time_error`` reads: the profile bundle's folder, if any.

    Without ``hardware.profile`` it is empty (the stated error, else the roofline's 6.4 %);
    with one, a simulation is built (not run) to resolve the bundle that holds ``fit_report.json``.
    """
    if scenario.hardware.profile is None:
        return {}
    from simulator.engine.simulation import Simulation

    bundle = getattr(Simulation(scenario, source).replicas[0].cost_model, "bundle", None)
    return {"run": {"cost_model": {"bundle": str(bundle)}}} if bundle is not None else {}


def capacity_intervals(plan, candidates, table: pd.DataFrame, executor, cache: str | None) -> pd.DataFrame:
    """``table`` with ``INTERVAL_COLUMNS`` filled for the top ``INTERVAL_TOP`` feasible rows (others NaN).

    ``table`` itself, without the columns, when the base scenario's ``uncertainty.replicates`` is 1.
    """
    from simulator.studies.plan.candidates import replicas_needed

    if plan.base.uncertainty.replicates <= 1:
        return table
    table = table.copy()
    for col in INTERVAL_COLUMNS:
        table[col] = np.nan
    cfg, target = plan.config.capacity, plan.target_rate_rps
    top = table[table["feasible"]].head(INTERVAL_TOP)
    jobs: list[int] = []
    tasks: list[ReplicateCapacityTask] = []
    for candidate_index in top["candidate"].astype(int):
        scenario = candidates[candidate_index].scenario
        relative_error, _ = step_time_error(scenario, _cost_model_header(scenario, plan.source))
        for rep in plan_replicates(scenario, f"{plan.source} (candidate {candidate_index})", relative_error)[1:]:
            jobs.append(candidate_index)
            tasks.append(ReplicateCapacityTask(rep, plan.criterion, cfg.rel_tol, cfg.max_runs, cfg.rate_lo_rps, cfg.rate_hi_rps, cache))
    draws: dict[int, list[float]] = {}
    for i, capacity in sorted(executor.map(run_replicate_capacity, tasks, desc="capacity intervals")):
        draws.setdefault(jobs[i], []).append(capacity)
    for pos in top.index:
        row = table.loc[pos]
        values = [float(row["capacity_rps"]), *draws.get(int(row["candidate"]), [])]
        lo, hi = prediction_interval(values, plan.base.uncertainty.level)
        extra = int(row["num_replicas"]) - int(row["replicas_estimate"])
        r_lo = replicas_needed(target, hi) + extra
        r_hi = replicas_needed(target, lo) + extra if lo > 0 else np.nan
        table.loc[pos, list(INTERVAL_COLUMNS)] = [lo, hi, r_lo, r_hi, r_lo * row["usd_per_replica_hour"], r_hi * row["usd_per_replica_hour"]]
    return table


def winner_clearly_cheaper(table: pd.DataFrame) -> bool | None:
    """Whether the winner's cost interval lies wholly below the runner-up's (None: no intervals or no runner-up)."""
    ok = table[table["feasible"]]
    if len(ok) < 2 or "usd_per_hour_hi" not in ok.columns:
        return None
    a, b = ok.iloc[0], ok.iloc[1]
    if pd.isna(a["usd_per_hour_lo"]) or pd.isna(b["usd_per_hour_lo"]):
        return None
    return bool(a["usd_per_hour_hi"] < b["usd_per_hour_lo"])  # NaN hi (capacity 0 on a replicate) compares False


def interval_note(table: pd.DataFrame) -> str | None:
    """A sentence on whether the winner is clearly cheaper than the runner-up, or None without intervals."""
    clear = winner_clearly_cheaper(table)
    if clear is None:
        return None
    ok = table[table["feasible"]]
    a, b = ok.iloc[0], ok.iloc[1]

    def span(r) -> str:
        if pd.isna(r["usd_per_hour_hi"]):
            return f"${r['usd_per_hour_lo']:,.2f}/h or more"
        if r["usd_per_hour_hi"] == r["usd_per_hour_lo"]:
            return f"${r['usd_per_hour_lo']:,.2f}/h"
        return f"${r['usd_per_hour_lo']:,.2f}-{r['usd_per_hour_hi']:,.2f}/h"

    if clear:
        return f"The winner is clearly cheaper: its cost interval ({span(a)}) lies below the runner-up's ({span(b)})."
    return (f"The winner is not clearly cheaper than the runner-up ({b['deployment']}): their cost intervals overlap "
            f"({span(a)} against {span(b)}); another seed or the cost model's error could reverse the order.")


__all__ = ["INTERVAL_COLUMNS", "INTERVAL_TOP", "ReplicateCapacityTask", "capacity_intervals", "interval_note",
           "run_replicate_capacity", "winner_clearly_cheaper"]
