"""A disaggregated cluster (DistServe): a prefill pool, a decode pool, the KV transfers between.

Zhong et al., "DistServe" (OSDI'24), Sec. 4.4. A request's path:

    arrival --router--> prefill replica: queue, prefill iteration, first token sampled
        --> one output token: finished there
        --> else: the decode replica with the lowest KV usage (counting the prompts already
            queued for it) is chosen; the request waits in that replica's FIFO transfer queue
            until the replica has blocks for its prompt (DistServe's decode instance pulls KV
            when it has memory), then its prompt's KV crosses the KV-transfer network
            (``simulator.engine.kv_transfer``) while the prefill replica still holds it
        --> transfer done: prefill blocks freed, the request joins the decode replica's batch;
            decode iterations until its last token

The first token reaches the user at the end of the prefill iteration that samples it, before
its KV moves: DistServe's context-stage engine hands each request's first token to the client
right after the iteration (``ContextStageLLMEngine._step`` calls the engine's
``on_new_step_output`` callback, then puts the request on the bridge queue to the decode
stage; ``distserve/single_stage_engine.py``, LLMServe/DistServe commit 33c3d3b), and the paper
counts TTFT there (Sec. 2). So TTFT = prefill queueing + prefill, and the wait for decode
memory and the transfer delay the second token: they count in TPOT. (The DistServe authors'
measurements show it: at loads where the decode instance runs out of memory, requests of two
output tokens have a TTFT under 200 ms and a TPOT of seconds.)

Replica ids run over both pools: prefill replicas 0..P-1, decode replicas P..P+D-1;
``roles`` maps each id to ``prefill`` or ``decode``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import simpy

from simulator.cost_models import build_cost_model
from simulator.engine.deployment import Deployment, pool_config, resolve_deployment
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.kv_transfer import KVTransferNetwork, link_bandwidth_and_latency
from simulator.engine.replica import Replica
from simulator.engine.request import Request
from simulator.engine.router import Router
from simulator.scenario import Scenario
from simulator.schedulers.base import Scheduler


def _num_shards(tp: int, pp: int, deployment: Deployment) -> int:
    """GPUs of a replica holding distinct KV shards: min(TP, KV heads) per stage (1 for latent attention,
    whose one latent per token every TP rank caches), times PP, times the data-parallel ranks."""
    heads = 1 if deployment.model.mla is not None else deployment.model.num_kv_heads
    return min(tp, heads) * pp * deployment.data_parallel_size


class DisaggregatedCluster:
    """The two pools and the KV-transfer network of a disaggregated deployment.

    Args:
        env: the simulation environment.
        scenario: the validated scenario (``cluster.prefill``, ``cluster.decode``,
            ``cluster.kv_transfer``, ``scheduler``).
        source: the scenario's file name, for error messages.
        prefill_policy: the scheduler class of prefill replicas (has ``release``).
        decode_policy: the scheduler class of decode replicas (has ``can_admit``,
            ``reserve``).
        router: chooses the prefill replica of each arriving request.
        on_finish: called with each request that finishes.

    Raises:
        ScenarioError: a pool's parallelism or memory plan is invalid (the message names
            ``cluster.prefill.*`` / ``cluster.decode.*``).
    """

    def __init__(
        self, env: simpy.Environment, scenario: Scenario, source: str, prefill_policy: type[Scheduler],
        decode_policy: type[Scheduler], router: Router, on_finish: Callable[[Request], None],
    ) -> None:
        self.env, self.router, self.on_finish = env, router, on_finish
        sched_cfg = scenario.scheduler
        self.deployments: dict[str, Deployment] = {role: resolve_deployment(scenario, source, role) for role in ("prefill", "decode")}
        self.pools: dict[str, list[Replica]] = {}
        self.roles: dict[int, str] = {}
        # Both pools run on hardware.gpu: one link kind for all.
        link_bandwidth, link_latency = link_bandwidth_and_latency(scenario.cluster.kv_transfer, self.deployments["prefill"].gpu)
        port_bandwidth = {}
        for role, policy, callback in (("prefill", prefill_policy, self._on_prefill_exit), ("decode", decode_policy, self._on_decode_finish)):
            deployment = self.deployments[role]
            pool = pool_config(scenario, role)
            cost_model = build_cost_model(scenario, deployment, source)
            swap_space = SwapSpace.for_deployment(deployment, sched_cfg.swap_space_gib)
            replicas = self.pools[role] = []
            for _ in range(pool.num_replicas):
                replica_id = len(self.roles)
                block_manager = BlockManager(deployment.num_kv_blocks, sched_cfg.block_size, sched_cfg.watermark)
                scheduler = policy(deployment.scheduler_config(sched_cfg), block_manager, deployment.scheduler_token_budget,
                                   deployment.max_model_len, swap_space)
                replicas.append(Replica(env, replica_id, scheduler, cost_model, callback))
                self.roles[replica_id] = role
                shards = _num_shards(deployment.tensor_parallel_size, deployment.pipeline_parallel_size, deployment)
                port_bandwidth[replica_id] = link_bandwidth * shards
        self.replicas: list[Replica] = self.pools["prefill"] + self.pools["decode"]
        self.network = KVTransferNetwork(env, port_bandwidth, link_latency)
        self.kv_bytes_per_token = self.deployments["prefill"].model.kv_bytes_per_token(self.deployments["prefill"].dtype_bytes)
        self._prefill_schedulers = [r.scheduler for r in self.pools["prefill"]]
        num_decode = len(self.pools["decode"])
        self._queues: list[deque[Request]] = [deque() for _ in range(num_decode)]  # per decode replica: awaiting transfer
        self._queued_blocks = [0] * num_decode
        # Per request (by id), filled as it goes: where it ran and when its KV moved.
        self.prefill_replica: dict[int, int] = {}
        self.prefill_end_time: dict[int, float] = {}
        self.transfer_start_time: dict[int, float] = {}
        self.transfer_end_time: dict[int, float] = {}

    # -- arrivals and the prefill pool --------------------------------------------------------
    def add_request(self, request: Request) -> None:
        """Route an arriving request to a prefill replica."""
        replica = self.pools["prefill"][self.router(request, self._prefill_schedulers)]
        self.prefill_replica[request.request_id] = replica.replica_id
        replica.add_request(request)

    def _on_prefill_exit(self, request: Request) -> None:
        if request.is_finished:  # one output token: done at the prefill replica
            self.on_finish(request)
            return
        self.prefill_end_time[request.request_id] = self.env.now
        d = self._choose_decode(request)
        self._queues[d].append(request)
        self._queued_blocks[d] += self.pools["decode"][d].scheduler.block_manager.num_blocks_for(request.num_prompt_tokens)
        self._pull(d)

    # -- the decode pool ----------------------------------------------------------------------
    def _choose_decode(self, request: Request) -> int:
        """The decode replica with the lowest KV usage, counting prompts queued for it.

        Ties: fewer requests (running, preempted, in transfer, queued), then the lowest index.
        """
        best, best_key = 0, None
        for i, replica in enumerate(self.pools["decode"]):
            s = replica.scheduler
            bm = s.block_manager
            key = ((bm.num_blocks - bm.num_free_blocks + self._queued_blocks[i]) / bm.num_blocks,
                   len(s.running) + len(s.waiting) + s.num_incoming + len(self._queues[i]))
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best

    def _pull(self, d: int) -> None:
        """Start the transfers decode replica ``d`` has memory for, in FIFO order."""
        queue, replica = self._queues[d], self.pools["decode"][d]
        scheduler = replica.scheduler
        while queue and scheduler.can_admit(queue[0]):
            request = queue.popleft()
            self._queued_blocks[d] -= scheduler.block_manager.num_blocks_for(request.num_prompt_tokens)
            scheduler.reserve(request)
            self.transfer_start_time[request.request_id] = self.env.now
            self.network.send(
                self.prefill_replica[request.request_id], replica.replica_id,
                request.num_prompt_tokens * self.kv_bytes_per_token,
                lambda request=request, d=d: self._on_transfer_done(request, d),
            )

    def _on_transfer_done(self, request: Request, d: int) -> None:
        now = self.env.now
        rid = request.request_id
        self.transfer_end_time[rid] = now
        prefill = self.replicas[self.prefill_replica[rid]]
        prefill.scheduler.release(request)
        prefill.wake()  # its freed blocks may admit waiting prompts
        self.pools["decode"][d].add_request(request)
        self._pull(d)

    def _on_decode_finish(self, request: Request) -> None:
        self.on_finish(request)
        self._pull(request.replica_id - len(self.pools["prefill"]))

    # -- records ------------------------------------------------------------------------------
    def request_columns(self, request_ids: Iterable[int]) -> dict[str, np.ndarray]:
        """Per request (in ``request_ids`` order): pools and KV-transfer times (s), NaN/-1 if none.

        ``kv_transfer_s`` is the transfer itself (latency plus streaming, sharing the network);
        ``kv_transfer_wait_s`` is the wait between the end of prefill and the transfer's start
        (for blocks on the decode replica).
        """
        ids = list(request_ids)
        nan = float("nan")
        prefill_end = np.array([self.prefill_end_time.get(i, nan) for i in ids])
        start = np.array([self.transfer_start_time.get(i, nan) for i in ids])
        end = np.array([self.transfer_end_time.get(i, nan) for i in ids])
        return {
            "prefill_replica_id": np.array([self.prefill_replica.get(i, -1) for i in ids], dtype=np.int64),
            "prefill_end_time": prefill_end,
            "kv_transfer_start_time": start,
            "kv_transfer_end_time": end,
            "kv_transfer_wait_s": start - prefill_end,
            "kv_transfer_s": end - start,
        }

    def transfer_summary(self, requests: pd.DataFrame) -> dict:
        """Summary keys of the KV transfers (s): mean, P50, P90, P99 of ``kv_transfer_s`` and
        ``kv_transfer_wait_s`` over the requests that had one, and the pools' sizes."""
        out: dict = {"num_replicas": {role: len(pool) for role, pool in self.pools.items()}}
        for name in ("kv_transfer_s", "kv_transfer_wait_s"):
            values = requests[name].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            out[name] = {"mean": float(values.mean()), **{f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}} if values.size else dict.fromkeys(("mean", "p50", "p90", "p99"))
        return out
