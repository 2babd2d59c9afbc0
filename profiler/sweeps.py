"""Shape sweeps: which token counts, decode batches and prefill chunks the profiler measures.

Token counts are every integer up to 16, then log-spaced (``points_per_octave`` per doubling),
plus both sides of every tile edge: a GEMM kernel tiles M in blocks of 64 or 128 rows (cuBLAS and the project's Triton GEMM),
so its time steps up just past ``64 * 2**j`` (one more tile row) and the fitted model must see
63/64/65, 127/128/129, 255/256/257, ... to learn the step. Every list returned here is sorted
and free of duplicates.

Two presets: ``SweepConfig.for_device("cuda")`` is thorough (16K tokens per step, decode batches
up to 512 at contexts up to 16K; about an hour on one H100, resumable in chunks), and
``SweepConfig.for_device("cpu")`` is small enough for CI on a tiny model (about a minute).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable


def _sorted_unique(values: Iterable[int], low: int, high: int) -> list[int]:
    return sorted({int(v) for v in values if low <= v <= high})


def log_spaced(low: int, high: int, points_per_octave: int) -> list[int]:
    """Integers from ``low`` to ``high`` (both included), about ``points_per_octave`` per doubling.

    Raises:
        ValueError: ``low < 1``, ``high < low`` or ``points_per_octave < 1``.
    """
    if low < 1 or high < low or points_per_octave < 1:
        raise ValueError(f"log_spaced needs 1 <= low <= high and points_per_octave >= 1, got {low}, {high}, {points_per_octave}")
    steps = math.ceil(math.log2(high / low) * points_per_octave) if high > low else 0
    values = [round(low * 2 ** (i / points_per_octave)) for i in range(steps + 1)]
    return _sorted_unique([*values, low, high], low, high)


def tile_edges(high: int, tile: int = 64) -> list[int]:
    """``e - 1, e, e + 1`` for every edge ``e = tile * 2**j <= high`` (sorted, unique)."""
    edges = []
    e = tile
    while e <= high:
        edges += [e - 1, e, e + 1]
        e *= 2
    return _sorted_unique(edges, 1, high)


DENSE_TOKENS = 16


def token_counts(max_tokens: int, points_per_octave: int = 4, tile: int = 64, dense_below: int = DENSE_TOKENS) -> list[int]:
    """Tokens per step to measure token-level operators at: 1..max_tokens, log-spaced plus tile edges.

    Every count up to ``dense_below`` is measured too: at a handful of rows GEMM kernels change
    path with every row (a matrix-vector product for one row; on CPUs the rows left over from
    4-, 8- or 16-row register blocks run separate edge kernels, so 3 rows took 41-67 % longer
    than 4 in a float32 GEMM of 2 x 2048 x 512, ``benchmarks/cpu_timing_effects.py``; on GPUs
    split-K and GEMV-like kernels), and
    the fit needs several examples of each remainder.

    Raises:
        ValueError: ``max_tokens < 1``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    dense = range(1, min(dense_below, max_tokens) + 1)
    return _sorted_unique([*log_spaced(1, max_tokens, points_per_octave), *tile_edges(max_tokens, tile), *dense], 1, max_tokens)


def decode_grid(batch_sizes: Iterable[int], context_lens: Iterable[int], max_context: int) -> list[tuple[int, int]]:
    """(batch size, context tokens per request) pairs, contexts capped at ``max_context``; sorted."""
    batches = _sorted_unique(batch_sizes, 1, 1 << 30)
    contexts = _sorted_unique(context_lens, 1, max_context)
    return [(b, c) for b in batches for c in contexts]


def prefill_grid(new_tokens: Iterable[int], prefix_tokens: Iterable[int], max_context: int) -> list[tuple[int, int]]:
    """(new tokens, cached prefix tokens) pairs of one prefill chunk with ``new + prefix <= max_context``; sorted."""
    news = _sorted_unique(new_tokens, 1, max_context)
    prefixes = _sorted_unique(prefix_tokens, 0, max_context)
    return [(n, c) for n in news for c in prefixes if n + c <= max_context]


@dataclass(frozen=True)
class SweepConfig:
    """What to measure, per operator family.

    Attributes:
        max_tokens: largest tokens per step for token-level operators (GEMMs, norms, ...);
            cover the scenarios' ``max_num_batched_tokens``.
        points_per_octave: log-spacing density of token counts.
        max_num_seqs: largest number of sampled requests (lm_head, sampling, final norm).
        decode_batch_sizes, decode_context_lens: the decode attention grid (requests x
            context tokens per request).
        prefill_new_tokens, prefill_prefix_tokens: the prefill attention grid (chunk tokens x
            cached prefix tokens).
        prefill_num_seqs: sequences per prefill measurement beyond 1, measured at the smaller
            chunks to learn what batching several prefills into one launch saves.
        cpu_overhead_batch_sizes: requests per step for the per-iteration CPU overhead.
        cpu_overhead_context: context tokens per request there (sets the block-table size).
        block_size: KV cache block size (tokens) of the paged operators.
        repeats: measure every shape this many times (separate rows, grouped by shape in the fit).
        max_context: cap on context tokens of the attention grids (default: the model's).

    Batch-size lists are clipped to ``max_num_seqs`` and prefill chunks to ``max_tokens``, so
    those two limits shrink every family of the sweep.
    """

    max_tokens: int
    points_per_octave: int
    max_num_seqs: int
    decode_batch_sizes: tuple[int, ...]
    decode_context_lens: tuple[int, ...]
    prefill_new_tokens: tuple[int, ...]
    prefill_prefix_tokens: tuple[int, ...]
    prefill_num_seqs: tuple[int, ...]
    cpu_overhead_batch_sizes: tuple[int, ...]
    cpu_overhead_context: int
    block_size: int = 16
    repeats: int = 1
    max_context: int | None = None

    @classmethod
    def for_device(cls, device: str) -> SweepConfig:
        """The default sweep: thorough on ``"cuda"``, CI-sized on ``"cpu"``."""
        if device == "cuda":
            return cls(
                max_tokens=16384, points_per_octave=4, max_num_seqs=512,
                decode_batch_sizes=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512),
                decode_context_lens=(16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
                prefill_new_tokens=(1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
                prefill_prefix_tokens=(0, 128, 512, 1024, 2048, 4096, 8192, 16384),
                prefill_num_seqs=(4,),
                cpu_overhead_batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                cpu_overhead_context=1024,
            )
        return cls(
            max_tokens=512, points_per_octave=4, max_num_seqs=64,
            decode_batch_sizes=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
            decode_context_lens=(16, 32, 64, 128, 256, 384, 512, 768, 1024),
            prefill_new_tokens=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512),
            prefill_prefix_tokens=(0, 32, 64, 128, 256, 512, 1024),
            prefill_num_seqs=(4,),
            cpu_overhead_batch_sizes=(1, 2, 4, 8, 16, 32, 64),
            cpu_overhead_context=256,
        )

    def replace(self, **changes) -> SweepConfig:
        """A copy with the ``changes`` that are not None applied."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def token_counts(self) -> list[int]:
        """Tokens per step of the token-level operators."""
        return token_counts(self.max_tokens, self.points_per_octave)

    def sampled_counts(self) -> list[int]:
        """Sampled requests per step (lm_head, sampling, final norm): 1..max_num_seqs."""
        return token_counts(self.max_num_seqs, self.points_per_octave)

    def _context_cap(self, model_max: int) -> int:
        return min(model_max, self.max_context or model_max)

    def decode_grid(self, max_context: int) -> list[tuple[int, int]]:
        """(requests, context tokens each) of the decode attention grid, within the limits."""
        batches = [b for b in self.decode_batch_sizes if b <= self.max_num_seqs]
        return decode_grid(batches, self.decode_context_lens, self._context_cap(max_context))

    def prefill_grid(self, max_context: int) -> list[tuple[int, int]]:
        """(chunk tokens, cached prefix tokens) of the prefill attention grid, within the limits."""
        news = [n for n in self.prefill_new_tokens if n <= self.max_tokens]
        return prefill_grid(news, self.prefill_prefix_tokens, self._context_cap(max_context))

    def cpu_overhead_batches(self) -> list[int]:
        """Requests per step of the CPU-overhead sweep, within ``max_num_seqs``."""
        return sorted({b for b in self.cpu_overhead_batch_sizes if b <= self.max_num_seqs} | {min(self.cpu_overhead_batch_sizes)})
