"""DistServe's measurement files as measured runs: parsing, placements, TPOT, bad files."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from simulator.errors import ScenarioError
from simulator.studies.validate import load_sets
from simulator.studies.validate.distserve_set import distserve_runs, read_exp
from simulator.studies.validate.engine import scenario_for
from simulator.workload import load_workload
from tests.conftest import one_line_error

# Three hand-made requests, listed out of issue order; times in s on one clock.
#   issue   first   complete  output   TPOT = (complete - first) / (output - 1)
#   100.5   100.6   101.1     11       0.5 / 10 = 0.05 s   TTFT 0.1 s: meets both SLOs
#   100.0   100.3   100.6     4        0.3 / 3  = 0.1 s    TTFT 0.3 s: misses
#   101.0   101.15  101.15    1        none (tpot_ms 0)    TTFT 0.15 s: meets (TTFT only)
REQUESTS = [
    {"prompt_len": 30, "output_len": 11, "issue_time": 100.5, "first_token_time": 100.6, "complete_time": 101.1},
    {"prompt_len": 20, "output_len": 4, "issue_time": 100.0, "first_token_time": 100.3, "complete_time": 100.6},
    {"prompt_len": 40, "output_len": 1, "issue_time": 101.0, "first_token_time": 101.15, "complete_time": 101.15},
]
SUMMARY = "{\n\tnum_requests: 3\n\tavg_ttft_ms: 266.7\n}\n"


def exp_text(requests: list[dict], tpot_ms: list[float] | None = None) -> str:
    rows = []
    for i, r in enumerate(requests):
        n = r["output_len"]
        tpot = tpot_ms[i] if tpot_ms else (0 if n == 1 else (r["complete_time"] - r["first_token_time"]) / (n - 1) * 1e3)
        rows.append(r | {"ttft_ms": (r["first_token_time"] - r["issue_time"]) * 1e3, "tpot_ms": tpot,
                         "latency_ms": (r["complete_time"] - r["issue_time"]) * 1e3})
    return repr(rows) + "\n" + SUMMARY


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVESIM_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "set" / "runs"
    runs.mkdir(parents=True)
    for name in ("vllm-3-1", "distserve-c21d11-3-1.5", "distserve-c21d12-3-2", "distserve-3-2.5"):
        (runs / f"{name}.exp").write_text(exp_text(REQUESTS))
    return tmp_path / "set"


def test_requests_are_sorted_by_issue_time_from_zero_with_tpot_excluding_the_first_token(folder):
    d = read_exp(folder / "runs" / "vllm-3-1.exp")
    assert d["arrival_time"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert d["prompt_len"].tolist() == [20, 30, 40] and d["output_len"].tolist() == [4, 11, 1]
    assert d["ttft_s"].tolist() == pytest.approx([0.3, 0.1, 0.15])
    assert d["tpot_s"][:2].tolist() == pytest.approx([0.1, 0.05]) and np.isnan(d["tpot_s"][2])
    assert d["e2e_s"].tolist() == pytest.approx([0.6, 0.6, 0.15])


def test_a_run_carries_the_measurements_the_trace_and_its_provenance(folder):
    run = next(r for r in distserve_runs(f"distserve:{folder}") if r.name == "vllm-3-1")
    assert run.measured.ttft_s["mean"] == pytest.approx((0.3 + 0.1 + 0.15) / 3)
    assert run.measured.ttft_s["p50"] == pytest.approx(0.15)
    assert run.measured.tpot_s["mean"] == pytest.approx(0.075)  # the one-token request has none
    assert run.measured.e2e_s["p50"] == pytest.approx(0.6)
    # TTFT < 200 ms and TPOT < 100 ms: two of three (the table above).
    assert run.measured.slo_attainment == pytest.approx(2 / 3)
    assert run.metrics.tpot == "excluding_first_token"
    assert run.source.licence == "Apache-2.0" and "LLMServe/DistServe@33c3d3b08a44" in run.source.name
    scenario = scenario_for(run)
    requests = [(r.arrival_time, r.num_prompt_tokens, r.num_output_tokens) for r in load_workload(scenario.workload, scenario.seed, 2048, str(run.path)).requests]
    assert requests == [(0.0, 20, 4), (0.5, 30, 11), (1.0, 40, 1)]


def test_placements_follow_the_file_names(folder):
    runs = {r.name: scenario_for(r) for r in load_sets([f"distserve:{folder / 'runs'}"])}
    vllm = runs["vllm-3-1"]
    assert vllm.scheduler.name == "vllm" and vllm.cluster.tensor_parallel_size == 1 and vllm.hardware.gpu == "a100-80gb-sxm"
    assert vllm.model.name == "opt-13b"
    for name, decode_pp in (("distserve-c21d11-3-1.5", 1), ("distserve-c21d12-3-2", 2), ("distserve-3-2.5", 1)):
        s = runs[name]
        assert s.scheduler.name == "distserve"
        assert (s.cluster.prefill.tensor_parallel_size, s.cluster.prefill.pipeline_parallel_size) == (2, 1)
        assert (s.cluster.decode.tensor_parallel_size, s.cluster.decode.pipeline_parallel_size) == (1, decode_pp)
    assert "assumed" in next(r for r in load_sets([f"distserve:{folder}"]) if r.name == "distserve-3-2.5").engine.settings["placement"]


def test_a_tpot_column_not_following_the_definition_is_rejected(folder):
    bad = folder / "runs" / "vllm-3-1.exp"
    bad.write_text(exp_text(REQUESTS, tpot_ms=[500 / 11, 100.0, 0]))  # (complete - first) / output for the first
    with pytest.raises(ScenarioError, match="tpot_ms"):
        read_exp(bad)


@pytest.mark.parametrize("content, fragment", [
    ("[{'prompt_len': 3, 'output_len': 2, 'issue_time': __import__('os')}]\n", "not a Python literal"),
    ("{'a': 1}\n", "not a non-empty list of dicts"),
    (repr([{"prompt_len": 3, "output_len": 2, "issue_time": 0.0}]) + "\n", "missing or not a number"),
])
def test_a_bad_file_is_one_line_and_exit_code_2(folder, tmp_path, content, fragment):
    (folder / "runs" / "vllm-3-1.exp").write_text(content)
    env = os.environ | {"SERVESIM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", f"distserve:{folder}", "--out", str(tmp_path / "out"), "--workers", "1"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    one_line_error(proc.stderr, "vllm-3-1.exp", fragment)


def test_a_bad_name_or_folder_is_an_error(folder):
    (folder / "runs" / "sglang-3-1.exp").write_text(exp_text(REQUESTS))
    with pytest.raises(ScenarioError, match="file name"):
        distserve_runs(f"distserve:{folder}")
    with pytest.raises(ScenarioError, match="no|not a folder"):
        distserve_runs(f"distserve:{folder / 'missing'}")


def test_the_set_validates_from_the_command_line(folder, tmp_path):
    env = os.environ | {"SERVESIM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", f"distserve:{folder}", "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert set(errors["run"]) == {"vllm-3-1", "distserve-c21d11-3-1.5", "distserve-c21d12-3-2", "distserve-3-2.5"}
    assert {"ttft_s", "tpot_s", "e2e_s", "slo_attainment"} <= set(errors["metric"])
