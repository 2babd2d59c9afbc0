"""vLLM (v0 engine): prefill-first iteration-level batching over a paged KV cache.

Follows Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention" (SOSP'23), Sec. 4.5, as implemented by vLLM v0.6.x
(``vllm/core/scheduler.py``, ``Scheduler._schedule_default``, chunked prefill off):

* FCFS. If requests are waiting and none is swapped out, try a prefill-only iteration: admit
  waiting requests from the head while each one's blocks fit above the watermark, the
  iteration's prefill tokens stay within ``max_num_batched_tokens`` and the running requests
  stay within ``max_num_seqs``; stop at the first that does not fit (no skipping ahead).
* Otherwise run a decode iteration over all running requests, oldest first. A request whose
  next token crosses a block boundary needs one more block; when none is free, preempt the most
  recently arrived running request, repeating until a block frees up or the request itself is
  the newest, in which case it is preempted.
* Preemption is by recompute (free its blocks, back to the front of the waiting queue) or, with
  ``preemption_mode: swap``, by swap (its blocks move to CPU memory; ``Scheduler._preempt_by_
  swap``). Swapped requests come back before any new admission: when the decode pass preempted
  nobody, they are swapped in, oldest first, while their blocks fit above the watermark, and
  decode in the same iteration (``_schedule_swapped``). The swap traffic of an iteration is
  charged to it (``Batch.num_swapped_blocks``).
* With prefix caching on, admission reuses cached prompt blocks and prefills only the rest.

Newest-first victims make the oldest request always progress, so there is no livelock as long
as one request's full length fits in the cache (checked when the deployment is built).
vLLM's ``delay_factor`` is not modelled.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from simulator.engine.batch import Batch
from simulator.engine.request import Request, RequestStatus
from simulator.schedulers.base import Scheduler
from simulator.schedulers.fast_forward import decode_window

_request_id = attrgetter("request_id")


class VLLMScheduler(Scheduler):
    """vLLM v0: prefill-only iterations when waiting requests fit, else decode all running.

    Block boundaries without a scan. Every running request is past its prefill and decodes one
    token in every decode iteration, so a request holding ``capacity`` tokens' worth of blocks
    with ``num_tokens`` tokens at decode iteration ``g`` next needs a block at iteration
    ``g + capacity - num_tokens + 1``. Requests are kept in ``_boundaries`` under that
    iteration (registered at the first decode iteration after they enter ``running``, and again
    after each new block), and a decode iteration checks only those due, oldest first, exactly
    the requests the full scan would grow. Entries of preempted requests go stale and are
    skipped. A subclass with another way into ``running`` (its own ``add_request``) scans.
    """

    supports_swap = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        # decode iteration -> requests that may cross a block boundary then; None: scan all.
        self._boundaries: dict[int, list[Request]] | None = (
            {} if cls.add_request is Scheduler.add_request and cls._insert_running is Scheduler._insert_running else None)
        self._num_decode_iterations = 0
        self._entered: list[Request] = []  # entered running since the last decode iteration

    def schedule(self, now: float) -> Batch | None:
        if self.swap:
            return self._schedule_with_swap(now)
        # A decode pass that preempted every running request leaves their blocks free for the
        # waiting queue, hence the second prefill attempt.
        return self._schedule_prefills(now) or self._schedule_decodes() or self._schedule_prefills(now)

    def fast_forward(self, batch: Batch, now: float, horizon: float,
                     price: Callable[[Batch], float]) -> tuple[list[tuple[float, float, int]], list[Request]]:
        """Decode iterations of an unchanged batch in one go (``decode_window``); none with
        swap or prefix caching, or without the block-boundary index."""
        if self._boundaries is None or self.swap or self.prefix_caching or self._entered:
            return [], []
        return decode_window(self, batch, now, horizon, price)

    def _schedule_with_swap(self, now: float) -> Batch | None:
        batch = None if self.swapped else self._schedule_prefills(now)
        if batch is None:
            batch = self._schedule_decodes()
            if self.swapped and (batch is None or not batch.num_preemptions):
                batch = self._schedule_swap_ins(batch)
            if batch is None and not self.swapped:
                batch = self._schedule_prefills(now)
        if batch is not None:
            self._take_swapped_blocks(batch)
        return batch

    def _schedule_prefills(self, now: float) -> Batch | None:
        waiting = self.waiting
        if not waiting:
            return None
        batch = Batch()
        num_tokens = 0
        num_seqs = len(self.running)
        prefix_caching = self.prefix_caching
        while waiting:
            request = waiting[0]
            fit = self._fit_prompt(request)
            if fit is None:
                break
            num_new_tokens, num_cached_blocks = fit
            if num_tokens + num_new_tokens > self.max_num_batched_tokens or num_seqs + 1 > self.max_num_seqs:
                break
            self._admit(request, request.num_uncomputed_tokens, now, num_cached_blocks)
            self._entered.append(request)
            if prefix_caching:
                self._add_chunk(batch, request, num_new_tokens)
            else:
                batch.add(request, num_new_tokens)
            num_tokens += num_new_tokens
            num_seqs += 1
        return batch if batch.requests else None

    def _schedule_decodes(self) -> Batch | None:
        if self._boundaries is not None:
            return self._schedule_decodes_at_boundaries()
        running, block_manager = self.running, self.block_manager
        grow_to, blocks_held, block_size = block_manager.grow_to, block_manager.blocks_held, block_manager.block_size
        num_preempted = self.num_preemptions
        i = 0
        while i < len(running):
            request = running[i]
            # The step writes the KV of the newest token, at position num_tokens - 1; only a
            # request crossing a block boundary (one step in block_size) needs a new block.
            num_tokens = request.num_prompt_tokens + request.num_generated_tokens
            if num_tokens > blocks_held[request.request_id] * block_size and not grow_to(request, num_tokens) and not self._make_room(request, num_tokens):
                break  # the request itself was the newest and got preempted
            i += 1
        if not running:
            return None
        batch = Batch.of_decodes(list(running))
        batch.num_preemptions = self.num_preemptions - num_preempted
        return batch

    def _schedule_decodes_at_boundaries(self) -> Batch | None:
        """``_schedule_decodes`` growing only the requests due at this decode iteration."""
        running = self.running
        if not running:
            return None
        block_manager, boundaries = self.block_manager, self._boundaries
        blocks_held, block_size = block_manager.blocks_held, block_manager.block_size
        g = self._num_decode_iterations
        due = boundaries.pop(g, [])
        for request in self._entered:
            if request.status == RequestStatus.RUNNING:
                ahead = blocks_held[request.request_id] * block_size - request.num_prompt_tokens - request.num_generated_tokens + 1
                if ahead <= 0:
                    due.append(request)
                else:
                    boundaries.setdefault(g + ahead, []).append(request)
        self._entered.clear()
        num_preempted = self.num_preemptions
        if len(due) > 1:
            due.sort(key=_request_id)
        for request in due:
            if request.status != RequestStatus.RUNNING:
                continue  # preempted since it was registered (a later entry covers it if it came back)
            num_tokens = request.num_prompt_tokens + request.num_generated_tokens
            capacity = blocks_held[request.request_id] * block_size
            if num_tokens <= capacity:
                continue  # a stale entry: registered again since
            if not block_manager.grow_to(request, num_tokens) and not self._make_room(request, num_tokens):
                break  # the request itself was the newest and got preempted, and all after it
            capacity = blocks_held[request.request_id] * block_size
            boundaries.setdefault(g + capacity - num_tokens + 1, []).append(request)
        if not running:
            return None
        self._num_decode_iterations = g + 1
        batch = Batch.of_decodes(list(running))
        batch.num_preemptions = self.num_preemptions - num_preempted
        return batch

    def _schedule_swap_ins(self, batch: Batch | None) -> Batch | None:
        """Swap in swapped requests (all past their prefill) and add their decodes to ``batch``."""
        while self.swapped and len(self.running) < self.max_num_seqs:
            request = self._swap_in_next(self.swapped[0].num_tokens)
            if request is None:
                break
            if batch is None:
                batch = Batch()
            batch.add(request, 1)
            self._entered.append(request)
        return batch
