"""The scheduler base: what every per-replica batching policy shares.

A policy implements ``schedule(now) -> Batch | None`` (pick the next iteration's batch; None
means nothing to run) and inherits ``on_step_end(batch, now)``, which folds a finished step
back into the requests: computed tokens advance, a step that completes a request's tokens
samples one output token, and a request with all its output tokens finishes and frees its KV
blocks. The replica loop calls only these two and ``add_request``.
"""

from __future__ import annotations

import bisect
from collections import deque
from operator import attrgetter

from simulator.batch import Batch
from simulator.kv_cache import BlockManager
from simulator.request import Request, RequestStatus
from simulator.scenario import SchedulerConfig

_request_id = attrgetter("request_id")


class Scheduler:
    """Base of every policy: the waiting and running queues, the KV cache, step fold-back.

    Args:
        config: the scenario's scheduler section (policy knobs).
        block_manager: this replica's KV cache.
        max_num_batched_tokens: most tokens computed in one iteration (resolved default).
        max_model_len: longest prompt plus output (tokens).
    """

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int) -> None:
        self.config = config
        self.block_manager = block_manager
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.waiting: deque[Request] = deque()  # FCFS; preempted requests go back to the front
        self.running: list[Request] = []  # in arrival order: the last one is the newest
        self.num_preemptions = 0

    @property
    def token_budget(self) -> int:
        """Most tokens one iteration computes under this policy."""
        return self.max_num_batched_tokens

    def add_request(self, request: Request) -> None:
        """Queue a newly arrived request."""
        self.waiting.append(request)

    def schedule(self, now: float) -> Batch | None:
        """Pick the batch of the next iteration at time ``now`` (s); None when idle."""
        raise NotImplementedError

    def _admit(self, request: Request, num_tokens: int, now: float) -> None:
        """Move the request at the head of the waiting queue into the running list.

        Allocates KV blocks for ``num_tokens`` tokens; keeps ``running`` in arrival order.
        """
        assert self.waiting[0] is request, "requests are admitted from the head of the waiting queue"
        self.waiting.popleft()
        self.block_manager.allocate(request, num_tokens)
        request.status = RequestStatus.RUNNING
        if request.first_scheduled_time is None:
            request.first_scheduled_time = now
        running = self.running
        if not running or running[-1].request_id < request.request_id:
            running.append(request)
        else:
            bisect.insort(running, request, key=_request_id)

    def _make_room(self, request: Request, num_tokens: int) -> bool:
        """Grow ``request``'s block table to ``num_tokens`` tokens, preempting for it.

        Victims are the most recently arrived running requests (vLLM v0 preempts from the back of
        its running queue), taken until the blocks fit or the request itself is the newest.

        Returns:
            False when ``request`` itself was preempted.
        """
        while not self.block_manager.grow_to(request, num_tokens):
            victim = self.running.pop()
            self._preempt(victim)
            if victim is request:
                return False
        return True

    def _preempt(self, request: Request) -> None:
        """Preempt by recompute: free the KV blocks; the request prefills prompt and output again.

        vLLM v0 ``Scheduler._preempt_by_recompute``: the request goes back to the front of the
        waiting queue; the tokens it already generated are kept and re-prefilled with the prompt.
        """
        self.block_manager.free(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold a finished step back into its requests at time ``now`` (s).

        Returns:
            The requests that finished in this step (their KV blocks are already freed).
        """
        finished: list[Request] = []
        for request, num_new_tokens in zip(batch.requests, batch.num_new_tokens):
            computed = request.num_computed_tokens = request.num_computed_tokens + num_new_tokens
            generated = request.num_generated_tokens
            if computed == request.num_prompt_tokens + generated:  # all computed: sample a token
                generated = request.num_generated_tokens = generated + 1
                request.token_times.append(now)
                if request.first_token_time is None:
                    request.first_token_time = now
                if generated == request.num_output_tokens:
                    assert request.finish_time is None, f"request {request.request_id} finished twice"
                    request.status = RequestStatus.FINISHED
                    request.finish_time = now
                    self.block_manager.free(request)
                    finished.append(request)
        if finished:
            self.running = [r for r in self.running if r.status != RequestStatus.FINISHED]
        return finished
