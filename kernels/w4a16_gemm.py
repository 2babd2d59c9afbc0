"""W4A16 GEMM: fp16/bf16 activations times 4-bit group-quantized weights, dequantized in-kernel.

The weight-only scheme of GPTQ (Frantar et al., ICLR'23) and AWQ (Lin et al., MLSys'24): each
group of ``group_size`` consecutive K rows of one output column shares a scale and a zero point.

    w[k, n] ~ (q[k, n] - zero[g, n]) * scale[g, n],   g = k // group_size,   q in 0..15

Formats (this module's own; :func:`quantize_w4` writes them):

- ``w_packed``: int32 [K // 8, N]. Eight consecutive K rows share one int32, packed along K as in
  GPTQ: nibble j (bits 4j..4j+3) of ``w_packed[r, n]`` holds ``q[8 * r + j, n]``.

      w_packed[r, n] = q[8r+7] q[8r+6] ... q[8r+1] q[8r]      (most to least significant nibble)

- ``scales``: [K // group_size, N], the activations' dtype.
- ``zeros``: [K // group_size, N], the activations' dtype, integer zero points in 0..15
  (asymmetric quantization), or None for symmetric quantization with the fixed zero point 8
  (q - 8 in -8..7).

The kernel loads a [BLOCK_K // 8, BLOCK_N] tile of packed words (a quarter of the bytes of an fp16
weight tile), unpacks it to [BLOCK_K, BLOCK_N] nibbles, applies one scale/zero row per tile (BLOCK_K
divides group_size) and multiplies on the tensor cores with an fp32 accumulator. The dequantized
value (q - zero) * scale is exact in fp32 and rounded once to the activations' dtype, as the
reference does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._gemm_tiles import grouped_tile_offsets, store_tile, tile_configs, tile_grid
from kernels._validate import (
    check_devices,
    check_dtype,
    check_matrix_layout,
    check_shape,
    check_unit_stride,
)

ACT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PACK = 8  # 4-bit values per int32
SYMMETRIC_ZERO = 8
# Autotune candidates (BLOCK_M, BLOCK_N, num_warps, num_stages) on CUDA; BLOCK_K is fixed by the
# group size. Small BLOCK_M for decode-sized M (the GEMM streams the packed weight), large for prefill.
TILE_SHAPES = [
    (16, 64, 4, 4), (16, 128, 4, 4), (32, 64, 4, 4), (32, 128, 4, 3), (64, 64, 4, 3),
    (64, 128, 4, 3), (128, 128, 8, 3), (128, 256, 8, 3),
]


@triton.autotune(configs=tile_configs(TILE_SHAPES, with_block_k=False), key=["M_BUCKET", "N", "K", "GROUP_SIZE"])
@triton.jit
def w4a16_gemm_kernel(
    a_ptr, w_ptr, out_ptr,  # a [M, K] fp16/bf16, w_packed [K // 8, N] int32, out [M, N] like a
    scales_ptr, zeros_ptr,  # [K // GROUP_SIZE, N] like a (zeros unused without HAS_ZEROS)
    M, N, K,  # problem size (K a multiple of GROUP_SIZE)
    M_BUCKET,  # next power of two of M (autotune key)
    stride_am, stride_ak,  # a strides (elements)
    stride_wk, stride_wn,  # w_packed strides (elements; one step of stride_wk is 8 rows of K)
    stride_sg, stride_sn,  # scales and zeros strides (elements; they share a layout)
    stride_om, stride_on,  # out strides (elements)
    GROUP_SIZE: tl.constexpr,  # K rows per scale/zero group
    HAS_ZEROS: tl.constexpr,  # asymmetric (zeros given) or symmetric (zero point 8)
    DOT_PRECISION: tl.constexpr,  # "ieee" for fp32 activations, ignored for fp16/bf16
    BLOCK_K: tl.constexpr,  # K step; divides GROUP_SIZE so one scale row serves a whole tile
    BLOCK_M: tl.constexpr,  # rows of out per program
    BLOCK_N: tl.constexpr,  # columns of out per program
    GROUP_M: tl.constexpr,  # tile rows per program group (L2 reuse, as kernels.gemm)
):
    """One [BLOCK_M, BLOCK_N] tile of out = a @ dequantize(w_packed)."""
    offs_m, offs_n = grouped_tile_offsets(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_k = tl.arange(0, BLOCK_K)
    offs_kp = tl.arange(0, BLOCK_K // 8)  # packed rows of one K step
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    w_ptrs = w_ptr + offs_kp[:, None] * stride_wk + offs_n[None, :] * stride_wn
    shifts = tl.arange(0, 8) * 4  # nibble j of a word sits at bits 4j..4j+3

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K // BLOCK_K):  # K is a multiple of BLOCK_K: no K mask
        a = tl.load(a_ptrs, mask=mask_m[:, None], other=0.0)
        packed = tl.load(w_ptrs, mask=mask_n[None, :], other=0)
        # [BLOCK_K // 8, 8, BLOCK_N] nibbles -> [BLOCK_K, BLOCK_N]: row 8r + j is nibble j of word r.
        q = (packed[:, None, :] >> shifts[None, :, None]) & 0xF
        q = tl.reshape(q, (BLOCK_K, BLOCK_N))
        group = (k * BLOCK_K) // GROUP_SIZE
        scale = tl.load(scales_ptr + group * stride_sg + offs_n * stride_sn, mask=mask_n, other=0.0)
        if HAS_ZEROS:
            zero = tl.load(zeros_ptr + group * stride_sg + offs_n * stride_sn, mask=mask_n, other=0.0).to(tl.float32)
        else:
            zero = tl.full((BLOCK_N,), 8.0, dtype=tl.float32)
        w = ((q.to(tl.float32) - zero[None, :]) * scale.to(tl.float32)[None, :]).to(a.dtype)
        acc = tl.dot(a, w, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        w_ptrs += (BLOCK_K // 8) * stride_wk

    store_tile(out_ptr, acc, offs_m, offs_n, M, N, stride_om, stride_on)


def _block_k(group_size: int) -> int:
    """The K step: 64 when it divides the group, else 32 or 16 (tensor-core minimum)."""
    for block_k in (64, 32, 16):
        if group_size % block_k == 0:
            return block_k
    raise ValueError(f"w4a16_gemm: group_size must be a multiple of 16, got {group_size}")


def w4a16_gemm(a: torch.Tensor, w_packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
               group_size: int = 128) -> torch.Tensor:
    """out = a @ dequantize(w_packed, scales, zeros) (formats in the module docstring).

    Args:
        a: [M, K] fp16 or bf16 activations (fp32 also accepted), row- or column-major.
        w_packed: [K // 8, N] int32, 4-bit weights packed along K (nibble j of row r is k = 8r + j).
        scales: [K // group_size, N] in ``a``'s dtype, unit stride along N.
        zeros: [K // group_size, N] in ``a``'s dtype with the same strides as ``scales``, integer
            zero points 0..15; None for symmetric quantization (zero point 8).
        group_size: K rows per group (128 in GPTQ and AWQ checkpoints), a multiple of 16 that
            divides K.

    Returns:
        out: [M, N] in ``a``'s dtype.

    Raises:
        ValueError: wrong shapes or dtypes, K not a multiple of group_size (or of 8), bad group
            size, tensors on different devices (or not on CUDA outside the interpreter), strides.
    """
    name = "w4a16_gemm"
    check_dtype(name, "a", a, ACT_DTYPES)
    check_dtype(name, "w_packed", w_packed, (torch.int32,))
    check_dtype(name, "scales", scales, (a.dtype,))
    check_shape(name, "a", a, (None, None), "[M, K]")
    M, K = a.shape
    block_k = _block_k(group_size)
    if K % group_size != 0:
        raise ValueError(f"w4a16_gemm: K = {K} (a's columns) is not a multiple of group_size = {group_size}")
    check_shape(name, "w_packed", w_packed, (K // PACK, None), "[K // 8, N]")
    N = w_packed.shape[1]
    check_shape(name, "scales", scales, (K // group_size, N), "[K // group_size, N]")
    if zeros is not None:
        check_dtype(name, "zeros", zeros, (a.dtype,))
        check_shape(name, "zeros", zeros, (K // group_size, N), "[K // group_size, N]")
        if zeros.stride() != scales.stride():
            raise ValueError(f"w4a16_gemm: zeros strides {zeros.stride()} differ from scales strides "
                             f"{scales.stride()}; pass both .contiguous()")
    check_devices(name, a=a, w_packed=w_packed, scales=scales, zeros=zeros)
    check_matrix_layout(name, "a", a)
    check_matrix_layout(name, "w_packed", w_packed)
    check_unit_stride(name, "scales", scales)

    out = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M == 0 or N == 0 or K == 0:
        return out.zero_()  # an empty sum is 0 (and an empty out needs nothing)
    w4a16_gemm_kernel[tile_grid(M, N)](
        a, w_packed, out, scales, scales if zeros is None else zeros,
        M, N, K, triton.next_power_of_2(M),
        a.stride(0), a.stride(1), w_packed.stride(0), w_packed.stride(1),
        scales.stride(0), scales.stride(1), out.stride(0), out.stride(1),
        GROUP_SIZE=group_size, HAS_ZEROS=zeros is not None,
        DOT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32", BLOCK_K=block_k,
    )
    return out


def unpack_w4(w_packed: torch.Tensor) -> torch.Tensor:
    """[K // 8, N] int32 -> [K, N] int32 values 0..15 (nibble j of row r is row 8r + j)."""
    shifts = torch.arange(0, 32, 4, device=w_packed.device, dtype=torch.int32)
    q = (w_packed[:, None, :] >> shifts[None, :, None]) & 0xF
    return q.reshape(-1, w_packed.shape[1])


def dequantize_w4(w_packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                  group_size: int = 128) -> torch.Tensor:
    """[K, N] weight in ``scales``' dtype: (q - zero) * scale, computed in fp32 and rounded once."""
    q = unpack_w4(w_packed).float()
    zero = zeros.float() if zeros is not None else torch.full_like(scales, SYMMETRIC_ZERO, dtype=torch.float32)
    expand = lambda t: t.repeat_interleave(group_size, dim=0)  # noqa: E731 - [K // G, N] -> [K, N]
    return ((q - expand(zero)) * expand(scales.float())).to(scales.dtype)


def w4a16_gemm_reference(a: torch.Tensor, w_packed: torch.Tensor, scales: torch.Tensor,
                         zeros: torch.Tensor | None, group_size: int = 128) -> torch.Tensor:
    """The same product by torch: dequantize the weight, multiply in fp32, cast to ``a``'s dtype."""
    w = dequantize_w4(w_packed, scales, zeros, group_size)
    return (a.float() @ w.float()).to(a.dtype)


def quantize_w4(w: torch.Tensor, group_size: int = 128, symmetric: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Round-to-nearest 4-bit group quantization of a [K, N] weight, packed for :func:`w4a16_gemm`.

    Args:
        w: [K, N] fp16/bf16/fp32 weight (``W.t()`` for an ``nn.Linear`` weight W [N, K]); K a
            multiple of ``group_size`` and of 8.
        group_size: K rows per group.
        symmetric: scale = max|w| / 7 with zero point 8; else scale = (max - min) / 15 and an
            integer zero point round(-min / scale) per group.

    Returns:
        (w_packed [K // 8, N] int32, scales [K // group_size, N] in w's dtype, zeros of the same
        shape and dtype or None when symmetric).

    Raises:
        ValueError: K not a multiple of group_size or 8.
    """
    K, N = w.shape
    if K % group_size != 0 or K % PACK != 0:
        raise ValueError(f"quantize_w4: K = {K} must be a multiple of group_size = {group_size} and of 8")
    groups = w.float().reshape(K // group_size, group_size, N)
    if symmetric:
        amax = groups.abs().amax(dim=1)
        scale = torch.where(amax > 0, amax / 7, torch.ones_like(amax))
        zero = torch.full_like(scale, SYMMETRIC_ZERO)
    else:
        lo, hi = groups.amin(dim=1).clamp(max=0), groups.amax(dim=1).clamp(min=0)  # 0 stays exact
        scale = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(hi))
        zero = torch.round(-lo / scale).clamp(0, 15)
    # Round the scale to the storage dtype first so quantization and dequantization agree.
    scale = scale.to(w.dtype).float()
    q = torch.round(groups / scale[:, None, :] + zero[:, None, :]).clamp(0, 15).to(torch.int64).reshape(K, N)
    words = torch.zeros(K // PACK, N, dtype=torch.int64, device=w.device)
    for j in range(PACK):
        words |= q[j::PACK] << (4 * j)
    words = torch.where(words >= 2**31, words - 2**32, words)  # two's complement into int32
    return words.to(torch.int32), scale.to(w.dtype), None if symmetric else zero.to(w.dtype)
