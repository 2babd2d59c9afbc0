"""Paged-attention decode: one new query token per sequence attends to its whole KV cache, read
through the block table, with grouped-query attention and split-KV (flash-decoding).

KV cache layout (vLLM's, Kwon et al., SOSP'23, Sec. 4.1): ``k_cache`` and ``v_cache`` are
[num_blocks, block_size, num_kv_heads, head_dim]; token t of sequence s lives in physical block
``block_tables[s, t // block_size]`` at slot ``t % block_size``. Sequence s has
``context_lens[s]`` tokens in the cache, the new token's own K/V included (written before
attention, as vLLM does), so its query attends to positions 0..context_lens[s]-1.

GQA (Ainslie et al., EMNLP'23): query head h reads KV head ``h // (num_q_heads // num_kv_heads)``,
the order of Hugging Face's ``repeat_kv``. One program serves all query heads of one KV head, so
each KV tile is loaded once for the whole group.

Split-KV (Dao, Haziza, Massa and Sizov, "Flash-Decoding for long-context inference", PyTorch
blog, October 2023): with few sequences, one program per (sequence, KV head) leaves most SMs
idle, so each sequence's tiles of BLOCK_N tokens are cut into ``num_splits`` contiguous ranges,
one program each:

    context of seq s:  |tile 0 tile 1 | tile 2 tile 3 | tile 4        |            |
                       |   split 0    |   split 1     |   split 2     |  split 3   | (empty)
    pass 1 (paged_decode_split_kernel): per split, softmax-weighted partial output o_i and the
        log-sum-exp lse_i of its scores (base 2).
    pass 2 (paged_decode_merge_kernel): out = sum_i 2^(lse_i - L) o_i / sum_i 2^(lse_i - L),
        L = max_i lse_i; empty splits have lse_i = -inf and weigh nothing.

With one split, pass 1 writes the output directly and pass 2 is skipped.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._paged_kv import ATTENTION_DTYPES, LOG2E, MIN_DOT, attend_kv_tile, gather_kv
from kernels._validate import (
    check_block_ids,
    check_devices,
    check_dtype,
    check_paged_kv_cache,
    check_positive,
    check_shape,
    check_unit_strides,
)

BLOCK_N = 64  # KV tokens per inner-loop tile, independent of the cache block size
MAX_SPLITS = 64
# Shortest split worth a program: below it the fixed cost per split (q load, partial write, merge)
# outweighs the parallelism gained. An unmeasured starting point, to be tuned on a GPU with
# benchmarks/bench_kernels.py.
MIN_TOKENS_PER_SPLIT = 256
DEFAULT_NUM_SMS = 132  # H100 SXM (NVIDIA H100 datasheet), used when the device cannot be asked


@triton.jit
def paged_decode_split_kernel(
    q_ptr,  # [num_seqs, num_q_heads, head_dim]
    k_cache_ptr, v_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    block_tables_ptr,  # [num_seqs, max_blocks_per_seq] int32
    context_lens_ptr,  # [num_seqs] int32
    out_ptr,  # [num_seqs, num_q_heads, num_splits, head_dim] fp32, or the final output if one split
    lse_ptr,  # [num_seqs, num_q_heads, num_splits] fp32 base-2 log-sum-exp (unused if not WRITE_LSE)
    scale_log2,  # softmax scale * log2(e): scores are kept in base 2 so exp2 can be used
    head_dim,  # true head size (HEAD_DIM_PAD >= head_dim)
    num_splits,  # splits per sequence
    stride_qs, stride_qh,  # q strides (elements); head_dim is dense
    stride_kb, stride_kt, stride_kh,  # k_cache strides: block, slot, head
    stride_vb, stride_vt, stride_vh,  # v_cache strides: block, slot, head
    stride_bts,  # block_tables row stride
    stride_os, stride_oh, stride_op,  # out strides: seq, head, split (0 when writing the final output)
    stride_ls, stride_lh,  # lse strides: seq, head (split is dense)
    QUERIES_PER_KV: tl.constexpr,  # query heads per KV head (GQA group size)
    GROUP_PAD: tl.constexpr,  # QUERIES_PER_KV padded to a power of two >= 16 (tl.dot rows)
    BLOCK_SIZE: tl.constexpr,  # tokens per KV cache block
    BLOCK_N: tl.constexpr,  # KV tokens per tile
    HEAD_DIM_PAD: tl.constexpr,  # head_dim padded to a power of two >= 16
    WRITE_LSE: tl.constexpr,  # store the log-sum-exp for the merge pass
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 caches, ignored otherwise
):
    """Attention of one sequence's query heads of one KV head over one split of its context."""
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    context_len = tl.load(context_lens_ptr + seq)
    num_tiles = tl.cdiv(context_len, BLOCK_N)
    tiles_per_split = tl.cdiv(num_tiles, num_splits)
    tile_start = split * tiles_per_split
    tile_end = tl.minimum(tile_start + tiles_per_split, num_tiles)

    # The query heads of this KV head: rows of a [GROUP_PAD, HEAD_DIM_PAD] tile, padding zeroed.
    offs_g = tl.arange(0, GROUP_PAD)
    offs_d = tl.arange(0, HEAD_DIM_PAD)
    mask_g = offs_g < QUERIES_PER_KV
    mask_d = offs_d < head_dim
    heads = kv_head * QUERIES_PER_KV + offs_g
    q = tl.load(q_ptr + seq * stride_qs + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_g[:, None] & mask_d[None, :], other=0.0)

    m_i = tl.full((GROUP_PAD,), float("-inf"), dtype=tl.float32)  # running max score (base 2)
    l_i = tl.zeros((GROUP_PAD,), dtype=tl.float32)  # running sum of 2^(score - m_i)
    acc = tl.zeros((GROUP_PAD, HEAD_DIM_PAD), dtype=tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    table_row = block_tables_ptr + seq * stride_bts
    for tile in range(tile_start, tile_end):
        pos = tile * BLOCK_N + offs_n  # token positions of this tile
        mask_n = pos < context_len
        # The one query sees every cached token; every tile holds at least one, so m_i stays finite.
        acc, m_i, l_i = attend_kv_tile(q, acc, m_i, l_i, pos, mask_n, mask_n[None, :], table_row,
                                       k_cache_ptr, v_cache_ptr, kv_head, stride_kb, stride_kt, stride_kh,
                                       stride_vb, stride_vt, stride_vh, offs_d, mask_d, scale_log2,
                                       BLOCK_SIZE, DOT_PRECISION)

    # An empty split (tile_start >= tile_end) leaves l_i = 0: output 0 and lse -inf.
    has_tokens = l_i > 0.0
    out = acc / tl.where(has_tokens, l_i, 1.0)[:, None]
    out_ptrs = out_ptr + seq * stride_os + heads[:, None] * stride_oh + split * stride_op + offs_d[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_g[:, None] & mask_d[None, :])
    if WRITE_LSE:
        lse = tl.where(has_tokens, m_i + tl.log2(tl.where(has_tokens, l_i, 1.0)), float("-inf"))
        tl.store(lse_ptr + seq * stride_ls + heads * stride_lh + split, lse, mask=mask_g)


@triton.jit
def paged_decode_merge_kernel(
    partial_ptr,  # [num_seqs, num_q_heads, num_splits, head_dim] fp32
    lse_ptr,  # [num_seqs, num_q_heads, num_splits] fp32, base 2
    out_ptr,  # [num_seqs, num_q_heads, head_dim] in q's dtype
    head_dim,  # true head size
    num_splits,  # splits per sequence
    stride_ps, stride_ph, stride_pp,  # partial strides: seq, head, split (head_dim dense)
    stride_ls, stride_lh,  # lse strides: seq, head (split dense)
    stride_os, stride_oh,  # out strides: seq, head (head_dim dense)
    SPLITS_PAD: tl.constexpr,  # num_splits padded to a power of two
    HEAD_DIM_PAD: tl.constexpr,  # head_dim padded to a power of two
):
    """Combine one (sequence, query head)'s split outputs, weighting each by 2^lse."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    offs_p = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, HEAD_DIM_PAD)
    mask_p = offs_p < num_splits
    mask_d = offs_d < head_dim

    lse = tl.load(lse_ptr + seq * stride_ls + head * stride_lh + offs_p, mask=mask_p, other=float("-inf"))
    lse_max = tl.max(lse, axis=0)
    lse_max = tl.where(lse_max == float("-inf"), 0.0, lse_max)  # an empty context: all weights 0
    weights = tl.exp2(lse - lse_max)  # [SPLITS_PAD]
    total = tl.sum(weights, axis=0)
    partial = tl.load(partial_ptr + seq * stride_ps + head * stride_ph + offs_p[:, None] * stride_pp + offs_d[None, :],
                      mask=mask_p[:, None] & mask_d[None, :], other=0.0)
    out = tl.sum(partial * weights[:, None], axis=0) / tl.where(total > 0.0, total, 1.0)
    tl.store(out_ptr + seq * stride_os + head * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=mask_d)


def default_num_splits(num_seqs: int, num_kv_heads: int, max_context_len: int, device: torch.device) -> int:
    """Splits per sequence so the first pass fills the GPU.

    One program per (sequence, KV head, split): choose the fewest splits that give at least one
    program per SM, but no split shorter than MIN_TOKENS_PER_SPLIT tokens of the longest context,
    and at most MAX_SPLITS. The SM count is the device's (``DEFAULT_NUM_SMS`` off CUDA).
    """
    num_sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else DEFAULT_NUM_SMS
    programs = max(1, num_seqs * num_kv_heads)
    by_occupancy = -(-num_sms // programs)
    by_length = max(1, -(-max_context_len // MIN_TOKENS_PER_SPLIT))
    return max(1, min(by_occupancy, by_length, MAX_SPLITS))


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                 context_lens: torch.Tensor, scale: float, num_splits: int | None = None,
                 max_context_len: int | None = None) -> torch.Tensor:
    """Decode attention of one query token per sequence over its paged KV cache.

    Args:
        q: [num_seqs, num_q_heads, head_dim] fp16/bf16/fp32, head_dim dense.
        k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim], q's dtype, head_dim
            dense; num_q_heads a multiple of num_kv_heads.
        block_tables: [num_seqs, max_blocks_per_seq] int32, physical block ids; entries past a
            sequence's last block are not read.
        context_lens: [num_seqs] int32, tokens in each sequence's cache (its new token included),
            at most max_blocks_per_seq * block_size. A sequence with 0 tokens gets a zero output.
        scale: softmax scale (usually head_dim ** -0.5).
        num_splits: KV splits per sequence; None picks :func:`default_num_splits`.
        max_context_len: the longest context, bounding the heuristic's splits; None uses
            max_blocks_per_seq * block_size (no device sync).

    Returns:
        out: [num_seqs, num_q_heads, head_dim] in q's dtype.

    Raises:
        ValueError: wrong shapes, dtypes or strides, num_q_heads not a multiple of num_kv_heads,
            tensors on different devices (or not on CUDA outside the interpreter), num_splits < 1.
            Block ids and context lengths are checked only for CPU tensors (the interpreter):
            on CUDA that would cost a device sync, and bad values read out of bounds.
    """
    name = "paged_decode"
    num_blocks, block_size, num_kv_heads = check_paged_kv_cache(
        name, q, "[num_seqs, num_q_heads, head_dim]", k_cache, v_cache, block_tables, True, ATTENTION_DTYPES)
    num_seqs, num_q_heads, head_dim = q.shape
    check_dtype(name, "context_lens", context_lens, (torch.int32,))
    check_shape(name, "context_lens", context_lens, (num_seqs,), "[num_seqs]")
    tensors = dict(q=q, k_cache=k_cache, v_cache=v_cache, block_tables=block_tables, context_lens=context_lens)
    device = check_devices(name, **tensors)
    check_unit_strides(name, **tensors)
    max_blocks_per_seq = block_tables.shape[1]
    if device.type == "cpu" and num_seqs > 0:
        _check_values(name, block_tables, context_lens, num_blocks, block_size)
    if num_splits is None:
        bound = max_blocks_per_seq * block_size if max_context_len is None else max_context_len
        num_splits = default_num_splits(num_seqs, num_kv_heads, bound, device)
    check_positive(name, "num_splits", num_splits)

    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if num_seqs == 0 or num_q_heads == 0:
        return out
    queries_per_kv = num_q_heads // num_kv_heads
    head_dim_pad = max(MIN_DOT, triton.next_power_of_2(head_dim))
    if num_splits == 1:
        # Write the final output straight away; split stride 0, no log-sum-exp.
        partial, lse = out, out
        partial_strides, lse_strides = (out.stride(0), out.stride(1), 0), (0, 0)
    else:
        partial = torch.empty((num_seqs, num_q_heads, num_splits, head_dim), dtype=torch.float32, device=device)
        lse = torch.empty((num_seqs, num_q_heads, num_splits), dtype=torch.float32, device=device)
        partial_strides, lse_strides = partial.stride()[:3], lse.stride()[:2]

    paged_decode_split_kernel[(num_seqs, num_kv_heads, num_splits)](
        q, k_cache, v_cache, block_tables, context_lens, partial, lse,
        scale * LOG2E, head_dim, num_splits,
        q.stride(0), q.stride(1),
        *k_cache.stride()[:3], *v_cache.stride()[:3],  # block, slot, head
        block_tables.stride(0), *partial_strides, *lse_strides,
        QUERIES_PER_KV=queries_per_kv,
        GROUP_PAD=max(MIN_DOT, triton.next_power_of_2(queries_per_kv)),
        BLOCK_SIZE=block_size, BLOCK_N=BLOCK_N, HEAD_DIM_PAD=head_dim_pad,
        WRITE_LSE=num_splits > 1,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    if num_splits > 1:
        paged_decode_merge_kernel[(num_seqs, num_q_heads)](
            partial, lse, out, head_dim, num_splits,
            *partial.stride()[:3], *lse.stride()[:2], out.stride(0), out.stride(1),
            SPLITS_PAD=triton.next_power_of_2(num_splits), HEAD_DIM_PAD=head_dim_pad,
        )
    return out


def _check_values(name: str, block_tables: torch.Tensor, context_lens: torch.Tensor, num_blocks: int, block_size: int) -> None:
    """Host-side value checks (CPU tensors only): context lengths fit the table, ids fit the pool."""
    max_tokens = block_tables.shape[1] * block_size
    lens = context_lens.tolist()
    for s, n in enumerate(lens):
        if not 0 <= n <= max_tokens:
            raise ValueError(f"{name}: context_lens[{s}] = {n} is outside 0..{max_tokens} "
                             f"(max_blocks_per_seq {block_tables.shape[1]} x block_size {block_size})")
        check_block_ids(name, block_tables, s, n, block_size, num_blocks)


def paged_decode_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                           context_lens: torch.Tensor, scale: float, num_splits: int | None = None,
                           max_context_len: int | None = None) -> torch.Tensor:
    """The same attention by torch: gather each sequence's K/V from its blocks, dense softmax in
    fp32 (shapes as :func:`paged_decode`; ``num_splits`` and ``max_context_len`` are ignored)."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for s, n in enumerate(context_lens.tolist()):
        if n == 0:
            continue
        k, v = gather_kv(k_cache, v_cache, block_tables, s, n, q.shape[1])
        scores = torch.einsum("hd,thd->ht", q[s].float(), k) * scale  # [num_q_heads, n]
        out[s] = torch.einsum("ht,thd->hd", torch.softmax(scores, dim=-1), v)
    return out.to(q.dtype)
