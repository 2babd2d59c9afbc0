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

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.engine import metrics, simulation
from simulator.engine.batch import Batch
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.studies.run_cache import RunCache, file_fingerprint, run_key
from simulator.scenario import Scenario
from simulator.engine.simulation import Simulation
from simulator.workload import _detect, _is_jsonl, load_workload

__all__ = [
    "PERCENTILE_METRICS", "CapacityCriterion", "CapacityResult", "estimate_max_rate", "evaluate",
    "find_capacity", "native_rate_rps", "with_rate",
]

# The first rate find_capacity tries, as a fraction of estimate_max_rate (see find_capacity).
FIRST_GUESS_FRACTION = 0.8
# Latency statistics of a run summary (``simulator.engine.metrics.summarize``) that a percentile bound
# may name, with the percentiles each one reports.
PERCENTILE_METRICS: dict[str, tuple[str, ...]] = {
    "ttft_s": ("p50", "p90", "p99"),
    "tpot_s": ("p50", "p90", "p99"),
    "e2e_s": ("p50", "p90", "p99"),
    "normalized_e2e_s": ("p50", "p90", "p99"),
    "scheduling_delay_s": ("p50", "p90", "p99"),
    "tbt_s": ("p50", "p99"),
}


@dataclass(frozen=True)
class CapacityCriterion:
    """What "meets the SLOs" means for a run's summary (DESIGN.md, Capacity).

    Attainment form (DistServe): ``slo_attainment >= attainment_target``, with the per-request
    SLOs in the scenario's ``slo`` section. Percentile form (Vidur): every bound holds, e.g.
    ``(("ttft_s", "p90", 2.0), ("tbt_s", "p99", 0.2))``, read from ``summary[metric][percentile]``.
    Both forms may be combined; set ``attainment_target=None`` for the percentile form alone.

    Attributes:
        attainment_target: fraction in (0, 1], or None.
        percentile_bounds: ``(metric, percentile, bound_s)`` triples; metrics and percentiles as
            in ``PERCENTILE_METRICS``; bounds in seconds (a bound holds when value <= bound).

    Raises:
        ValueError: no condition at all, a target outside (0, 1], an unknown metric or
            percentile, or a bound <= 0.
    """

    attainment_target: float | None = 0.9
    percentile_bounds: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.attainment_target is None and not self.percentile_bounds:
            raise ValueError("a capacity criterion needs an attainment target or a percentile bound")
        if self.attainment_target is not None and not 0 < self.attainment_target <= 1:
            raise ValueError(f"attainment_target must be in (0, 1], got {self.attainment_target}")
        for metric, percentile, bound in self.percentile_bounds:
            if metric not in PERCENTILE_METRICS:
                raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(PERCENTILE_METRICS)}")
            if percentile not in PERCENTILE_METRICS[metric]:
                raise ValueError(f"{metric} reports {', '.join(PERCENTILE_METRICS[metric])}, not {percentile!r}")
            if not bound > 0:
                raise ValueError(f"the bound on {percentile} {metric} must be > 0 s, got {bound}")

    def met(self, summary: dict) -> bool:
        """Whether a run's summary meets the criterion.

        A run that did not finish every request (stopped early) never meets it. A percentile
        with no data (TPOT when every request makes one token) violates no bound.
        """
        if summary.get("stopped_early") or summary.get("num_completed") != summary.get("num_requests"):
            return False
        if self.attainment_target is not None:
            attainment = summary.get("slo_attainment")
            if attainment is None or not attainment >= self.attainment_target:  # NaN misses
                return False
        for metric, percentile, bound in self.percentile_bounds:
            value = summary[metric][percentile]
            if value is not None and not value <= bound:
                return False
        return True

    def describe(self, slo: dict | None = None) -> str:
        """One line for reports: ``SLO attainment >= 90% (TTFT <= 2 s, TPOT <= 0.1 s)``,
        ``P99 TBT <= 100 ms and P50 scheduling delay <= 2 s``."""
        parts = []
        if self.attainment_target is not None:
            slos = ", ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in (slo or {}).items() if v is not None)
            parts.append(f"SLO attainment >= {self.attainment_target:.0%}" + (f" ({slos})" if slos else ""))
        for metric, percentile, bound in self.percentile_bounds:
            name = metric.removesuffix("_s")
            name = name.upper() if name in ("ttft", "tpot", "tbt", "e2e") else name.replace("_", " ")
            parts.append(f"{percentile.upper()} {name} <= " + (f"{bound:g} s" if bound >= 1 else f"{bound * 1e3:g} ms"))
        return " and ".join(parts)

    def to_dict(self) -> dict:
        """Plain data (for cache keys and reports)."""
        return {"attainment_target": self.attainment_target, "percentile_bounds": [list(b) for b in self.percentile_bounds]}


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


# --- the arrival rate of a scenario --------------------------------------------------------

# (trace, fingerprint, max_requests, on_invalid, max_model_len) -> requests per second at
# time_scale 1; each trace is loaded once per process however many rates are tried.
_NATIVE_RATES: dict[tuple, float] = {}


_HAS_ARRIVAL_TIMES: dict[tuple[str, str], bool] = {}


def _has_arrival_times(trace: str) -> bool:
    """Whether a trace file carries arrival times (a length-only CSV does not); memoized."""
    path = Path(trace)
    if _is_jsonl(path):
        return True
    memo = (trace, file_fingerprint(path))
    if memo not in _HAS_ARRIVAL_TIMES:
        try:
            columns = pd.read_csv(path, nrows=0).columns
        except (OSError, ValueError):
            return True  # unreadable: loading the workload reports it properly
        _HAS_ARRIVAL_TIMES[memo] = _detect(path, columns).time is not None
    return _HAS_ARRIVAL_TIMES[memo]


def native_rate_rps(scenario: Scenario, source: str = "<scenario>") -> float:
    """The scenario's arrival rate before time scaling (req/s).

    Synthetic workloads and length-only traces: ``workload.arrival.rate``. A trace with
    arrival times: (N - 1) / span of the arrival times of its first N requests, N the requests
    kept with ``time_scale`` 1 and without ``max_duration_s`` (``max_requests`` applies), i.e.
    one over the mean gap between arrivals. Measured once per trace and process.

    Raises:
        ScenarioError: the trace cannot be loaded, or all its requests arrive at once.
    """
    w = scenario.workload
    if w.trace is None or not _has_arrival_times(w.trace):
        return w.arrival.rate
    max_model_len = resolve_deployment(scenario, source).max_model_len
    memo = (w.trace, file_fingerprint(w.trace), w.max_requests, w.on_invalid, max_model_len)
    rate = _NATIVE_RATES.get(memo)
    if rate is None:
        cfg = dataclasses.replace(w, time_scale=1.0, max_duration_s=None)
        arrivals = [r.arrival_time for r in load_workload(cfg, scenario.seed, max_model_len, source).requests]
        span = arrivals[-1] - arrivals[0]
        if len(arrivals) < 2 or span <= 0:
            raise ScenarioError(source, "workload.trace", w.trace, "has no arrival-time span to scale", "use a trace whose requests arrive over time, or a synthetic workload")
        rate = _NATIVE_RATES[memo] = (len(arrivals) - 1) / span
    return rate


def with_rate(scenario: Scenario, rate_rps: float, source: str = "<scenario>") -> Scenario:
    """The scenario at arrival rate ``rate_rps`` (req/s, > 0).

    The rule:
      * synthetic workload, or a length-only trace (arrivals drawn from ``workload.arrival``):
        ``workload.arrival.rate = rate_rps`` and ``workload.time_scale = 1``. With the same seed
        the arrival draws are the same standard exponentials (or gammas) scaled by 1 / rate, so
        rates compare on the same requests.
      * a trace with arrival times: ``workload.time_scale = rate_rps / native_rate_rps(scenario)``,
        replaying the trace faster or slower. With ``max_requests`` the replayed requests are the
        same at every rate and their mean rate is exactly ``rate_rps``; with ``max_duration_s``
        (applied after scaling) the window holds more of the trace at higher rates, and its mean
        rate is ``rate_rps`` as far as the trace is stationary.

    Raises:
        ScenarioError: ``rate_rps`` <= 0, or the trace cannot be loaded.
    """
    if not rate_rps > 0 or not math.isfinite(rate_rps):
        raise ScenarioError(source, "rate", rate_rps, "the arrival rate must be a positive number of requests per second", "give a rate > 0")
    w = scenario.workload
    if w.trace is None or not _has_arrival_times(w.trace):
        workload = dataclasses.replace(w, arrival=dataclasses.replace(w.arrival, rate=float(rate_rps)), time_scale=1.0)
    else:
        workload = dataclasses.replace(w, time_scale=float(rate_rps) / native_rate_rps(scenario, source))
    return dataclasses.replace(scenario, workload=workload)


# (workload without its rate, seed, max_model_len, trace fingerprint) -> mean prompt and output
# tokens; many capacity searches in one process share a workload.
_MEAN_LENGTHS: dict[str, tuple[int, int]] = {}


def _mean_lengths(scenario: Scenario, max_model_len: int, source: str) -> tuple[int, int]:
    """Mean prompt and output tokens of the scenario's workload (rounded, >= 1), memoized."""
    w = scenario.workload
    unrated = dataclasses.replace(w, time_scale=1.0, arrival=dataclasses.replace(w.arrival, rate=1.0), max_duration_s=None)
    memo = json.dumps([dataclasses.asdict(unrated), scenario.seed, max_model_len, file_fingerprint(w.trace) if w.trace else None], sort_keys=True, default=str)
    lengths = _MEAN_LENGTHS.get(memo)
    if lengths is None:
        requests = load_workload(unrated, scenario.seed, max_model_len, source).requests
        lengths = _MEAN_LENGTHS[memo] = (
            max(1, round(float(np.mean([r.num_prompt_tokens for r in requests])))),
            max(1, round(float(np.mean([r.num_output_tokens for r in requests])))),
        )
    return lengths


def estimate_max_rate(scenario: Scenario, source: str = "<scenario>") -> float:
    """A rough saturation throughput of the deployment on its workload (req/s), from the cost model.

    Per replica, one request of the workload's mean prompt P and mean output O costs a prefill
    step of P tokens plus O decode steps shared by a full batch: B = min(max_num_seqs, KV-cache
    tokens / (P + O / 2)) requests at context P + O / 2 each. Rate = replicas / (prefill time +
    O * decode step time / B). It ignores SLOs and scheduling policy: it is the first guess of
    ``find_capacity``, whose bracketing corrects it, not an answer. The mean lengths are those of
    the workload's requests (``max_duration_s`` aside), memoized per workload and process. A
    disaggregated deployment (prefill and decode pools) gets the workload's own rate instead.

    Raises:
        ScenarioError: the scenario cannot be built.
    """
    if simulation.is_disaggregated(scenario, source):
        return native_rate_rps(scenario, source) * scenario.workload.time_scale
    deployment = resolve_deployment(scenario, source)
    prompt, output = _mean_lengths(scenario, deployment.max_model_len, source)
    cost_model = simulation.build_cost_model(scenario, deployment, source)  # the one a run uses
    prefill = Batch()
    prefill.add(Request(0, 0.0, prompt, output), prompt)
    context = prompt + output // 2
    kv_tokens = deployment.num_kv_blocks * scenario.scheduler.block_size
    batch_size = max(1, min(scenario.scheduler.max_num_seqs, kv_tokens // max(context, 1)))
    decodes = [Request(i, 0.0, prompt, output, num_computed_tokens=context) for i in range(batch_size)]
    per_request_s = cost_model.step_time(prefill)
    if output > 1:
        per_request_s += (output - 1) * cost_model.step_time(Batch.of_decodes(decodes)) / batch_size
    return scenario.cluster.num_replicas / per_request_s


# --- one probe -------------------------------------------------------------------------------


class _Watch:
    """Counts, as requests finish, what already makes the criterion impossible to meet.

    Attainment: with N requests, attainment >= target needs misses <= N (1 - target).
    Percentile p of n values (numpy's linear interpolation reads order statistics floor(h) and
    ceil(h), h = (n - 1) p / 100): once m values exceed the bound and m >= n - floor(h), the
    order statistic floor(h) exceeds it whatever the unfinished requests do.
    """

    def __init__(self, criterion: CapacityCriterion, scenario: Scenario, requests: list[Request]) -> None:
        slo = scenario.slo
        self.slo = (slo.ttft_s, slo.tpot_s, slo.e2e_s)
        n = len(requests)
        self.max_misses = n * (1.0 - criterion.attainment_target) if criterion.attainment_target is not None else None
        self.num_misses = 0
        num_multi = sum(r.num_output_tokens > 1 for r in requests)
        num_gaps = sum(r.num_output_tokens - 1 for r in requests)
        counts = {"tpot_s": num_multi, "tbt_s": num_gaps}
        # [metric, bound, exceedances that decide it, exceedances so far]
        self.bounds: list[list] = []
        for metric, percentile, bound in criterion.percentile_bounds:
            total = counts.get(metric, n)
            if total:
                h = (total - 1) * float(percentile[1:]) / 100
                # floor(h - 1e-9): where rounding could put h either side of an integer, wait longer.
                self.bounds.append([metric, bound, total - math.floor(h - 1e-9), 0])

    def missed(self, request: Request) -> str | None:
        """Fold in a finished request; the reason the run has missed for certain, or None."""
        arrival, first, finish, num_out = request.arrival_time, request.first_token_time, request.finish_time, request.num_output_tokens
        ttft, e2e = first - arrival, finish - arrival
        tpot = (finish - first) / (num_out - 1) if num_out > 1 else None
        if self.max_misses is not None:
            ttft_slo, tpot_slo, e2e_slo = self.slo
            ok = (ttft_slo is None or ttft <= ttft_slo) and (tpot_slo is None or tpot is None or tpot <= tpot_slo) and (e2e_slo is None or e2e <= e2e_slo)
            if not ok:
                self.num_misses += 1
                if self.num_misses > self.max_misses + 1e-9:
                    return f"{self.num_misses} requests missed the SLO: attainment below target"
        for entry in self.bounds:
            metric, bound = entry[0], entry[1]
            if metric == "tbt_s":
                gaps = np.diff(np.frombuffer(request.token_times, dtype=np.float64))
                entry[3] += int((gaps > bound).sum())
            else:
                value = {"ttft_s": ttft, "e2e_s": e2e, "tpot_s": tpot, "normalized_e2e_s": e2e / num_out,
                         "scheduling_delay_s": request.first_scheduled_time - arrival}[metric]
                entry[3] += value is not None and value > bound
            if entry[3] >= entry[2]:
                return f"{entry[3]} values of {metric} above {bound:g} s: the percentile bound is missed"
        return None


class _StopRun(Exception):
    """Raised out of a watched simulation once its criterion can no longer be met."""


class _WatchedSimulation(Simulation):
    """A simulation that stops (raises ``_StopRun``) as soon as its criterion cannot be met."""

    def __init__(self, scenario: Scenario, criterion: CapacityCriterion, source: str) -> None:
        super().__init__(scenario, source)
        self.watch = _Watch(criterion, scenario, self.workload.requests)

    def _on_finish(self, request: Request) -> None:
        super()._on_finish(request)
        reason = self.watch.missed(request)
        if reason is not None:
            raise _StopRun(reason)


def _stopped_summary(sim: Simulation, reason: str) -> dict:
    """The summary of a run stopped early: statistics over the requests that had arrived.

    ``num_requests`` and ``slo_attainment`` count every request of the workload (the unfinished
    ones miss the SLO); latency percentiles cover the finished ones only, so understate.
    """
    requests = sim.workload.requests
    arrived = [r for r in requests if r.replica_id is not None]
    slo = sim.scenario.slo
    request_df = metrics.request_table(arrived, slo)
    iteration_df = metrics.iteration_table([row for replica in sim.replicas for row in replica.records])
    summary = metrics.summarize(request_df, iteration_df, metrics.token_gaps(arrived), slo)
    summary["num_requests"] = len(requests)
    summary["slo_attainment"] = int(request_df["meets_slo"].sum()) / len(requests)
    summary["stopped_early"] = True
    summary["stop_reason"] = reason
    return summary


def evaluate(scenario: Scenario, criterion: CapacityCriterion, *, cache: RunCache | None = None, early_stop: bool = True, source: str = "<scenario>") -> tuple[bool, dict]:
    """Run ``scenario`` once and judge it: ``(met, summary)``.

    With ``early_stop`` the run ends as soon as enough finished requests have missed that the
    criterion cannot be met (see ``_Watch``); its summary then covers the requests that had
    arrived (``_stopped_summary``), has ``stopped_early: True`` and ``stop_reason``, and ``met``
    is False. An overloaded run, whose queue would take long to drain, so costs a fraction of a
    full one. Every summary has ``stopped_early`` and ``wall_time_s`` (building included).
    Results are cached under ``run_key(scenario, {"capacity": criterion, "early_stop": ...})``.

    Raises:
        ScenarioError: the scenario cannot be built.
    """
    key = run_key(scenario, {"capacity": criterion.to_dict(), "early_stop": early_stop}) if cache is not None else ""
    if cache is not None and (hit := cache.get(key)) is not None:
        return bool(hit["met"]), hit["summary"]
    wall_start = time.perf_counter()
    sim = _WatchedSimulation(scenario, criterion, source) if early_stop else Simulation(scenario, source)
    try:
        summary = sim.run().summary
        summary["stopped_early"] = False
    except _StopRun as stop:
        summary = _stopped_summary(sim, str(stop))
    summary["wall_time_s"] = time.perf_counter() - wall_start
    met = criterion.met(summary)
    if cache is not None:
        cache.put(key, {"met": met, "summary": summary})
    return met, summary


# --- the search --------------------------------------------------------------------------------


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
        met, summary = evaluate(with_rate(scenario, rate, source), criterion, cache=cache, early_stop=early_stop, source=source)
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
