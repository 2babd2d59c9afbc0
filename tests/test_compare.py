"""servesim compare: a small sweep end to end; parallel, serial and cached runs agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.studies.capacity import with_rate
from simulator.studies.compare import flatten_summary, run_compare
from simulator.reports.compare_report import CDF_LEVELS
from simulator.schedulers import SCHEDULERS
from simulator.engine.simulation import simulate
from simulator.studies.sweep import load_sweep
from tests.conftest import log_axes_without_tick_format

# The first two registered policies (vllm and sarathi today); no list is hard-coded.
POLICIES = [name for name in SCHEDULERS if name != "distserve"][:2]
SWEEP = f"""
name: tiny
base_overrides:
  workload.num_requests: 60
  workload.prompt_tokens: {{distribution: uniform, min: 200, max: 2000}}
  workload.output_tokens: {{distribution: uniform, min: 10, max: 200}}
axes:
  scheduler.name: {POLICIES}
  rate: [2, 8, 30]
capacity:
  attainment_target: 0.9
  rel_tol: 0.1
  max_runs: 6
latency_cdf_rate: 8
"""
COLUMNS = ["series", "scheduler.name", "rate_rps", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "tbt_p50_s", "tbt_p99_s",
           "e2e_p50_s", "e2e_p99_s", "request_throughput_rps", "output_throughput_tps", "goodput_rps", "slo_attainment",
           "num_preemptions", "wall_time_s", "cached"]
VOLATILE = ["wall_time_s", "cached"]  # wall-clock time, and whether a row came from the cache


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    sweep_file = folder / "tiny.yaml"
    sweep_file.write_text(SWEEP)
    result = run_compare(sweep_file, workers=2, out=folder / "out", progress=False)
    return sweep_file, result


def test_compare_writes_the_results_capacity_and_report(first_run):
    sweep_file, result = first_run
    out = result.out
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and all(c in table.columns for c in COLUMNS)
    assert sorted(table["series"].unique()) == sorted(POLICIES)
    assert pd.read_parquet(out / "results.parquet").shape == table.shape
    assert not table["cached"].any()

    capacity = pd.read_csv(out / "capacity.csv")
    assert list(capacity["series"]) == POLICIES
    for index, row in capacity.iterrows():
        found = result.capacity_results[index]
        met = [rate for rate, ok, _ in found.points if ok]
        assert row["capacity_rps"] == pytest.approx(max(met)) and row["num_runs"] == len(found.points) <= 6

    page = (out / "compare.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Plotly" in page and all(name in page for name in POLICIES)
    assert (out / "compare.html").stat().st_size < 6_000_000
    log_axes, bare = log_axes_without_tick_format(page)
    assert log_axes > 0 and not bare, bare  # full numbers on log ticks, never a bare leading digit


def test_a_grid_row_is_what_a_single_run_reports(first_run):
    sweep_file, result = first_run
    row = result.results.iloc[4]  # second policy at 8 req/s
    scenario = load_sweep(sweep_file).configurations[1].scenario
    alone = flatten_summary(simulate(with_rate(scenario, 8.0)).summary)
    for column in ("ttft_p99_s", "tbt_p99_s", "e2e_p50_s", "goodput_rps", "slo_attainment", "num_preemptions"):
        assert row[column] == pytest.approx(alone[column]), column


def test_cdf_quantiles_match_the_summary_percentiles(first_run):
    _, result = first_run
    median = int(np.flatnonzero(np.isclose(CDF_LEVELS, 0.5))[0])
    p99 = int(np.flatnonzero(np.isclose(CDF_LEVELS, 0.99))[0])
    for index, row in result.results.iterrows():
        cdf = result.cdfs[index]
        assert cdf["ttft_s"][median] == pytest.approx(row["ttft_p50_s"])
        assert cdf["tbt_s"][p99] == pytest.approx(row["tbt_p99_s"])
        assert np.all(np.diff(cdf["e2e_s"]) >= 0)


def test_serial_parallel_and_cached_sweeps_agree(first_run, tmp_path):
    sweep_file, result = first_run
    serial = run_compare(sweep_file, workers=1, out=tmp_path / "serial", use_cache=False, progress=False, report=False)
    pd.testing.assert_frame_equal(serial.results.drop(columns=VOLATILE), result.results.drop(columns=VOLATILE))
    assert [c.capacity_rps for c in serial.capacity_results.values()] == [c.capacity_rps for c in result.capacity_results.values()]
    # Same folder again: every run comes from the cache (an interrupted sweep resumes this way).
    again = run_compare(sweep_file, workers=1, out=result.out, progress=False, report=False)
    assert again.results["cached"].all()
    pd.testing.assert_frame_equal(again.results.drop(columns=VOLATILE), result.results.drop(columns=VOLATILE))
    assert again.capacity.drop(columns="run_wall_time_s").equals(result.capacity.drop(columns="run_wall_time_s"))


def test_flatten_summary_puts_the_statistic_before_the_unit():
    flat = flatten_summary({"ttft_s": {"p50": 1.0, "p99": 2.0}, "slo": {"ttft_s": 2.0}, "goodput_rps": 3.0, "num_kv_blocks_per_replica": {"prefill": 5}})
    assert flat == {"ttft_p50_s": 1.0, "ttft_p99_s": 2.0, "slo_ttft_s": 2.0, "goodput_rps": 3.0, "num_kv_blocks_per_replica_prefill": 5}


def test_cli_compare_prints_capacities_and_writes_the_folder(tmp_path):
    sweep_file = tmp_path / "cli.yaml"
    sweep_file.write_text(SWEEP.replace("workload.num_requests: 60", "workload.num_requests: 30").replace("rate: [2, 8, 30]", "rate: [4]"))
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "compare", str(sweep_file), "--workers", "2", "--out", str(tmp_path / "out")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "capacity" in proc.stdout and all(name in proc.stdout for name in POLICIES)
    for name in ("results.csv", "results.parquet", "capacity.csv", "compare.html"):
        assert (Path(tmp_path / "out" / name)).stat().st_size > 0
