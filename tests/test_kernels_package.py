"""The kernels package as a whole, and ``InterpretedChecks`` (tests/kernel_checks.py), which every
kernel test uses."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import REPO, InterpretedChecks  # noqa: E402


def check_registry() -> None:
    """Every kernel is reachable by name, as a submodule and in ``KERNELS``, with its reference."""
    import kernels

    launcher, reference = kernels.get_kernel("gemm")
    assert launcher.__name__ == "gemm" and reference.__name__ == "gemm_reference"
    assert kernels.gemm.gemm is launcher
    assert set(kernels.KERNELS) == set(kernels.KERNEL_NAMES)
    for name, (launcher, reference) in kernels.KERNELS.items():
        assert launcher.__name__ == name and reference.__name__ == f"{name}_reference"
        assert launcher.__doc__ and "Raises" in launcher.__doc__, f"{name} must document its errors"
    try:
        kernels.get_kernel("gemv")
    except KeyError as error:
        assert "paged_decode" in str(error), "an unknown name should list the known kernels"
    else:
        raise AssertionError("an unknown kernel name must raise KeyError")


def check_cpu_tensors_need_the_interpreter() -> None:
    """Outside the interpreter every launcher refuses CPU tensors with a message saying why."""
    import torch

    from kernels import fp8_gemm, gemm, paged_decode, paged_prefill, w4a16_gemm, w8a8_gemm

    a16 = torch.zeros(4, 128, dtype=torch.float16)
    i8 = torch.zeros(4, 128, dtype=torch.int8)
    f8 = torch.zeros(4, 128, dtype=torch.float8_e4m3fn)
    ones = torch.ones(4)
    cache = torch.zeros(2, 16, 1, 64, dtype=torch.float16)
    table = torch.zeros(1, 2, dtype=torch.int32)
    calls = {
        "gemm": lambda: gemm.gemm(a16, a16.t()),
        "w8a8_gemm": lambda: w8a8_gemm.w8a8_gemm(i8, ones, i8.t(), ones),
        "w4a16_gemm": lambda: w4a16_gemm.w4a16_gemm(a16, torch.zeros(16, 8, dtype=torch.int32),
                                                     torch.ones(1, 8, dtype=torch.float16), None, 128),
        "fp8_gemm": lambda: fp8_gemm.fp8_gemm(f8, f8.t(), ones[:1], ones[:1]),
        "paged_decode": lambda: paged_decode.paged_decode(torch.zeros(1, 2, 64, dtype=torch.float16), cache, cache, table,
                                                          torch.ones(1, dtype=torch.int32), 0.125),
        "paged_prefill": lambda: paged_prefill.paged_prefill(torch.zeros(3, 2, 64, dtype=torch.float16), cache, cache, table,
                                                             torch.tensor([0, 3], dtype=torch.int32),
                                                             torch.zeros(1, dtype=torch.int32), 0.125),
    }
    for name, call in calls.items():
        try:
            call()
        except ValueError as error:
            assert "CUDA" in str(error) and "TRITON_INTERPRET" in str(error), f"{name}: unclear message {error}"
        else:
            raise AssertionError(f"{name} accepted CPU tensors without the interpreter")


MODULE = "test_kernels_package"
CHECKS = InterpretedChecks(MODULE, [("check_registry",), ("check_cpu_tensors_need_the_interpreter",)], interpret=False)


def test_import_kernels_loads_neither_torch_nor_triton():
    code = "import sys, kernels; print(sorted({'torch', 'triton'} & set(sys.modules)))"
    # ``python -c`` puts its working directory, the repository, first on the path.
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_registry_lists_every_kernel_with_its_reference():
    CHECKS.expect_passed("check_registry")


def test_launchers_refuse_cpu_tensors_without_the_interpreter():
    CHECKS.expect_passed("check_cpu_tensors_need_the_interpreter")


def check_that_fails() -> None:
    raise AssertionError("this check fails on purpose")


def check_that_passes() -> None:
    pass


def test_a_failing_check_fails_its_test_only():
    # The runner must neither hide a failure inside the subprocess nor spread it to other checks.
    checks = InterpretedChecks(MODULE, [("check_that_fails",), ("check_that_passes",)])
    with pytest.raises(pytest.fail.Exception, match="this check fails on purpose"):
        checks.expect_passed("check_that_fails")
    checks.expect_passed("check_that_passes")
