"""Decode fast-forward for vLLM v0: run many decode iterations of an unchanged batch at once.

Between events that can change a replica's batch, consecutive vLLM v0 decode iterations run the
same requests and differ only in context lengths (each request's grows by one token a step):

* no request finishes before the window's last step (the window ends with the first step
  that finishes a request, which frees blocks and may let a waiting request in);
* no arrival or any other simulation event happens (every step ends before the next event in
  the SimPy queue, ``horizon``), so the waiting queue and the router see nothing new;
* the waiting queue's head, if any, stays blocked: a prefill attempt that failed keeps failing
  while free blocks only shrink and the running count is fixed;
* a request crossing a KV block boundary gets its block (the window stops before a step whose
  due requests need more blocks than are free: that step may preempt).

``decode_window`` takes a decode batch just formed and those iterations after it in one go: it
prices each with the cost model (so step times, and so token times, are the same floats stepping
one by one would give, added in the same order), grows blocks at each boundary as
``VLLMScheduler`` would, and folds the tokens back once per window: counters advance by the window's length, each request's token times are
extended, or the token-gap histogram gets each step's gap once per request. Per window the work
is O(requests + steps + boundaries) instead of O(requests x steps). Swap, prefix caching and
async scheduling are left to the step-by-step path.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from operator import attrgetter, sub

from simulator.engine.batch import Batch
from simulator.engine.request import Request, RequestStatus
from simulator.engine.token_gaps import FLUSH_AT

_request_id = attrgetter("request_id")
_num_output = attrgetter("num_output_tokens")
_num_generated = attrgetter("num_generated_tokens")


def decode_window(scheduler, batch: Batch, now: float, horizon: float,
                  price: Callable[[Batch], float]) -> tuple[list[tuple[float, float, int]], list[Request]]:
    """Run ``batch`` and the decode iterations that would follow it before anything changes.

    Args:
        scheduler: a ``VLLMScheduler`` indexing block boundaries, that has just formed ``batch``
            (a decode of every running request, nobody preempted) at ``now``.
        batch: the batch; reused (its context tokens updated) to price the next iterations.
        now: the simulation time (s): the start of ``batch``'s iteration.
        horizon: the time (s) of the next event in the simulation queue; every iteration
            taken ends strictly before it.
        price: the cost model's ``step_time`` (s per batch).

    Returns:
        Per iteration taken, in order, ``batch``'s first: (start time s, end time s, KV blocks
        in use while it ran), empty when ``batch`` itself would end at or after ``horizon``
        (then nothing changed); and the requests the last iteration finished (their blocks
        freed, as ``on_step_end`` returns them). The scheduler's requests and blocks are left
        as stepping one by one, ``on_step_end`` after each, would leave them.
    """
    running = scheduler.running
    n = len(running)
    if not n or batch.requests != running:
        return [], []
    block_manager, boundaries = scheduler.block_manager, scheduler._boundaries
    num_blocks = block_manager.num_blocks
    end = now + price(batch)
    # SimPy reaches each end as now + (end - now): exact, or the window stops before it.
    if not (end < horizon and now + (end - now) == end):
        return [], []
    steps = [(now, end, num_blocks - block_manager.num_free_blocks)]
    ends = [end]
    step_gaps: list[float] = []  # iterations after the first: the gap every request sees
    # The window ends at the first finish, at the latest: a finish frees blocks and may admit.
    max_steps = min(map(sub, map(_num_output, running), map(_num_generated, running)))
    blocks_held, block_size, grow_to = block_manager.blocks_held, block_manager.block_size, block_manager.grow_to
    g = scheduler._num_decode_iterations
    context = batch.decode_context_tokens
    start = end
    for j in range(1, max_steps):
        due = boundaries.get(g)
        need = None
        if due:
            # Tokens at this iteration's formation: the j earlier iterations are not folded in yet.
            need = [r for r in due if r.status == RequestStatus.RUNNING
                    and r.num_prompt_tokens + r.num_generated_tokens + j > blocks_held[r.request_id] * block_size]
            if len(need) > block_manager.num_free_blocks:
                break  # this iteration may preempt: the step-by-step path takes it
        batch.decode_context_tokens = context + n
        end = start + price(batch)
        if not (end < horizon and now + (end - now) == end):
            batch.decode_context_tokens = context
            break
        context += n
        if due is not None:
            del boundaries[g]
            if need:
                need.sort(key=_request_id)
                for request in need:
                    num_tokens = request.num_prompt_tokens + request.num_generated_tokens + j
                    assert grow_to(request, num_tokens), "checked above: one free block per due request"
                    capacity = blocks_held[request.request_id] * block_size
                    boundaries.setdefault(g + capacity - num_tokens + 1, []).append(request)
        g += 1
        steps.append((start, end, num_blocks - block_manager.num_free_blocks))
        ends.append(end)
        step_gaps.append(end - start)
        start = end
    k = len(steps)
    scheduler._num_decode_iterations = g
    histogram = scheduler.token_gap_histogram
    if histogram is None:
        times = array("d", ends)
        for request in running:
            request.num_computed_tokens += k
            request.num_generated_tokens += k
            request.token_times.extend(times)
    else:
        # The first iteration's gap is each request's own; after it, the same for all n.
        first, last, add_gap = ends[0], ends[-1], histogram.buffer.append
        for request in running:
            request.num_computed_tokens += k
            request.num_generated_tokens += k
            add_gap(first - request.last_token_time)
            request.last_token_time = last
        if step_gaps:
            histogram.shared_buffer.extend(step_gaps)
            histogram.shared_counts.extend([n] * len(step_gaps))
        if len(histogram.buffer) >= FLUSH_AT or len(histogram.shared_buffer) >= FLUSH_AT:
            histogram.flush()
    finished: list[Request] = []
    if k == max_steps:  # the last iteration finished the requests with k tokens left
        last = ends[-1]
        for request in running:
            if request.num_generated_tokens == request.num_output_tokens:
                scheduler._finish(request, last)
                finished.append(request)
        scheduler.running = [r for r in running if r.status != RequestStatus.FINISHED]
    return steps, finished
