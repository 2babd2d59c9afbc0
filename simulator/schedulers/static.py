"""Static (request-level) batching, the FasterTransformer baseline.

NVIDIA FasterTransformer serves a batch of requests as one unit: it runs the context (prefill)
of every prompt, then decode steps over the whole batch until every request has ended. Yu et
al., "Orca" (OSDI'22), Sec. 2.2 and 3.1 (challenge C1), name what this costs: a request that
finishes early cannot leave the batch nor return to its client, and a newly arrived request
waits until the whole batch has finished.

This policy:

* When no batch is running, forms one from the head of the waiting queue (FCFS, no skipping):
  up to ``max_num_seqs`` requests whose prompts together fit in ``max_num_batched_tokens`` (the
  activation memory vLLM-style deployments reserve) and whose KV cache fits for their maximum
  length. The output length is unknown when a batch forms, so, like FasterTransformer's
  ``[batch, max_seq_len]`` KV buffers and the "Orca (Max)" reservation of the vLLM paper
  (SOSP'23, Sec. 6.1), each request reserves ``max_model_len`` tokens.
* The first iteration prefills every prompt; each later iteration decodes every request of the
  batch. A request that has all its output tokens idles in its slot: its discarded decode is
  still computed (``Batch.add_idle_slot``) and its slot is not refilled.
* When the last request of the batch ends, all of them finish together (their ``finish_time``
  is that iteration's end; their tokens keep the times they were generated) and free their
  KV cache; the next batch forms.

Nothing is preempted (``preemption_mode`` has no effect). Prefix caching, when on, skips the
cached part of each prompt.

Dynamic batching (``static_max_queue_delay_ms``, ``static_preferred_batch_size``), as NVIDIA
Triton Inference Server's dynamic batcher (model configuration ``dynamic_batching``, documented
in its user guide "Batchers"): an idle replica does not form a batch while fewer than the
preferred number of requests wait and the oldest of them has waited less than the delay; when
either holds, the batch forms as above (so it may still be smaller than preferred, and at most
``max_num_seqs``). The delay counts from the oldest waiting request's arrival.
"""

from __future__ import annotations

from simulator.engine.batch import Batch
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.request import Request
from simulator.scenario import SchedulerConfig
from simulator.schedulers.base import Scheduler


class StaticScheduler(Scheduler):
    """Request-level batching: a batch runs until all its requests end, then the next forms."""

    supports_swap = False  # never preempts, so it never swaps (simulator/engine/deployment.py refuses swap for it)

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int, swap_space: SwapSpace | None = None) -> None:
        super().__init__(config, block_manager, max_num_batched_tokens, max_model_len, swap_space)
        self._num_unfinished = 0  # requests of the current batch still generating
        delay_ms = config.static_max_queue_delay_ms
        self.max_queue_delay_s = None if delay_ms is None else delay_ms * 1e-3
        self.preferred_batch_size = min(config.static_preferred_batch_size or self.max_num_seqs, self.max_num_seqs)

    def schedule(self, now: float) -> Batch | None:
        if not self.running:
            return self._form_batch(now)
        batch = Batch()
        for request in self.running:
            if request.num_generated_tokens < request.num_output_tokens:
                batch.add(request, 1)
            else:
                batch.add_idle_slot(request.num_tokens)
        return batch

    def _holding(self, now: float) -> bool:
        """Whether dynamic batching holds the waiting requests back for a fuller batch now."""
        # A nanosecond of slack: the replica wakes at now + (deadline - now), which float rounding
        # may put a hair before the deadline.
        return (self.max_queue_delay_s is not None and 0 < len(self.waiting) < self.preferred_batch_size
                and now + 1e-9 < self.waiting[0].arrival_time + self.max_queue_delay_s)

    def wake_time(self, now: float) -> float | None:
        """The end of the oldest waiting request's batching delay, while the batch is held."""
        if self.running or not self._holding(now):
            return None
        return self.waiting[0].arrival_time + self.max_queue_delay_s

    def _form_batch(self, now: float) -> Batch | None:
        if self._holding(now):
            return None
        waiting, block_manager = self.waiting, self.block_manager
        batch = Batch()
        num_tokens = 0
        while waiting and len(self.running) < self.max_num_seqs:
            request = waiting[0]
            num_cached_blocks, num_evictable = self._find_cached_prefix(request)
            num_new_tokens = request.num_uncomputed_tokens - num_cached_blocks * block_manager.block_size
            if num_tokens + num_new_tokens > self.max_num_batched_tokens:
                break
            if not block_manager.can_allocate(self.max_model_len, num_cached_blocks, num_evictable):
                break
            self._admit(request, self.max_model_len, now, num_cached_blocks)
            self._add_chunk(batch, request, num_new_tokens)
            num_tokens += num_new_tokens
        self._num_unfinished = len(self.running)
        return batch if batch.requests else None

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold a step back; when the batch's last request ends, finish the whole batch.

        Returns:
            Every request of the batch when the batch ends, else an empty list.
        """
        for request, num_new_tokens in zip(batch.requests, batch.num_new_tokens):
            request.num_computed_tokens += num_new_tokens
            if request.num_computed_tokens == request.num_tokens:  # all computed: sample a token
                request.num_generated_tokens += 1
                self._record_token(request, now)
                if request.first_token_time is None:
                    request.first_token_time = now
                if request.num_generated_tokens == request.num_output_tokens:
                    self._num_unfinished -= 1
        if self._num_unfinished:
            return []
        finished, self.running = self.running, []
        for request in finished:
            self._finish(request, now)
        return finished
