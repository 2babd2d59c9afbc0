"""Capacity: the highest arrival rate at which a deployment still meets its SLOs.

DESIGN.md (Metrics, Capacity) gives two forms, both supported by ``CapacityCriterion``:

* attainment (DistServe's goodput, OSDI'24): the fraction of requests meeting every
  per-request SLO of the scenario's ``slo`` section stays >= a target (90 % in DistServe's
  evaluation);
* percentiles (Vidur, MLSys'24, Sec. 5; Sarathi-Serve, OSDI'24, Sec. 5): every bound on a
  latency percentile holds, e.g. P90 TTFT <= 2 s and P99 TBT <= 0.2 s.

``find_capacity`` finds it by bisection on the arrival rate (``with_rate`` sets a scenario's rate
for synthetic workloads and for traces alike). Each probe is one ``simulate()``, cached by
``run_key``, and a probe that has already missed the criterion for certain stops early (see
``evaluate``). Monotonicity is assumed: a deployment that meets the criterion at rate r meets
it at every lower rate. Queueing makes this true in expectation; a finite, random workload can
break it near the boundary by a few percent, which is why the search stops at a relative
tolerance rather than pretending to more precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.studies.run_cache import RunCache
from simulator.scenario import Scenario
from simulator.studies.criterion import PERCENTILE_METRICS, CapacityCriterion
from simulator.studies.probe import evaluate
from simulator.studies.rates import estimate_max_rate, native_rate_rps, with_rate

__all__ = [
    "PERCENTILE_METRICS", "CapacityCriterion", "CapacityResult", "estimate_max_rate", "evaluate",
    "find_capacity", "native_rate_rps", "with_rate",
]


# The first rate find_capacity tries, as a fraction of estimate_max_rate (see find_capacity).
FIRST_GUESS_FRACTION = 0.8


@dataclass(frozen=True)
class CapacityResult:
    """What ``find_capacity`` found.

    Attributes:
        capacity_rps: the highest rate tried that met the criterion (req/s), with the lowest
            rate above it that missed at most ``1 + rel_tol`` times higher; None when even the lowest rate tried
            missed (``reason`` says so).
        points: ``(rate_rps, met, summary)`` of every probe, in the order run.
        reason: why the search ended where it did, when that is not the normal convergence
            (no rate met; no rate missed; ``max_runs`` reached first).
    """

    capacity_rps: float | None
    points: tuple[tuple[float, bool, dict], ...]
    reason: str = ""

    @property
    def num_runs(self) -> int:
        return len(self.points)


def _is_burst(rate: float, summary: dict) -> bool:
    """Whether the requests of a run arrived within 1 % of its duration (about N / rate): a
    burst, which a higher rate could only make a little shorter."""
    return summary["num_requests"] / rate < 0.01 * summary["duration_s"]


def find_capacity(
    scenario: Scenario,
    criterion: CapacityCriterion,
    *,
    rate_lo: float | None = None,
    rate_hi: float | None = None,
    rel_tol: float = 0.05,
    max_runs: int = 12,
    rate_floor: float | None = None,
    cache: RunCache | None = None,
    early_stop: bool = True,
    source: str = "<scenario>",
    step_time_factor: float = 1.0,
) -> CapacityResult:
    """The highest arrival rate (req/s) at which ``scenario`` meets ``criterion``, by bisection.

    1. First guess: ``rate_lo`` / ``rate_hi`` when given, else 0.8 x ``estimate_max_rate`` (the
       cost model's saturation throughput). Over 24 searches (Azure conversation and arXiv
       summarization traces; H100, A100, L40S; TP 1 and 4; five schedulers; attainment and
       percentile criteria) the capacity was 0.2-1.1 times the estimate, median 0.6-0.7;
       starting at 0.8 takes 5.9 runs on average over them, 6.5 from 1.0. Lower starts take
       about as few runs, but more of them meet the criterion, and a run that meets it runs to
       the end while one that misses usually stops early.
    2. Bracket: from a rate that met, step up; from one that missed, step down, by factors
       g^4, g^8, g^16, ... with g = 1 + ``rel_tol`` (1.22, 1.48, 2.18, 4.8 for 5 %), each step
       larger than the last, until one rate met and a higher one missed. A run that met with
       its whole workload arriving as a burst (within 1 % of its duration) ends the search: a
       higher rate could only shorten the burst, and ``reason`` says the workload is too small.
    3. Bisect geometrically (the midpoint is sqrt(lo * hi)) until hi / lo <= 1 + ``rel_tol``.
       A bracket of ratio g^(2^k) takes exactly k bisection runs, so a first guess within 22 %
       of the capacity costs 4 runs in all, within a factor of 1.8 costs 6, of 3.9 costs 8.

    Each probe is ``evaluate(with_rate(scenario, rate), ...)``: one simulation, cached by
    ``run_key`` when ``cache`` is given, stopped early once it has surely missed (``early_stop``).
    The rate is set by ``with_rate`` (trace: time scaling; synthetic: arrival rate). The
    workload's size is the scenario's: cap it (``workload.max_requests``) to keep probes cheap;
    a short workload understates queue build-up, so capacity from few requests is optimistic.
    Assumes that meeting the criterion is monotone in the rate (module docstring).

    Args:
        scenario: the deployment and workload (its own rate is ignored).
        criterion: what meeting the SLOs means.
        rate_lo, rate_hi: optional first bracket (req/s); expanded if it does not bracket.
        rel_tol: the final bracket's relative width: hi / lo <= 1 + rel_tol; in (0, 1).
        max_runs: most probes; the search ends early with ``reason`` set if they run out.
        rate_floor: the lowest rate worth probing (req/s), default the first guess / 1000: when
            a search stepping down misses there too, it ends with capacity None (a planner
            passes the target rate over the most replicas it may use).
        cache: results of earlier probes, so an interrupted search resumes at no cost.
        early_stop: end probes that have surely missed (their summaries are partial).
        source: the scenario's file, for errors.

    Returns:
        ``CapacityResult``: the highest rate that met (None if none did), every probe, a reason.

    Raises:
        ScenarioError: the scenario cannot be built or run; ``rate_lo`` >= ``rate_hi``.
    """
    assert 0 < rel_tol < 1 and max_runs >= 2, f"need 0 < rel_tol < 1 and max_runs >= 2, got {rel_tol}, {max_runs}"
    if rate_lo is not None and rate_hi is not None and not rate_lo < rate_hi:
        raise ScenarioError(source, "capacity.rate_lo", rate_lo, f"is not below rate_hi = {rate_hi}", "give rate_lo < rate_hi")
    points: list[tuple[float, bool, dict]] = []

    def probe(rate: float) -> bool:
        met, summary = evaluate(with_rate(scenario, rate, source), criterion, cache=cache, early_stop=early_stop, source=source,
                                step_time_factor=step_time_factor)
        points.append((rate, met, summary))
        return met

    def result(capacity: float | None, reason: str = "") -> CapacityResult:
        return CapacityResult(capacity, tuple(points), reason)

    lo: float | None = None  # highest rate that met
    hi: float | None = None  # lowest rate that missed
    guesses = [r for r in (rate_lo, rate_hi) if r is not None] or [FIRST_GUESS_FRACTION * estimate_max_rate(scenario, source)]
    for rate in guesses:
        if probe(rate):
            lo = rate
        else:
            hi = rate
            break  # rate_hi is not needed once rate_lo missed
    floor = rate_floor if rate_floor is not None else guesses[0] * 1e-3
    done = 1.0 + rel_tol + 1e-12  # the bracket ratio that ends the search
    factor = (1.0 + rel_tol) ** 4
    while lo is None or hi is None:
        if hi is None and _is_burst(lo, points[-1][2]):
            num = points[-1][2]["num_requests"]
            return result(lo, f"met the criterion with all {num} requests arriving in a burst ({num / lo:.3g} s at {lo:.4g} req/s): "
                              "the workload is too small to find the capacity (at least this); raise workload.max_requests or num_requests")
        if len(points) >= max_runs:
            if lo is None:
                return result(None, f"missed the criterion at every rate tried, down to {hi:.4g} req/s")
            return result(lo, f"met the criterion at every rate tried, up to {lo:.4g} req/s (capacity is at least this)")
        rate = lo * factor if hi is None else hi / factor
        factor *= factor
        if lo is None and rate < floor:
            if hi <= floor:
                return result(None, f"missed the criterion at every rate tried, down to {hi:.4g} req/s (the floor)")
            rate = floor
        if probe(rate):
            lo = rate
        else:
            hi = rate
    while hi / lo > done:
        if len(points) >= max_runs:
            return result(lo, f"stopped after {max_runs} runs with the capacity between {lo:.4g} and {hi:.4g} req/s")
        rate = math.sqrt(lo * hi)
        if probe(rate):
            lo = rate
        else:
            hi = rate
    return result(lo)
