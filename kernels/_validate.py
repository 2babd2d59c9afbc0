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
