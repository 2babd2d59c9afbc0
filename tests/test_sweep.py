"""Sweep files: expansion into configurations and runs; every mistake names the file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.studies.capacity import native_rate_rps
from simulator.errors import ScenarioError
from simulator.schedulers import SCHEDULERS
from simulator.studies.sweep import is_sweep_file, load_sweep
from tests.conftest import REPO, TRACES

SMALL = """
base_overrides:
  workload.num_requests: 50
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expands_into_configurations_and_rates(tmp_path):
    names = list(SCHEDULERS)[:2]  # whatever policies are registered; no list is hard-coded
    sweep = load_sweep(write(tmp_path, SMALL + f"""
axes:
  scheduler.name: {names}
  scheduler.max_num_seqs: [32, 64]
  rate: [1, 2.5, 4]
"""))
    assert sweep.name == "sweep" and sweep.load_axis == "rate"
    assert sweep.series == ("scheduler.name", "scheduler.max_num_seqs")
    assert len(sweep.configurations) == 4 and len(sweep.runs) == 12
    for run in sweep.runs:
        config = sweep.configurations[run.config_index]
        assert run.scenario.scheduler.name == config.values["scheduler.name"]
        assert run.scenario.scheduler.max_num_seqs == config.values["scheduler.max_num_seqs"]
        assert run.scenario.workload.arrival.rate == run.rate_rps == run.load_value
        assert run.scenario.workload.num_requests == 50
    assert sweep.configurations[0].label == f"name={names[0]}, max_num_seqs=32"
    assert sweep.criterion is not None and sweep.criterion.attainment_target == 0.9  # capacity on by default


def test_one_series_field_labels_lines_by_its_value(tmp_path):
    sweep = load_sweep(write(tmp_path, SMALL + "axes:\n  scheduler.name: [vllm, sarathi]\n  rate: [1]\nseries: [scheduler.name]\n"))
    assert [c.label for c in sweep.configurations] == ["vllm", "sarathi"]


def test_rate_scale_multiplies_the_trace_rate_and_paths_are_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "traces").mkdir()
    rows = "".join(f"{i * 0.25},100,10\n" for i in range(41))  # 4 req/s
    (tmp_path / "traces" / "t.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows)
    (tmp_path / "sweeps").mkdir()
    sweep = load_sweep(write(tmp_path / "sweeps", """
base_overrides:
  workload.trace: ../traces/t.csv
axes:
  rate_scale: [0.5, 2]
capacity: {enabled: false}
"""))
    assert [run.rate_rps for run in sweep.runs] == pytest.approx([2.0, 8.0])
    assert [run.scenario.workload.time_scale for run in sweep.runs] == pytest.approx([0.5, 2.0])
    assert sweep.runs[0].scenario.workload.trace == str((tmp_path / "traces" / "t.csv").resolve())
    assert sweep.criterion is None and sweep.configurations[0].label == "base"


def test_base_scenario_path_and_list_overrides(tmp_path):
    write(tmp_path, "name: tiny\nworkload:\n  num_requests: 30\n", "base.yaml")
    sweep = load_sweep(write(tmp_path, """
base: base.yaml
base_overrides: ["scheduler.max_num_seqs=8", "slo.tpot_s=0.05"]
axes:
  cluster.num_replicas: [1, 2]
capacity:
  attainment_target: null
  percentiles: {ttft_s: {p90: 2.0}, tbt_s: {p99: 0.2}}
"""))
    scenario = sweep.runs[0].scenario
    assert (scenario.name, scenario.workload.num_requests, scenario.scheduler.max_num_seqs, scenario.slo.tpot_s) == ("tiny", 30, 8, 0.05)
    assert sweep.load_axis is None and len(sweep.runs) == 2  # each configuration at its own rate
    assert sweep.runs[1].rate_rps == pytest.approx(scenario.workload.arrival.rate)
    assert sweep.criterion.percentile_bounds == (("ttft_s", "p90", 2.0), ("tbt_s", "p99", 0.2))


BAD_SWEEPS = {
    "unknown top-level field": ("axis:\n  rate: [1]\n", ["axis", "unknown field", "axes"]),
    "unknown capacity field": ("axes:\n  rate: [1]\ncapacity:\n  target: 0.9\n", ["capacity.target", "unknown field"]),
    "bad scenario field in an axis": ("axes:\n  scheduler.max_num_seqs: [0]\n", ["axes.scheduler.max_num_seqs", "0"]),
    "unknown field path in an axis": ("axes:\n  scheduler.num_seqs: [4]\n", ["axes.scheduler.num_seqs", "unknown field"]),
    "unknown scheduler": ("axes:\n  scheduler.name: [vllm, no-such-policy]\n", ["scheduler.name", "no-such-policy", "unknown scheduler"]),
    "bad override": ("base_overrides:\n  cluster.tensor_parallel_size: 3\naxes:\n  rate: [1]\n", ["base_overrides", "tensor_parallel_size", "3"]),
    "two load axes": ("axes:\n  rate: [1]\n  rate_scale: [2]\n", ["axes", "more than one load axis"]),
    "negative rate": ("axes:\n  rate: [1, -2]\n", ["axes.rate", "-2", "positive"]),
    "empty axis": ("axes:\n  scheduler.name: []\n", ["axes.scheduler.name", "no values"]),
    "series not an axis": ("axes:\n  scheduler.name: [vllm]\nseries: [cluster.num_replicas]\n", ["series", "cluster.num_replicas"]),
    "bad percentile metric": ("axes:\n  rate: [1]\ncapacity:\n  percentiles: {ttft: {p90: 2}}\n", ["capacity", "unknown metric"]),
    "TBT has no P90": ("axes:\n  rate: [1]\ncapacity:\n  percentiles: {tbt_s: {p90: 0.1}}\n", ["capacity", "tbt_s"]),
    "missing base": ("base: nope.yaml\naxes:\n  rate: [1]\n", ["base", "nope.yaml", "not found"]),
    "bad executor": ("axes:\n  rate: [1]\nexecutor: slurm\n", ["executor", "slurm"]),
    "malformed yaml": ("axes: [rate\n", ["malformed YAML"]),
}


@pytest.mark.parametrize("text, expected", BAD_SWEEPS.values(), ids=BAD_SWEEPS.keys())
def test_mistakes_name_the_sweep_file_and_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, message


def test_cli_reports_a_bad_sweep_in_one_line(tmp_path):
    path = write(tmp_path, "axes:\n  scheduler.name: [vllm, no-such-policy]\n")
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "compare", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-policy" in lines[0] and "Traceback" not in proc.stderr


SHIPPED = sorted((REPO / "scenarios").glob("compare-*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_sweeps_load(path):
    if not TRACES.is_dir():
        pytest.skip(f"public traces not found at {TRACES}")
    assert is_sweep_file(path)
    sweep = load_sweep(path)
    assert sweep.criterion is not None and len(sweep.configurations) >= 3 and 5 <= len(sweep.file.axes["rate"]) <= 7
    for config in sweep.configurations:
        assert config.values["scheduler.name"] in SCHEDULERS
        assert native_rate_rps(config.scenario) > 0
