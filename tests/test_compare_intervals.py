"""servesim compare with prediction intervals: replicates per point, interval columns, separation."""

from __future__ import annotations

import pandas as pd
import pytest

import simulator.studies.compare_intervals

from simulator.studies.compare import run_compare
from simulator.studies.compare_intervals import intervals_separate, separation_table

SWEEP = """
name: tiny-intervals
base_overrides:
  workload.num_requests: 30
  workload.prompt_tokens: {{distribution: uniform, min: 100, max: 800}}
  workload.output_tokens: {{distribution: uniform, min: 5, max: 60}}
  uncertainty.replicates: {replicates}
axes:
  scheduler.name: [vllm, sarathi]
  rate: [2, 20]
capacity:
  enabled: false
"""


def _run(tmp_path, replicates, name="out", workers=1):
    sweep = tmp_path / f"s{replicates}.yaml"
    sweep.write_text(SWEEP.format(replicates=replicates))
    return run_compare(sweep, workers=workers, out=tmp_path / name, progress=False, report=True)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("ci"), 5)


def test_intervals_columns_bracket_the_run(five):
    table = pd.read_csv(five.out / "results.csv")
    for column in ("ttft_p90_s", "tpot_p50_s", "goodput_rps", "ttft_p99_s"):
        lo, hi = table[f"{column}_lo"], table[f"{column}_hi"]
        assert (lo <= table[column] + 1e-12).all() and (table[column] <= hi + 1e-12).all()
        assert (hi >= lo).all()
    assert (table["ttft_p90_s_hi"] > table["ttft_p90_s_lo"]).any()  # the replicates do differ
    sep = pd.read_csv(five.out / "separation.csv")
    assert len(sep) == 2 * 3  # two loads, one pair, three headline figures
    assert set(sep["figure"]) == {"ttft_p90_s", "tpot_p50_s", "goodput_rps"}
    assert "Which differences the intervals separate" in (five.out / "compare.html").read_text()


def test_intervals_are_deterministic_and_cached(five, tmp_path, monkeypatch):
    again = _run(tmp_path, 5, workers=2)
    cols = [c for c in five.results.columns if c.endswith(("_lo", "_hi"))]
    pd.testing.assert_frame_equal(five.results[cols], again.results[cols])
    # A second run in the same folder reads every run and replicate from the cache.
    def no_run(replicate):
        raise AssertionError("a replicate ran again instead of coming from the cache")

    # With one worker the tasks run in this process, so the patch applies to them.
    monkeypatch.setattr(simulator.studies.compare_intervals, "run_replicate", no_run)
    resumed = run_compare(five.sweep.source, workers=1, out=five.out, progress=False, report=False)
    assert resumed.results["cached"].all()
    pd.testing.assert_frame_equal(five.results[cols], resumed.results[cols])


def test_one_replicate_adds_nothing(tmp_path):
    result = _run(tmp_path, 1)
    assert not any(c.endswith(("_lo", "_hi")) for c in result.results.columns)
    assert not (result.out / "separation.csv").exists()


def test_separation_on_hand_made_intervals():
    assert intervals_separate((1.0, 2.0), (2.5, 3.0)) and intervals_separate((2.5, 3.0), (1.0, 2.0))
    assert not intervals_separate((1.0, 2.0), (2.0, 3.0))  # touching ends overlap
    assert not intervals_separate((1.0, 4.0), (2.0, 3.0))
    results = pd.DataFrame({"series": ["a", "b", "a", "b"], "rate_rps": [1.0, 1.0, 2.0, 2.0],
                            "goodput_rps_lo": [0.9, 0.5, 1.0, 1.1], "goodput_rps_hi": [1.0, 0.8, 1.5, 1.6]})
    table = separation_table(results, ("goodput_rps", "ttft_p90_s"))
    assert table["separated"].tolist() == [True, False]
    assert table["lower"].tolist() == ["b", ""]


def test_cli_compare_lists_separation(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import main

    sweep = tmp_path / "cli.yaml"
    sweep.write_text(SWEEP.format(replicates=3))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compare", str(sweep), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "pairwise differences" in result.output and (out / "separation.csv").is_file()
