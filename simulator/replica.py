"""A replica: one model copy (TP x PP GPUs) running iterations as one SimPy process.

Each iteration: the scheduler picks a batch, the replica waits the cost model's step time (plus
the PCIe time of any KV blocks swapped for it: vLLM v0 runs cache swaps before the forward pass
of the same step, one block after another), the scheduler folds the results back. With nothing to run, the replica sleeps on an event that the
next arriving request triggers. Per-iteration records go into plain column lists, turned into a
DataFrame after the run.

"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from simulator.cost_models.base import CostModel
from simulator.request import Request
from simulator.schedulers.base import Scheduler

ITERATION_COLUMNS = (
    "replica_id", "iteration", "start_time", "end_time", "batch_size", "num_prefill_tokens",
    "num_decode_tokens", "num_kv_blocks_used", "kv_usage", "num_waiting", "num_running", "num_preemptions",
)


class Replica:
    """One replica's SimPy process.

    Args:
        env: the simulation environment.
        replica_id: index of this replica.
        scheduler: its batching policy (owns the queues and the KV cache).
        cost_model: prices each iteration.
        on_finish: called with each request that finishes.
    """

    def __init__(self, env: simpy.Environment, replica_id: int, scheduler: Scheduler, cost_model: CostModel, on_finish: Callable[[Request], None]) -> None:
        self.env, self.replica_id, self.scheduler, self.cost_model = env, replica_id, scheduler, cost_model
        self.on_finish = on_finish
        self.records: list[tuple] = []  # one tuple per iteration, fields as ITERATION_COLUMNS
        self._wakeup: simpy.Event | None = None
        self.process = env.process(self._run())

    def add_request(self, request: Request) -> None:
        """Hand an arriving request to this replica's scheduler; wake the replica if idle."""
        request.replica_id = self.replica_id
        self.scheduler.add_request(request)
        self.wake()

    def wake(self) -> None:
        """Let an idle replica schedule again: a request arrived or its scheduler's state changed."""
        if self._wakeup is not None and not self._wakeup.triggered:
            self._wakeup.succeed()

    def _run(self):
        env, scheduler, cost_model = self.env, self.scheduler, self.cost_model
        block_manager = scheduler.block_manager
        block_transfer_s = scheduler.swap_space.block_transfer_s
        record = self.records.append
        replica_id, iteration = self.replica_id, 0
        while True:
            batch = scheduler.schedule(env.now)
            if batch is None:
                self._wakeup = env.event()
                yield self._wakeup
                self._wakeup = None
                continue
            start = env.now
            # KV usage and queues as the step runs: after admission, before fold-back.
            used = block_manager.num_blocks - block_manager.num_free_blocks
            num_waiting, num_running = len(scheduler.waiting), len(scheduler.running)
            step_time = cost_model.step_time(batch)
            if batch.num_swapped_blocks:
                step_time += batch.num_swapped_blocks * block_transfer_s
            yield env.timeout(step_time)
            record((replica_id, iteration, start, env.now, len(batch.requests), batch.num_prefill_tokens,
                    batch.num_decode_tokens, used, used / block_manager.num_blocks, num_waiting, num_running,
                    batch.num_preemptions))
            iteration += 1
            for request in scheduler.on_step_end(batch, env.now):
                self.on_finish(request)
