"""W8A8 int8 GEMM with per-token activation scales and per-output-channel weight scales.

The SmoothQuant scheme (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models", ICML'23, Sec. 3 and 4: per-token activation and
per-channel weight quantization, int8 GEMM with int32 accumulation):

    a ~ a_scale[m] * a_q[m, k]      (symmetric, a_q in [-127, 127], one scale per token)
    w ~ w_q[k, n] * w_scale[n]      (symmetric, one scale per output channel)
    out[m, n] = a_scale[m] * w_scale[n] * sum_k a_q[m, k] * w_q[k, n]

The sum is exact in int32 for K < 2**31 / 127**2 (about 133,000). Layout as :mod:`kernels.gemm`:
``w_q`` is [K, N]; for an ``nn.Linear`` weight W [N, K] quantize and pass ``W.t()``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._gemm_tiles import apply_scales, dot_k_loop, grouped_tile_offsets, store_tile, tile_configs, tile_grid
from kernels._validate import (
    check_devices,
    check_dtype,
    check_gemm_shapes,
    check_matrix_layout,
    check_out_dtype,
    check_shape,
    check_unit_stride,
)

OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INT8_MAX = 127
# Autotune candidates (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) on CUDA; int8 tiles carry
# twice the K per byte of fp16 ones, hence the longer BLOCK_K.
TILE_SHAPES = [
    (128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 4, 4), (128, 128, 64, 4, 4),
    (64, 128, 128, 4, 4), (64, 64, 128, 4, 4), (32, 128, 128, 4, 4), (16, 128, 256, 4, 3),
    (16, 64, 256, 4, 4),
]


@triton.autotune(configs=tile_configs(TILE_SHAPES), key=["M_BUCKET", "N", "K", "stride_ak", "stride_wk"])
@triton.jit
def w8a8_gemm_kernel(
    a_ptr, w_ptr, out_ptr,  # a_q [M, K] int8, w_q [K, N] int8, out [M, N] fp16/bf16/fp32
    a_scale_ptr, w_scale_ptr,  # a_scale [M] fp32 (per token), w_scale [N] fp32 (per output channel)
    M, N, K,  # problem size
    M_BUCKET,  # next power of two of M (autotune key)
    stride_am, stride_ak,  # a_q strides (elements)
    stride_wk, stride_wn,  # w_q strides (elements)
    stride_om, stride_on,  # out strides (elements)
    BLOCK_M: tl.constexpr,  # rows of out per program
    BLOCK_N: tl.constexpr,  # columns of out per program
    BLOCK_K: tl.constexpr,  # K step of the inner loop
    GROUP_M: tl.constexpr,  # tile rows per program group (L2 reuse, as kernels.gemm)
):
    """One [BLOCK_M, BLOCK_N] tile of out: int8 x int8 -> int32 sum, scaled once at the end."""
    offs_m, offs_n = grouped_tile_offsets(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = dot_k_loop(a_ptr, w_ptr, offs_m, offs_n, M, N, K, stride_am, stride_ak, stride_wk, stride_wn,
                     BLOCK_M, BLOCK_N, BLOCK_K, ACC_DTYPE=tl.int32, DOT_PRECISION="tf32")
    # Dequantize once per output element: out = acc * a_scale[m] * w_scale[n].
    out = apply_scales(acc.to(tl.float32), a_scale_ptr, w_scale_ptr, offs_m, offs_n, M, N,
                       A_SCALE_PER_ROW=True, B_SCALE_PER_COL=True)
    store_tile(out_ptr, out, offs_m, offs_n, M, N, stride_om, stride_on)


def w8a8_gemm(a_q: torch.Tensor, a_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
              out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """out = (a_q @ w_q) * a_scale[:, None] * w_scale[None, :] with an exact int32 sum.

    Args:
        a_q: [M, K] int8 activations (from :func:`quantize_per_token`), row- or column-major.
        a_scale: [M] fp32 per-token scales, contiguous.
        w_q: [K, N] int8 weights (from :func:`quantize_per_channel`), row- or column-major.
        w_scale: [N] fp32 per-output-channel scales, contiguous.
        out_dtype: fp16, bf16 or fp32.

    Returns:
        out: [M, N] in ``out_dtype``.

    Raises:
        ValueError: wrong shapes or dtypes, mismatched K, M or N between operands and scales,
            tensors on different devices (or not on CUDA outside the interpreter), bad strides.
    """
    name = "w8a8_gemm"
    check_dtype(name, "a_q", a_q, (torch.int8,))
    check_dtype(name, "w_q", w_q, (torch.int8,))
    check_dtype(name, "a_scale", a_scale, (torch.float32,))
    check_dtype(name, "w_scale", w_scale, (torch.float32,))
    check_out_dtype(name, out_dtype, OUT_DTYPES)
    M, N, K = check_gemm_shapes(name, "a_q", a_q, "w_q", w_q)
    check_shape(name, "a_scale", a_scale, (M,), "[M]")
    check_shape(name, "w_scale", w_scale, (N,), "[N]")
    check_devices(name, a_q=a_q, a_scale=a_scale, w_q=w_q, w_scale=w_scale)
    check_matrix_layout(name, "a_q", a_q)
    check_matrix_layout(name, "w_q", w_q)
    check_unit_stride(name, "a_scale", a_scale)
    check_unit_stride(name, "w_scale", w_scale)

    out = torch.empty((M, N), dtype=out_dtype, device=a_q.device)
    if M == 0 or N == 0 or K == 0:
        return out.zero_()  # an empty sum is 0 (and an empty out needs nothing)
    w8a8_gemm_kernel[tile_grid(M, N)](
        a_q, w_q, out, a_scale, w_scale, M, N, K, triton.next_power_of_2(M),
        a_q.stride(0), a_q.stride(1), w_q.stride(0), w_q.stride(1), out.stride(0), out.stride(1),
    )
    return out


def w8a8_gemm_reference(a_q: torch.Tensor, a_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
                        out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """The same product by torch: an exact integer sum in fp64 (exact below 2**53), then the scales."""
    acc = a_q.double() @ w_q.double()
    return (acc * a_scale.double()[:, None] * w_scale.double()[None, :]).to(out_dtype)


def quantize_per_token(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of activations, one scale per row (token).

    Args:
        a: [M, K] float activations.

    Returns:
        (a_q [M, K] int8 in [-127, 127], a_scale [M] fp32) with a ~ a_scale[:, None] * a_q;
        an all-zero row gets scale 1.
    """
    amax = a.float().abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    a_q = torch.round(a.float() / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return a_q, scale


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of a [K, N] weight, one scale per output channel (column).

    Args:
        w: [K, N] float weight (``W.t()`` for an ``nn.Linear`` weight W [N, K]).

    Returns:
        (w_q [K, N] int8 in [-127, 127], w_scale [N] fp32) with w ~ w_q * w_scale[None, :];
        an all-zero column gets scale 1.
    """
    amax = w.float().abs().amax(dim=0)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    w_q = torch.round(w.float() / scale[None, :]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return w_q, scale
