"""Pieces the tiled GEMM kernels share (``gemm``, ``w8a8_gemm``, ``fp8_gemm``, ``w4a16_gemm``): the
autotune candidates and launch grid on the host, and ``@triton.jit`` helpers that each kernel
calls (Triton inlines them): the grouped tile order, the K loop over dense operands, the
dequantizing scales and the masked store.

Every kernel keeps its own signature, autotune configs and whatever it alone does (``w4a16_gemm``
unpacks 4-bit weights inside its own K loop); these helpers are the lines they had in common.
"""

from __future__ import annotations

from collections.abc import Callable

import triton
import triton.language as tl

from kernels._validate import interpreting


def tile_configs(shapes: list[tuple[int, ...]], with_block_k: bool = True) -> list[triton.Config]:
    """Autotune candidates: one per row ``(BLOCK_M, BLOCK_N[, BLOCK_K], num_warps, num_stages)``,
    all with GROUP_M = 8. The interpreter accepts exactly one config: 32-wide tiles, GROUP_M = 2.
    ``with_block_k`` False for a kernel whose K step is not tuned (``w4a16_gemm``)."""
    names = ("BLOCK_M", "BLOCK_N", "BLOCK_K") if with_block_k else ("BLOCK_M", "BLOCK_N")
    if interpreting():
        return [triton.Config({**dict.fromkeys(names, 32), "GROUP_M": 2}, num_warps=4, num_stages=1)]
    return [
        triton.Config({**dict(zip(names, row)), "GROUP_M": 8}, num_warps=row[-2], num_stages=row[-1])
        for row in shapes
    ]


def tile_grid(M: int, N: int) -> Callable[[dict], tuple[int]]:
    """The launch grid: one program per BLOCK_M x BLOCK_N tile of the [M, N] output."""
    return lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)


@triton.jit
def grouped_tile_offsets(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Row and column indices ([BLOCK_M], [BLOCK_N]) of this program's output tile, programs taken
    in groups of GROUP_M tile rows (the order drawn in :mod:`kernels.gemm`)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)  # the last group may be short
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m * BLOCK_M + tl.arange(0, BLOCK_M), pid_n * BLOCK_N + tl.arange(0, BLOCK_N)


@triton.jit
def dot_k_loop(
    a_ptr, b_ptr,  # A [M, K], B [K, N], one dtype (fp16/bf16/fp32, int8 or fp8)
    offs_m, offs_n,  # the tile's rows of A and columns of B
    M, N, K,  # problem size
    stride_am, stride_ak,  # A strides (elements)
    stride_bk, stride_bn,  # B strides (elements)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC_DTYPE: tl.constexpr,  # tl.float32, or tl.int32 for int8 operands (an exact sum)
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 operands, "tf32" (Triton's default) otherwise
):
    """[BLOCK_M, BLOCK_N] tile of A @ B summed in ACC_DTYPE over K in BLOCK_K steps."""
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC_DTYPE)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        # Rows past M, columns past N and the K tail read zeros, which add nothing to the sum.
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION, out_dtype=ACC_DTYPE)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    return acc


@triton.jit
def apply_scales(acc, a_scale_ptr, b_scale_ptr, offs_m, offs_n, M, N,
                 A_SCALE_PER_ROW: tl.constexpr, B_SCALE_PER_COL: tl.constexpr):
    """acc (fp32) * a_scale * b_scale, once per output element: a_scale has one entry per row
    (token) or one for the tensor, b_scale one per column (output channel) or one for the tensor."""
    if A_SCALE_PER_ROW:
        acc = acc * tl.load(a_scale_ptr + offs_m, mask=offs_m < M, other=0.0)[:, None]
    else:
        acc = acc * tl.load(a_scale_ptr)
    if B_SCALE_PER_COL:
        acc = acc * tl.load(b_scale_ptr + offs_n, mask=offs_n < N, other=0.0)[None, :]
    else:
        acc = acc * tl.load(b_scale_ptr)
    return acc


@triton.jit
def store_tile(out_ptr, acc, offs_m, offs_n, M, N, stride_om, stride_on):
    """Store acc cast to out's dtype at rows offs_m and columns offs_n, those inside [M, N]."""
    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=(offs_m < M)[:, None] & (offs_n < N)[None, :])
