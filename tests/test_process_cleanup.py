"""Sweep workers end with their parent: a `servesim compare` killed by any signal leaves no process.

The command runs as a subprocess with two workers on runs long enough that they are busy when
the parent is signalled; the story reads the process table from /proc (Linux, where the kernel
ties the workers to their parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.studies import executors
from tests.conftest import REPO

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are tied to their parent on Linux only")

# Two runs of 20,000 requests each: several seconds per run, so the workers are mid-run when killed.
SWEEP = """
name: killed
base_overrides:
  workload.num_requests: 20000
axes:
  rate: [10, 20]
"""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state, ppid, ..., start time at [19])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> dict[int, str]:
    """The live children of ``pid``: pid -> start time (so a reused pid is not mistaken for one)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == pid and fields[0] not in "ZX":
            found[int(entry.name)] = fields[19]
    return found


def _alive(pid: int, start_time: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in "ZX" and fields[19] == start_time  # a zombie has ended


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_no_worker_outlives_a_killed_compare(tmp_path, sig):
    sweep_file = tmp_path / "killed.yaml"
    sweep_file.write_text(SWEEP)
    command = [sys.executable, "-m", "simulator.cli", "compare", str(sweep_file), "--workers", "2", "--no-cache", "--quiet", "--out", str(tmp_path / "out")]
    parent = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: dict[int, str] = {}
    try:
        # The pool forks both workers at its first submit; the CLI's imports take a second or two.
        assert _wait_for(lambda: len(workers.update(_children(parent.pid)) or workers) >= 2, 60), "the workers never started"
        time.sleep(0.3)  # let them start their runs
        workers.update(_children(parent.pid))
        os.kill(parent.pid, sig)
        parent.wait(timeout=15)
        assert _wait_for(lambda: not any(_alive(pid, start) for pid, start in workers.items()), 5), (
            f"workers still running after {sig.name} of their parent: {[p for p, s in workers.items() if _alive(p, s)]}"
        )
    finally:
        for pid, start in workers.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.communicate()


@linux_only
def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    # The worker initializer, run where the expected parent is not this process's parent (as after
    # the parent died between the fork and the prctl call), ends the process with status 1.
    code = "import os; from simulator.studies.executors import _end_with_parent; _end_with_parent(os.getppid() + 1); print('still here')"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "still here" not in done.stdout


def test_where_workers_cannot_be_tied_the_executor_says_so_and_still_runs(monkeypatch):
    monkeypatch.setattr(executors, "_TIED_TO_PARENT", False)  # as on macOS and Windows
    with pytest.warns(RuntimeWarning, match="outlive a parent killed"):
        pairs = list(executors.LocalExecutor(2, progress=False).map(abs, [-1, -2, -3]))
    assert sorted(pairs) == [(0, 1), (1, 2), (2, 3)]
