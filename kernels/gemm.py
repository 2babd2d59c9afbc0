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

from kernels._gemm_tiles import dot_k_loop, grouped_tile_offsets, store_tile, tile_configs, tile_grid
from kernels._validate import check_devices, check_dtype, check_gemm_shapes, check_matrix_layout

GEMM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Autotune candidates (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) on CUDA, Hopper/Ampere
# tensor-core tiles: large tiles for compute-bound shapes, BLOCK_M 16-64 for decode-sized M where
# the GEMM streams the weight and M is mostly padding.
TILE_SHAPES = [
    (128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 64, 4, 4), (128, 128, 32, 4, 4),
    (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4),
    (64, 128, 128, 4, 3), (32, 128, 128, 4, 4), (16, 128, 128, 4, 4), (16, 64, 256, 4, 3),
]


@triton.autotune(configs=tile_configs(TILE_SHAPES), key=["M_BUCKET", "N", "K", "stride_ak", "stride_bk"])
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
    offs_m, offs_n = grouped_tile_offsets(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    acc = dot_k_loop(a_ptr, b_ptr, offs_m, offs_n, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                     BLOCK_M, BLOCK_N, BLOCK_K, ACC_DTYPE=tl.float32, DOT_PRECISION=DOT_PRECISION)
    store_tile(c_ptr, acc, offs_m, offs_n, M, N, stride_cm, stride_cn)


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
    M, N, K = check_gemm_shapes(name, "a", a, "b", b)
    if b.dtype != a.dtype:
        raise ValueError(f"gemm: a is {a.dtype} but b is {b.dtype}; both operands need one dtype")
    check_devices(name, a=a, b=b)
    check_matrix_layout(name, "a", a)
    check_matrix_layout(name, "b", b)

    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M == 0 or N == 0 or K == 0:
        return c.zero_()  # an empty sum is 0 (and an empty c needs nothing)
    gemm_kernel[tile_grid(M, N)](
        a, b, c, M, N, K, triton.next_power_of_2(M),
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        DOT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32",
    )
    return c


def gemm_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """C = A @ B computed in fp32 by torch and cast to ``a``'s dtype (shapes as :func:`gemm`)."""
    return (a.float() @ b.float()).to(a.dtype)
