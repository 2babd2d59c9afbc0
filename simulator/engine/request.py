"""A request: counters that catch up, no phase flag.

A request holds ``num_prompt_tokens`` and the number of output tokens it will generate
(``num_output_tokens``, known to the simulator from the trace). During the run
``num_computed_tokens`` (tokens whose KV is in the cache) chases ``num_tokens`` (prompt plus
tokens generated so far), the vLLM v1 ``Request`` model:

    prompt tokens            generated tokens
    |p0 p1 ... p(P-1)|o0 o1 ... o(g-1)|
    |<-- num_computed_tokens -->|        one step computes the rest and samples one more token

A request is in prefill while ``num_computed_tokens < num_prompt_tokens`` (DESIGN.md); a request
preempted by recompute drops ``num_computed_tokens`` to 0 and prefills prompt and generated tokens
again; one preempted by swap keeps it (its KV blocks wait in CPU memory). A step that brings
``num_computed_tokens`` up to ``num_tokens`` samples one output token. With prefix caching,
``num_computed_tokens`` starts at the prompt tokens found in the cache (``num_cached_tokens``).
"""

from __future__ import annotations

import enum
from array import array
from dataclasses import dataclass, field


class RequestStatus(enum.IntEnum):
    """Where a request is in its life; ordered so ``status >= FINISHED`` means done.

    PREEMPTED: back in the waiting queue after preemption by recompute. SWAPPED: preempted by
    swap, its KV blocks in CPU memory until it is swapped back in.
    """

    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    SWAPPED = 3
    FINISHED = 4


@dataclass(slots=True, eq=False)
class Request:
    """One inference request of the workload.

    Times are seconds on the simulation clock; ``-1.0`` is never used as a sentinel, unset
    times are ``None``.

    Attributes:
        request_id: position in the workload, 0..N-1 (also the FCFS tie-break).
        arrival_time: when the request reaches the router (s).
        num_prompt_tokens: prompt length (tokens), >= 1.
        num_output_tokens: tokens the request generates before it finishes, >= 1.
        block_hashes: optional ids of the prompt's full KV-cache blocks, each standing for the
            block and every block before it (Mooncake ``hash_ids``); used by prefix caching.
    """

    request_id: int
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int
    block_hashes: tuple[int, ...] | None = None

    status: RequestStatus = RequestStatus.WAITING
    num_computed_tokens: int = 0
    num_generated_tokens: int = 0
    num_preemptions: int = 0  # by recompute or by swap
    num_swaps: int = 0  # preemptions by swap (KV blocks moved to CPU memory and back)
    # Prompt tokens found in the prefix cache when the request was first scheduled (vLLM v1
    # ``Request.num_cached_tokens``): their prefill is skipped.
    num_cached_tokens: int = 0
    replica_id: int | None = None
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    # Time each output token appeared (s); compact doubles, since a trace makes millions. Empty
    # when the run keeps token gaps in a histogram instead (``output.token_gaps: histogram``).
    token_times: array = field(default_factory=lambda: array("d"))
    last_token_time: float | None = None  # when the latest output token appeared (s); token-gap histogram only

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: what the KV cache must eventually hold."""
        return self.num_prompt_tokens + self.num_generated_tokens

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens whose KV is not yet in the cache: what an unchunked step computes."""
        return self.num_prompt_tokens + self.num_generated_tokens - self.num_computed_tokens

    @property
    def is_prefill(self) -> bool:
        """True while the prompt (or, after recompute, prompt and output) is not all computed."""
        return self.num_computed_tokens < self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == RequestStatus.FINISHED
