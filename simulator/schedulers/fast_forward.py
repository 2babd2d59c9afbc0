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

``decode_window`` takes those iterations in one go: it prices each with the cost model (so step
times, and so token times, are the same floats stepping one by one would give, added in the
same order), grows blocks at each boundary as ``VLLMScheduler`` would, and folds the tokens
back once per window: counters advance by the window's length, each request's token times are
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
    """Run the decode iterations that would follow ``batch`` before anything changes.

    Args:
        scheduler: a ``VLLMScheduler`` indexing block boundaries, right after ``on_step_end``
            of ``batch`` (a decode-only step of every running request that finished none).
        batch: that step's batch; reused (its context tokens updated) to price the next steps.
        now: the simulation time (s): the end of that step, the start of the first taken.
        horizon: the time (s) of the next event in the simulation queue; every step taken
            ends strictly before it.
        price: the cost model's ``step_time`` (s per batch).

    Returns:
        Per iteration taken, in order: (start time s, end time s, KV blocks in use while it
        ran), empty when none can be taken; and the requests the last one finished (their
        blocks freed, as ``on_step_end`` returns them). The scheduler's requests and blocks
        are left as stepping one by one through them would leave them.
    """
    running = scheduler.running
    n = len(running)
    if not n or batch.requests != running:
        return [], []
    # The window ends at the first finish, at the latest: a finish frees blocks and may admit.
    max_steps = min(map(sub, map(_num_output, running), map(_num_generated, running)))
    block_manager, boundaries = scheduler.block_manager, scheduler._boundaries
    blocks_held, block_size, grow_to = block_manager.blocks_held, block_manager.block_size, block_manager.grow_to
    num_blocks = block_manager.num_blocks
    g = scheduler._num_decode_iterations
    context = batch.decode_context_tokens
    steps: list[tuple[float, float, int]] = []
    ends: list[float] = []
    step_gaps: list[float] = []  # end_i - end_(i-1): the gap every request sees at step i
    start = now
    for j in range(max_steps):
        due = boundaries.get(g)
        need = None
        if due:
            # Tokens at this iteration's formation: the j earlier window steps are not folded in yet.
            need = [r for r in due if r.status == RequestStatus.RUNNING
                    and r.num_prompt_tokens + r.num_generated_tokens + j > blocks_held[r.request_id] * block_size]
            if len(need) > block_manager.num_free_blocks:
                break  # this step may preempt: the step-by-step path takes it
        batch.decode_context_tokens = context + n
        end = start + price(batch)
        # SimPy reaches the window's end as now + (end - now): exact, or the window stops here.
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
    if not steps:
        return [], []
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
        # Every request's last token came at ``now``, so step i's gap is the same for all n.
        histogram.shared_buffer.extend(step_gaps)
        histogram.shared_counts.extend([n] * k)
        if len(histogram.shared_buffer) >= FLUSH_AT:
            histogram.flush()
        last = ends[-1]
        for request in running:
            request.num_computed_tokens += k
            request.num_generated_tokens += k
            request.last_token_time = last
    finished: list[Request] = []
    if k == max_steps:  # the last step finished the requests with k tokens left
        last = ends[-1]
        for request in running:
            if request.num_generated_tokens == request.num_output_tokens:
                scheduler._finish(request, last)
                finished.append(request)
        scheduler.running = [r for r in running if r.status != RequestStatus.FINISHED]
    return steps, finished
