"""A replica: one model copy (TP x PP GPUs) running iterations as one SimPy process.

Each iteration: the scheduler picks a batch, the replica waits the cost model's step time (plus
the PCIe time of any KV blocks swapped for it: vLLM v0 runs cache swaps before the forward pass
of the same step, one block after another), the scheduler folds the results back. With nothing
to run, the replica sleeps on an event that the next arriving request triggers. Per-iteration
records are tuples in a list (all, every k-th, or none: ``keep_iterations``), turned into a
DataFrame after the run; counters for the summary cover every iteration.

Host time. The step time is GPU work plus the cost model's ``host_time`` (scheduling, input
preparation, output processing). By default they run in series: steps start ``step_time``
apart and a step's tokens appear at its end. Under vLLM's async scheduling
(``scheduler.async_scheduling``; ``simulator.schedulers.vllm_engine``) the host work of the next
step runs while this one is on the GPU, so steps start ``max(GPU, host)`` apart; a step's
tokens still reach the client one host time after its GPU work (its own output processing), at
``start + step_time``, never before the previous step's; a finished request is handed to
``on_finish`` then. A request arriving mid-step waits for the step after the next, which the
engine scheduled when this one started. A cost model without ``host_time`` is all GPU time.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from simulator.cost_models.base import CostModel
from simulator.engine.request import Request
from simulator.schedulers.base import Scheduler

# num_resume_cached_tokens: prefix-cache hits of requests re-admitted in the step after preemption by recompute.
ITERATION_COLUMNS = (
    "replica_id", "iteration", "start_time", "end_time", "batch_size", "num_prefill_tokens",
    "num_decode_tokens", "num_kv_blocks_used", "kv_usage", "num_waiting", "num_running", "num_preemptions",
    "num_resume_cached_tokens",
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
        self.records: list[tuple] = []  # one tuple per kept iteration, fields as ITERATION_COLUMNS
        self.keep_every: int | None = 1  # keep iterations 0, k, 2k, ... (1: all; None: none)
        # Let the scheduler take unchanged decode iterations in one go (Scheduler.fast_forward).
        self.fast_forward_decodes = True
        # Exact over every iteration, whichever are kept: for the summary.
        self.num_iterations = 0
        self.total_batch_size = 0
        self.total_kv_usage = 0.0
        self.num_resume_cached_tokens = 0
        self._wakeup: simpy.Event | None = None
        self.process = env.process(self._run())

    def keep_iterations(self, every: int | None) -> None:
        """Keep the record of every ``every``-th iteration (1: all, the default; None: none).

        Call before the run starts; the summary counters above cover every iteration anyway."""
        assert every is None or every >= 1, f"keep every {every}-th iteration: must be >= 1 or None"
        self.keep_every = every

    def add_request(self, request: Request) -> None:
        """Hand an arriving request to this replica's scheduler; wake the replica if idle.

        Under async scheduling a request arriving while a step runs is not seen by the next
        ``schedule`` call (the engine scheduled that step when this one started)."""
        request.replica_id = self.replica_id
        if self.scheduler.async_scheduling and self._wakeup is None:  # mid-step: the next step is already scheduled
            self.scheduler.add_request(request, seen_by_next_step=False)
        else:
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
        host_time = getattr(cost_model, "host_time", None) if scheduler.async_scheduling else None
        record = self.records.append
        replica_id, iteration, keep_every = self.replica_id, 0, self.keep_every
        last_token_time, num_resume_cached = 0.0, 0
        while True:
            batch = scheduler.schedule(env.now)
            if batch is None:
                self._wakeup = env.event()
                wake_at = scheduler.wake_time(env.now)
                if wake_at is not None and wake_at > env.now:
                    yield self._wakeup | env.timeout(wake_at - env.now)  # a batching delay ends
                else:
                    yield self._wakeup
                self._wakeup = None
                continue
            start = env.now
            # KV usage and queues as the step runs: after admission, before fold-back.
            used = block_manager.num_blocks - block_manager.num_free_blocks
            num_waiting, num_running = len(scheduler.waiting), len(scheduler.running)
            if (self.fast_forward_decodes and host_time is None and not batch.num_prefill_tokens and not batch.num_preemptions
                    and not batch.num_swapped_blocks):
                # A decode batch: it, and the same requests' iterations after it, may all end before the next event.
                steps, finished = scheduler.fast_forward(batch, start, env.peek(), cost_model.step_time)
                if steps:
                    n, num_blocks = len(batch.requests), block_manager.num_blocks
                    for step_start, end, used in steps:
                        kv_usage = used / num_blocks
                        if keep_every is not None and iteration % keep_every == 0:
                            record((replica_id, iteration, step_start, end, n, 0, n, used, kv_usage, num_waiting, num_running, 0, 0))
                        iteration += 1
                        self.total_kv_usage += kv_usage
                    self.num_iterations = iteration
                    self.total_batch_size += n * len(steps)
                    yield env.timeout(steps[-1][1] - start)
                    for request in finished:
                        self.on_finish(request)
                    continue
            step_time = cost_model.step_time(batch)
            if batch.num_swapped_blocks:
                step_time += batch.num_swapped_blocks * block_transfer_s
            if host_time is None:  # host work in series with the GPU step
                yield env.timeout(step_time)
                token_time = env.now
            else:  # async scheduling: the next step's host work overlaps this step's GPU work
                host = host_time(batch)
                yield env.timeout(max(step_time - host, host))
                token_time = last_token_time = max(start + step_time, last_token_time)
            resumed = scheduler.num_resume_cached_tokens - num_resume_cached
            num_resume_cached += resumed
            kv_usage = used / block_manager.num_blocks
            if keep_every is not None and iteration % keep_every == 0:
                record((replica_id, iteration, start, env.now, len(batch.requests), batch.num_prefill_tokens,
                        batch.num_decode_tokens, used, kv_usage, num_waiting, num_running,
                        batch.num_preemptions, resumed))
            iteration += 1
            self.num_iterations = iteration
            self.total_batch_size += len(batch.requests)
            self.total_kv_usage += kv_usage
            self.num_resume_cached_tokens = num_resume_cached
            finished = scheduler.on_step_end(batch, token_time)
            if finished and token_time > env.now:
                env.process(self._finish_later(finished, token_time - env.now))
            else:
                for request in finished:
                    self.on_finish(request)

    def _finish_later(self, finished: list[Request], delay_s: float):
        """Hand ``finished`` to ``on_finish`` ``delay_s`` from now, when their last token reaches the client."""
        yield self.env.timeout(delay_s)
        for request in finished:
            self.on_finish(request)
