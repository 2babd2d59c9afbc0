"""FP8 (e4m3) GEMM with fp32 accumulation and per-tensor, per-token or per-channel scales.

Hopper's tensor cores multiply float8_e4m3fn operands at twice the bf16 rate (H100 SXM datasheet:
1,979 vs 989 dense TFLOPS). The quantized operands carry scales:

    a ~ a_q * a_scale     a_scale: [1] (per tensor) or [M] (per token)
    b ~ b_q * b_scale     b_scale: [1] (per tensor) or [N] (per output channel)
    out[m, n] = a_scale[m or 0] * b_scale[n or 0] * sum_k a_q[m, k] * b_q[k, n]

Layout as :mod:`kernels.gemm`: ``b`` is [K, N]. Hopper's FP8 tensor-core instruction (wgmma)
reads B K-major, so the fast layout is an ``nn.Linear``-style weight W [N, K] contiguous passed as
``W.t()`` (the layout ``torch._scaled_mm`` requires too); other layouts work but cost a transpose.

On sm_90 Triton's default lets wgmma accumulate FP8 products at its internal (reduced) precision
between promotions (``max_num_imprecise_acc``), as cuBLAS's fast-accumulation mode does; the
benchmark compares against ``torch._scaled_mm(..., use_fast_accum=True)`` for that reason.
The CPU interpreter does not saturate out-of-range fp8 casts: quantize with :func:`quantize_fp8`,
which clamps to +-448 first.
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
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn (OCP FP8 specification, E4M3)
# Autotune candidates (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) on CUDA.
TILE_SHAPES = [
    (128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 8, 4), (128, 128, 128, 4, 4),
    (128, 64, 128, 4, 4), (64, 128, 128, 4, 4), (64, 64, 128, 4, 4), (64, 128, 256, 4, 3),
    (16, 128, 256, 4, 3), (16, 64, 256, 4, 4),
]


@triton.autotune(configs=tile_configs(TILE_SHAPES), key=["M_BUCKET", "N", "K", "stride_ak", "stride_bk"])
@triton.jit
def fp8_gemm_kernel(
    a_ptr, b_ptr, out_ptr,  # a [M, K] fp8 e4m3, b [K, N] fp8 e4m3, out [M, N] fp16/bf16/fp32
    a_scale_ptr, b_scale_ptr,  # fp32: a_scale [M] or [1], b_scale [N] or [1]
    M, N, K,  # problem size
    M_BUCKET,  # next power of two of M (autotune key)
    stride_am, stride_ak,  # a strides (elements)
    stride_bk, stride_bn,  # b strides (elements)
    stride_om, stride_on,  # out strides (elements)
    A_SCALE_PER_ROW: tl.constexpr,  # a_scale has M entries (per token), else one (per tensor)
    B_SCALE_PER_COL: tl.constexpr,  # b_scale has N entries (per channel), else one (per tensor)
    BLOCK_M: tl.constexpr,  # rows of out per program
    BLOCK_N: tl.constexpr,  # columns of out per program
    BLOCK_K: tl.constexpr,  # K step of the inner loop
    GROUP_M: tl.constexpr,  # tile rows per program group (L2 reuse, as kernels.gemm)
):
    """One [BLOCK_M, BLOCK_N] tile of out: fp8 x fp8 -> fp32 sum, scaled once at the end."""
    offs_m, offs_n = grouped_tile_offsets(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = dot_k_loop(a_ptr, b_ptr, offs_m, offs_n, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                     BLOCK_M, BLOCK_N, BLOCK_K, ACC_DTYPE=tl.float32, DOT_PRECISION="tf32")
    acc = apply_scales(acc, a_scale_ptr, b_scale_ptr, offs_m, offs_n, M, N, A_SCALE_PER_ROW, B_SCALE_PER_COL)
    store_tile(out_ptr, acc, offs_m, offs_n, M, N, stride_om, stride_on)


def _scale_kind(name: str, scale: torch.Tensor, per_entry: int, meaning: str) -> bool:
    """True for a per-row/column scale of ``per_entry`` values, False for one per-tensor scale."""
    check_dtype("fp8_gemm", name, scale, (torch.float32,))
    if scale.numel() == 1 and scale.dim() <= 1:
        return False
    check_shape("fp8_gemm", name, scale, (per_entry,), f"[1] (per tensor) or {meaning}")
    check_unit_stride("fp8_gemm", name, scale)
    return True


def fp8_gemm(a: torch.Tensor, b: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor,
             out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """out = (a @ b) * a_scale * b_scale with fp8 e4m3 operands and an fp32 accumulator.

    Args:
        a: [M, K] torch.float8_e4m3fn activations, row- or column-major.
        b: [K, N] torch.float8_e4m3fn weights; fastest as ``W.t()`` of a contiguous W [N, K].
        a_scale: fp32, [1] or a 0-d tensor (per tensor) or [M] (per token).
        b_scale: fp32, [1] or a 0-d tensor (per tensor) or [N] (per output channel).
        out_dtype: bf16, fp16 or fp32.

    Returns:
        out: [M, N] in ``out_dtype``.

    Raises:
        ValueError: wrong shapes or dtypes, mismatched K, scales of the wrong length, tensors on
            different devices (or not on CUDA outside the interpreter), bad strides.
    """
    name = "fp8_gemm"
    check_dtype(name, "a", a, (FP8_DTYPE,))
    check_dtype(name, "b", b, (FP8_DTYPE,))
    check_out_dtype(name, out_dtype, OUT_DTYPES)
    M, N, K = check_gemm_shapes(name, "a", a, "b", b)
    a_per_row = _scale_kind("a_scale", a_scale, M, "[M] (per token)")
    b_per_col = _scale_kind("b_scale", b_scale, N, "[N] (per channel)")
    check_devices(name, a=a, b=b, a_scale=a_scale, b_scale=b_scale)
    check_matrix_layout(name, "a", a)
    check_matrix_layout(name, "b", b)

    out = torch.empty((M, N), dtype=out_dtype, device=a.device)
    if M == 0 or N == 0 or K == 0:
        return out.zero_()  # an empty sum is 0 (and an empty out needs nothing)
    fp8_gemm_kernel[tile_grid(M, N)](
        a, b, out, a_scale, b_scale, M, N, K, triton.next_power_of_2(M),
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1),
        A_SCALE_PER_ROW=a_per_row, B_SCALE_PER_COL=b_per_col,
    )
    return out


def fp8_gemm_reference(a: torch.Tensor, b: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor,
                       out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The same product by torch: dequantize to fp32, multiply, cast (shapes as :func:`fp8_gemm`)."""
    a_s = a_scale.float().reshape(-1, 1) if a_scale.numel() > 1 else a_scale.float().reshape(())
    b_s = b_scale.float().reshape(1, -1) if b_scale.numel() > 1 else b_scale.float().reshape(())
    return ((a.float() @ b.float()) * a_s * b_s).to(out_dtype)


def quantize_fp8(x: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``x`` into the e4m3 range and cast, saturating at +-448.

    Args:
        x: [R, C] float tensor.
        dim: None for one per-tensor scale (returned as [1]); 1 for one scale per row ([R], per
            token of an activation); 0 for one per column ([C], per channel of a [K, N] weight).

    Returns:
        (x_q float8_e4m3fn, scale fp32) with x ~ x_q * scale; an all-zero slice gets scale 1.
    """
    xf = x.float()
    amax = xf.abs().amax().reshape(1) if dim is None else xf.abs().amax(dim=dim)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    shaped = scale if dim is None else (scale[:, None] if dim == 1 else scale[None, :])
    x_q = (xf / shaped).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return x_q, scale
