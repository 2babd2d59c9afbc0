"""FastServe: a skip-join multi-level feedback queue, preemptive at iteration granularity.

Follows Wu et al., "Fast Distributed Inference Serving for Large Language Models" (arXiv
2305.05920, 2023), Sec. 4.1 (skip-join MLFQ, Algorithm 1) and Sec. 4.2 (KV cache management):

* ``fastserve_num_levels`` queues, level 0 the highest priority. Level k's quantum is
  ``fastserve_base_quantum x fastserve_quantum_ratio^k`` iterations (the paper counts quanta in
  time; one decode iteration is the unit here, so a quantum of q is q decode steps).
* Skip-join: an arriving request joins the highest level whose quantum covers its first
  iteration, the prefill, priced as ceil(prompt tokens / ``fastserve_prefill_tokens_per_iteration``)
  iterations; a long prompt thus skips the top queues, whose short quanta it would overrun.
* Every iteration the batch is formed anew (preemption at iteration granularity), from the
  highest level down, first come first served within a level: up to ``max_num_seqs`` requests,
  their prefill and decode tokens within ``max_num_batched_tokens``. Prefills and decodes share an
  iteration (FastServe's engine batches at iteration level, as Orca does).
* After each iteration, each request in it is charged what it ran (its prefill's priced
  iterations, or one decode); a request whose charge reaches its level's quantum is demoted to
  the tail of the next level.
* A request left out of an iteration keeps its KV blocks while they fit. When a request chosen
  for the iteration needs blocks that are not free, requests not chosen give up theirs, the
  lowest priority first (a preempted request keeps its level):
  - a running request's next decode token: any lower-priority request, swapped to CPU memory
    with ``preemption_mode: swap`` while the swap space has room, else freed and recomputed;
  - a waiting request's prompt, or a swapped request coming back: only requests at lower levels,
    only by swap, and only if swapping them frees enough (FastServe's offloading to host memory,
    done here on demand). Recomputing a request to admit another would throw away work that
    the request has already had, and requests of one level would swap each other in turn.
  A waiting request that does not fit stops admission for the iteration (no skipping ahead), so
  long prompts are not starved by shorter ones behind them.
* Starvation: a request not served for ``fastserve_starve_limit_s`` seconds is promoted to the
  tail of level 0 (Algorithm 1's STARVE_LIMIT).

Not modelled: the proactive swap-in ahead of need and the pipelined distributed execution
(Sec. 4.2-4.3); the quanta count iterations, not milliseconds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from simulator.engine.batch import Batch
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.request import Request, RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.base import Scheduler

_SEQ_BITS = 40  # a request's rank is level << _SEQ_BITS | order of entry into that level
_RUNNING, _SWAPPED, _FINISHED = RequestStatus.RUNNING, RequestStatus.SWAPPED, RequestStatus.FINISHED


@dataclass(slots=True)
class _Place:
    """A request's place in the MLFQ."""

    request: Request
    level: int = 0
    rank: int = 0  # sort key: lower runs first; unique
    used: int = 0  # iterations charged at this level
    last_served_time: float = 0.0  # arrival, then the end of the last iteration it ran in (s)


class FastServeScheduler(Scheduler):
    """Skip-join MLFQ: highest level first, demoted after a quantum, preempted per iteration.

    Wu et al. 2023 (arXiv 2305.05920), Sec. 4.1 and Algorithm 1; the module docstring says what
    is modelled. Arguments as ``Scheduler``'s; the knobs are ``scheduler.fastserve_*`` (quanta in
    iterations, the starvation limit in seconds of simulated time).
    """

    supports_swap = True

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int, swap_space: SwapSpace | None = None) -> None:
        super().__init__(config, block_manager, max_num_batched_tokens, max_model_len, swap_space)
        self.quanta = [config.fastserve_base_quantum * config.fastserve_quantum_ratio**k for k in range(config.fastserve_num_levels)]
        self._places: dict[int, _Place] = {}  # request_id -> place, for every unfinished request
        self._queue: list[tuple[int, Request]] = []  # (rank, request) of every unfinished request, by rank
        self._num_entries = 0  # entries into any level so far: FCFS order within a level
        self._next_starve_check_time = float("inf")  # no place at a level > 0 starves before this
        # While a batch forms: the victims (see _victims), those preempted.
        self._holders: list[tuple[int, Request]] | None = None
        self._evicted: set[int] = set()

    def _enter(self, place: _Place, level: int) -> None:
        """Put ``place`` at the tail of ``level``."""
        if place.rank:
            del self._queue[bisect.bisect_left(self._queue, (place.rank,))]
        place.level, place.used = level, 0
        self._num_entries += 1
        place.rank = level << _SEQ_BITS | self._num_entries
        if level:  # from now on it may starve
            self._next_starve_check_time = min(self._next_starve_check_time, place.last_served_time + self.config.fastserve_starve_limit_s)
        if level == len(self.quanta) - 1:  # the newest rank of the lowest level is the largest
            self._queue.append((place.rank, place.request))
        else:
            bisect.insort(self._queue, (place.rank, place.request))

    def prefill_iterations(self, num_tokens: int) -> int:
        """Iterations a prefill of ``num_tokens`` tokens is charged (skip-join and quanta)."""
        return max(1, -(-num_tokens // self.config.fastserve_prefill_tokens_per_iteration))

    def join_level(self, request: Request) -> int:
        """Skip-join (Sec. 4.1): the highest level whose quantum covers the request's prefill."""
        cost = self.prefill_iterations(request.num_prompt_tokens)
        return next((k for k, q in enumerate(self.quanta) if q >= cost), len(self.quanta) - 1)

    def level_of(self, request: Request) -> int:
        """The request's current level (0 = highest priority)."""
        return self._places[request.request_id].level

    def add_request(self, request: Request) -> None:
        place = self._places[request.request_id] = _Place(request, last_served_time=request.arrival_time)
        self._enter(place, self.join_level(request))
        self.waiting.append(request)

    def _promote_starved(self, now: float) -> None:
        """Algorithm 1's starvation guard: a request unserved for the limit goes to level 0."""
        limit = self.config.fastserve_starve_limit_s
        next_check = float("inf")
        for place in list(self._places.values()):
            if not place.level:
                continue
            if place.last_served_time <= now - limit:
                self._enter(place, 0)
                place.last_served_time = now  # promoted again only after another limit unserved
            else:
                next_check = min(next_check, place.last_served_time + limit)
        self._next_starve_check_time = next_check

    def schedule(self, now: float) -> Batch | None:
        if not self._places:
            return None
        if now >= self._next_starve_check_time:
            self._promote_starved(now)
        block_manager = self.block_manager
        grow_to, blocks_held, block_size = block_manager.grow_to, block_manager.blocks_held, block_manager.block_size
        num_preempted = self.num_preemptions
        decodes: list[Request] = []
        prefills: list[tuple[Request, int]] = []
        budget, seats = self.max_num_batched_tokens, self.max_num_seqs
        self._holders = None
        evicted = self._evicted = set()  # lost their KV while this batch formed: not brought back in it
        # No waiting request is admitted past one that did not fit, so a long prompt is not
        # starved by shorter ones behind it; requests holding KV (on GPU or CPU) still run.
        admitting = True
        num_kv_left = len(self.running) + len(self.swapped)  # after position i
        for i, (_, request) in enumerate(self._queue):
            if seats == 0 or budget == 0:
                break
            status = request.status
            if status == _RUNNING:  # holds its KV and decodes (a prefill runs whole on admission)
                num_kv_left -= 1
                num_tokens = request.num_prompt_tokens + request.num_generated_tokens
                if num_tokens > blocks_held[request.request_id] * block_size and not grow_to(request, num_tokens):
                    while not grow_to(request, num_tokens):
                        if not self._evict_one(i):
                            break
                    else:
                        decodes.append(request)
                        budget, seats = budget - 1, seats - 1
                    continue
                decodes.append(request)
                budget, seats = budget - 1, seats - 1
                continue
            if status == _SWAPPED:
                num_kv_left -= 1
                if request.request_id not in evicted and self._swap_in_now(request, i):
                    decodes.append(request)
                    budget, seats = budget - 1, seats - 1
                continue
            if admitting and request.request_id not in evicted:
                num_new_tokens = self._admit_now(request, now, i, budget)
                if num_new_tokens is None:
                    admitting = False
                else:
                    prefills.append((request, num_new_tokens))
                    budget, seats = budget - num_new_tokens, seats - 1
                    continue
            if not admitting and num_kv_left <= 0:
                break
        batch = Batch.of_decodes(decodes)
        for request, num_new_tokens in prefills:
            self._add_chunk(batch, request, num_new_tokens)
        batch.num_preemptions = self.num_preemptions - num_preempted
        if self.swap:
            self._take_swapped_blocks(batch)
        return batch if batch.requests else None

    def _swap_in_now(self, request: Request, i: int) -> bool:
        """Bring swapped ``request`` (past its prefill) back to GPU memory for a decode; False
        when its blocks do not fit even after swapping out lower levels."""
        block_manager = self.block_manager
        num_blocks = self._num_cpu_blocks_held[request.request_id]
        num_tokens = max(request.num_tokens, num_blocks * block_manager.block_size)
        short = block_manager.num_blocks_for(num_tokens) - block_manager.num_free_blocks
        if short > 0 and not self._swap_out_for(i, short):  # recomputing one to bring back another gains nothing
            return False
        del self._num_cpu_blocks_held[request.request_id]
        self.swapped.remove(request)
        block_manager.allocate(request, num_tokens)
        self.num_free_cpu_blocks += num_blocks
        self._num_swap_pending += num_blocks
        request.status = _RUNNING
        self._insert_running(request)
        return True

    def _admit_now(self, request: Request, now: float, i: int, budget: int) -> int | None:
        """Admit waiting (or recompute-preempted) ``request`` with blocks for all its uncomputed
        tokens, swapping out lower levels if that makes room; the tokens it prefills now, or None."""
        block_manager = self.block_manager
        num_cached_blocks, num_evictable = self._find_cached_prefix(request)
        num_new_tokens = request.num_uncomputed_tokens - num_cached_blocks * block_manager.block_size
        if num_new_tokens > budget:
            return None
        if not block_manager.can_allocate(request.num_uncomputed_tokens, num_cached_blocks, num_evictable):
            needed = block_manager.num_blocks_for(request.num_uncomputed_tokens) - num_cached_blocks + num_evictable
            if not self._swap_out_for(i, needed + block_manager.watermark_blocks - block_manager.num_free_blocks):
                return None
            num_cached_blocks, num_evictable = self._find_cached_prefix(request)  # victims' blocks may stay cached
            if not block_manager.can_allocate(request.num_uncomputed_tokens, num_cached_blocks, num_evictable):
                return None  # freed blocks still shared with other requests (prefix caching)
            num_new_tokens = request.num_uncomputed_tokens - num_cached_blocks * block_manager.block_size
        self.waiting.remove(request)
        self.waiting.appendleft(request)  # the base admits from the head
        self._admit(request, request.num_uncomputed_tokens, now, num_cached_blocks)
        return num_new_tokens

    def _victims(self) -> list[tuple[int, Request]]:
        """(position in the queue, request) of the requests holding KV blocks, by position.

        Built when first needed in a batch: requests after the current position are not yet
        visited, so their status is what it was when the batch began, less evictions."""
        if self._holders is None:
            self._holders = [(i, r) for i, (_, r) in enumerate(self._queue) if r.status == _RUNNING]
        return self._holders

    def _evict_one(self, i: int) -> bool:
        """Preempt the lowest-priority request after position ``i`` that holds KV blocks (never
        one chosen already: those come before ``i``); False when there is none."""
        holders = self._victims()
        while holders and holders[-1][0] > i:
            victim = holders.pop()[1]
            if victim.status == _RUNNING:
                self._preempt_now(victim)
                return True
        return False

    def _swap_out_for(self, i: int, num_blocks: int) -> bool:
        """Swap out requests at lower levels than position ``i``'s, the lowest priority first,
        until ``num_blocks`` more blocks are free; False, with nothing done, when they cannot
        free them (or preemption is by recompute): one level's requests do not swap each other,
        and nothing is swapped out for a request that still would not fit."""
        if not self.swap:
            return False
        places, holders, block_manager = self._places, self._victims(), self.block_manager
        level = places[self._queue[i][1].request_id].level
        victims, num_freed, num_cpu_blocks = [], 0, self.num_free_cpu_blocks
        for k in range(len(holders) - 1, -1, -1):
            position, victim = holders[k]
            if position <= i or places[victim.request_id].level == level:
                break
            held = block_manager.num_blocks_held(victim)
            if victim.status == _RUNNING and held <= num_cpu_blocks:
                victims.append(k)
                num_freed += held
                num_cpu_blocks -= held
                if num_freed >= num_blocks:
                    for k in victims:  # descending positions: deleting keeps the rest in place
                        self._preempt_now(holders.pop(k)[1])
                    return True
        return False

    def _preempt_now(self, victim: Request) -> None:
        self.running.remove(victim)
        self._preempt(victim)
        self._evicted.add(victim.request_id)

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold the step back, then charge each request its iterations and demote it past its quantum."""
        finished = super().on_step_end(batch, now)
        places, quanta, last, queue = self._places, self.quanta, len(self.quanta) - 1, self._queue
        for request, num_new_tokens in zip(batch.requests, batch.num_new_tokens):
            place = places[request.request_id]
            if request.status == _FINISHED:
                del places[request.request_id]
                del queue[bisect.bisect_left(queue, (place.rank,))]
                continue
            place.last_served_time = now
            place.used += self.prefill_iterations(num_new_tokens)  # a decode: 1
            if place.used >= quanta[place.level] and place.level < last:
                self._enter(place, place.level + 1)
        return finished
