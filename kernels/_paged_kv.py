"""Pieces the paged-attention kernels share (``paged_decode``, ``paged_prefill``): the step of
their KV loops, which reads one tile of keys and values through the block table and folds it
into flash-attention's online softmax, and the references' gather of a sequence's K/V.

The kernels differ in which keys a query row may see (decode: the whole context; prefill: up to
its own position) and in how they split the work, so each keeps its own loop and passes that
visibility mask in.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ATTENTION_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MIN_DOT = 16  # smallest tensor-core tile edge tl.dot accepts
LOG2E = 1.4426950408889634


@triton.jit
def attend_kv_tile(
    q,  # [ROWS, HEAD_DIM_PAD] query rows, padding zeroed
    acc, m_i, l_i,  # running state: acc [ROWS, HEAD_DIM_PAD] fp32, max score m_i and sum l_i [ROWS] fp32
    pos, mask_n,  # [BLOCK_N] token positions of this tile, and which of them are in the cache
    visible,  # [ROWS, BLOCK_N] or [1, BLOCK_N]: the keys each row may attend to (within mask_n)
    table_row,  # this sequence's row of the block table (int32 block ids)
    k_cache_ptr, v_cache_ptr,  # [num_blocks, block_size, num_kv_heads, head_dim]
    kv_head,  # the KV head this program reads
    stride_kb, stride_kt, stride_kh,  # k_cache strides: block, slot, head
    stride_vb, stride_vt, stride_vh,  # v_cache strides: block, slot, head
    offs_d, mask_d,  # [HEAD_DIM_PAD] head-dim indices, and which are < head_dim
    scale_log2,  # softmax scale * log2(e): scores are kept in base 2 so exp2 can be used
    BLOCK_SIZE: tl.constexpr,  # tokens per KV cache block
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 caches, ignored otherwise
):
    """Fold one tile of keys/values into the online softmax (Dao et al., NeurIPS'22, Alg. 1);
    returns the new (acc, m_i, l_i). Every row must see at least one key of the first tile it is
    given, so that its running max is finite."""
    # Each token's physical block (int64: cache offsets can pass 2**31 elements).
    block_ids = tl.load(table_row + pos // BLOCK_SIZE, mask=mask_n, other=0).to(tl.int64)
    slots = pos % BLOCK_SIZE
    kv_mask = mask_n[:, None] & mask_d[None, :]
    k = tl.load(k_cache_ptr + block_ids[:, None] * stride_kb + slots[:, None] * stride_kt
                + kv_head * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
    scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale_log2  # [ROWS, BLOCK_N]
    scores = tl.where(visible, scores, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    p = tl.exp2(scores - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    v = tl.load(v_cache_ptr + block_ids[:, None] * stride_vb + slots[:, None] * stride_vt
                + kv_head * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, m_new, l_i


def gather_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor, seq: int, num_tokens: int,
              num_q_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the torch references: sequence ``seq``'s first ``num_tokens`` keys and values, read
    through its block-table row, as fp32 [num_tokens, num_q_heads, head_dim] with each KV head
    repeated for its query heads (Hugging Face's ``repeat_kv`` order)."""
    _, block_size, num_kv_heads, head_dim = k_cache.shape
    blocks = block_tables[seq, : -(-num_tokens // block_size)].long()
    k = k_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:num_tokens].float()
    v = v_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:num_tokens].float()
    group = num_q_heads // num_kv_heads
    return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
