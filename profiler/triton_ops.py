"""The project's Triton kernels (``kernels/``) as profiler measurements (implementation ``triton``).

Each builder allocates inputs in the layouts the launchers document (weights passed as
``W.t()`` of an ``nn.Linear`` weight ``W [N, K]``; paged caches ``[num_blocks, block_size,
num_kv_heads, head_dim]``; the prefill kernel reads the new tokens' K/V from the cache too) and
returns a closure that launches the kernel once. Quantized weights are made with the kernels' own
quantizers, so the bytes read are the real packed formats. Imports torch and the kernels.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from profiler.catalogue import ATTENTION_DECODE, ATTENTION_PREFILL, GEMM, Measurement

# Catalogue kind (or quantization) -> kernel module.
KERNEL_FOR = {
    GEMM: "gemm", ATTENTION_PREFILL: "paged_prefill", ATTENTION_DECODE: "paged_decode",
    "w8a8": "w8a8_gemm", "w4a16": "w4a16_gemm", "fp8": "fp8_gemm",
}


def available(key: str) -> bool:
    """Whether the kernel for ``key`` imports and can run here (FP8 needs compute capability 8.9+)."""
    name = KERNEL_FOR.get(key)
    if name is None:
        return False
    try:
        importlib.import_module(f"kernels.{name}")
    except Exception:  # a kernel module that fails to import is simply not measured
        return False
    if key == "fp8":
        import torch

        return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
    return True


def _group_size(k: int) -> int:
    """GPTQ/AWQ's 128-row groups when they divide K, else the largest multiple of 16 that does."""
    for g in (128, 64, 32, 16):
        if k % g == 0:
            return g
    raise ValueError(f"K = {k} has no 4-bit group size (a multiple of 16 dividing K)")


def build(builder, m: Measurement, float_dtype: str) -> Callable[[], Any]:
    """The closure launching the Triton kernel of ``m`` once (inputs from ``builder``, a ``profiler.ops.Builder``).

    Raises:
        KeyError: no Triton kernel for this operator.
        ValueError: the launcher rejects the shapes.
    """
    import torch

    from profiler.ops import TORCH_DTYPES

    dtype, dev, s = TORCH_DTYPES[float_dtype], builder.device, m.shape_dict
    if m.kind == GEMM:
        rows, n, k = s["m"], s["n"], s["k"]
        a = builder._randn(rows, k, dtype=dtype)
        if m.dtype in TORCH_DTYPES:
            from kernels.gemm import gemm

            w = builder._weight(("gemm", n, k, dtype), lambda: builder._randn(n, k, dtype=dtype))
            b = w.t()
            return lambda: gemm(a, b)
        if m.dtype == "w8a8":
            from kernels.w8a8_gemm import quantize_per_channel, quantize_per_token, w8a8_gemm

            w_q, w_scale = builder._weight(("triton_w8a8", n, k), lambda: quantize_per_channel(builder._randn(n, k, dtype=dtype).t()))
            a_q, a_scale = quantize_per_token(a)
            return lambda: w8a8_gemm(a_q, a_scale, w_q, w_scale, out_dtype=dtype)
        if m.dtype == "w4a16":
            from kernels.w4a16_gemm import quantize_w4, w4a16_gemm

            group = _group_size(k)
            w_packed, scales, zeros = builder._weight(("triton_w4a16", n, k, dtype), lambda: quantize_w4(builder._randn(n, k, dtype=dtype).t(), group))
            return lambda: w4a16_gemm(a, w_packed, scales, zeros, group)
        if m.dtype == "fp8":
            from kernels.fp8_gemm import fp8_gemm, quantize_fp8

            w_q, w_scale = builder._weight(("triton_fp8", n, k), lambda: quantize_fp8(builder._randn(n, k, dtype=dtype), dim=1))
            a_q, a_scale = quantize_fp8(a, dim=1)
            b = w_q.t()
            return lambda: fp8_gemm(a_q, b, a_scale, w_scale, out_dtype=dtype)
        raise KeyError(m.dtype)
    if m.kind == ATTENTION_DECODE:
        from kernels.paged_decode import paged_decode

        b, ctx, hq, hkv, d, bs = (s[x] for x in ("num_seqs", "context_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"))
        k_cache, v_cache, tables = builder._paged_cache(b, ctx, hkv, d, bs, dtype)
        q = builder._randn(b, hq, d, dtype=dtype)
        lens = torch.full((b,), ctx, dtype=torch.int32, device=dev)
        return lambda: paged_decode(q, k_cache, v_cache, tables, lens, d**-0.5, max_context_len=ctx)
    if m.kind == ATTENTION_PREFILL:
        from kernels.paged_prefill import paged_prefill

        seqs, n, c, hq, hkv, d, bs = (s[x] for x in ("num_seqs", "new_tokens", "prefix_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"))
        k_cache, v_cache, tables = builder._paged_cache(seqs, c + n, hkv, d, bs, dtype)
        q = builder._randn(seqs * n, hq, d, dtype=dtype)
        query_start_loc = (torch.arange(seqs + 1, dtype=torch.int32, device=dev) * n).contiguous()
        prefix_lens = torch.full((seqs,), c, dtype=torch.int32, device=dev)
        return lambda: paged_prefill(q, k_cache, v_cache, tables, query_start_loc, prefix_lens, d**-0.5, max_query_len=n)
    raise KeyError(m.kind)
