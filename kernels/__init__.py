"""servesim's own Triton kernels, each with a launcher that checks its inputs and a PyTorch reference.

=================  =========================================================  ==============================
module             computes                                                   launcher / reference
=================  =========================================================  ==============================
``paged_decode``   decode attention over a paged KV cache, GQA, split-KV      ``paged_decode`` /
                   (flash-decoding) with a merge pass                         ``paged_decode_reference``
``paged_prefill``  causal prefill/extend attention of new tokens over their   ``paged_prefill`` /
                   cached prefix through the block table, GQA, varlen         ``paged_prefill_reference``
``gemm``           C = A @ B, fp16/bf16, fp32 accumulate, grouped tile order  ``gemm`` / ``gemm_reference``
``w8a8_gemm``      int8 x int8 -> int32, per-token x per-channel scales       ``w8a8_gemm`` /
                   (SmoothQuant)                                              ``w8a8_gemm_reference``
``w4a16_gemm``     fp16/bf16 x 4-bit group-quantized weight (GPTQ/AWQ-style)  ``w4a16_gemm`` /
                                                                              ``w4a16_gemm_reference``
``fp8_gemm``       e4m3 x e4m3 -> fp32, per-tensor/token/channel scales       ``fp8_gemm`` /
                                                                              ``fp8_gemm_reference``
=================  =========================================================  ==============================

Every GEMM takes its weight as [K, N] (pass ``W.t()`` for an ``nn.Linear`` weight W [N, K]). Each
module's docstring gives its layouts; each launcher's docstring its arguments and errors. The
private modules hold what several kernels share: ``_validate`` the launchers' input checks,
``_gemm_tiles`` and ``_paged_kv`` the ``@triton.jit`` helpers the GEMM and paged-attention
kernels call (Triton inlines them).

Importing this package imports neither torch nor triton: ``kernels.gemm`` (or any name above) is
imported on first access, and ``KERNELS`` maps each name to its ``(launcher, reference)`` pair,
built on first access. Triton decides at a kernel module's import whether it runs in the CPU
interpreter, so set ``TRITON_INTERPRET=1`` before touching any of them to run on CPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

KERNEL_NAMES: tuple[str, ...] = ("paged_decode", "paged_prefill", "gemm", "w8a8_gemm", "w4a16_gemm", "fp8_gemm")


def get_kernel(name: str) -> tuple[Callable, Callable]:
    """``(launcher, reference)`` of the kernel ``name``, e.g. ``(gemm.gemm, gemm.gemm_reference)``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    if name not in KERNEL_NAMES:
        raise KeyError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNEL_NAMES)}")
    module = importlib.import_module(f"kernels.{name}")
    return getattr(module, name), getattr(module, f"{name}_reference")


def __getattr__(attr: str) -> ModuleType | dict[str, tuple[Callable, Callable]]:
    # PEP 562: import the kernel modules (torch, triton) only when first used.
    if attr in KERNEL_NAMES:
        return importlib.import_module(f"kernels.{attr}")
    if attr == "KERNELS":
        registry = {name: get_kernel(name) for name in KERNEL_NAMES}
        globals()["KERNELS"] = registry  # built once; later lookups find it without __getattr__
        return registry
    raise AttributeError(f"module 'kernels' has no attribute {attr!r}")
