"""The scheduler base: what every per-replica batching policy shares.

A policy implements ``schedule(now) -> Batch | None`` (pick the next iteration's batch; None
means nothing to run) and inherits ``on_step_end(batch, now)``, which folds a finished step
back into the requests: computed tokens advance, a step that completes a request's tokens
samples one output token, and a request with all its output tokens finishes and frees its KV
blocks. The replica loop calls only these two and ``add_request``.

The base also holds what several policies share: admission with prefix-cache hits, preemption
by recompute or by swap (with the CPU swap space's accounting), and swap-in.

Routers read a scheduler's state: ``len(waiting)``, ``len(running)``, ``len(swapped)``,
``block_manager.num_used_blocks`` / ``num_blocks``, and ``num_cached_prefix_tokens(request)``.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable
from collections import deque
from operator import attrgetter

from simulator.engine.batch import Batch
from simulator.errors import ScenarioError
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.prefix_cache import PrefixCachingBlockManager
from simulator.engine.request import Request, RequestStatus
from simulator.engine.token_gaps import FLUSH_AT, TokenGapHistogram
from simulator.scenario import SchedulerConfig

_request_id = attrgetter("request_id")


class Scheduler:
    """Base of every policy: the queues, the KV cache, preemption, step fold-back.

    Class attributes a policy sets:
        supports_swap: whether ``scheduler.preemption_mode: swap`` is allowed (the engine it
            models can swap, or the policy never preempts).
        prefix_caching_default: the engine's default when ``scheduler.enable_prefix_caching``
            is unset (on for vLLM v1, off for vLLM v0 and the others).
        running_in_arrival_order: keep ``running`` sorted by arrival (vLLM v0's FCFS policy
            re-sorts it every step), or append in the order requests are scheduled (vLLM v1).
        async_scheduling: the engine schedules the next step while this one runs (vLLM v1's
            async scheduling, ``simulator.schedulers.vllm_engine``): the replica overlaps host
            and GPU time, and requests arriving mid-step are added with ``add_request(request,
            seen_by_next_step=False)``. False here: host work runs in series with the GPU.

    Args:
        config: the scenario's scheduler section (policy knobs).
        block_manager: this replica's KV cache; replaced by a ``PrefixCachingBlockManager`` of
            the same size when prefix caching is on.
        max_num_batched_tokens: most tokens computed in one iteration (resolved default).
        max_model_len: longest prompt plus output (tokens).
        swap_space: CPU memory for swapped-out KV blocks (``SwapSpace.for_deployment``); the
            default has none, so preemption by swap falls back to recompute.

    Raises:
        ScenarioError: ``preemption_mode: swap`` for a policy whose engine cannot swap.
    """

    supports_swap: bool = False
    prefix_caching_default: bool = False
    running_in_arrival_order: bool = True
    async_scheduling: bool = False

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int, swap_space: SwapSpace | None = None) -> None:
        if config.preemption_mode == "swap" and not self.supports_swap:
            raise ScenarioError("<scenario>", "scheduler.preemption_mode", "swap", f"the {config.name} scheduler preempts by recompute only",
                                "set scheduler.preemption_mode: recompute, or use a scheduler that swaps (vllm, sarathi)")
        enabled = config.enable_prefix_caching
        self.prefix_caching = self.prefix_caching_default if enabled is None else enabled
        if self.prefix_caching and not isinstance(block_manager, PrefixCachingBlockManager):
            block_manager = PrefixCachingBlockManager.like(block_manager)
        self.config = config
        self.block_manager = block_manager
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.waiting: deque[Request] = deque()  # FCFS; preempted requests go back to the front
        self.running: list[Request] = []  # see running_in_arrival_order; the last one is the first victim
        self.swapped: list[Request] = []  # preempted by swap, in arrival order
        self.num_preemptions = 0
        # Tokens found in the prefix cache by requests re-admitted after preemption by recompute.
        self.num_resume_cached_tokens = 0
        self.swap = config.preemption_mode == "swap"
        self.swap_space = swap_space or SwapSpace()
        self.num_free_cpu_blocks = self.swap_space.num_blocks
        self._num_cpu_blocks_held: dict[int, int] = {}  # request_id -> its blocks in CPU memory
        self._num_swap_pending = 0  # blocks moved since the last batch was handed out
        # Token gaps buffer of the run's TokenGapHistogram; None: times kept per request.
        self.token_gaps: array | None = None
        self.token_gap_histogram: TokenGapHistogram | None = None

    @property
    def token_budget(self) -> int:
        """Most tokens one iteration computes under this policy."""
        return self.max_num_batched_tokens

    def add_request(self, request: Request) -> None:
        """Queue a newly arrived request."""
        self.waiting.append(request)

    def wake_time(self, now: float) -> float | None:
        """When a replica whose ``schedule`` just returned None should call it again with no
        new event (s, simulation time, > ``now``); None: only on the next event (an arrival, a
        transfer ending). Policies that wait on purpose (a batching delay) return its end."""
        return None

    def num_cached_prefix_tokens(self, request: Request) -> int:
        """Prompt tokens of ``request`` this replica's prefix cache holds now (0 when off).

        For routers (prefix affinity). Counts the leading full prompt blocks found in the cache,
        at most ``num_tokens - 1`` tokens, exactly what admission would reuse at this moment;
        O(cached blocks), changes nothing.
        """
        if not self.prefix_caching:
            return 0
        return self.block_manager.find_cached_prefix(request)[0] * self.block_manager.block_size

    def schedule(self, now: float) -> Batch | None:
        """Pick the batch of the next iteration at time ``now`` (s); None when idle."""
        raise NotImplementedError

    # -- admission ---------------------------------------------------------------------------
    def _find_cached_prefix(self, request: Request) -> tuple[int, int]:
        """(cached leading blocks, evictable among them) for a request about to be admitted."""
        if not self.prefix_caching or request.num_computed_tokens:
            return 0, 0
        return self.block_manager.find_cached_prefix(request)

    def _fit_prompt(self, request: Request) -> tuple[int, int] | None:
        """For a waiting request whose blocks cover all its uncomputed tokens (vLLM v0, Sarathi-Serve):
        (tokens to compute after the cached prefix, cached blocks), or None when the blocks do not fit.
        """
        num_new_tokens = request.num_uncomputed_tokens  # none computed yet
        num_cached_blocks, num_evictable = self._find_cached_prefix(request)
        if not self.block_manager.can_allocate(num_new_tokens, num_cached_blocks, num_evictable):
            return None
        return num_new_tokens - num_cached_blocks * self.block_manager.block_size, num_cached_blocks

    def _admit(self, request: Request, num_tokens: int, now: float, num_cached_blocks: int = 0) -> None:
        """Move the request at the head of the waiting queue into the running list.

        Allocates KV blocks for ``num_tokens`` tokens, the first ``num_cached_blocks`` of them
        shared from the prefix cache: ``num_computed_tokens`` starts after them.
        """
        assert self.waiting[0] is request, "requests are admitted from the head of the waiting queue"
        self.waiting.popleft()
        self.block_manager.allocate(request, num_tokens, num_cached_blocks)
        if num_cached_blocks:  # a waiting request has nothing computed
            request.num_computed_tokens = num_cached_blocks * self.block_manager.block_size
        request.status = RequestStatus.RUNNING
        if request.first_scheduled_time is None:
            request.first_scheduled_time = now
            request.num_cached_tokens = request.num_computed_tokens  # first admission only, as vLLM v1 counts
        else:  # back after preemption by recompute (vLLM v1 counts these hits apart: PrefixCacheStats.preempted_hits)
            self.num_resume_cached_tokens += request.num_computed_tokens
        running = self.running
        if not self.running_in_arrival_order or not running or running[-1].request_id < request.request_id:
            running.append(request)
        else:
            bisect.insort(running, request, key=_request_id)

    def _insert_running(self, request: Request) -> None:
        running = self.running
        if not self.running_in_arrival_order or not running or running[-1].request_id < request.request_id:
            running.append(request)
        else:
            bisect.insort(running, request, key=_request_id)

    def _add_chunk(self, batch: Batch, request: Request, num_new_tokens: int) -> None:
        """Schedule ``num_new_tokens`` of ``request`` and publish its full prompt blocks."""
        batch.add(request, num_new_tokens)
        if self.prefix_caching:
            self.block_manager.cache_blocks(request, request.num_computed_tokens + num_new_tokens)

    # -- preemption ---------------------------------------------------------------------------
    def _make_room(self, request: Request, num_tokens: int) -> bool:
        """Grow ``request``'s block table to ``num_tokens`` tokens, preempting for it.

        Victims are taken from the back of ``running`` (vLLM v0 and v1 both preempt the last
        running request), until the blocks fit or the request itself is the last one.

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
        """Preempt ``request``: by swap when the scenario asks for it and CPU space is left,
        else by recompute (free the KV blocks; prompt and output are prefilled again).

        vLLM v0 ``Scheduler._preempt_by_recompute``: the request goes back to the front of the
        waiting queue; the tokens it already generated are kept and re-prefilled with the
        prompt. When the swap space is full, vLLM v0 aborts the engine ("Aborted due to the lack
        of CPU swap space"); the simulator recomputes instead, so a run always completes.
        """
        request.num_preemptions += 1
        self.num_preemptions += 1
        if self.swap and self._swap_out(request):
            return
        self.block_manager.free(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        self.waiting.appendleft(request)

    def _swap_out(self, request: Request) -> bool:
        """Move ``request``'s KV blocks to CPU memory; False (nothing done) when they do not fit."""
        num_blocks = self.block_manager.num_blocks_held(request)
        if num_blocks > self.num_free_cpu_blocks:
            return False
        self.block_manager.free(request)
        self.num_free_cpu_blocks -= num_blocks
        self._num_cpu_blocks_held[request.request_id] = num_blocks
        self._num_swap_pending += num_blocks
        request.status = RequestStatus.SWAPPED
        request.num_swaps += 1
        bisect.insort(self.swapped, request, key=_request_id)
        return True

    def _swap_in_next(self, num_tokens: int) -> Request | None:
        """Bring the earliest swapped request back to GPU memory, with room for ``num_tokens``.

        Needs its swapped blocks (or ``num_tokens``' worth, if more) free above the watermark
        (vLLM v0 ``BlockSpaceManager.can_swap_in``); with nothing running the watermark is
        waived so the request cannot wait forever.

        Returns:
            The request, now running, or None (nothing changed) when it does not fit.
        """
        request = self.swapped[0]
        block_manager = self.block_manager
        num_blocks = self._num_cpu_blocks_held[request.request_id]
        num_tokens = max(num_tokens, num_blocks * block_manager.block_size)
        if self.running:
            if not block_manager.can_allocate(num_tokens):
                return None
        elif block_manager.num_blocks_for(num_tokens) > block_manager.num_free_blocks:
            return None
        del self.swapped[0]
        del self._num_cpu_blocks_held[request.request_id]
        block_manager.allocate(request, num_tokens)
        self.num_free_cpu_blocks += num_blocks
        self._num_swap_pending += num_blocks
        request.status = RequestStatus.RUNNING
        self._insert_running(request)
        return request

    def _take_swapped_blocks(self, batch: Batch) -> None:
        """Charge the blocks moved since the last batch to ``batch`` (priced by the replica)."""
        batch.num_swapped_blocks = self._num_swap_pending
        self._num_swap_pending = 0

    # -- fold-back ----------------------------------------------------------------------------
    def _finish(self, request: Request, now: float) -> None:
        assert request.finish_time is None, f"request {request.request_id} finished twice"
        request.status = RequestStatus.FINISHED
        request.finish_time = now
        self.block_manager.free(request)

    def fast_forward(self, batch: Batch, now: float, horizon: float,
                     price: Callable[[Batch], float]) -> tuple[list[tuple[float, float, int]], list[Request]]:
        """Run ``batch`` (a decode-only batch just scheduled at ``now``, s) and the iterations
        that would follow it unchanged, all ending before time ``horizon`` (s), in one go
        (``simulator.schedulers.fast_forward``), folding them back as ``on_step_end`` would.

        Returns:
            Per iteration taken: (start s, end s, KV blocks in use), empty when the replica
            must step ``batch`` itself; and the requests the last one finished. The base takes none.
        """
        return [], []

    def record_token_gaps(self, histogram: TokenGapHistogram) -> None:
        """Keep token gaps in ``histogram`` (shared by the run's replicas) instead of every
        output token's time in ``Request.token_times`` (``output.token_gaps: histogram``)."""
        self.token_gap_histogram = histogram
        self.token_gaps = histogram.buffer

    def _record_token(self, request: Request, now: float) -> None:
        """Record an output token of ``request`` sampled at ``now`` (s)."""
        gaps = self.token_gaps
        if gaps is None:
            request.token_times.append(now)
            return
        if request.last_token_time is not None:
            gaps.append(now - request.last_token_time)
        request.last_token_time = now

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold a finished step back into its requests at time ``now`` (s).

        Returns:
            The requests that finished in this step (their KV blocks are already freed).
        """
        finished: list[Request] = []
        gaps = self.token_gaps
        if not batch.num_prefill_tokens and batch.num_sampled_tokens == len(batch.requests):
            # Every entry is a decode that samples (the common step): the same updates, fewer checks.
            if gaps is None:
                for request in batch.requests:
                    request.num_computed_tokens += 1
                    generated = request.num_generated_tokens = request.num_generated_tokens + 1
                    request.token_times.append(now)
                    if generated == request.num_output_tokens:
                        self._finish(request, now)
                        finished.append(request)
            else:  # a decode always follows an earlier token of the same request
                add_gap = gaps.append
                for request in batch.requests:
                    request.num_computed_tokens += 1
                    generated = request.num_generated_tokens = request.num_generated_tokens + 1
                    add_gap(now - request.last_token_time)
                    request.last_token_time = now
                    if generated == request.num_output_tokens:
                        self._finish(request, now)
                        finished.append(request)
        else:
            record_token = self._record_token
            for request, num_new_tokens in zip(batch.requests, batch.num_new_tokens):
                computed = request.num_computed_tokens = request.num_computed_tokens + num_new_tokens
                generated = request.num_generated_tokens
                if computed == request.num_prompt_tokens + generated:  # all computed: sample a token
                    generated = request.num_generated_tokens = generated + 1
                    record_token(request, now)
                    if request.first_token_time is None:
                        request.first_token_time = now
                    if generated == request.num_output_tokens:
                        self._finish(request, now)
                        finished.append(request)
        if finished:
            self.running = [r for r in self.running if r.status != RequestStatus.FINISHED]
        if gaps is not None and len(gaps) >= FLUSH_AT:
            self.token_gap_histogram.flush()  # also bins the shared gaps of fast-forwarded steps
        return finished
