"""Dense GEMM ``C = A @ B`` in fp16/bf16 (fp32 accumulate), the projection GEMMs of a layer.

Conventions: ``a`` is [M, K] (tokens x hidden), ``b`` is [K, N]. An ``nn.Linear`` weight W is
stored [N, K]; pass ``W.t()`` (a view, no copy): operands may be row- or column-major, the kernel
takes their strides.

Each program computes one BLOCK_M x BLOCK_N tile of C, walking K in BLOCK_K steps. Programs are
ordered in groups of GROUP_M tile rows (Triton tutorial 03, "L2 cache optimizations"): consecutive
programs share the same few A row-panels and sweep B column-panels together, so both stay in L2
instead of each program streaming its own full row and column.

    tile order without grouping       with GROUP_M = 2
    0  1  2  3                        0  2  4  6
    4  5  6  7                        1  3  5  7
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
    interpreting,
)

GEMM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _configs() -> list[triton.Config]:
    """Autotune candidates on CUDA; the interpreter accepts exactly one config."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2}, num_warps=4, num_stages=1)]
    # Hopper/Ampere tensor-core tiles: large tiles for compute-bound shapes, BLOCK_M 16-64 for
    # decode-sized M where the GEMM streams the weight and M is mostly padding.
    shapes = [
        (128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4), (128, 128, 32, 4, 4),
        (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4),
        (64, 128, 128, 4, 3), (32, 128, 128, 4, 4), (16, 128, 128, 4, 4), (16, 64, 256, 4, 3),
    ]
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
        for bm, bn, bk, warps, stages in shapes
    ]


@triton.autotune(configs=_configs(), key=["M_BUCKET", "N", "K", "stride_ak", "stride_bk"])
@triton.jit
def gemm_kernel(
    a_ptr, b_ptr, c_ptr,  # A [M, K], B [K, N], C [M, N]
    M, N, K,  # problem size
    M_BUCKET,  # next power of two of M: the autotune key, so a sweep over M tunes once per octave
    stride_am, stride_ak,  # A strides (elements)
    stride_bk, stride_bn,  # B strides (elements)
    stride_cm, stride_cn,  # C strides (elements)
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 operands (match torch.matmul), "tf32" ignored otherwise
    BLOCK_M: tl.constexpr,  # rows of C per program
    BLOCK_N: tl.constexpr,  # columns of C per program
    BLOCK_K: tl.constexpr,  # K step of the inner loop
    GROUP_M: tl.constexpr,  # tile rows per program group (L2 reuse)
):
    """One [BLOCK_M, BLOCK_N] tile of C = A @ B, fp32 accumulator, stored in C's dtype."""
    # Map the flat program id to a (tile row, tile column) in grouped order.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)  # the last group may be short
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    mask_m = offs_m < M
    mask_n = offs_n < N

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        # Rows past M, columns past N and the K tail read zeros, which add nothing to the sum.
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c = acc.to(c_ptr.dtype.element_ty)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=mask_m[:, None] & mask_n[None, :])


def gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """C = A @ B with an fp32 accumulator.

    Args:
        a: [M, K] fp16, bf16 or fp32, row- or column-major.
        b: [K, N], same dtype and device as ``a``, row- or column-major (``W.t()`` for an
            ``nn.Linear`` weight W [N, K]).

    Returns:
        c: [M, N] in ``a``'s dtype, row-major. fp32 operands are multiplied in full fp32 (no TF32),
        as ``torch.matmul`` does by default.

    Raises:
        ValueError: wrong ranks, mismatched K, unsupported or mismatched dtypes, tensors on
            different devices (or not on CUDA outside the interpreter), or an operand with no
            dense dimension.
    """
    name = "gemm"
    check_dtype(name, "a", a, GEMM_DTYPES)
    check_shape(name, "a", a, (None, None), "[M, K]")
    M, K = a.shape
    check_shape(name, "b", b, (K, None), "[K, N]")
    N = b.shape[1]
    if b.dtype != a.dtype:
        raise ValueError(f"gemm: a is {a.dtype} but b is {b.dtype}; both operands need one dtype")
    check_devices(name, a=a, b=b)
    check_matrix_layout(name, "a", a)
    check_matrix_layout(name, "b", b)

    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M == 0 or N == 0:
        return c
    if K == 0:
        return c.zero_()

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    gemm_kernel[grid](
        a, b, c, M, N, K, triton.next_power_of_2(M),
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        DOT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32",
    )
    return c


def gemm_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """C = A @ B computed in fp32 by torch and cast to ``a``'s dtype (shapes as :func:`gemm`)."""
    return (a.float() @ b.float()).to(a.dtype)
