"""Routers (global schedulers): choose the replica of each arriving request.

A router is a callable ``router(request, schedulers) -> replica index``: it reads the replicas'
schedulers (queues, KV cache; read-only) when the request arrives and returns an index into
``schedulers``. ``ROUTERS`` maps each name (``cluster.router``) to a factory taking a seeded
``numpy.random.Generator``; ``make_router(name, seed)`` builds one for a run. Routers that keep
state (the power-of-two sampler, the prefix-affinity record) keep it in the callable, so the
same scenario and seed give the same choices.

Load is the replica's outstanding requests: waiting, running and swapped out in its scheduler.
Ties in load go round robin (the scan starts at ``request_id mod N``), so idle replicas share
the work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.schedulers.base import Scheduler

Router = Callable[[Request, Sequence[Scheduler]], int]
RouterFactory = Callable[[np.random.Generator], Router]

# Mixed into the scenario seed so the router's stream is independent of the workload's.
_ROUTER_STREAM = 0x524F55544552  # "ROUTER"


def num_outstanding(scheduler: Scheduler) -> int:
    """Requests a replica holds: waiting, running and swapped out (a router's load counter)."""
    return len(scheduler.waiting) + len(scheduler.running) + len(scheduler.swapped)


def kv_usage(scheduler: Scheduler) -> float:
    """Fraction of the replica's KV cache blocks in use, in [0, 1]."""
    block_manager = scheduler.block_manager
    return 1.0 - block_manager.num_free_blocks / block_manager.num_blocks


def _argmin_round_robin(request: Request, loads: Sequence) -> int:
    """Index of the smallest load; among equal loads the first at or after ``request_id mod N``."""
    n = len(loads)
    start = request.request_id % n
    best = start
    for k in range(1, n):
        i = (start + k) % n
        if loads[i] < loads[best]:
            best = i
    return best


def round_robin(request: Request, replicas: Sequence[Scheduler]) -> int:
    """Request i goes to replica i mod N (requests are numbered in arrival order)."""
    return request.request_id % len(replicas)


def least_outstanding(request: Request, replicas: Sequence[Scheduler]) -> int:
    """The replica with the fewest outstanding requests (join the shortest queue).

    SGLang router's ``shortest_queue`` and vLLM production-stack's ``least-loaded`` routing.
    """
    return _argmin_round_robin(request, [num_outstanding(s) for s in replicas])


def least_kv(request: Request, replicas: Sequence[Scheduler]) -> int:
    """The replica with the lowest KV cache usage fraction; ties by outstanding requests.

    Blocks a replica has not yet allocated to its waiting requests do not count, so a burst of
    arrivals before the next iteration sees equal usage and spreads by outstanding requests.
    """
    return _argmin_round_robin(request, [(kv_usage(s), num_outstanding(s)) for s in replicas])


class PowerOfTwo:
    """Sample two distinct replicas uniformly, send the request to the less loaded one.

    Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS 2001);
    SGLang router's ``power_of_two`` policy. Load is outstanding requests; a tie goes to the
    first sample. With one replica nothing is sampled.

    Args:
        rng: the seeded generator the samples come from (two draws per request).
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, request: Request, replicas: Sequence[Scheduler]) -> int:
        n = len(replicas)
        if n == 1:
            return 0
        a = int(self.rng.integers(n))
        b = int(self.rng.integers(n - 1))
        b += b >= a  # uniform over the other n - 1 replicas
        return b if num_outstanding(replicas[b]) < num_outstanding(replicas[a]) else a


class PrefixAffinity:
    """Send a request where its prompt's prefix was sent before, unless that unbalances load.

    The policy of SGLang's cache-aware router (sgl-router ``cache_aware``): the router keeps,
    per replica, an approximate record of the prefixes it routed there (SGLang: a radix tree
    over request text) rather than querying the replicas' caches, so it also sees prefixes of
    requests still queued or in prefill. For each request:

    * If the load is imbalanced (busiest minus idlest > ``balance_abs_threshold`` requests and
      busiest > ``balance_rel_threshold`` x idlest), go to the least-loaded replica.
    * Else find the replica whose record shares the longest prefix with the prompt. If that
      prefix covers more than ``cache_threshold`` of the prompt, go there (equal matches: the
      less loaded). Otherwise go to the least-loaded replica (SGLang picks the replica with the
      smallest tree; load is the simulator's stand-in for the free cache that tree size tracks).

    Prefixes are the request's ``block_hashes`` (Mooncake ``hash_ids``: each id names one block
    and every block before it), so the matched prefix is the longest run of leading ids in the
    record. Each replica's record forgets its least recently used ids beyond what the replica's
    KV cache can hold (SGLang evicts LRU leaves beyond ``max_tree_size``). Requests without
    block hashes fall back to the least-loaded replica. Load is outstanding requests, as
    SGLang's per-worker request counters. Defaults are sgl-router's
    (``--cache-threshold 0.3 --balance-abs-threshold 64 --balance-rel-threshold 1.5``, SGLang
    gateway v0.3; earlier releases used a cache threshold of 0.5).

    Args:
        rng: unused (the policy is deterministic); accepted for the factory signature.
    """

    cache_threshold = 0.3
    balance_abs_threshold = 64
    balance_rel_threshold = 1.5

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.records: list[OrderedDict[int, None]] = []  # per replica: block hash -> None, LRU order

    def matched_blocks(self, replica: int, block_hashes: Sequence[int]) -> int:
        """How many leading ``block_hashes`` the record of ``replica`` holds."""
        record = self.records[replica]
        n = 0
        for h in block_hashes:
            if h not in record:
                break
            n += 1
        return n

    def __call__(self, request: Request, replicas: Sequence[Scheduler]) -> int:
        n = len(replicas)
        while len(self.records) < n:
            self.records.append(OrderedDict())
        loads = [num_outstanding(s) for s in replicas]
        hashes = request.block_hashes
        least_loaded = _argmin_round_robin(request, loads)
        if not hashes:
            return least_loaded
        busiest, idlest = max(loads), min(loads)
        if busiest - idlest > self.balance_abs_threshold and busiest > self.balance_rel_threshold * idlest:
            choice = least_loaded
        else:
            matches = [self.matched_blocks(i, hashes) for i in range(n)]
            best = _argmin_round_robin(request, [(-m, load) for m, load in zip(matches, loads)])
            choice = best if matches[best] > self.cache_threshold * len(hashes) else least_loaded
        self._remember(choice, hashes, replicas[choice], request.num_prompt_tokens)
        return choice

    def _remember(self, replica: int, block_hashes: Sequence[int], scheduler: Scheduler, num_prompt_tokens: int) -> None:
        record = self.records[replica]
        # Newest last; the leading blocks are touched last so deeper blocks are forgotten first,
        # as a radix tree evicts leaves before their parents.
        for h in reversed(block_hashes):
            record[h] = None
            record.move_to_end(h)
        # Capacity in hash blocks: the replica's KV cache tokens over the tokens one id covers.
        tokens_per_hash = max(1, -(-num_prompt_tokens // len(block_hashes)))
        capacity = max(1, scheduler.block_manager.num_blocks * scheduler.block_manager.block_size // tokens_per_hash)
        while len(record) > capacity:
            record.popitem(last=False)


def _stateless(router: Router) -> RouterFactory:
    return lambda rng: router


ROUTERS: dict[str, RouterFactory] = {
    "round_robin": _stateless(round_robin),
    "least_outstanding": _stateless(least_outstanding),
    "least_kv": _stateless(least_kv),
    "power_of_two": PowerOfTwo,
    "prefix_affinity": PrefixAffinity,
}


def make_router(name: str, seed: int, source: str = "<scenario>") -> Router:
    """A fresh router called ``name`` whose random choices follow ``seed`` (the scenario seed).

    Raises:
        ScenarioError: ``name`` is not in ``ROUTERS`` (the message lists the known names).
    """
    factory = ROUTERS.get(name)
    if factory is None:
        raise ScenarioError(source, "cluster.router", name, "unknown router", f"use one of {', '.join(ROUTERS)}")
    return factory(np.random.default_rng(np.random.SeedSequence([seed, _ROUTER_STREAM])))
