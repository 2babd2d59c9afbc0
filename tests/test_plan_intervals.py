"""servesim plan with prediction intervals: capacity, replicas and cost ranges of the top candidates."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from simulator.studies.executors import make_executor
from simulator.studies.plan import load_plan, run_plan
from simulator.studies.plan.intervals import INTERVAL_COLUMNS, interval_note, winner_clearly_cheaper
from simulator.reports.plan_report import console_summary, recommendation_html

PLAN = """
name: plan-intervals
seed: 0
workload:
  num_requests: 40
  arrival: {{process: poisson, rate: 1.0}}
  prompt_tokens: {{distribution: uniform, min: 64, max: 512}}
  output_tokens: {{distribution: uniform, min: 8, max: 64}}
overrides:
  model.max_model_len: 2048
  uncertainty.replicates: {replicates}
target_rate_rps: 30
slo:
  percentiles:
    ttft_s: {{p90: 0.5}}
    tbt_s: {{p99: 0.1}}
search:
  gpus: [h100-sxm, a100-80gb-sxm]
  tensor_parallel_size: [1]
  schedulers:
    - {{name: vllm}}
limits:
  max_replicas: 16
capacity:
  rel_tol: 0.1
  max_runs: 8
  max_extra_replicas: 2
  sensitivity_factors: [1.0]
  sensitivity_top: 1
"""


def _plan(folder: Path, replicates: int, cache: bool = False):
    path = folder / f"plan{replicates}.yaml"
    path.write_text(PLAN.format(replicates=replicates))
    executor = make_executor("local", max_workers=1, progress=False)
    return run_plan(load_plan(path), executor, cache_dir=folder / "cache" if cache else None, winner_run=False)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    return _plan(tmp_path_factory.mktemp("pi"), 4)


def test_top_candidates_get_capacity_replicas_and_cost_ranges(four):
    ok = four.table[four.table["feasible"]]
    assert len(ok) == 2
    for _, row in ok.iterrows():
        assert row["capacity_lo"] <= row["capacity_rps"] <= row["capacity_hi"]
        assert row["replicas_lo"] <= row["num_replicas"] <= row["replicas_hi"]
        assert row["usd_per_hour_lo"] <= row["usd_per_hour"] <= row["usd_per_hour_hi"]
    assert (ok["capacity_hi"] > ok["capacity_lo"]).any()
    note = interval_note(four.table)
    assert note is not None and "clearly cheaper" in note
    assert note in str(console_summary(four).caption)
    assert "Capacity intervals" in recommendation_html(four)


def test_intervals_are_deterministic_and_resume_from_the_cache(four, tmp_path):
    again = _plan(tmp_path, 4, cache=True)
    cols = ["deployment", "capacity_rps", *INTERVAL_COLUMNS]
    pd.testing.assert_frame_equal(four.table[cols], again.table[cols])
    resumed = _plan(tmp_path, 4, cache=True)
    pd.testing.assert_frame_equal(again.table[cols], resumed.table[cols])


def test_one_replicate_adds_nothing(tmp_path):
    result = _plan(tmp_path, 1)
    assert not any(c in result.table.columns for c in INTERVAL_COLUMNS)
    assert interval_note(result.table) is None


def test_winner_clearly_cheaper_on_hand_made_costs():
    def table(a, b):
        return pd.DataFrame({"feasible": [True, True], "deployment": ["a", "b"], "usd_per_hour_lo": [a[0], b[0]], "usd_per_hour_hi": [a[1], b[1]]})

    assert winner_clearly_cheaper(table((6.0, 7.5), (8.0, 9.0))) is True
    assert winner_clearly_cheaper(table((6.0, 8.0), (8.0, 9.0))) is False  # touching ends overlap
    assert winner_clearly_cheaper(table((6.0, math.nan), (8.0, 9.0))) is False  # a replicate found no capacity
    assert "not clearly cheaper" in interval_note(table((6.0, 9.0), (7.0, 9.0)))
    assert winner_clearly_cheaper(table((6.0, 7.0), (math.nan, math.nan))) is None


def test_nothing_perturbed_gives_a_point_interval(tmp_path):
    path = tmp_path / "fixed.yaml"
    path.write_text(PLAN.format(replicates=3).replace(
        "uncertainty.replicates: 3", "uncertainty.replicates: 3\n  uncertainty.workload: fixed\n  uncertainty.step_time_relative_error: 0"))
    result = run_plan(load_plan(path), make_executor("local", max_workers=1, progress=False), cache_dir=None, winner_run=False)
    ok = result.table[result.table["feasible"]]
    assert (ok["capacity_lo"] == ok["capacity_rps"]).all() and (ok["capacity_hi"] == ok["capacity_rps"]).all()
    assert (ok["usd_per_hour_lo"] == ok["usd_per_hour"]).all()


def test_report_table_shows_the_ranges(four, tmp_path):
    from simulator.reports.plan_report import write_plan_report

    page = write_plan_report(four, tmp_path / "plan.html").read_text()
    assert "capacity lo" in page and "USD/h hi" in page
