"""Features that carry the physics of each operator kind, for the runtime-model fit.

For every kind: the work (FLOPs) and traffic (bytes) of the catalogue, the arithmetic intensity
(FLOPs / byte: which side of the roofline ridge a shape is on), the tile and wave counts of a
tiled kernel (``ceil(M/128) * ceil(N/128)`` output tiles spread over the device's compute units:
the last, partial wave costs a whole one, Nvidia's "wave quantization"), and logs of each (times
span five decades, so relative structure is what matters).

Three views per kind:

- ``basis``: non-negative terms whose positive combination is a "sum roofline"
  (``t ~ c0 + c1 FLOPs + c2 bytes + ...``): the physics prior, which extrapolates linearly.
- ``log_features``: everything above in log space, for the boosted residual.
- ``axes`` and ``group_columns``: the sweep's continuous axes (tokens; batch x context; chunk x
  prefix) and the columns that stay fixed along them, for interpolation along the sweep.

Inputs are ``{column: numpy array}`` (a DataFrame works) with the kind's shape columns, ``flops``
and ``nbytes``. numpy only.
"""

from __future__ import annotations

import numpy as np

from profiler.catalogue import ALL_REDUCE, ATTENTION_DECODE, ATTENTION_PREFILL, CPU_OVERHEAD, ELEMENTWISE, GEMM

TILE = 128


def _col(frame, name: str) -> np.ndarray:
    return np.asarray(frame[name], dtype=np.float64)


def tiles_and_waves(frame, kind: str, num_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Output tiles of a tiled kernel and the waves they take over ``num_units`` compute units."""
    if kind == GEMM:
        tiles = np.ceil(_col(frame, "m") / TILE) * np.ceil(_col(frame, "n") / TILE)
    elif kind == ATTENTION_PREFILL:
        tiles = _col(frame, "num_seqs") * np.ceil(_col(frame, "new_tokens") / TILE) * _col(frame, "num_heads")
    elif kind == ATTENTION_DECODE:
        tiles = _col(frame, "num_seqs") * _col(frame, "num_kv_heads")
    else:
        tiles = np.ceil(_col(frame, "num_tokens" if "num_tokens" in frame else "num_seqs") / TILE)
    return tiles, np.ceil(tiles / max(1, num_units))


REGISTER_BLOCKS = (4, 8, 16)


def remainder_passes(frame) -> list[np.ndarray]:
    """Edge-kernel passes over the weights: rows below one register block, then per block size ``b``.

    The first term is ``(m - 1) * n * k`` below the smallest block (each row of a 2- or 3-row
    GEMM took another pass: 1.7-1.8x and 2.1-2.2x the one-row time, small Llama, gate/up
    projection), then, per ``b``, ``n * k`` when ``m`` is not a multiple of ``b``, else 0.

    A BLAS GEMM computes the output in register blocks of ``b`` rows and runs the rows left
    over in a separate edge kernel that streams the packed weight panel once more (Goto and van
    de Geijn, "Anatomy of high-performance matrix multiplication", ACM TOMS 2008). On the
    development CPU (AMD EPYC with AVX-512, MKL through torch) a GEMM of 3 or 7 rows took 8-67 %
    longer than one of 4 or 8 (``benchmarks/cpu_timing_effects.py --only rows``, two runs).
    Which ``b`` matters is left to the fit. One row (m = 1) is a matrix-vector product, one
    pass with no edge kernel.
    """
    m, nk = _col(frame, "m"), _col(frame, "n") * _col(frame, "k")
    below = np.where(m < REGISTER_BLOCKS[0], m - 1, 0.0) * nk  # rows below one block: a pass each
    return [below, *(np.where((np.mod(m, b) != 0) & (m > 1), nk, 0.0) for b in REGISTER_BLOCKS)]


def basis(frame, kind: str, num_units: int) -> np.ndarray:
    """Non-negative physics terms [rows, terms]; the first is the constant 1 (launch / call overhead)."""
    one = np.ones(len(_col(frame, "flops")))
    flops, nbytes = _col(frame, "flops"), _col(frame, "nbytes")
    _, waves = tiles_and_waves(frame, kind, num_units)
    if kind == GEMM:
        cols = [one, flops, nbytes, waves, *remainder_passes(frame)]
    elif kind == ELEMENTWISE:
        cols = [one, nbytes, _col(frame, "num_tokens")]
    elif kind == ATTENTION_PREFILL:
        cols = [one, flops, nbytes, _col(frame, "num_seqs"), waves]
    elif kind == ATTENTION_DECODE:
        cols = [one, flops, nbytes, _col(frame, "num_seqs")]
    elif kind == ALL_REDUCE:
        cols = [one, nbytes]
    elif kind == CPU_OVERHEAD:
        seqs = _col(frame, "num_seqs")
        cols = [one, seqs, seqs * np.ceil(_col(frame, "context_tokens") / _col(frame, "block_size"))]
    else:
        raise KeyError(kind)
    return np.column_stack(cols)


def log_features(frame, kind: str, num_units: int) -> np.ndarray:
    """Log-space features [rows, features] for tree models."""
    flops, nbytes = _col(frame, "flops"), _col(frame, "nbytes")
    tiles, waves = tiles_and_waves(frame, kind, num_units)
    cols = [np.log1p(flops), np.log1p(nbytes), np.log1p(flops) - np.log1p(nbytes), np.log1p(tiles), np.log1p(waves),
            tiles / np.maximum(waves * max(1, num_units), 1)]  # occupancy of the last wave
    for name in axes(kind) + group_columns(kind):
        cols.append(np.log1p(_col(frame, name)))
    if kind == GEMM:
        m = _col(frame, "m")
        cols.append(m / (np.ceil(m / TILE) * TILE))  # fill of the last tile row
        cols.extend(np.mod(m, b) / b for b in REGISTER_BLOCKS)  # fill of the last register block
    return np.column_stack(cols)


def axes(kind: str) -> list[str]:
    """The sweep's continuous axes of ``kind``."""
    return {
        GEMM: ["m"], ELEMENTWISE: ["num_tokens"], ALL_REDUCE: ["num_tokens"], CPU_OVERHEAD: ["num_seqs"],
        ATTENTION_DECODE: ["num_seqs", "context_tokens"], ATTENTION_PREFILL: ["new_tokens", "prefix_tokens"],
    }[kind]


def group_columns(kind: str) -> list[str]:
    """Columns fixed along a sweep (a different value is a different curve)."""
    return {
        GEMM: ["n", "k"], ELEMENTWISE: ["width"], ALL_REDUCE: ["width"], CPU_OVERHEAD: ["context_tokens", "block_size"],
        ATTENTION_DECODE: ["num_heads", "num_kv_heads", "head_dim", "block_size"],
        ATTENTION_PREFILL: ["num_seqs", "num_heads", "num_kv_heads", "head_dim", "block_size"],
    }[kind]
