"""Shared test factories and paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.engine.request import Request

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"
AZURE_CONV = TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake" / "conversation_trace.jsonl"


@pytest.fixture(scope="session", autouse=True)
def servesim_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """One servesim cache (``$SERVESIM_CACHE_DIR``: imported profiles, fitted runtime models) for the
    whole test run, never the user's ``~/.cache/servesim``.

    Under pytest-xdist every worker shares it (the folder beside the workers' own temporary
    folders): a named profile one test imports is then imported once per run, which the cache's
    rename-into-place makes safe for processes importing at once. Tests that check the cache
    itself set their own with ``monkeypatch.setenv``. Subprocesses inherit it.
    """
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "servesim-cache"
    folder.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("SERVESIM_CACHE_DIR")
    os.environ["SERVESIM_CACHE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("SERVESIM_CACHE_DIR", None)
    else:
        os.environ["SERVESIM_CACHE_DIR"] = saved


def servesim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m simulator.cli ARGS`` run in ``cwd``; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line_error(stderr: str, *fragments: str, prefix: str = "servesim: error:") -> str:
    """Assert ``stderr`` is one line starting with ``prefix`` (no traceback) holding every fragment; return it.

    ``prefix="servesim: warning:"`` checks a warning the same way.
    """
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def make_request(request_id: int = 0, prompt: int = 10, output: int = 3, arrival: float | None = None) -> Request:
    """A request with ``prompt`` prompt tokens that generates ``output`` tokens."""
    return Request(request_id=request_id, arrival_time=float(request_id) if arrival is None else arrival, num_prompt_tokens=prompt, num_output_tokens=output)


def run_step(scheduler, now: float):
    """Schedule one step at ``now`` (it must find work), finish it 1 s later: (batch, finished requests)."""
    batch = scheduler.schedule(now)
    assert batch is not None
    return batch, scheduler.on_step_end(batch, now + 1.0)


def ids(requests) -> list[int]:
    """The requests' ids, in order."""
    return [r.request_id for r in requests]


@pytest.fixture
def azure_conv() -> Path:
    if not AZURE_CONV.is_file():
        pytest.skip(f"public trace not found at {AZURE_CONV}")
    return AZURE_CONV


@pytest.fixture
def mooncake_conv() -> Path:
    if not MOONCAKE_CONV.is_file():
        pytest.skip(f"public trace not found at {MOONCAKE_CONV}")
    return MOONCAKE_CONV


def check_invariants(sim, result) -> None:
    """Invariants every scheduler keeps on every run."""
    requests = sim.workload.requests
    df = result.requests
    # Every request finishes exactly once (a second finish trips an assertion in the scheduler).
    assert sim.num_finished == len(requests) == result.summary["num_completed"]
    assert df["finish_time"].notna().all()
    # Each request produced exactly its output tokens, one timestamp each, in order.
    for r in requests:
        assert r.num_generated_tokens == r.num_output_tokens == len(r.token_times)
        assert r.num_computed_tokens == r.num_prompt_tokens + r.num_output_tokens - 1
    assert (df["ttft_s"] <= df["e2e_s"] + 1e-12).all() and (df["ttft_s"] > 0).all()
    # Blocks in use never exceed capacity; all are free at the end (cached blocks no request
    # holds count as free), each block in exactly one state; no KV block is left in CPU memory.
    for replica in sim.replicas:
        scheduler = replica.scheduler
        bm = scheduler.block_manager
        used = [row[7] for row in replica.records]
        assert max(used, default=0) <= bm.num_blocks  # a decode replica may never run
        bm.check()
        assert bm.num_free_blocks == bm.num_blocks and not scheduler.running and not scheduler.waiting
        assert not scheduler.swapped and scheduler.num_free_cpu_blocks == scheduler.swap_space.num_blocks
    # Budgets: prefill tokens per iteration and running requests stay within their caps.
    it = result.iterations
    budget = sim.replicas[0].scheduler.token_budget
    assert (it["num_prefill_tokens"] + it["num_decode_tokens"] <= budget).all()
    assert (it["batch_size"] <= sim.scenario.scheduler.max_num_seqs).all()


def log_axes_without_tick_format(page: str) -> tuple[int, list[str]]:
    """(number of log axes, those among them without a ``tickformat``) in a written HTML report.

    Scans the figure JSON plotly embeds: each ``"type":"log"`` is enclosed by its axis object,
    whose opening brace is found by matching braces leftward; the JSON decoder reads the object.
    """
    decoder = json.JSONDecoder()
    found, bare, start = 0, [], 0
    while (at := page.find('"type":"log"', start)) >= 0:
        start, depth, left = at + 1, 0, at
        while left > 0:
            left -= 1
            if page[left] == "}":
                depth += 1
            elif page[left] == "{":
                if depth == 0:
                    break
                depth -= 1
        axis, _ = decoder.raw_decode(page, left)
        found += 1
        if "tickformat" not in axis:
            bare.append(json.dumps(axis)[:200])
    return found, bare
