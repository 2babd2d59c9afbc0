"""Prefix caching: KV cache blocks of identical prompt prefixes are computed once and shared.

Follows vLLM's automatic prefix caching as its v1 engine runs it (vLLM v0.8-v0.19,
``vllm/v1/core/kv_cache_manager.py`` and ``block_pool.py``):

* A full prompt block is identified by a key standing for its tokens and every token before it
  (vLLM chains block hashes). A block becomes findable once the step that computes it is
  scheduled (``cache_full_blocks`` inside ``allocate_slots``).
* A new request takes the longest run of leading blocks found in the cache, but never its last
  token: at most ``(num_tokens - 1) // block_size`` blocks, since the last token must run to
  give logits. Its ``num_computed_tokens`` starts there, so its prefill skips those tokens.
* Cached blocks are reference-counted. A block no request holds stays cached but is free:
  evictable, kept in least-recently-freed order (a request's blocks are freed tail first, so a
  prefix outlives its suffix). Taking a free block uses an empty one if any, else evicts the
  least recently freed cached block.

Keys come from the workload: ``Request.block_hashes`` are Mooncake ``hash_ids`` (Mooncake,
FAST'25, trace release), one per 512-token block of the prompt, each standing for that block and
every block before it. KV block ``j`` (tokens ``[j * block_size, (j + 1) * block_size)``) gets
the key ``(hash_ids[t], o)`` for the trace block ``t`` and offset ``o`` of its last token, packed
into one int as ``hash_ids[t] * 512 + o``: with block_size 16, one trace id covers 32 KV blocks.
Requests without ``block_hashes`` share nothing. A KV block inside a trace block whose id differs
is never shared, even if its own tokens agree: the trace cannot say, so sharing is counted at
the trace's 512-token granularity, as a set-based replay of the ids counts it.

A request's own blocks: vLLM v1 hashes every full block of a request, generated tokens included
(0.8.0 ``BlockPool.cache_full_blocks``), so a request preempted by recompute finds its blocks in
the cache when it is admitted again. Here a full block past the trace's keys gets the key
``(request_id, j)``: only that request can ever hold it again (its tokens are its own). Nobody
else can look such a block up, so it is published when its request is preempted
(``cache_blocks(..., own_blocks=True)``, the ``vllm_v1`` scheduler) rather than when computed:
the same hits, without keying every block of every request. A finished request's own blocks
are freed as empty blocks, since nothing can hit them again (vLLM keeps them in its one LRU
list of free blocks; servesim already takes empty blocks before evicting cached ones).

Block accounting (every block is in exactly one state)::

    used:  private (one request's, no key) | cached, held (key, ref count >= 1)
    free:  empty                           | cached, evictable (key, ref count 0)
    num_blocks = used + free;  num_free_blocks counts evictable blocks too

A request that computes a block another request published first keeps its copy private.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from simulator.engine.kv_cache import BlockManager
from simulator.engine.request import Request

MOONCAKE_HASH_BLOCK_TOKENS = 512  # tokens per Mooncake trace ``hash_ids`` entry (trace README)
# A cached block's key: a trace key (int), or (request_id, block index) for a block of one request's own.
BlockKey = int | tuple[int, int]


def prompt_block_keys(block_hashes: Sequence[int], num_prompt_tokens: int, block_size: int, hash_block_tokens: int = MOONCAKE_HASH_BLOCK_TOKENS) -> list[int]:
    """Keys of a prompt's full KV blocks that the trace's block hashes cover.

    Args:
        block_hashes: one id per ``hash_block_tokens`` tokens of the prompt (the last may be
            partial), each standing for its block and all before it.
        num_prompt_tokens: prompt length (tokens).
        block_size: tokens per KV block.
        hash_block_tokens: tokens per trace block (512 for Mooncake).

    Returns:
        ``min(num_prompt_tokens, len(block_hashes) * hash_block_tokens) // block_size`` keys;
        key ``j`` = ``block_hashes[t] * hash_block_tokens + o`` where token ``(j + 1) *
        block_size - 1`` is at offset ``o`` of trace block ``t``.
    """
    num_full = min(num_prompt_tokens, len(block_hashes) * hash_block_tokens) // block_size
    if hash_block_tokens % block_size == 0:  # the usual case: whole KV blocks per trace block
        offsets = range(block_size - 1, hash_block_tokens, block_size)
        keys = [h * hash_block_tokens + o for h in block_hashes[: -(-num_full * block_size // hash_block_tokens)] for o in offsets]
        del keys[num_full:]
        return keys
    keys = []
    for j in range(num_full):
        t, o = divmod((j + 1) * block_size - 1, hash_block_tokens)
        keys.append(block_hashes[t] * hash_block_tokens + o)
    return keys


class PrefixCachingBlockManager(BlockManager):
    """A block manager whose full prompt blocks are shared through a reference-counted cache.

    Same interface as ``BlockManager``; ``find_cached_prefix``, ``cache_blocks`` and the
    ``num_cached_blocks`` argument of ``allocate`` do the caching. Work is per block at
    admission, publication and free, O(1) per decode step.

    Args:
        num_blocks: blocks in the pool (>= 1).
        block_size: tokens per block (>= 1).
        watermark: fraction of blocks admission leaves free (schedulers that use it).
        hash_block_tokens: tokens per entry of ``Request.block_hashes`` (512: Mooncake).
    """

    def __init__(self, num_blocks: int, block_size: int, watermark: float = 0.01, hash_block_tokens: int = MOONCAKE_HASH_BLOCK_TOKENS) -> None:
        super().__init__(num_blocks, block_size, watermark)
        self.hash_block_tokens = hash_block_tokens
        self._ref_counts: dict[BlockKey, int] = {}  # key -> requests holding the cached block (0: evictable)
        self._evictable: OrderedDict[BlockKey, None] = OrderedDict()  # ref count 0, least recently freed first
        self._held_keys: dict[int, list[BlockKey]] = {}  # request_id -> keys of the cached blocks it holds
        self._num_published: dict[int, int] = {}  # request_id -> leading blocks already offered to the cache
        self._keys: dict[int, list[int]] = {}  # request_id -> its prompt block keys, while it holds blocks
        self._last_lookup: tuple[int, list[int]] | None = None  # the last request looked up, and its keys
        self._own: set[int] = set()  # requests that published blocks of their own (module docstring)

    @classmethod
    def like(cls, block_manager: BlockManager) -> PrefixCachingBlockManager:
        """An empty prefix-caching manager with ``block_manager``'s size and watermark."""
        manager = cls(block_manager.num_blocks, block_manager.block_size, 0.0)
        manager.watermark_blocks = block_manager.watermark_blocks
        return manager

    @property
    def num_cached_blocks(self) -> int:
        """Blocks with a key: held by requests or evictable."""
        return len(self._ref_counts)

    @property
    def num_evictable_blocks(self) -> int:
        """Cached blocks no request holds (counted as free)."""
        return len(self._evictable)

    def _keys_for(self, request: Request) -> list[int]:
        rid = request.request_id
        keys = self._keys.get(rid)
        if keys is None:
            last = self._last_lookup
            if last is not None and last[0] == rid:
                return last[1]
            keys = prompt_block_keys(request.block_hashes, request.num_prompt_tokens, self.block_size, self.hash_block_tokens) if request.block_hashes else []
            self._last_lookup = (rid, keys)
        return keys

    def find_cached_prefix(self, request: Request) -> tuple[int, int]:
        """(leading prompt blocks of ``request`` in the cache, how many of them are evictable).

        At most ``(request.num_tokens - 1) // block_size`` blocks: the last token is always
        computed (vLLM v1 ``get_computed_blocks``). Changes nothing.
        """
        rid = request.request_id
        own = rid in self._own
        if not request.block_hashes and not own:
            return 0, 0
        keys = self._keys_for(request)
        num_keys = len(keys)
        limit = (request.num_tokens - 1) // self.block_size
        if not own:
            limit = min(num_keys, limit)
        refs = self._ref_counts
        n = num_evictable = 0
        while n < limit:
            ref = refs.get(keys[n] if n < num_keys else (rid, n))
            if ref is None:
                break
            if ref == 0:
                num_evictable += 1
            n += 1
        return n, num_evictable

    def _take(self, n: int) -> None:
        """Turn ``n`` free blocks into used ones: empty blocks first, then evict cached ones."""
        num_to_evict = n - (self.num_free_blocks - len(self._evictable))
        if num_to_evict > 0:
            evictable, refs = self._evictable, self._ref_counts
            for _ in range(num_to_evict):
                del refs[evictable.popitem(last=False)[0]]
        self.num_free_blocks -= n

    def allocate(self, request: Request, num_tokens: int, num_cached_blocks: int = 0) -> None:
        """Give ``request`` (holding no blocks) a block table for ``num_tokens`` tokens.

        Its first ``num_cached_blocks`` blocks (from ``find_cached_prefix``, just before) are the
        cached ones, shared; the rest are taken from the free blocks, evicting if needed.
        """
        rid = request.request_id
        assert rid not in self._num_blocks_held, f"request {rid} already holds blocks"
        total = self.num_blocks_for(num_tokens)
        assert num_cached_blocks <= total, "more cached blocks than the block table holds"
        keys = self._keys_for(request)
        held: list[BlockKey] = []
        if num_cached_blocks:
            refs, evictable = self._ref_counts, self._evictable
            held = keys[:num_cached_blocks]
            if len(held) < num_cached_blocks:  # the request's own blocks, past the trace's keys
                held += [(rid, j) for j in range(len(held), num_cached_blocks)]
            for key in held:
                ref = refs[key]
                if ref == 0:  # evictable: it leaves the free blocks
                    del evictable[key]
                    self.num_free_blocks -= 1
                refs[key] = ref + 1
        new = total - num_cached_blocks
        assert new <= self.num_free_blocks, f"allocating {new} blocks with {self.num_free_blocks} free"
        self._take(new)
        self._num_blocks_held[rid] = total
        self._held_keys[rid] = held
        self._num_published[rid] = num_cached_blocks
        if keys:
            self._keys[rid] = keys

    def grow_to(self, request: Request, num_tokens: int) -> bool:
        """Append blocks to ``request``'s block table until it holds ``num_tokens`` tokens.

        Returns:
            False, changing nothing, when there are too few free blocks (the caller preempts).
        """
        held = self._num_blocks_held[request.request_id]
        if num_tokens <= held * self.block_size:
            return True
        needed = -(-num_tokens // self.block_size) - held
        if needed > self.num_free_blocks:
            return False
        self._take(needed)
        self._num_blocks_held[request.request_id] = held + needed
        return True

    def cache_blocks(self, request: Request, num_tokens: int, own_blocks: bool = False) -> None:
        """Publish ``request``'s full prompt blocks with trace keys among its first ``num_tokens``
        tokens; with ``own_blocks``, every full block among them (module docstring).

        Called when a step that computes them is scheduled, and with ``own_blocks`` when the
        request is preempted by recompute, before its blocks are freed. A block whose key is
        already cached (another request published it first) stays private to this request.
        """
        rid = request.request_id
        keys = self._keys.get(rid)
        if keys is None:
            if not own_blocks:
                return
            keys = []
        start = self._num_published[rid]
        end = num_tokens // self.block_size
        if own_blocks:
            self._own.add(rid)
        else:
            end = min(len(keys), end)
        if end <= start:
            return
        refs, held = self._ref_counts, self._held_keys[rid]
        num_keys = len(keys)
        for j in range(start, end):
            key = keys[j] if j < num_keys else (rid, j)
            if key not in refs:
                refs[key] = 1
                held.append(key)
        self._num_published[rid] = end

    def free(self, request: Request) -> None:
        """Release ``request``'s blocks: private ones become empty, cached ones lose a holder.

        Cached blocks nobody holds any more stay cached as evictable, tail blocks first in
        eviction order (vLLM v1 ``KVCacheManager.free``).
        """
        rid = request.request_id
        num_held = self._num_blocks_held.pop(rid)
        held = self._held_keys.pop(rid)
        del self._num_published[rid]
        num_freed = num_held - len(held)
        refs, evictable = self._ref_counts, self._evictable
        for key in reversed(held):
            ref = refs[key] - 1
            refs[key] = ref
            if ref == 0:
                evictable[key] = None
                num_freed += 1
        self.num_free_blocks += num_freed
        assert self.num_free_blocks <= self.num_blocks, "freed more blocks than the pool holds"
        self._keys.pop(rid, None)

    def check(self) -> None:
        """Assert block conservation with sharing: private + cached held + free = all blocks."""
        refs = self._ref_counts
        private = sum(n - len(self._held_keys[rid]) for rid, n in self._num_blocks_held.items())
        cached_held = sum(1 for ref in refs.values() if ref > 0)
        assert private + cached_held + self.num_free_blocks == self.num_blocks, (
            f"{private} private + {cached_held} cached held + {self.num_free_blocks} free != {self.num_blocks} blocks")
        assert sum(refs.values()) == sum(map(len, self._held_keys.values())), "reference counts disagree with block tables"
        assert all(refs[key] == 0 for key in self._evictable) and len(self._evictable) == sum(1 for ref in refs.values() if ref == 0), "evictable blocks disagree with reference counts"
        assert len(self._evictable) <= self.num_free_blocks and len(refs) <= self.num_blocks
