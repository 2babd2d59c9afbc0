"""A batch: what one iteration of one replica runs.

Each entry is a request and the number of its tokens the step computes (``num_new_tokens``):
the whole uncomputed prompt for a prefill, a chunk of it for a chunked prefill, 1 for a decode.
The batch keeps the aggregates a cost model needs, updated as entries are added, so pricing a
decode step is O(1) in the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

from simulator.engine.request import Request

_num_computed_tokens = attrgetter("num_computed_tokens")


@dataclass(slots=True)
class Batch:
    """Requests scheduled for one iteration and the token counts the cost model prices.

    Attributes:
        requests: scheduled requests, in scheduling order.
        num_new_tokens: per request, tokens computed this step (same order as ``requests``).
        num_prefill_tokens: tokens of prefill (and chunked-prefill) entries.
        num_decode_tokens: decode entries (one token each).
        decode_context_tokens: sum over decode entries of the context each attends to
            (cached tokens plus the new one).
        prefill_new_tokens: per prefill entry, tokens computed this step.
        prefill_prefix_tokens: per prefill entry, tokens already in the KV cache before the
            step (0 for a fresh prompt; the computed part for a later chunk).
        num_sampled_tokens: entries whose step completes their tokens and so samples one
            output token (these pay for lm_head and sampling).
        num_preemptions: requests preempted while this batch was formed.
        num_swapped_blocks: KV blocks moved over PCIe before this step runs (swapped out plus
            swapped in); the replica adds their transfer time to the step, as vLLM v0 runs its
            cache swap operations before the forward pass of the same step.
        num_idle_slots: static batching only: finished requests that still occupy the batch and
            run a discarded decode step (FasterTransformer computes the whole batch until every
            request ends). They are counted in ``num_decode_tokens``, ``decode_context_tokens``
            and ``num_sampled_tokens`` so that any cost model prices them, but are not entries.
    """

    requests: list[Request] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    num_prefill_tokens: int = 0
    num_decode_tokens: int = 0
    decode_context_tokens: int = 0
    prefill_new_tokens: list[int] = field(default_factory=list)
    prefill_prefix_tokens: list[int] = field(default_factory=list)
    num_sampled_tokens: int = 0
    num_preemptions: int = 0
    num_swapped_blocks: int = 0
    num_idle_slots: int = 0

    def add(self, request: Request, num_new_tokens: int) -> None:
        """Schedule ``num_new_tokens`` (>= 1) of ``request``'s uncomputed tokens this step."""
        computed = request.num_computed_tokens
        self.requests.append(request)
        self.num_new_tokens.append(num_new_tokens)
        if num_new_tokens == 1 and computed >= request.num_prompt_tokens:
            self.num_decode_tokens += 1
            self.decode_context_tokens += computed + 1
        else:
            self.num_prefill_tokens += num_new_tokens
            self.prefill_new_tokens.append(num_new_tokens)
            self.prefill_prefix_tokens.append(computed)
        if computed + num_new_tokens == request.num_prompt_tokens + request.num_generated_tokens:
            self.num_sampled_tokens += 1

    def add_idle_slot(self, context_tokens: int) -> None:
        """Price one idle slot: a finished request's discarded decode over ``context_tokens``."""
        self.num_idle_slots += 1
        self.num_decode_tokens += 1
        self.decode_context_tokens += context_tokens
        self.num_sampled_tokens += 1

    @classmethod
    def of_decodes(cls, requests: list[Request]) -> Batch:
        """A batch of one decode step for each of ``requests`` (all past their prefill).

        Same result as ``add(request, 1)`` for each, without the per-request call.
        """
        n = len(requests)
        return cls(
            requests=requests,
            num_new_tokens=[1] * n,
            num_decode_tokens=n,
            decode_context_tokens=sum(map(_num_computed_tokens, requests)) + n,
            num_sampled_tokens=n,
        )

    @property
    def num_tokens(self) -> int:
        """Tokens computed this step (prefill plus decode)."""
        return self.num_prefill_tokens + self.num_decode_tokens

    def __len__(self) -> int:
        return len(self.requests)
