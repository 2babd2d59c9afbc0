"""vLLM v1 engine: one token budget per iteration over running and waiting requests.

Follows vLLM's v1 scheduler (vLLM v0.8-v0.19, ``vllm/v1/core/sched/scheduler.py``,
``Scheduler.schedule``; the design is the "no prefill or decode phase" note at its top): every
request is counters, and each iteration gives requests tokens so that ``num_computed_tokens``
catches up with ``num_tokens``, within one budget of ``max_num_batched_tokens`` tokens:

* Running requests first, in the order they were scheduled: each gets
  ``min(num_tokens - num_computed_tokens, budget left)`` tokens: one for a decode, the next chunk
  for a prefill (chunked prefill is always on). Its block table grows to cover them; when too
  few blocks are free, the last running request is preempted by recompute (v1 has no swap),
  repeatedly, until the blocks fit or the request itself is the last one and is preempted too.
  When the budget runs out, later running requests sit this iteration out.
* Then, if nothing was preempted in this iteration (or nothing else would run: the replica has
  no later step to come back in), waiting requests in FCFS order, while the
  budget lasts and fewer than ``max_num_seqs`` requests run: each looks up its sequence in the
  prefix cache (on by default, as in v1), starts ``num_computed_tokens`` after the cached
  blocks, and gets ``min(uncached tokens, budget left)`` tokens; blocks are allocated for the
  tokens computed so far and this chunk only (no watermark in v1 up to 0.19), and the first
  request that does not fit stops admission. From 0.19 (``scheduler_reserve_full_isl``) it must
  also fit the blocks of its whole current sequence, not only its first chunk. Admitted and
  resumed requests go to the end of the running list.

Without the full-sequence check, under KV pressure without prefix caching, a preempted long
request is re-admitted for one more chunk only to be preempted again, over and over (issue
vllm-project/vllm#25538); with prefix caching the blocks it computed, generated ones included,
stay cached and its recompute resumes from them.

``scheduler.engine_version`` picks the release (``simulator.schedulers.vllm_engine``: its
defaults and their sources). Under async scheduling (on by default from 0.14) the engine
schedules step N+1 while step N runs; this class keeps that order's two consequences: requests
the replica adds mid-step (``seen_by_next_step=False``) are not admitted by the next
``schedule`` call, and blocks of requests finishing in step N are freed only after the next
``schedule`` call; when that call finds nothing to run, they are processed first (the engine
has nothing else queued). The replica overlaps host and GPU time (``simulator.engine.replica``).

The budget: ``scheduler.max_num_batched_tokens`` when set; else 8,192, the default of
``vllm serve`` for the v1 engine on H100/H200-class GPUs (``EngineArgs._set_default_args_v1``
in v0.8; "at least 70 GiB and not an A100" from v0.9, ``get_batch_defaults``); on A100 and
smaller GPUs vLLM uses 2,048: set it there. ``scheduler.watermark`` and ``preemption_mode: swap``
do not apply to v1 (its ``allocate_slots`` checks free blocks only; it preempts by recompute).
"""

from __future__ import annotations

from simulator.engine.batch import Batch
from simulator.engine.deployment import V1_DEFAULT_MAX_NUM_BATCHED_TOKENS
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.request import Request, RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.base import Scheduler
from simulator.schedulers.vllm_engine import engine_version


class VLLMV1Scheduler(Scheduler):
    """vLLM v1: running requests first, then waiting ones, under one token budget.

    Raises:
        ScenarioError: an unknown ``scheduler.engine_version``, or a flag the release lacks.
    """

    prefix_caching_default = True
    running_in_arrival_order = False

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int, swap_space: SwapSpace | None = None) -> None:
        super().__init__(config, block_manager, max_num_batched_tokens, max_model_len, swap_space)
        if config.max_num_batched_tokens is None:
            self.max_num_batched_tokens = V1_DEFAULT_MAX_NUM_BATCHED_TOKENS
        self.engine = engine_version(config)
        self.async_scheduling = self.engine.async_scheduling
        self.reserve_full_sequence = self.engine.reserve_full_sequence
        self.num_unseen = 0  # the newest waiting requests, added after the next step was scheduled
        self._unfreed: list[Request] = []  # finished in the step just folded back; freed after the next schedule

    def add_request(self, request: Request, seen_by_next_step: bool = True) -> None:
        """Queue a newly arrived request; with ``seen_by_next_step=False`` (async scheduling, the
        request arrived while a step ran) the next ``schedule`` call does not admit it yet."""
        self.waiting.append(request)
        if not seen_by_next_step:
            self.num_unseen += 1

    def schedule(self, now: float) -> Batch | None:
        batch = self._schedule(now)
        if batch is None and (self._unfreed or self.num_unseen):
            self._catch_up()  # nothing queued: the engine processes the last outputs and arrivals first
            batch = self._schedule(now)
        if self._unfreed or self.num_unseen:
            self._catch_up()
        return batch

    def _catch_up(self) -> None:
        """What the engine does after scheduling the next step: free the blocks of the requests
        that finished (``update_from_output``) and take in the requests that arrived."""
        for request in self._unfreed:
            self.block_manager.free(request)
        self._unfreed.clear()
        self.num_unseen = 0

    def _preempt(self, request: Request) -> None:
        if self.prefix_caching:  # every v1 release caches the full blocks it computed, generated ones too
            self.block_manager.cache_blocks(request, request.num_computed_tokens, own_blocks=True)
        super()._preempt(request)

    def _finish(self, request: Request, now: float) -> None:
        if not self.async_scheduling:
            super()._finish(request, now)
            return
        assert request.finish_time is None, f"request {request.request_id} finished twice"
        request.status = RequestStatus.FINISHED
        request.finish_time = now
        self._unfreed.append(request)

    def _schedule(self, now: float) -> Batch | None:
        running, block_manager = self.running, self.block_manager
        grow_to, blocks_held, block_size = block_manager.grow_to, block_manager.blocks_held, block_manager.block_size
        budget = self.max_num_batched_tokens
        num_preempted = self.num_preemptions
        decodes = []  # priced together by Batch.of_decodes (same result as add(request, 1) each)
        chunks = []  # (request, tokens) of prefills, in order
        i = 0
        while i < len(running) and budget > 0:
            request = running[i]
            computed = request.num_computed_tokens
            num_tokens = request.num_prompt_tokens + request.num_generated_tokens
            num_new_tokens = min(num_tokens - computed, budget)
            end = computed + num_new_tokens  # KV slots the step fills; new blocks only past the held ones
            if end > blocks_held[request.request_id] * block_size and not grow_to(request, end) and not self._make_room(request, end):
                break  # the request itself was the last one and got preempted
            if num_new_tokens == 1 and computed >= request.num_prompt_tokens:
                decodes.append(request)
            else:
                chunks.append((request, num_new_tokens))
            budget -= num_new_tokens
            i += 1
        batch = Batch.of_decodes(decodes)
        for request, num_new_tokens in chunks:
            self._add_chunk(batch, request, num_new_tokens)
        if self.num_preemptions == num_preempted or not batch.requests:
            self._schedule_waiting(batch, budget, now)
        batch.num_preemptions = self.num_preemptions - num_preempted
        return batch if batch.requests else None

    def _schedule_waiting(self, batch: Batch, budget: int, now: float) -> None:
        waiting, running, block_manager = self.waiting, self.running, self.block_manager
        block_size, reserve_full = block_manager.block_size, self.reserve_full_sequence
        while len(waiting) > self.num_unseen and budget > 0 and len(running) < self.max_num_seqs:
            request = waiting[0]
            num_cached_blocks, num_evictable = self._find_cached_prefix(request)
            num_cached_tokens = num_cached_blocks * block_size
            num_new_tokens = min(request.num_tokens - num_cached_tokens, budget)
            # Blocks to take from the free ones: new blocks, and cached hits nobody holds.
            reused = num_evictable - num_cached_blocks
            if reserve_full and block_manager.num_blocks_for(request.num_tokens) + reused > block_manager.num_free_blocks:
                break  # its whole sequence does not fit (KVCacheManager.can_fit_full_sequence)
            if block_manager.num_blocks_for(num_cached_tokens + num_new_tokens) + reused > block_manager.num_free_blocks:
                break
            self._admit(request, num_cached_tokens + num_new_tokens, now, num_cached_blocks)
            self._add_chunk(batch, request, num_new_tokens)
            budget -= num_new_tokens
