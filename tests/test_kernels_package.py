"""The kernels package as a whole, and ``InterpretedChecks``, which every kernel test uses.

Triton decides when a kernel module is imported whether kernels run in its CPU interpreter
(``TRITON_INTERPRET=1``), and pytest runs every test module in one process, so the kernel checks
run in a fresh Python subprocess with the variable set from its start. A subprocess also keeps
an out-of-bounds access in a kernel from taking the test session down with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# Runs the listed ``module.function(*args)`` calls from tests/, with the repository first on the
# path, and prints each call's traceback (or None) as one JSON line after a marker.
_MARKER = "KERNEL-CHECK-RESULTS:"
_RUNNER = f"""
import json, sys, traceback
sys.path[:0] = json.loads(sys.argv[1])
module = __import__(sys.argv[2])
results = {{}}
for function, *args in json.loads(sys.argv[3]):
    try:
        getattr(module, function)(*args)
        results[repr((function, *args))] = None
    except BaseException:
        results[repr((function, *args))] = traceback.format_exc()
print({_MARKER!r} + json.dumps(results))
"""


class InterpretedChecks:
    """The check functions of one test module, run together in one fresh Python process under
    the Triton interpreter (``interpret=True``) or without it, on the first result asked for.

    One process per module keeps the kernel tests fast (importing torch and triton costs about
    2 s of CPU) while each test still reports its own check. ``calls`` are tuples
    ``(function name, *JSON arguments)`` of functions defined in ``module`` (a file under tests/).
    """

    def __init__(self, module: str, calls: list[tuple], interpret: bool = True, timeout_s: float = 600) -> None:
        self.module, self.calls, self.interpret, self.timeout_s = module, [tuple(c) for c in calls], interpret, timeout_s
        self._results: dict[str, str | None] | None = None
        self._output = ""

    def _run(self) -> dict[str, str | None]:
        env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        if self.interpret:
            env["TRITON_INTERPRET"] = "1"
        command = [sys.executable, "-c", _RUNNER, json.dumps([str(TESTS), str(REPO)]), self.module, json.dumps(self.calls)]
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=self.timeout_s)
        self._output = f"exit code {proc.returncode}\n{(proc.stdout + proc.stderr)[-6000:]}"
        lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARKER)]
        return json.loads(lines[-1][len(_MARKER):]) if lines else {}

    def expect_passed(self, function: str, *args: object) -> None:
        """Fail the calling test with the check's traceback unless ``function(*args)`` passed."""
        key = repr((function, *args))
        assert (function, *args) in self.calls, f"{key} is not among {self.module}'s checks"
        if self._results is None:
            self._results = self._run()
        mode = "under TRITON_INTERPRET=1" if self.interpret else "without the interpreter"
        if key not in self._results:
            pytest.fail(f"{self.module}.{function}{tuple(args)} did not report {mode}; the process said:\n{self._output}",
                        pytrace=False)
        if self._results[key] is not None:
            pytest.fail(f"{self.module}.{function}{tuple(args)} failed {mode}:\n{self._results[key]}", pytrace=False)


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
