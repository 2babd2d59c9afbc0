"""Build a simulation from a scenario, run it, and collect the records.

The flow: workload -> router -> replicas (scheduler + KV cache each, priced by the cost model)
-> request and iteration records -> metrics. SimPy keeps time; plain objects keep state.

A colocated deployment is ``cluster.num_replicas`` replicas of one kind, each running prefill
and decode. A scheduler with a ``decode_policy`` (``distserve``) makes it disaggregated: a
prefill pool and a decode pool joined by a KV-transfer network (``simulator.engine.disaggregation``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import simpy
from tqdm import tqdm

from simulator.engine import metrics
from simulator.cost_models import build_cost_model
from simulator.engine.deployment import Deployment, pool_config, resolve_deployment
from simulator.engine.disaggregation import DisaggregatedCluster
from simulator.errors import ScenarioError
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.kv_transfer import link_bandwidth_and_latency
from simulator.engine.replica import Replica
from simulator.engine.request import Request
from simulator.engine.request_columns import RequestColumns, RowRequests, arrivals_from_columns
from simulator.engine.router import make_router
from simulator.engine.token_gaps import TokenGapHistogram
from simulator.scenario import Scenario
from simulator.schedulers import SCHEDULERS, Scheduler
from simulator.workload import Workload, load_workload_columns

ROLES = ("colocated", "prefill", "decode")  # instance roles, the categories of the ``role`` column


@dataclass(frozen=True)
class SimulationResult:
    """What a run produced: per-request and per-iteration tables, all token gaps (or their
    histogram), the summary. ``iterations`` holds the kept iterations (``output.iterations``).

    ``deployment`` is the colocated replicas' (disaggregated: the prefill pool's);
    ``deployments`` has each pool's by instance role, ``replica_roles`` each replica id's role.
    """

    scenario: Scenario
    deployment: Deployment
    workload: Workload
    requests: pd.DataFrame
    iterations: pd.DataFrame
    tbt_s: np.ndarray
    summary: dict
    deployments: dict[str, Deployment] = dataclasses.field(default_factory=dict)
    replica_roles: dict[int, str] = dataclasses.field(default_factory=dict)
    token_gap_histogram: TokenGapHistogram | None = None  # output.token_gaps: histogram (then tbt_s is empty)


def scheduler_policy(scenario: Scenario, source: str = "<scenario>") -> type[Scheduler]:
    """The scheduler class named by ``scheduler.name``.

    Raises:
        ScenarioError: the name is not in ``SCHEDULERS`` (the message lists the known names).
    """
    cls = SCHEDULERS.get(scenario.scheduler.name)
    if cls is None:
        raise ScenarioError(source, "scheduler.name", scenario.scheduler.name, "unknown scheduler", f"use one of {', '.join(SCHEDULERS)}")
    return cls


def is_disaggregated(scenario: Scenario, source: str = "<scenario>") -> bool:
    """Whether the scenario's scheduler runs separate prefill and decode pools (DistServe)."""
    return getattr(scheduler_policy(scenario, source), "decode_policy", None) is not None


def unused_fields(scenario: Scenario, source: str = "<scenario>") -> list[tuple[str, str]]:
    """Fields set away from their defaults that this scenario's scheduler does not use: (field, why).

    A colocated scheduler runs ``cluster.num_replicas`` replicas and ignores the DistServe pools
    and link; ``distserve`` sizes its pools with ``cluster.prefill`` / ``cluster.decode`` and
    ignores ``cluster.num_replicas``. Callers warn (a sweep's base scenario may carry fields for
    several schedulers, so these are not errors).

    Raises:
        ScenarioError: an unknown scheduler.
    """
    cluster, name = scenario.cluster, scenario.scheduler.name
    out = _unused_policy_knobs(scenario.scheduler)
    if is_disaggregated(scenario, source):
        if cluster.num_replicas != 1:
            out.append(("cluster.num_replicas", f"{name} sizes its pools with cluster.prefill.num_replicas and cluster.decode.num_replicas"))
        return out
    why = "used by disaggregated schedulers (distserve) only"
    out += [(f"cluster.{pool}", why) for pool in ("prefill", "decode") if getattr(cluster, pool) is not None]
    if cluster.kv_transfer != type(cluster.kv_transfer)():
        out.append(("cluster.kv_transfer", why))
    return out


# Scheduler knobs named for the one policy that reads them (scheduler.<policy>_<knob>).
_POLICY_KNOB_PREFIXES = ("fastserve", "sjf", "static")


def _unused_policy_knobs(config) -> list[tuple[str, str]]:
    """``scheduler.<policy>_*`` fields set away from their defaults under another scheduler."""
    defaults = type(config)()
    out = []
    for field in dataclasses.fields(config):
        policy = field.name.split("_", 1)[0]
        if policy in _POLICY_KNOB_PREFIXES and policy != config.name and getattr(config, field.name) != getattr(defaults, field.name):
            out.append((f"scheduler.{field.name}", f"read by the {policy} scheduler only"))
    return out


def resolve_deployments(scenario: Scenario, source: str = "<scenario>") -> dict[str, Deployment]:
    """Each pool's deployment by instance role: ``colocated``, or ``prefill`` and ``decode``.

    Raises:
        ScenarioError: an unknown scheduler, or any check of ``resolve_deployment``.
    """
    if is_disaggregated(scenario, source):
        return {role: resolve_deployment(scenario, source, role) for role in ("prefill", "decode")}
    return {"colocated": resolve_deployment(scenario, source)}


def describe_pools(scenario: Scenario, deployments: dict[str, Deployment]) -> str:
    """The replicas in words: ``2 replica(s) of TP1 PP1 h100-sxm`` or, disaggregated,
    ``1 prefill + 1 decode replica(s) of TP1 PP1 h100-sxm, KV over nvlink``."""
    if "colocated" in deployments:
        d = deployments["colocated"]
        return f"{scenario.cluster.num_replicas} replica(s) of TP{d.tensor_parallel_size} PP{d.pipeline_parallel_size} {d.gpu.name}"
    pools = [f"{pool_config(scenario, role).num_replicas} {role} replica(s) of TP{d.tensor_parallel_size} PP{d.pipeline_parallel_size}" for role, d in deployments.items()]
    return f"{' + '.join(pools)} {deployments['prefill'].gpu.name}, KV over {scenario.cluster.kv_transfer.link}"


def describe_kv_transfer(scenario: Scenario, deployments: dict[str, Deployment]) -> str:
    """The KV-transfer link of a disaggregated deployment in words (bandwidths, latency)."""
    bandwidth, latency = link_bandwidth_and_latency(scenario.cluster.kv_transfer, deployments["prefill"].gpu)
    d = deployments["prefill"]
    return (
        f"KV transfer over {scenario.cluster.kv_transfer.link}: {bandwidth / 1e9:g} GB/s per GPU, {latency * 1e6:g} us per transfer; "
        f"{d.model.kv_bytes_per_token(d.dtype_bytes) / 1024:g} KiB of KV per prompt token"
    )


def _arrivals(env: simpy.Environment, requests: list[Request], dispatch: Callable[[Request], None]):
    for request in requests:
        delay = request.arrival_time - env.now
        if delay > 0:
            yield env.timeout(delay)
        dispatch(request)


class ClosedLoop:
    """``concurrency`` clients, each sending its next request when its last one finished.

    As ``vllm bench serve --max-concurrency N`` (vllm/benchmarks/serve.py: a semaphore of N
    around each request, requests sent as fast as slots free) and genai-perf's concurrency mode:
    the first N requests are sent at time 0, and each finish sends the next request of the
    workload, in order, ``think_time_s`` later. A request's arrival time is the moment it is
    sent, so TTFT counts from the client's send.
    """

    def __init__(self, env: simpy.Environment, requests: list[Request], concurrency: int, think_time_s: float,
                 dispatch: Callable[[Request], None]) -> None:
        self.env, self.requests, self.think_time_s, self.dispatch = env, requests, think_time_s, dispatch
        self.next = 0  # the next request of the workload a client will send
        for _ in range(min(concurrency, len(requests))):
            self._send(self._take())

    def _take(self) -> Request:
        request = self.requests[self.next]
        self.next += 1
        return request

    def _send(self, request: Request) -> None:
        request.arrival_time = self.env.now
        self.dispatch(request)

    def _send_later(self, request: Request):
        yield self.env.timeout(self.think_time_s)
        self._send(request)

    def on_finish(self, request: Request) -> None:
        """The client of ``request`` sends its next one (if the workload has one left)."""
        if self.next < len(self.requests):
            if self.think_time_s > 0:
                self.env.process(self._send_later(self._take()))
            else:
                self._send(self._take())


class Simulation:
    """A scenario built into a SimPy environment: workload, router, replicas, cost model.

    Args:
        scenario: the validated scenario.
        source: the scenario's file name, for error messages.
        fast_forward: let schedulers take unchanged decode iterations in one go
            (``simulator.schedulers.fast_forward``; same results, to float summation order of
            the token-gap histogram's mean); False steps one iteration at a time.

    Raises:
        ScenarioError: the scheduler, router, deployment or workload is invalid.
    """

    def __init__(self, scenario: Scenario, source: str = "<scenario>", fast_forward: bool = True) -> None:
        self.scenario = scenario
        sched_cfg = scenario.scheduler
        scheduler_cls = scheduler_policy(scenario, source)
        decode_policy = getattr(scheduler_cls, "decode_policy", None)
        router = make_router(scenario.cluster.router, scenario.seed, source)
        self.env = env = simpy.Environment()
        self.num_finished = 0
        self.cluster: DisaggregatedCluster | None = None
        if decode_policy is None:
            self.deployment = deployment = resolve_deployment(scenario, source)
            self.deployments = {"colocated": deployment}
            self._load_workload(scenario, deployment.max_model_len, source)
            self.cost_model = build_cost_model(scenario, deployment, source)
            swap_space = SwapSpace.for_deployment(deployment, sched_cfg.swap_space_gib)
            self.replicas = [
                Replica(
                    env, i,
                    scheduler_cls(deployment.scheduler_config(sched_cfg), BlockManager(deployment.num_kv_blocks, sched_cfg.block_size, sched_cfg.watermark),
                                  deployment.scheduler_token_budget, deployment.max_model_len, swap_space),
                    self.cost_model, self._on_finish,
                )
                for i in range(scenario.cluster.num_replicas)
            ]
            self.replica_roles = {i: "colocated" for i in range(len(self.replicas))}
            replicas, schedulers = self.replicas, [replica.scheduler for replica in self.replicas]

            def dispatch(request: Request) -> None:
                replicas[router(request, schedulers)].add_request(request)
        else:
            self.cluster = cluster = DisaggregatedCluster(env, scenario, source, scheduler_cls, decode_policy, router, self._on_finish)
            self.deployments = cluster.deployments
            self.deployment = deployment = cluster.deployments["prefill"]
            self._load_workload(scenario, deployment.max_model_len, source)
            self.replicas = cluster.replicas
            self.replica_roles = cluster.roles
            dispatch = cluster.add_request
        out = scenario.output
        self.token_gap_histogram = TokenGapHistogram() if out.token_gaps == "histogram" else None
        keep_every = {"full": 1, "sampled": out.iteration_sample_every, "none": None}[out.iterations]
        for replica in self.replicas:
            replica.keep_iterations(keep_every)
            replica.fast_forward_decodes = fast_forward
            if self.token_gap_histogram is not None:
                replica.scheduler.record_token_gaps(self.token_gap_histogram)
        self.closed_loop: ClosedLoop | None = None
        load, results = scenario.workload, self.request_columns
        if load.concurrency is not None:
            rows = self.workload.requests if results is None else RowRequests(self.workload_columns)
            self.closed_loop = ClosedLoop(env, rows, load.concurrency, load.think_time_s, dispatch)
        elif results is None:
            env.process(_arrivals(env, self.workload.requests, dispatch))
        else:
            env.process(arrivals_from_columns(env, self.workload_columns, dispatch))

    def _load_workload(self, scenario: Scenario, max_model_len: int, source: str) -> None:
        """The workload as columns, and as ``Request`` objects unless ``output.keep_requests`` is false
        (then ``workload.requests`` is empty and results go to ``request_columns``)."""
        self.workload_columns = columns = load_workload_columns(scenario.workload, scenario.seed, max_model_len, source)
        keep = scenario.output.keep_requests
        self.workload = Workload(columns.requests() if keep else [], columns.source, columns.num_skipped, columns.num_truncated_outputs)
        self.request_columns = None if keep else RequestColumns(columns, keep_gaps=scenario.output.token_gaps == "exact")

    def _on_finish(self, request: Request) -> None:
        self.num_finished += 1
        if self.request_columns is not None:
            self.request_columns.record(request)
        if self.closed_loop is not None:
            self.closed_loop.on_finish(request)

    def run(self, progress: bool = False) -> SimulationResult:
        """Run until every request has finished; return the records and the summary.

        Args:
            progress: show a progress bar (on stderr) when the run lasts more than 2 s.

        Raises:
            AssertionError: the run stalled (no event left with requests unfinished): a bug.
        """
        wall_start = time.perf_counter()
        env, requests, num_requests = self.env, self.workload.requests, len(self.workload_columns)
        last_arrival = float(self.workload_columns.arrival_time[-1])
        # Advance in slices of simulated time so the progress bar can move between them.
        slice_s = max(last_arrival, 1.0) / 200 if self.closed_loop is None else 1.0  # closed loop: arrivals unknown ahead
        with tqdm(total=num_requests, unit="req", delay=2.0, disable=not progress, desc=self.scenario.name, leave=False) as bar:
            # A stall (requests left, every replica idle, no arrival to come) is a bug. SimPy keeps
            # the ``until`` marker queued after ``run(until=...)``, so ``peek()`` never shows an empty
            # queue: a run counts as stalled after 1,000 slices past the last arrival with no step.
            idle_slices, steps = 0, -1
            while self.num_finished < num_requests:
                now_steps = sum(replica.num_iterations for replica in self.replicas)
                idle_slices = idle_slices + 1 if now_steps == steps and env.now > last_arrival else 0
                steps = now_steps
                if env.peek() == float("inf") or idle_slices > 1000:
                    raise AssertionError(f"simulation stalled at t={env.now:.3f} s with {num_requests - self.num_finished} requests unfinished")
                env.run(until=env.now + slice_s)
                bar.update(self.num_finished - bar.n)

        slo = self.scenario.slo
        results = self.request_columns
        request_df = metrics.request_table(requests, slo) if results is None else metrics.request_table_from_columns(results.columns(), slo)
        iteration_df = metrics.iteration_table([row for replica in self.replicas for row in replica.records])
        roles = np.array([ROLES.index(self.replica_roles[i]) for i in range(len(self.replicas))], dtype=np.int8)
        iteration_df["role"] = pd.Categorical.from_codes(roles[iteration_df["replica_id"].to_numpy(dtype=np.int64)], categories=list(ROLES))
        histogram = self.token_gap_histogram
        if histogram is not None:
            tbt = np.empty(0)
        else:
            tbt = metrics.token_gaps(requests) if results is None else results.token_gaps()
        totals = None if self.scenario.output.iterations == "full" else metrics.iteration_totals(self.replicas)
        summary = metrics.summarize(request_df, iteration_df, tbt, slo, histogram, totals)
        summary["num_skipped_requests"] = self.workload.num_skipped
        summary["num_truncated_outputs"] = self.workload.num_truncated_outputs
        if self.cluster is None:
            summary["num_kv_blocks_per_replica"] = self.deployment.num_kv_blocks
        else:
            for name, column in self.cluster.request_columns(request_df["request_id"].tolist()).items():
                request_df[name] = column
            summary["num_kv_blocks_per_replica"] = {role: d.num_kv_blocks for role, d in self.deployments.items()}
            summary.update(self.cluster.transfer_summary(request_df))
        from simulator.reports.run_header import describe_run  # what ran: deployment, scheduler, cost model, workload

        summary["run"] = describe_run(self.scenario, self.deployments, self.replicas, self.replica_roles,
                                      request_df["arrival_time"].to_numpy(), summary["request_throughput_rps"])
        summary["wall_time_s"] = time.perf_counter() - wall_start
        return SimulationResult(self.scenario, self.deployment, self.workload, request_df, iteration_df, tbt, summary, self.deployments,
                                self.replica_roles, histogram)


def simulate(scenario: Scenario, source: str = "<scenario>", progress: bool = False, fast_forward: bool = True) -> SimulationResult:
    """Build and run ``scenario``; see ``Simulation``. ``wall_time_s`` covers building too."""
    wall_start = time.perf_counter()
    result = Simulation(scenario, source, fast_forward).run(progress)
    result.summary["wall_time_s"] = time.perf_counter() - wall_start
    return result
