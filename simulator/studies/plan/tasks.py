"""The units of work a plan hands its executor: one capacity bisection, one check at the target rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from simulator.studies.capacity import CapacityCriterion, evaluate, find_capacity, with_rate
from simulator.errors import ScenarioError
from simulator.studies.run_cache import RunCache
from simulator.scenario import Scenario
from simulator.studies.plan.candidates import scale_replicas


@dataclass(frozen=True)
class CapacityTask:
    """Find one candidate's single-replica capacity (one bisection)."""

    scenario: Scenario
    criterion: CapacityCriterion
    rel_tol: float
    max_runs: int
    rate_lo_rps: float | None
    rate_hi_rps: float | None
    cache_dir: str | None
    rate_floor_rps: float | None = None  # below this, more replicas than allowed would be needed


@dataclass(frozen=True)
class CapacityOutcome:
    """A bisection's answer: capacity (None when no rate meets the SLOs), runs, reason, error."""

    capacity_rps: float | None
    points: tuple[tuple[float, bool], ...]
    reason: str
    error: str = ""


def run_capacity_task(task: CapacityTask) -> CapacityOutcome:
    """Run one bisection; a ``ScenarioError`` (e.g. a workload this model cannot hold) is an outcome."""
    kwargs: dict[str, Any] = {"rel_tol": task.rel_tol, "max_runs": task.max_runs}
    if task.rate_lo_rps is not None:
        kwargs["rate_lo"] = task.rate_lo_rps
    if task.rate_hi_rps is not None:
        kwargs["rate_hi"] = task.rate_hi_rps
    if task.rate_floor_rps is not None:
        kwargs["rate_floor"] = task.rate_floor_rps
    cache = RunCache(task.cache_dir) if task.cache_dir else None
    try:
        result = find_capacity(task.scenario, task.criterion, cache=cache, **kwargs)
    except ScenarioError as e:
        return CapacityOutcome(None, (), "", f"{e.field}: {e.problem}" if e.field else e.problem)
    return CapacityOutcome(result.capacity_rps, tuple((float(r), bool(m)) for r, m, _ in result.points), result.reason)


@dataclass(frozen=True)
class VerifyTask:
    """Run a candidate's full deployment at R, adding replicas while it misses the SLOs."""

    scenario: Scenario  # one replica
    criterion: CapacityCriterion
    target_rate_rps: float
    first_num_replicas: int
    max_num_replicas: int  # the plan's limits (replicas and GPUs) as a replica count
    max_extra_replicas: int
    cache_dir: str | None


@dataclass(frozen=True)
class VerifyOutcome:
    """The check at R: the replica count that met the SLOs (None: none within the bound)."""

    num_replicas: int | None
    runs: tuple[tuple[int, bool], ...]
    summary: dict | None  # of the last run
    error: str = ""


def verification_scenario(scenario: Scenario, num_replicas: int, target_rate_rps: float) -> Scenario:
    """The deployment of ``num_replicas`` copies of ``scenario``'s replica, at rate R."""
    return with_rate(scale_replicas(scenario, num_replicas), target_rate_rps)


def run_verify_task(task: VerifyTask) -> VerifyOutcome:
    """Check the sized deployment at R with the plan's router (see the module docstring, step 3)."""
    cache = RunCache(task.cache_dir) if task.cache_dir else None
    runs: list[tuple[int, bool]] = []
    summary = None
    last = min(task.first_num_replicas + task.max_extra_replicas, task.max_num_replicas)
    try:
        for n in range(task.first_num_replicas, last + 1):
            met, summary = evaluate(verification_scenario(task.scenario, n, task.target_rate_rps), task.criterion, cache=cache)
            runs.append((n, met))
            if met:
                return VerifyOutcome(n, tuple(runs), summary)
    except ScenarioError as e:
        return VerifyOutcome(None, tuple(runs), summary, f"{e.field}: {e.problem}" if e.field else e.problem)
    return VerifyOutcome(None, tuple(runs), summary)


# ---------------------------------------------------------------------------------------------
# The plan run
# ---------------------------------------------------------------------------------------------


