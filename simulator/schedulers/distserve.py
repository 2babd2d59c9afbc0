"""DistServe: prefill and decode on separate replicas, the KV cache moved between them.

Follows Zhong et al., "DistServe: Disaggregating Prefill and Decoding for Goodput-optimized
Large Language Model Serving" (OSDI'24), Sec. 4 (each phase on its own instances, with its own
parallelism) and Sec. 4.4 (online scheduling). The two policies here are the per-replica halves;
``simulator.engine.disaggregation`` builds the pools and moves each request between them.

* Prefill instance (``DistServeScheduler``, the name ``distserve``): prefill-only iterations,
  FCFS, batching whole prompts (no chunking) while they fit under ``max_num_batched_tokens``
  and the KV cache (DistServe batches prompts up to a profiled token count, Sec. 4.3). The
  iteration that finishes a prompt samples the request's first token. A request with one
  output token finishes there; the others leave the replica but keep their KV blocks until
  their transfer to a decode replica completes (``release``), so a slow decode pool backs up
  into the prefill replica's memory, as in DistServe's pull-based transfer (Sec. 4.4).
* Decode instance (``DistServeDecodeScheduler``): a request's blocks for its prompt are
  reserved when its transfer starts (``reserve``) and it joins the running batch when the KV
  has arrived (``add_request``). Iterations are vLLM v0's: continuous batching of decodes up
  to ``max_num_seqs``, and when a block runs out, preemption of the newest request by
  ``scheduler.preemption_mode``: recompute re-prefills prompt and generated tokens on the
  decode replica itself (no second transfer), as a vLLM decode instance would; DistServe's own
  decode instance swaps the newest request out to CPU memory
  (``DecodingStageFCFSScheduler.get_next_batch``, ``distserve/decoding_stage_scheduler.py``),
  which ``preemption_mode: swap`` models.

Both reuse ``VLLMScheduler``'s batching: with no running requests left after each step, its
prefill-first schedule is a prefill-only schedule.
"""

from __future__ import annotations

from simulator.engine.batch import Batch
from simulator.engine.request import Request, RequestStatus
from simulator.schedulers.base import Scheduler
from simulator.schedulers.vllm import VLLMScheduler


class DistServeDecodeScheduler(VLLMScheduler):
    """A decode replica: requests arrive with their prompt's KV; decode-only iterations."""

    role = "decode"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_incoming = 0  # requests whose blocks are reserved and whose KV is in transfer

    def can_admit(self, request: Request) -> bool:
        """Whether a transfer of ``request``'s prompt KV can start now.

        Needs its prompt's blocks above the watermark, room under ``max_num_seqs`` counting
        transfers in flight, and no preempted request waiting to be recomputed or swapped in
        (those came first, FCFS). An empty replica waives the watermark, so a prompt that
        fills nearly the whole cache cannot wait forever.
        """
        if self.waiting or self.swapped or len(self.running) + self.num_incoming >= self.max_num_seqs:
            return False
        block_manager = self.block_manager
        if not self.running and not self.num_incoming:
            return block_manager.num_blocks_for(request.num_prompt_tokens) <= block_manager.num_free_blocks
        return block_manager.can_allocate(request.num_prompt_tokens)

    def reserve(self, request: Request) -> None:
        """Allocate blocks for ``request``'s prompt KV, about to be transferred here."""
        self.block_manager.allocate(request, request.num_prompt_tokens)
        self.num_incoming += 1

    def add_request(self, request: Request) -> None:
        """The KV of ``request``'s prompt has arrived: it joins the running batch."""
        assert self.num_incoming > 0 and self.block_manager.num_blocks_held(request) > 0, f"request {request.request_id} arrived without a reservation"
        assert request.num_computed_tokens == request.num_prompt_tokens and request.num_generated_tokens == 1, "a decode replica takes requests right after their prefill"
        self.num_incoming -= 1
        request.status = RequestStatus.RUNNING
        self._insert_running(request)


class DistServeScheduler(VLLMScheduler):
    """A prefill replica: prefill-only iterations; finished prompts leave for a decode replica.

    ``decode_policy`` names the policy of the decode pool; the simulation builds the two pools
    when the scheduler it is given has one.
    """

    role = "prefill"
    decode_policy: type[Scheduler] = DistServeDecodeScheduler

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_transferring = 0  # requests that left with their KV blocks still held here

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold the step back; return the requests that leave this replica.

        Those are the finished ones (one output token, blocks freed) and those whose prompt is
        done and which still have tokens to generate (blocks kept until ``release``).
        """
        leaving = super().on_step_end(batch, now)
        if self.running:
            # Prefill-only iterations of whole prompts: every running request was in this step.
            assert all(not r.is_prefill for r in self.running), "a prefill replica runs whole prompts only"
            self.num_transferring += len(self.running)
            leaving = leaving + self.running
            self.running = []
        return leaving

    def release(self, request: Request) -> None:
        """Free ``request``'s KV blocks here: its transfer to the decode replica completed."""
        self.block_manager.free(request)
        self.num_transferring -= 1
