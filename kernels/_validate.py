"""Input checks shared by the kernel launchers: each failure is a ValueError naming the launcher,
the argument, what it got and what it needs.

Triton kernels do no bounds checks of their own (and the interpreter none either), so a launcher
checks everything a kernel's address arithmetic relies on before launching.
"""

from __future__ import annotations

import os

import torch


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter: ``TRITON_INTERPRET=1``, which Triton
    reads when a kernel module is imported (``@triton.jit`` decides then)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_devices(kernel: str, **tensors: torch.Tensor | None) -> torch.device:
    """All tensors on one device, a CUDA one unless the interpreter runs; returns that device."""
    given = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in given.values()}
    if len(devices) != 1:
        listed = ", ".join(f"{name} on {t.device}" for name, t in given.items())
        raise ValueError(f"{kernel}: all tensors must be on one device, got {listed}")
    device = devices.pop()
    if device.type != "cuda" and not interpreting():
        raise ValueError(f"{kernel}: tensors are on {device}; Triton kernels need CUDA tensors "
                         "(or TRITON_INTERPRET=1 set before triton is imported, to run on CPU)")
    return device


def check_dtype(kernel: str, name: str, t: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    """``t``'s dtype is one of ``allowed``."""
    if t.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{kernel}: {name} has dtype {str(t.dtype).removeprefix('torch.')}, expected one of {names}")


def check_shape(kernel: str, name: str, t: torch.Tensor, expected: tuple[int | None, ...], meaning: str) -> None:
    """``expected`` lists one size per dimension, None where any size goes; ``meaning`` names the
    dimensions for the message, e.g. ``"[M, K]"``."""
    ok = t.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        want = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{kernel}: {name} has shape {tuple(t.shape)}, expected {meaning} = [{want}]")


def check_unit_stride(kernel: str, name: str, t: torch.Tensor, dim: int = -1) -> None:
    """The kernels address a row with ``base + offset`` along ``dim``: that dimension must be dense."""
    if t.size(dim) > 1 and t.stride(dim) != 1:
        raise ValueError(f"{kernel}: {name} must have stride 1 in dimension {dim % t.dim()} "
                         f"(got strides {t.stride()}); pass .contiguous()")


def check_matrix_layout(kernel: str, name: str, t: torch.Tensor) -> None:
    """A 2-D operand must be row-major or column-major (a transposed view is fine)."""
    if t.size(0) > 1 and t.size(1) > 1 and 1 not in t.stride():
        raise ValueError(f"{kernel}: {name} (shape {tuple(t.shape)}) has strides {t.stride()}: "
                         "neither dimension is dense; pass .contiguous()")


def check_positive(kernel: str, name: str, value: int) -> None:
    """An integer option is at least 1."""
    if value < 1:
        raise ValueError(f"{kernel}: {name} must be >= 1, got {value}")


def check_unit_strides(kernel: str, **tensors: torch.Tensor) -> None:
    """:func:`check_unit_stride` of each tensor's last dimension, in the order given."""
    for name, t in tensors.items():
        check_unit_stride(kernel, name, t)


def check_out_dtype(kernel: str, out_dtype: torch.dtype, allowed: tuple[torch.dtype, ...]) -> None:
    """A launcher's ``out_dtype`` option is one of ``allowed``."""
    if out_dtype not in allowed:
        raise ValueError(f"{kernel}: out_dtype {out_dtype} is not one of {allowed}")


def check_gemm_shapes(kernel: str, a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> tuple[int, int, int]:
    """``a`` is [M, K] and ``b`` is [K, N]; returns ``(M, N, K)``."""
    check_shape(kernel, a_name, a, (None, None), "[M, K]")
    M, K = a.shape
    check_shape(kernel, b_name, b, (K, None), "[K, N]")
    return M, b.shape[1], K


def check_paged_kv_cache(kernel: str, q: torch.Tensor, q_meaning: str, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         block_tables: torch.Tensor, one_query_per_seq: bool,
                         dtypes: tuple[torch.dtype, ...]) -> tuple[int, int, int]:
    """The checks the paged-attention launchers share, in this order: ``q`` is
    [rows, num_q_heads, head_dim] (``q_meaning`` names the dimensions) in one of ``dtypes``;
    ``k_cache`` and ``v_cache`` are [num_blocks, block_size, num_kv_heads, head_dim] in q's dtype;
    num_q_heads is a multiple of num_kv_heads; ``block_tables`` is int32
    [num_seqs, max_blocks_per_seq], with num_seqs = q's rows when ``one_query_per_seq`` (decode).
    Returns ``(num_blocks, block_size, num_kv_heads)``."""
    check_dtype(kernel, "q", q, dtypes)
    check_shape(kernel, "q", q, (None, None, None), q_meaning)
    num_q_heads, head_dim = q.shape[1:]
    check_shape(kernel, "k_cache", k_cache, (None, None, None, head_dim), "[num_blocks, block_size, num_kv_heads, head_dim]")
    num_blocks, block_size, num_kv_heads, _ = k_cache.shape
    check_shape(kernel, "v_cache", v_cache, tuple(k_cache.shape), "k_cache's shape")
    for cache_name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        if cache.dtype != q.dtype:
            raise ValueError(f"{kernel}: {cache_name} is {cache.dtype} but q is {q.dtype}; they must match")
    if num_kv_heads == 0 or num_q_heads % num_kv_heads != 0:
        raise ValueError(f"{kernel}: num_q_heads = {num_q_heads} is not a multiple of num_kv_heads = {num_kv_heads}")
    check_dtype(kernel, "block_tables", block_tables, (torch.int32,))
    num_seqs = q.shape[0] if one_query_per_seq else None
    check_shape(kernel, "block_tables", block_tables, (num_seqs, None), "[num_seqs, max_blocks_per_seq]")
    return num_blocks, block_size, num_kv_heads


def check_block_ids(kernel: str, block_tables: torch.Tensor, seq: int, num_tokens: int, block_size: int,
                    num_blocks: int) -> None:
    """Host-side (CPU tensors only): the block-table entries that hold sequence ``seq``'s first
    ``num_tokens`` tokens name blocks of the pool, 0..num_blocks-1."""
    used = block_tables[seq, : -(-num_tokens // block_size)]
    if used.numel() and not (0 <= int(used.min()) and int(used.max()) < num_blocks):
        raise ValueError(f"{kernel}: block_tables[{seq}] holds ids outside 0..{num_blocks - 1}")
