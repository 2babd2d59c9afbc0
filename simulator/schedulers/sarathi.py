"""Sarathi-Serve: stall-free batching with chunked prefills under a per-iteration token budget.

Follows Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve"
(OSDI'24), Sec. 4 and Algorithm 2, as vLLM v0.6.x runs it with chunked prefill on
(``Scheduler._schedule_chunked_prefill``):

* Each iteration has a token budget (``scheduler.chunk_size``).
* First every running request in decode gets its one token (oldest first), so ongoing decodes
  never stall behind a prefill; a decode that needs a KV block when none is free preempts the
  most recently arrived running request (by recompute, or by swap with ``preemption_mode:
  swap``), as in vLLM.
* Then running requests part-way through their prefill get the next chunk. If that pass
  preempted nobody, swapped-out requests are swapped back in, oldest first, each with its
  decode token or next prefill chunk (``_schedule_swapped``). Then waiting requests are admitted
  (FCFS, blocks for the whole prompt allocated at admission, above the watermark, within
  ``max_num_seqs``; prompt blocks found in the prefix cache are not recomputed) with a first
  chunk, until the budget is spent.
* While any request is swapped out, nothing new is admitted, so swapped requests cannot be
  starved by newer ones (vLLM v0's default path does the same; its chunked path may admit).
"""

from __future__ import annotations

from simulator.engine.batch import Batch
from simulator.schedulers.base import Scheduler


class SarathiScheduler(Scheduler):
    """Decodes first, then prefill chunks, all within ``chunk_size`` tokens per iteration."""

    supports_swap = True

    @property
    def token_budget(self) -> int:
        return self.config.chunk_size

    def schedule(self, now: float) -> Batch | None:
        running, block_manager, waiting = self.running, self.block_manager, self.waiting
        budget = self.config.chunk_size
        grow_to, blocks_held, block_size = block_manager.grow_to, block_manager.blocks_held, block_manager.block_size
        num_preempted = self.num_preemptions
        prefilling = []
        decodes = []  # priced together by Batch.of_decodes (same result as add(request, 1) each)
        i = 0
        while i < len(running) and budget > 0:
            request = running[i]
            num_tokens = request.num_prompt_tokens + request.num_generated_tokens
            if request.num_computed_tokens < request.num_prompt_tokens or num_tokens - request.num_computed_tokens > 1:
                prefilling.append(request)  # blocks for its whole prompt are already allocated
                i += 1
                continue
            if num_tokens > blocks_held[request.request_id] * block_size and not grow_to(request, num_tokens) and not self._make_room(request, num_tokens):
                break  # the request itself was the newest and got preempted
            decodes.append(request)
            budget -= 1
            i += 1
        # Victims come from the back of the running list, never from the decodes listed already.
        batch = Batch.of_decodes(decodes)
        for request in prefilling:
            if budget == 0:
                break
            chunk = min(request.num_uncomputed_tokens, budget)
            self._add_chunk(batch, request, chunk)
            budget -= chunk
        if self.swapped and (self.num_preemptions == num_preempted or not running):
            budget = self._schedule_swap_ins(batch, budget)
        while waiting and budget > 0 and len(running) < self.max_num_seqs and not self.swapped:
            request = waiting[0]
            fit = self._fit_prompt(request)
            if fit is None:
                break
            num_new_tokens, num_cached_blocks = fit
            self._admit(request, request.num_uncomputed_tokens, now, num_cached_blocks)
            chunk = min(num_new_tokens, budget)
            self._add_chunk(batch, request, chunk)
            budget -= chunk
        batch.num_preemptions = self.num_preemptions - num_preempted
        if not batch.requests:
            return None
        if self.swap:
            self._take_swapped_blocks(batch)
        return batch

    def _schedule_swap_ins(self, batch: Batch, budget: int) -> int:
        """Swap in requests, oldest first, with a decode token or prefill chunk each; the budget left."""
        while self.swapped and budget > 0 and len(self.running) < self.max_num_seqs:
            request = self._swap_in_next(self.swapped[0].num_tokens)
            if request is None:
                break
            chunk = min(request.num_uncomputed_tokens, budget)
            self._add_chunk(batch, request, chunk)
            budget -= chunk
        return budget
