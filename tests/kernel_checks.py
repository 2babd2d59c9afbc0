"""What the kernel tests (tests/test_kernels_*.py) share: ``InterpretedChecks``, which runs a test
module's checks under the Triton interpreter, and small helpers for the checks themselves.

Triton decides when a kernel module is imported whether kernels run in its CPU interpreter
(``TRITON_INTERPRET=1``), and pytest runs every test module in one process, so the kernel checks
run in a fresh Python subprocess with the variable set from its start. A subprocess also keeps
an out-of-bounds access in a kernel from taking the test session down with it.

Import this module after ``pytest.importorskip("torch")``: it imports torch.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                                reason="needs a CUDA GPU (and TRITON_INTERPRET unset)")

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


def expect_value_errors(cases: dict[str, tuple[Callable[[], object], str]]) -> None:
    """Each case ``name: (call, text)``: ``call()`` raises a ValueError whose message contains ``text``."""
    for case, (call, message) in cases.items():
        try:
            call()
        except ValueError as error:
            assert message in str(error), f"{case}: message {error!r} lacks {message!r}"
        else:
            raise AssertionError(f"{case}: no ValueError")


UNUSED_BLOCK_ID = 1_000_000  # fills block-table slots past a sequence: reading one would fault


def paged_kv_cache(block_size: int, num_kv_heads: int, head_dim: int, num_tokens: list[int], dtype: torch.dtype,
                   gen: torch.Generator, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random paged KV cache holding ``num_tokens[s]`` tokens of each sequence s in shuffled
    blocks, with 3 spare blocks nobody owns, and its int32 block table: one spare column, and
    UNUSED_BLOCK_ID wherever a sequence has no block.

    Returns (k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim] in ``dtype``,
    block_tables [num_seqs, max_blocks_per_seq]), all on ``device``.
    """
    blocks_per_seq = [math.ceil(n / block_size) for n in num_tokens]
    num_blocks = sum(blocks_per_seq) + 3
    k_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    owners = torch.randperm(num_blocks, generator=gen, device=device).tolist()
    block_tables = torch.full((len(num_tokens), max(blocks_per_seq) + 1), UNUSED_BLOCK_ID, dtype=torch.int32)
    for s, n in enumerate(blocks_per_seq):
        block_tables[s, :n] = torch.tensor(owners[:n], dtype=torch.int32)
        owners = owners[n:]
    return k_cache, v_cache, block_tables.to(device)
