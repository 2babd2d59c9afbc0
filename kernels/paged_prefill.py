"""Paged-attention prefill (and extend / chunked prefill): causal attention of each sequence's new
tokens over its cached prefix and themselves, read through the block table, with GQA.

A batch is a varlen pack of sequences. Sequence s has ``prefix_lens[s]`` tokens already in the KV
cache (a cached prefix, or earlier chunks of a chunked prefill) and ``new = query_start_loc[s+1] -
query_start_loc[s]`` new tokens whose queries are rows ``query_start_loc[s] .. query_start_loc[s+1]-1``
of ``q``.

Convention (vLLM v1 writes the new tokens' K/V into the paged cache before running attention):
the new tokens' K and V are already in ``k_cache`` / ``v_cache`` at positions
``prefix .. prefix + new - 1``, so the kernel reads every key and value from the cache. New token i
(absolute position prefix + i) attends to cache positions 0 .. prefix + i:

    positions   0 .. prefix-1 | prefix .. prefix+new-1
    new token 0   x x x x x x | x
    new token 1   x x x x x x | x x
    new token 2   x x x x x x | x x x

Cache layout and GQA head mapping as :mod:`kernels.paged_decode` (query head h reads KV head
h // (num_q_heads // num_kv_heads)). One program handles a tile of BLOCK_Q new tokens of one
sequence for all query heads of one KV head, flattened into BLOCK_M = BLOCK_Q * queries_per_kv
rows (row r = token r // queries_per_kv, head r % queries_per_kv), so each KV tile is loaded once
per group; the KV loop runs over tiles of BLOCK_N positions up to the tile's last query, with
flash-attention's online softmax (Dao et al., NeurIPS'22, Alg. 1).
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
    check_shape,
    check_unit_strides,
)

BLOCK_M = 64  # query rows (token x head) per program
BLOCK_N = 64  # KV positions per inner-loop tile


@triton.jit
def paged_prefill_kernel(
    q_ptr,  # [num_tokens, num_q_heads, head_dim], new tokens of all sequences packed
    k_cache_ptr, v_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    block_tables_ptr,  # [num_seqs, max_blocks_per_seq] int32
    query_start_loc_ptr,  # [num_seqs + 1] int32, first row of each sequence in q
    prefix_lens_ptr,  # [num_seqs] int32, cached tokens before the new ones
    out_ptr,  # [num_tokens, num_q_heads, head_dim] in q's dtype
    scale_log2,  # softmax scale * log2(e) (scores in base 2, exp2)
    head_dim,  # true head size
    stride_qt, stride_qh,  # q strides: token, head (head_dim dense)
    stride_kb, stride_kt, stride_kh,  # k_cache strides: block, slot, head
    stride_vb, stride_vt, stride_vh,  # v_cache strides: block, slot, head
    stride_bts,  # block_tables row stride
    stride_ot, stride_oh,  # out strides: token, head (head_dim dense)
    QUERIES_PER_KV: tl.constexpr,  # query heads per KV head
    BLOCK_Q: tl.constexpr,  # new tokens per program: BLOCK_M // QUERIES_PER_KV
    BLOCK_M: tl.constexpr,  # rows (token x head) per program
    BLOCK_SIZE: tl.constexpr,  # tokens per KV cache block
    BLOCK_N: tl.constexpr,  # KV positions per tile
    HEAD_DIM_PAD: tl.constexpr,  # head_dim padded to a power of two >= 16
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32, ignored otherwise
):
    """Causal attention of BLOCK_Q new tokens (all query heads of one KV head) over the cache."""
    q_tile = tl.program_id(0)
    seq = tl.program_id(1)
    kv_head = tl.program_id(2)

    q_start = tl.load(query_start_loc_ptr + seq)
    new_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    prefix = tl.load(prefix_lens_ptr + seq)
    first_token = q_tile * BLOCK_Q

    offs_r = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM_PAD)
    tokens = first_token + offs_r // QUERIES_PER_KV  # index among this sequence's new tokens
    heads = kv_head * QUERIES_PER_KV + offs_r % QUERIES_PER_KV
    mask_r = (offs_r < BLOCK_Q * QUERIES_PER_KV) & (tokens < new_len)
    mask_d = offs_d < head_dim
    q = tl.load(q_ptr + (q_start + tokens)[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_r[:, None] & mask_d[None, :], other=0.0)
    q_pos = prefix + tokens  # absolute position of each row's token

    # Keys up to this tile's last query; none for a tile past the sequence's end (grid padding).
    kv_end = tl.where(first_token < new_len, prefix + tl.minimum(first_token + BLOCK_Q, new_len), 0)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_DIM_PAD), dtype=tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    table_row = block_tables_ptr + seq * stride_bts
    for start in range(0, kv_end, BLOCK_N):
        pos = start + offs_n
        mask_n = pos < kv_end
        # Position 0 is in the first tile and visible to every row, so m_i stays finite.
        causal = mask_n[None, :] & (pos[None, :] <= q_pos[:, None])
        acc, m_i, l_i = attend_kv_tile(q, acc, m_i, l_i, pos, mask_n, causal, table_row,
                                       k_cache_ptr, v_cache_ptr, kv_head, stride_kb, stride_kt, stride_kh,
                                       stride_vb, stride_vt, stride_vh, offs_d, mask_d, scale_log2,
                                       BLOCK_SIZE, DOT_PRECISION)

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    out_ptrs = out_ptr + (q_start + tokens)[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_r[:, None] & mask_d[None, :])


def paged_prefill(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                  query_start_loc: torch.Tensor, prefix_lens: torch.Tensor, scale: float,
                  max_query_len: int | None = None) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its paged KV cache (module docstring).

    Args:
        q: [num_tokens, num_q_heads, head_dim] fp16/bf16/fp32, the new tokens of all sequences
            packed in sequence order; head_dim dense.
        k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim], q's dtype, holding
            every sequence's prefix and new tokens (positions 0 .. prefix + new - 1).
        block_tables: [num_seqs, max_blocks_per_seq] int32.
        query_start_loc: [num_seqs + 1] int32, cumulative new-token counts: 0, n_0, n_0 + n_1, ...,
            num_tokens.
        prefix_lens: [num_seqs] int32, tokens cached before the new ones (0 for a fresh prompt).
        scale: softmax scale (usually head_dim ** -0.5).
        max_query_len: the most new tokens of any sequence; None reads it from query_start_loc
            (one device sync on CUDA).

    Returns:
        out: [num_tokens, num_q_heads, head_dim] in q's dtype.

    Raises:
        ValueError: wrong shapes, dtypes or strides, num_q_heads not a multiple of num_kv_heads,
            tensors on different devices (or not on CUDA outside the interpreter). Values
            (monotone query_start_loc ending at num_tokens, prefix + new within the block table,
            block ids within the pool) are checked only for CPU tensors (the interpreter).
    """
    name = "paged_prefill"
    num_blocks, block_size, num_kv_heads = check_paged_kv_cache(
        name, q, "[num_tokens, num_q_heads, head_dim]", k_cache, v_cache, block_tables, False, ATTENTION_DTYPES)
    num_tokens, num_q_heads, head_dim = q.shape
    num_seqs = block_tables.shape[0]
    check_dtype(name, "query_start_loc", query_start_loc, (torch.int32,))
    check_shape(name, "query_start_loc", query_start_loc, (num_seqs + 1,), "[num_seqs + 1]")
    check_dtype(name, "prefix_lens", prefix_lens, (torch.int32,))
    check_shape(name, "prefix_lens", prefix_lens, (num_seqs,), "[num_seqs]")
    tensors = dict(q=q, k_cache=k_cache, v_cache=v_cache, block_tables=block_tables, query_start_loc=query_start_loc,
                   prefix_lens=prefix_lens)
    device = check_devices(name, **tensors)
    check_unit_strides(name, **tensors)
    if device.type == "cpu":
        _check_values(block_tables, query_start_loc, prefix_lens, num_tokens, num_blocks, block_size)
    if max_query_len is None:
        max_query_len = int((query_start_loc[1:] - query_start_loc[:-1]).max()) if num_seqs else 0

    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if num_tokens == 0 or num_q_heads == 0 or max_query_len <= 0:
        return out
    queries_per_kv = num_q_heads // num_kv_heads
    block_m = max(BLOCK_M, triton.next_power_of_2(queries_per_kv))
    block_q = block_m // queries_per_kv
    grid = (triton.cdiv(max_query_len, block_q), num_seqs, num_kv_heads)
    paged_prefill_kernel[grid](
        q, k_cache, v_cache, block_tables, query_start_loc, prefix_lens, out,
        scale * LOG2E, head_dim,
        q.stride(0), q.stride(1),
        *k_cache.stride()[:3], *v_cache.stride()[:3],  # block, slot, head
        block_tables.stride(0), out.stride(0), out.stride(1),
        QUERIES_PER_KV=queries_per_kv, BLOCK_Q=block_q, BLOCK_M=block_m,
        BLOCK_SIZE=block_size, BLOCK_N=BLOCK_N,
        HEAD_DIM_PAD=max(MIN_DOT, triton.next_power_of_2(head_dim)),
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return out


def _check_values(block_tables: torch.Tensor, query_start_loc: torch.Tensor, prefix_lens: torch.Tensor,
                  num_tokens: int, num_blocks: int, block_size: int) -> None:
    """Host-side value checks (CPU tensors only)."""
    starts, prefixes = query_start_loc.tolist(), prefix_lens.tolist()
    if starts[0] != 0 or starts[-1] != num_tokens or any(b < a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"paged_prefill: query_start_loc {starts} must rise from 0 to num_tokens = {num_tokens}")
    max_tokens = block_tables.shape[1] * block_size
    for s, prefix in enumerate(prefixes):
        total = prefix + starts[s + 1] - starts[s]
        if prefix < 0 or total > max_tokens:
            raise ValueError(f"paged_prefill: sequence {s} has prefix {prefix} + {starts[s + 1] - starts[s]} new tokens, "
                             f"outside 0..{max_tokens} (max_blocks_per_seq {block_tables.shape[1]} x block_size {block_size})")
        check_block_ids("paged_prefill", block_tables, s, total, block_size, num_blocks)


def paged_prefill_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                            query_start_loc: torch.Tensor, prefix_lens: torch.Tensor, scale: float,
                            max_query_len: int | None = None) -> torch.Tensor:
    """The same attention by torch: gather each sequence's K/V, dense causal softmax in fp32
    (shapes as :func:`paged_prefill`; ``max_query_len`` is ignored)."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    starts, prefixes = query_start_loc.tolist(), prefix_lens.tolist()
    for s, prefix in enumerate(prefixes):
        lo, hi = starts[s], starts[s + 1]
        total = prefix + hi - lo
        if hi == lo:
            continue
        k, v = gather_kv(k_cache, v_cache, block_tables, s, total, q.shape[1])
        scores = torch.einsum("ihd,jhd->hij", q[lo:hi].float(), k) * scale  # [heads, new, total]
        q_pos = prefix + torch.arange(hi - lo, device=q.device)
        visible = torch.arange(total, device=q.device)[None, :] <= q_pos[:, None]  # [new, total]
        scores = scores.masked_fill(~visible, float("-inf"))
        out[lo:hi] = torch.einsum("hij,jhd->ihd", torch.softmax(scores, dim=-1), v)
    return out.to(q.dtype)
