"""Build a simulation from a scenario, run it, and collect the records.

The flow: workload -> router -> replicas (scheduler + KV cache each, priced by the cost model)
-> request and iteration records -> metrics. SimPy keeps time; plain objects keep state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy
from tqdm import tqdm

from simulator import metrics
from simulator.cost_models import build_cost_model
from simulator.deployment import Deployment, resolve_deployment
from simulator.errors import ScenarioError
from simulator.kv_cache import BlockManager
from simulator.replica import Replica
from simulator.request import Request
from simulator.router import ROUTERS, Router
from simulator.scenario import Scenario
from simulator.schedulers import SCHEDULERS
from simulator.workload import Workload, load_workload


@dataclass(frozen=True)
class SimulationResult:
    """What a run produced: per-request and per-iteration tables, all token gaps, the summary."""

    scenario: Scenario
    deployment: Deployment
    workload: Workload
    requests: pd.DataFrame
    iterations: pd.DataFrame
    tbt_s: np.ndarray
    summary: dict


def _arrivals(env: simpy.Environment, requests: list[Request], replicas: list[Replica], router: Router):
    schedulers = [replica.scheduler for replica in replicas]
    for request in requests:
        delay = request.arrival_time - env.now
        if delay > 0:
            yield env.timeout(delay)
        replicas[router(request, schedulers)].add_request(request)


class Simulation:
    """A scenario built into a SimPy environment: workload, router, replicas, cost model.

    Args:
        scenario: the validated scenario.
        source: the scenario's file name, for error messages.

    Raises:
        ScenarioError: the deployment or the workload is invalid.
    """

    def __init__(self, scenario: Scenario, source: str = "<scenario>") -> None:
        self.scenario = scenario
        self.deployment = deployment = resolve_deployment(scenario, source)
        sched_cfg = scenario.scheduler
        scheduler_cls = SCHEDULERS.get(sched_cfg.name)
        if scheduler_cls is None:
            raise ScenarioError(source, "scheduler.name", sched_cfg.name, "unknown scheduler", f"use one of {', '.join(SCHEDULERS)}")
        router = ROUTERS.get(scenario.cluster.router)
        if router is None:
            raise ScenarioError(source, "cluster.router", scenario.cluster.router, "unknown router", f"use one of {', '.join(ROUTERS)}")
        self.workload = load_workload(scenario.workload, scenario.seed, deployment.max_model_len, source)
        self.cost_model = build_cost_model(scenario, deployment, source)
        self.env = simpy.Environment()
        self.num_finished = 0
        self.replicas = [
            Replica(
                self.env, i,
                scheduler_cls(sched_cfg, BlockManager(deployment.num_kv_blocks, sched_cfg.block_size, sched_cfg.watermark), deployment.max_num_batched_tokens, deployment.max_model_len),
                self.cost_model, self._on_finish,
            )
            for i in range(scenario.cluster.num_replicas)
        ]
        self.env.process(_arrivals(self.env, self.workload.requests, self.replicas, router))

    def _on_finish(self, request: Request) -> None:
        self.num_finished += 1

    def run(self, progress: bool = False) -> SimulationResult:
        """Run until every request has finished; return the records and the summary.

        Args:
            progress: show a progress bar (on stderr) when the run lasts more than 2 s.
        """
        wall_start = time.perf_counter()
        env, requests = self.env, self.workload.requests
        # Advance in slices of simulated time so the progress bar can move between them.
        slice_s = max(requests[-1].arrival_time, 1.0) / 200
        with tqdm(total=len(requests), unit="req", delay=2.0, disable=not progress, desc=self.scenario.name, leave=False) as bar:
            while self.num_finished < len(requests):
                if env.peek() == float("inf"):
                    raise AssertionError(f"simulation stalled at t={env.now:.3f} s with {len(requests) - self.num_finished} requests unfinished")
                env.run(until=env.now + slice_s)
                bar.update(self.num_finished - bar.n)

        slo = self.scenario.slo
        request_df = metrics.request_table(requests, slo)
        iteration_df = metrics.iteration_table([row for replica in self.replicas for row in replica.records])
        tbt = metrics.token_gaps(requests)
        summary = metrics.summarize(request_df, iteration_df, tbt, slo)
        summary["num_skipped_requests"] = self.workload.num_skipped
        summary["num_truncated_outputs"] = self.workload.num_truncated_outputs
        summary["num_kv_blocks_per_replica"] = self.deployment.num_kv_blocks
        summary["wall_time_s"] = time.perf_counter() - wall_start
        return SimulationResult(self.scenario, self.deployment, self.workload, request_df, iteration_df, tbt, summary)


def simulate(scenario: Scenario, source: str = "<scenario>", progress: bool = False) -> SimulationResult:
    """Build and run ``scenario``; see ``Simulation``. ``wall_time_s`` covers building too."""
    wall_start = time.perf_counter()
    result = Simulation(scenario, source).run(progress)
    result.summary["wall_time_s"] = time.perf_counter() - wall_start
    return result
