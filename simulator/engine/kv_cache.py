"""Paged KV cache of one replica: a pool of fixed-size blocks and each request's block count.

The vLLM model (Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP'23, Sec. 4): the KV cache is cut into blocks of ``block_size`` tokens; a
request's block table maps its logical blocks to physical ones, so it needs
``ceil(tokens / block_size)`` blocks and no contiguous space. Without prefix caching the
physical block ids do not change any timing, so the manager keeps counts only:

    pool:      [##########..........]   num_blocks = used + free
    request 7: tokens 0..37 -> 3 blocks (block_size 16): 16 + 16 + 6, 10 slots free in the last
    a decode writes token 38 into the last block; token 48 would need a 4th block

Blocks are allocated when a request is admitted (for every token it will compute), one more when
a decode step crosses a block boundary, and all freed when it finishes or is preempted. Admission
keeps a watermark of free blocks so running requests can still grow (vLLM v0
``BlockSpaceManager.can_allocate``).

Prefix caching (``simulator.engine.prefix_cache.PrefixCachingBlockManager``) shares full prompt blocks
between requests; this manager answers its queries with "nothing cached", so schedulers call
the same methods either way. Preemption by swap moves a request's blocks to CPU memory
(``SwapSpace``), whose accounting the scheduler keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.engine.deployment import GIB, Deployment
from simulator.engine.request import Request


@dataclass(frozen=True, slots=True)
class SwapSpace:
    """CPU memory for swapped-out KV blocks of one replica, and the time to move one block.

    Attributes:
        num_blocks: KV blocks the CPU swap space holds (0: no swap space, swapping falls back
            to recompute).
        block_transfer_s: seconds to copy one KV block between GPU and CPU memory, one way.
            Every GPU of the replica moves its own share of the block over its own PCIe link
            at the same time, so this is one GPU's share over one link.
    """

    num_blocks: int = 0
    block_transfer_s: float = 0.0

    @classmethod
    def for_deployment(cls, deployment: Deployment, swap_space_gib: float) -> SwapSpace:
        """The swap space of one replica of ``deployment``.

        vLLM's ``swap_space`` is CPU memory per GPU in GiB (``CacheConfig.swap_space``, default
        4; ``num_cpu_blocks = swap_space_bytes // cache_block_size``). One block's bytes on one
        GPU are ``kv_cache_bytes_per_gpu / num_kv_blocks``; it moves at the GPU spec's PCIe
        bandwidth per direction (datasheet peak: a lower bound on the time, as vLLM v0 copies
        each block of each layer with its own ``cudaMemcpyAsync``).
        """
        block_bytes = deployment.kv_cache_bytes_per_gpu / deployment.num_kv_blocks
        return cls(math.floor(swap_space_gib * GIB / block_bytes), block_bytes / deployment.gpu.pcie_bandwidth)


class BlockManager:
    """Counts KV cache blocks: total, free, and held per request.

    Args:
        num_blocks: blocks in the pool (>= 1).
        block_size: tokens per block (>= 1).
        watermark: fraction of blocks admission leaves free (vLLM's default 0.01).
    """

    def __init__(self, num_blocks: int, block_size: int, watermark: float = 0.01) -> None:
        assert num_blocks >= 1 and block_size >= 1, "the KV cache needs at least one block of one token"
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.watermark_blocks = int(watermark * num_blocks)
        self.num_free_blocks = num_blocks
        self._num_blocks_held: dict[int, int] = {}  # request_id -> blocks in its block table
        # Read-only view for schedulers' hot loops: a request needs a block only when its tokens
        # exceed blocks_held[request_id] * block_size.
        self.blocks_held = self._num_blocks_held

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    def num_blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens: ceil(num_tokens / block_size)."""
        return -(-num_tokens // self.block_size)

    def num_blocks_held(self, request: Request) -> int:
        return self._num_blocks_held.get(request.request_id, 0)

    def can_allocate(self, num_tokens: int, num_cached_blocks: int = 0, num_evictable_cached_blocks: int = 0) -> bool:
        """Whether a request holding ``num_tokens`` tokens can be admitted above the watermark.

        With prefix caching, its first ``num_cached_blocks`` blocks are already in the cache and
        need no new block, except the ``num_evictable_cached_blocks`` of them that no request
        holds, which count as free blocks until taken (vLLM v1 ``get_num_blocks_to_allocate``).
        """
        needed = self.num_blocks_for(num_tokens) - num_cached_blocks + num_evictable_cached_blocks
        return self.num_free_blocks - needed >= self.watermark_blocks

    def find_cached_prefix(self, request: Request) -> tuple[int, int]:
        """Prefix caching: (cached leading prompt blocks, how many of them are evictable).

        Always (0, 0) here: this manager caches nothing.
        """
        return 0, 0

    def cache_blocks(self, request: Request, num_tokens: int) -> None:
        """Prefix caching: publish the full prompt blocks among ``request``'s first ``num_tokens``
        tokens once they are scheduled. Nothing to do here."""

    def allocate(self, request: Request, num_tokens: int, num_cached_blocks: int = 0) -> None:
        """Give ``request`` (holding no blocks) a block table for ``num_tokens`` tokens.

        ``num_cached_blocks`` (from ``find_cached_prefix``) is always 0 for this manager.
        """
        assert num_cached_blocks == 0, "this block manager caches no prefix"
        needed = self.num_blocks_for(num_tokens)
        assert request.request_id not in self._num_blocks_held, f"request {request.request_id} already holds blocks"
        assert needed <= self.num_free_blocks, f"allocating {needed} blocks with {self.num_free_blocks} free"
        self._num_blocks_held[request.request_id] = needed
        self.num_free_blocks -= needed

    def grow_to(self, request: Request, num_tokens: int) -> bool:
        """Append blocks to ``request``'s block table until it holds ``num_tokens`` tokens.

        Returns:
            False, changing nothing, when there are too few free blocks (the caller preempts).
        """
        held = self._num_blocks_held[request.request_id]
        if num_tokens <= held * self.block_size:
            return True  # room in the last block: the common case of a decode step
        needed = -(-num_tokens // self.block_size) - held
        if needed > self.num_free_blocks:
            return False
        self._num_blocks_held[request.request_id] = held + needed
        self.num_free_blocks -= needed
        return True

    def free(self, request: Request) -> None:
        """Return every block of ``request`` to the pool (on finish or preemption)."""
        self.num_free_blocks += self._num_blocks_held.pop(request.request_id)
        assert self.num_free_blocks <= self.num_blocks, "freed more blocks than the pool holds"

    def check(self) -> None:
        """Assert block conservation: blocks held by requests + free blocks = all blocks."""
        held = sum(self._num_blocks_held.values())
        assert held + self.num_free_blocks == self.num_blocks, f"{held} held + {self.num_free_blocks} free != {self.num_blocks} blocks"
