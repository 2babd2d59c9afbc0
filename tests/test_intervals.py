"""Prediction intervals: replicates are deterministic, bracket their median, and one replicate is a plain run."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from simulator.cost_models.perturbed import PerturbedCostModel, log_sigma, step_time_factor
from simulator.engine.simulation import simulate
from simulator.scenario import ROOFLINE_RELATIVE_ERROR, load_scenario
from simulator.studies.executors import LocalExecutor
from simulator.studies.intervals import (
    _bootstrapped,
    compute_intervals,
    coverage_note,
    figures,
    interval_ranks,
    nominal_coverage,
    plan_replicates,
    prediction_interval,
    run_replicate,
    step_time_error,
)
from tests.conftest import one_line_error, servesim

SMALL = ("workload.num_requests=40", "workload.arrival.rate=8", "output.report=false")


def small(*overrides: str):
    return load_scenario(None, [*SMALL, *overrides])


def test_order_statistic_ranks_reach_the_level():
    assert interval_ranks(20, 0.9) == (1, 20) and nominal_coverage(20, 0.9) == pytest.approx(19 / 21)
    assert interval_ranks(40, 0.9) == (2, 39) and nominal_coverage(40, 0.9) == pytest.approx(37 / 41)
    assert prediction_interval([5.0, 1.0, 7.0, 3.0, 2.0, 6.0, 4.0], 0.5) == (2.0, 6.0)  # j = floor(8 * 0.25) = 2, k = 6
    assert coverage_note(19, 0.9) is None
    assert "use --replicates 19" in coverage_note(5, 0.9)


def test_same_scenario_and_seed_give_the_same_intervals_on_any_executor():
    scenario = small("uncertainty.replicates=5")
    base = simulate(scenario).summary
    serial = compute_intervals(scenario, "<test>", base, LocalExecutor(1, progress=False))
    pooled = compute_intervals(scenario, "<test>", base, LocalExecutor(2, progress=False))
    assert serial == pooled
    assert serial["uncertainty"]["step_time_relative_error"] == ROOFLINE_RELATIVE_ERROR
    other_seed = dataclasses.replace(scenario, seed=1)
    assert plan_replicates(other_seed, "<test>", 0.1)[1].scenario.seed != plan_replicates(scenario, "<test>", 0.1)[1].scenario.seed


def test_every_interval_holds_the_replicates_median():
    scenario = small("uncertainty.replicates=7")
    replicates = plan_replicates(scenario, "<test>", ROOFLINE_RELATIVE_ERROR)
    assert replicates[0].scenario == scenario and replicates[0].step_time_factor == 1.0
    assert len({r.scenario.seed for r in replicates}) == 7 and len({r.step_time_factor for r in replicates}) == 7
    runs = [run_replicate(r) for r in replicates]
    base = simulate(scenario).summary
    assert runs[0] == pytest.approx(figures(base), rel=1e-12)  # replicate 0 is the plain run (iteration means summed online)
    result = compute_intervals(scenario, "<test>", base, LocalExecutor(1, progress=False))
    for name, (lo, hi) in result["intervals"].items():
        assert lo <= statistics.median(r[name] for r in runs) <= hi, name
    assert {"ttft_s.p50", "ttft_s.p90", "tpot_s.p50", "e2e_s.p50", "request_throughput_rps"} <= set(result["intervals"])
    assert "wall_time_s" not in result["intervals"] and "slo.ttft_s" not in result["intervals"]


def test_perturbed_cost_model_scales_every_step():
    class Flat:
        bundle = "somewhere"

        def step_time(self, batch):
            return 0.01

    wrapped = PerturbedCostModel(Flat(), 1.25)
    assert wrapped.step_time(None) == pytest.approx(0.0125) and wrapped.bundle == "somewhere"
    assert not hasattr(wrapped, "host_time")
    assert step_time_factor(0.0, 2.0) == 1.0
    # median |factor - 1| is about the stated error: exp(sigma * 0.6745) - 1 == e
    assert step_time_factor(0.1, 0.6744897501960817) == pytest.approx(1.1)
    assert log_sigma(0.1) > 0


def test_bootstrap_resamples_the_requests(tmp_path):
    scenario = small()
    boot = _bootstrapped(scenario, "<test>", 7, tmp_path)
    result = simulate(boot)
    original = simulate(scenario)
    assert result.summary["num_requests"] == 40
    assert set(result.requests["num_prompt_tokens"]) <= set(original.requests["num_prompt_tokens"])
    assert sorted(result.requests["num_prompt_tokens"]) != sorted(original.requests["num_prompt_tokens"])


def test_profile_error_comes_from_the_fit_report(tmp_path):
    report = {"operators": [{"median_ape_pct": 3.0, "num_shapes": 10}, {"median_ape_pct": 4.0, "num_shapes": 10}, {"median_ape_pct": None}]}
    (tmp_path / "fit_report.json").write_text(json.dumps(report))
    error, where = step_time_error(small(), {"run": {"cost_model": {"bundle": str(tmp_path)}}})
    assert error == pytest.approx(((0.03**2 + 0.04**2) / 2) ** 0.5) and "fit_report.json" in where
    assert step_time_error(small("uncertainty.step_time_relative_error=0.2"), {})[0] == 0.2


def test_one_replicate_is_a_plain_run(tmp_path):
    plain, one = tmp_path / "plain", tmp_path / "one"
    args = [a for o in SMALL for a in ("--set", o)]
    assert servesim("run", *args, "--out", str(plain), "-q", cwd=tmp_path).returncode == 0
    assert servesim("run", *args, "--replicates", "1", "--out", str(one), "-q", cwd=tmp_path).returncode == 0
    a, b = (json.loads((p / "summary.json").read_text()) for p in (plain, one))
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert a == b and "intervals" not in b


def test_run_with_replicates_writes_intervals(tmp_path):
    out = tmp_path / "out"
    args = [a for o in SMALL for a in ("--set", o)]
    proc = servesim("run", *args, "--replicates", "4", "--workers", "1", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    lo, hi = summary["intervals"]["ttft_s.p50"]
    assert lo <= hi and summary["uncertainty"]["replicates"] == 4
    assert "prediction intervals over 4 replicates" in proc.stdout and "warning" in proc.stderr


@pytest.mark.parametrize("setting, fragment", [
    ("uncertainty.replicates=0", "uncertainty.replicates"),
    ("uncertainty.level=1", "uncertainty.level"),
    ("uncertainty.workload=resample", "uncertainty.workload"),
    ("uncertainty.step_time_relative_error=-0.1", "uncertainty.step_time_relative_error"),
    ("uncertainty.seeds=3", "known fields here: replicates, level, workload, step_time_relative_error"),
])
def test_bad_uncertainty_values_are_one_line(tmp_path, setting, fragment):
    proc = servesim("run", "--set", setting, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode != 0
    one_line_error(proc.stderr, fragment)
