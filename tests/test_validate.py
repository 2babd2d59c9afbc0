"""`servesim validate`: the measured-run format, the signed errors, the report, and bad run files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from simulator.errors import ScenarioError
from simulator.engine.simulation import simulate
from simulator.studies.validate import load_sets
from simulator.studies.validate.engine import _RunTask, compare_run, scenario_for, validate, verdict
from simulator.reports.validate_report import write_validation
from simulator.studies.validate.run_format import load_run
from tests.conftest import log_axes_without_tick_format, one_line_error

SET = {"model.name": "llama-3-8b", "scheduler.name": "vllm_v1", "workload.num_requests": 40, "workload.concurrency": 4,
       "workload.prompt_tokens": {"distribution": "fixed", "value": 256}, "workload.output_tokens": {"distribution": "fixed", "value": 32}}


def write_run(folder: Path, name: str = "toy", **fields) -> Path:
    run = {"name": name, "source": {"name": "a test", "licence": "CC0"}, "scenario": {"set": SET},
           "measured": {"ttft_s": {"mean": 0.05}, "tpot_s": {"mean": 0.01}}} | fields
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def test_signed_errors_are_predicted_over_measured_minus_one(tmp_path):
    run = load_run(write_run(tmp_path))
    predicted = _RunTask(scenario_for(run), str(run.path), None)()
    df = simulate(scenario_for(run)).requests
    mean_ttft, p90_tpot = float(df["ttft_s"].mean()), float(np.percentile(df["tpot_s"], 90))
    measured = {"ttft_s": {"mean": 2 * mean_ttft}, "tpot_s": {"p90": p90_tpot / 1.25}}
    attained = predicted["summary"]["slo_attainment"]
    run = dataclasses.replace(run, measured=dataclasses.replace(run.measured, **measured, slo_attainment=attained - 0.02))
    rows = {(r["metric"], r["stat"]): r for r in compare_run(run, predicted)}
    assert rows["ttft_s", "mean"]["error"] == pytest.approx(-50.0)
    assert rows["tpot_s", "p90"]["error"] == pytest.approx(25.0)
    assert rows["slo_attainment", "value"]["error"] == pytest.approx(2.0) and rows["slo_attainment", "value"]["within"]
    state, worst = verdict(list(rows.values()))
    assert state == "off" and worst.startswith("ttft_s mean -50.0")


def test_tpot_including_the_first_token_is_compared_with_normalized_e2e(tmp_path):
    run = load_run(write_run(tmp_path, metrics={"tpot": "including_first_token"}))
    predicted = _RunTask(scenario_for(run), str(run.path), None)()
    df = simulate(scenario_for(run)).requests
    row = next(r for r in compare_run(run, predicted) if r["metric"] == "tpot_s")
    assert row["predicted"] == pytest.approx(float((df["e2e_s"] / df["num_output_tokens"]).mean()))


def test_a_folder_of_runs_validates_into_a_report_with_the_measured_distribution(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    pd.DataFrame({"ttft_s": np.linspace(0.02, 0.2, 50), "tpot_s": np.linspace(0.008, 0.012, 50)}).to_csv(runs_dir / "per_request.csv", index=False)
    write_run(runs_dir, "a", requests="per_request.csv")
    write_run(runs_dir, "b", measured={"ttft_s": {"p50": 0.04, "p90": 0.08}})
    result = validate(load_sets([str(runs_dir)]), tmp_path / "cache", workers=1, progress=False)
    assert list(result.verdicts["run"]) == ["a", "b"] and set(result.errors["metric"]) == {"ttft_s", "tpot_s"}
    page = write_validation(result, tmp_path / "out")
    text = page.read_text()
    assert "Distributions: a" in text and "measured percentiles" in text and (tmp_path / "out" / "errors.csv").is_file()
    log_axes, bare = log_axes_without_tick_format(text)
    assert log_axes > 0 and not bare, bare
    again = validate(load_sets([str(runs_dir)]), tmp_path / "cache", workers=1, progress=False)
    assert again.verdicts["cached"].all() and again.errors.equals(result.errors)  # cached, identical



def test_validate_prints_its_tables_as_json_or_csv_for_a_pipe(tmp_path):
    path = write_run(tmp_path, "toy", measured={"ttft_s": {"p50": 0.04, "p90": 0.08}, "tpot_s": {"mean": 0.01}})
    base = [sys.executable, "-m", "simulator.cli", "validate", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]
    as_json = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, timeout=300)
    assert as_json.returncode == 0, as_json.stderr
    tables = json.loads(as_json.stdout)  # stdout holds the JSON document alone
    assert [v["run"] for v in tables["verdicts"]] == ["toy"] and tables["verdicts"][0]["verdict"] in ("ok", "off")
    assert {(e["metric"], e["stat"]) for e in tables["errors"]} == {("ttft_s", "p50"), ("ttft_s", "p90"), ("tpot_s", "mean")}
    assert all(isinstance(e["error"], float) for e in tables["errors"])
    as_csv = subprocess.run([*base, "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert as_csv.returncode == 0, as_csv.stderr
    frame = pd.read_csv(io.StringIO(as_csv.stdout))
    written = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert list(frame["metric"]) == list(written["metric"]) and np.allclose(frame["error"], written["error"])

BAD = {
    "missing measured": ({"measured": None}, ["measured", "missing field"]),
    "unknown field": ({"colour": "red"}, ["colour", "unknown field"]),
    "negative time": ({"measured": {"ttft_s": {"mean": -0.1}}}, ["measured", "positive number of seconds"]),
    "unknown statistic": ({"measured": {"ttft_s": {"p42": 0.1}}}, ["measured.ttft_s", "p42"]),
    "unknown metric definition": ({"metrics": {"tpot": "per_chunk"}}, ["metrics.tpot", "per_chunk"]),
    "missing per-request table": ({"requests": "nowhere.csv"}, ["requests", "nowhere.csv", "not found"]),
    "bad scenario field": ({"scenario": {"set": {"scheduler.sheduler": "vllm"}}}, ["scenario.set.scheduler.sheduler", "unknown field"]),
    "unknown scheduler": ({"scenario": {"set": {"scheduler.name": "fifo"}}}, ["toy.yaml", "scheduler.name", "fifo", "vllm_v1"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_run_files_are_one_line_and_exit_code_2(tmp_path, case):
    fields, words = BAD[case]
    path = write_run(tmp_path, **{k: v for k, v in fields.items() if v is not None})
    if fields.get("measured", 0) is None:
        data = yaml.safe_load(path.read_text())
        del data["measured"]
        path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", str(path), "--out", str(tmp_path / "out"), "--workers", "1"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, *words)


def test_two_runs_of_one_name_and_an_empty_folder_are_errors(tmp_path):
    write_run(tmp_path, "x")
    (tmp_path / "y.yaml").write_text((tmp_path / "x.yaml").read_text())
    with pytest.raises(ScenarioError, match="is also the name of"):
        load_sets([str(tmp_path)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError, match="holds no measured-run"):
        load_sets([str(tmp_path / "empty")])


def test_the_silicon_sample_becomes_runs_of_the_dense_llamas():
    pytest.importorskip("aiconfigurator_core")
    from simulator.studies.validate.silicon import silicon_runs

    runs = silicon_runs(waves=2)
    assert len(runs) >= 100 and {r.scenario.set["model.name"] for r in runs} == {"llama-3.1-8b", "llama-3.1-70b"}
    run = runs[0]
    assert run.scenario.set["workload.concurrency"] * 2 == run.scenario.set["workload.num_requests"]
    assert run.measured.ttft_s["mean"] > 0 and run.source.licence == "Apache-2.0"
    scenario = scenario_for(run)  # a valid scenario (not simulated here: the import and fit take seconds)
    assert scenario.hardware.profile.startswith("aiconfigurator:") and scenario.workload.concurrency == run.scenario.set["workload.concurrency"]
