"""Orca: iteration-level scheduling with each request's KV cache reserved for its maximum length.

Follows Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models"
(OSDI'22), Sec. 4 (iteration-level scheduling; selective batching mixes prefills and decodes in
one iteration), with the memory policy the vLLM paper evaluates as "Orca (Max)" (SOSP'23,
Sec. 6.1): at admission a request reserves KV slots for ``max_model_len`` tokens, since its
output length is unknown, so memory rather than compute caps the batch.

Every iteration runs one decode token for each running request plus whole prompts of newly
admitted requests (FCFS, while the reservation fits above the watermark, within
``max_num_seqs`` and ``max_num_batched_tokens``). Reservations never run out, so nothing is
preempted (``preemption_mode`` has no effect). With prefix caching on, cached prompt blocks
count toward the reservation and are not recomputed.
"""

from __future__ import annotations

from simulator.engine.batch import Batch
from simulator.schedulers.base import Scheduler


class OrcaScheduler(Scheduler):
    """Mixed prefill + decode iterations; KV reserved for ``max_model_len`` at admission."""

    supports_swap = False  # never preempts, so it never swaps (simulator/engine/deployment.py refuses swap for it)

    def schedule(self, now: float) -> Batch | None:
        running, waiting, block_manager = self.running, self.waiting, self.block_manager
        batch = Batch.of_decodes(list(running))
        budget = self.max_num_batched_tokens - len(running)
        while waiting and len(running) < self.max_num_seqs:
            request = waiting[0]
            num_cached_blocks, num_evictable = self._find_cached_prefix(request)
            num_new_tokens = request.num_uncomputed_tokens - num_cached_blocks * block_manager.block_size
            if num_new_tokens > budget or not block_manager.can_allocate(self.max_model_len, num_cached_blocks, num_evictable):
                break
            self._admit(request, self.max_model_len, now, num_cached_blocks)
            self._add_chunk(batch, request, num_new_tokens)
            budget -= num_new_tokens
        return batch if batch.requests else None
