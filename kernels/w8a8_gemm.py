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

from kernels._validate import (
    check_devices,
    check_dtype,
    check_matrix_layout,
    check_shape,
    check_unit_stride,
    interpreting,
)

OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INT8_MAX = 127


def _configs() -> list[triton.Config]:
    """Autotune candidates on CUDA; the interpreter accepts exactly one config."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}, num_warps=4, num_stages=1)]
    # int8 tiles carry twice the K per byte of fp16 ones, hence the longer BLOCK_K.
    shapes = [
        (128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 128, 4, 4), (128, 128, 64, 4, 4),
        (64, 128, 128, 4, 4), (64, 64, 128, 4, 4), (32, 128, 128, 4, 4), (16, 128, 256, 4, 3),
        (16, 64, 256, 4, 4),
    ]
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
        for bm, bn, bk, warps, stages in shapes
    ]


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K", "stride_ak", "stride_wk"])
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
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0)
        w = tl.load(w_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0)
        acc = tl.dot(a, w, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * stride_ak
        w_ptrs += BLOCK_K * stride_wk

    # Dequantize once per output element: out = acc * a_scale[m] * w_scale[n].
    a_scale = tl.load(a_scale_ptr + offs_m, mask=mask_m, other=0.0)
    w_scale = tl.load(w_scale_ptr + offs_n, mask=mask_n, other=0.0)
    out = acc.to(tl.float32) * a_scale[:, None] * w_scale[None, :]
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


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
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"w8a8_gemm: out_dtype {out_dtype} is not one of {OUT_DTYPES}")
    check_shape(name, "a_q", a_q, (None, None), "[M, K]")
    M, K = a_q.shape
    check_shape(name, "w_q", w_q, (K, None), "[K, N]")
    N = w_q.shape[1]
    check_shape(name, "a_scale", a_scale, (M,), "[M]")
    check_shape(name, "w_scale", w_scale, (N,), "[N]")
    check_devices(name, a_q=a_q, a_scale=a_scale, w_q=w_q, w_scale=w_scale)
    check_matrix_layout(name, "a_q", a_q)
    check_matrix_layout(name, "w_q", w_q)
    check_unit_stride(name, "a_scale", a_scale)
    check_unit_stride(name, "w_scale", w_scale)

    out = torch.empty((M, N), dtype=out_dtype, device=a_q.device)
    if M == 0 or N == 0:
        return out
    if K == 0:
        return out.zero_()

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    w8a8_gemm_kernel[grid](
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
