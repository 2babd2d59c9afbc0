"""One capacity probe: a simulation that stops as soon as the criterion is missed for certain, and
its summary.
"""

from __future__ import annotations

import math
import time

import numpy as np

from simulator.engine import metrics
from simulator.engine.request import Request
from simulator.studies.run_cache import RunCache, run_key
from simulator.scenario import Scenario
from simulator.engine.simulation import Simulation
from simulator.studies.criterion import CapacityCriterion


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


def evaluate(scenario: Scenario, criterion: CapacityCriterion, *, cache: RunCache | None = None, early_stop: bool = True, source: str = "<scenario>",
             step_time_factor: float = 1.0) -> tuple[bool, dict]:
    """Run ``scenario`` once and judge it: ``(met, summary)``.

    With ``early_stop`` the run ends as soon as enough finished requests have missed that the
    criterion cannot be met (see ``_Watch``); its summary then covers the requests that had
    arrived (``_stopped_summary``), has ``stopped_early: True`` and ``stop_reason``, and ``met``
    is False. An overloaded run, whose queue would take long to drain, so costs a fraction of a
    full one. Every summary has ``stopped_early`` and ``wall_time_s`` (building included).
    ``step_time_factor`` != 1 prices every step x that factor (``PerturbedCostModel``: a
    replicate of a prediction interval, ``simulator.studies.intervals``). Results are cached
    under ``run_key(scenario, {"capacity": criterion, "early_stop": ...})``, the factor in the
    key when it is not 1.

    Raises:
        ScenarioError: the scenario cannot be built.
    """
    extra = {"capacity": criterion.to_dict(), "early_stop": early_stop} | ({"step_time_factor": step_time_factor} if step_time_factor != 1.0 else {})
    key = run_key(scenario, extra) if cache is not None else ""
    if cache is not None and (hit := cache.get(key)) is not None:
        return bool(hit["met"]), hit["summary"]
    wall_start = time.perf_counter()
    sim = _WatchedSimulation(scenario, criterion, source) if early_stop else Simulation(scenario, source)
    if step_time_factor != 1.0:
        from simulator.cost_models.perturbed import PerturbedCostModel

        for replica in sim.replicas:  # before the run: a replica reads its cost model when its loop starts
            replica.cost_model = PerturbedCostModel(replica.cost_model, step_time_factor)
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
