"""Stories of what a run says about itself and what it leaves in its results folder.

The ``run`` section of summary.json carries the resolved deployment (checked against published
figures and hand-computed rates, not against the code's own output), the console and the report
show it, a results folder is never silently mixed or overwritten, and tables never cut names.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from simulator.cli import main
from simulator.studies.compare import flatten_summary
from simulator.errors import ScenarioError
from simulator.run_outputs import MANIFEST, claim
from simulator.scenario import ClusterConfig, SchedulerConfig, load_scenario
from simulator.engine.simulation import simulate
from simulator.reports.tables import NO_WRAP_WIDTH, console, print_table

TINY = ["workload.num_requests=6", "workload.prompt_tokens={distribution: fixed, value: 32}", "workload.output_tokens={distribution: fixed, value: 4}"]
# Vidur CSV: arrivals at 0, 1, 2 and 4 s: three gaps over 4 s, 0.75 req/s offered.
VIDUR_TRACE = "arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,3\n1,12,3\n2,14,3\n4,16,3\n"


def run_section(*overrides: str) -> dict:
    return simulate(load_scenario(None, [*TINY, *overrides])).summary["run"]


def test_the_run_section_names_the_model_and_its_published_size():
    run = run_section()
    # Meta-Llama-3-8B: 8,030,261,248 parameters (the safetensors total on its model card); dense, so all active.
    assert run["model"]["name"] == "llama-3-8b"
    assert run["model"]["num_params"] == 8_030_261_248 == run["model"]["num_active_params"]
    assert run["gpu"] == "h100-sxm" and run["seed"] == 0
    assert run["servesim_version"] == importlib.metadata.version("servesim")


def test_every_cluster_and_scheduler_field_is_there_without_listing_them():
    run = run_section("cluster.num_replicas=2", "cluster.tensor_parallel_size=2")
    assert set(run["cluster"]) == {f.name for f in dataclasses.fields(ClusterConfig)}
    assert set(run["scheduler"]) == {f.name for f in dataclasses.fields(SchedulerConfig)}
    assert run["pools"] == {"colocated": run["pools"]["colocated"]} and run["pools"]["colocated"]["num_gpus"] == 4  # 2 replicas x TP2
    assert run["num_gpus"] == 4


def test_data_and_expert_parallelism_appear_with_their_gpus():
    # Mixtral-8x7B on TP2 x DP2 with experts spread: 2 x 2 = 4 GPUs per replica, 2 replicas = 8.
    run = run_section("model.name=mixtral-8x7b", "cluster.num_replicas=2", "cluster.tensor_parallel_size=2",
                      "cluster.data_parallel_size=2", "cluster.enable_expert_parallel=true")
    pool = run["pools"]["colocated"]
    assert pool["data_parallel_size"] == 2 and pool["expert_parallel"] is True and pool["num_gpus"] == 8 == run["num_gpus"]
    assert run["cluster"]["data_parallel_size"] == 2 and run["cluster"]["enable_expert_parallel"] is True
    from simulator.reports.run_header import header_rows

    assert ("parallelism", "2 replica(s) x TP2 PP1 DP2 EP = 8 GPU(s), router round_robin") in header_rows(run)


def test_unset_scheduler_knobs_show_the_values_that_ran():
    # vllm_v1 unset: vLLM 0.19 (the default release), async scheduling on (default from 0.14),
    # full-sequence admission on (0.19), prefix caching on, 8192 batched tokens on an H100.
    sched = run_section("scheduler.name=vllm_v1")["scheduler"]
    assert sched["engine_version"] == "0.19" and sched["async_scheduling"] is True and sched["scheduler_reserve_full_isl"] is True
    assert sched["enable_prefix_caching"] is True and sched["max_num_batched_tokens"] == 8192
    v0 = run_section()["scheduler"]
    assert v0["enable_prefix_caching"] is False and v0["engine_version"] is None  # no engine release for vLLM v0


def test_the_roofline_says_where_each_efficiency_came_from():
    cost = run_section("hardware.roofline.gemm_flops_efficiency=0.5")["cost_model"]
    assert cost["kind"] == "roofline" and "h100-sxm" in cost["calibration"]
    assert cost["efficiencies"]["gemm_flops_efficiency"] == 0.5 and cost["sources"]["gemm_flops_efficiency"] == "scenario"
    assert cost["sources"]["gemm_bandwidth_efficiency"] != "scenario"


def test_offered_rate_of_a_trace_is_hand_computed(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(VIDUR_TRACE)
    result = simulate(load_scenario(None, [f"workload.trace={trace}"]))
    run = result.summary["run"]
    assert run["offered_rate_rps"] == pytest.approx(0.75)
    assert run["offered_rate_from"] == "trace timestamps" and run["configured_rate_rps"] is None
    assert run["workload"]["kind"] == "trace" and run["workload"]["trace"] == str(trace)
    assert run["achieved_throughput_rps"] == result.summary["request_throughput_rps"]


def test_a_synthetic_workload_shows_its_configured_rate_and_a_closed_loop_says_so():
    run = run_section("workload.arrival.rate=3")
    assert run["configured_rate_rps"] == 3 and run["offered_rate_from"] == "arrival process"
    assert run_section("workload.arrival.rate=3", "workload.time_scale=2")["configured_rate_rps"] == 6  # arrivals twice as fast
    closed = run_section("workload.concurrency=2")
    assert closed["offered_rate_from"].startswith("closed loop") and closed["configured_rate_rps"] is None
    assert closed["workload"]["concurrency"] == 2


def test_same_seed_same_run_section_and_sweeps_leave_it_out():
    assert run_section() == run_section()
    assert flatten_summary({"run": {"model": {"name": "x"}}, "num_requests": 3}) == {"num_requests": 3}


def test_console_and_report_show_what_ran(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(VIDUR_TRACE)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--set", f"workload.trace={trace}", "--set", "cluster.num_replicas=2", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("model" in line and "llama-3-8b" in line and "8.03B params" in line for line in lines)
    assert any("parallelism" in line and "2 replica(s) x TP1 PP1 = 2 GPU(s)" in line for line in lines)
    assert any("offered vs achieved" in line and "0.75 req/s" in line for line in lines)
    assert any(line.strip().startswith("workload") and str(trace) in line for line in lines)  # the whole path, never cut
    page = (out / "report.html").read_text()
    assert "<title>quickstart: llama-3-8b on h100-sxm (2x TP1 PP1), vllm</title>" in page
    assert "What ran" in page and "0.75 req/s" in page
    assert json.loads((out / "summary.json").read_text())["run"]["cluster"]["num_replicas"] == 2


def test_a_second_run_is_refused_and_overwrite_leaves_nothing_stale(tmp_path):
    out = tmp_path / "out"
    args = ["run", "-q", *(x for o in TINY for x in ("--set", o)), "--out", str(out)]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    (out / "notes.txt").write_text("mine")
    (out / "cache").mkdir()
    (out / "cache" / "k.json").write_text("{}")
    first = (out / "summary.json").read_text()
    refused = CliRunner().invoke(main, args, catch_exceptions=False)
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr and str(out) in refused.stderr
    assert (out / "summary.json").read_text() == first  # untouched
    again = CliRunner().invoke(main, [*args, "--overwrite", "--no-report"], catch_exceptions=False)
    assert again.exit_code == 0, again.stderr
    assert not (out / "report.html").exists()  # the earlier run's report is gone
    assert (out / "notes.txt").read_text() == "mine" and (out / "cache" / "k.json").exists()  # not servesim's results: kept
    assert json.loads((out / MANIFEST).read_text())["files"] == ["scenario.yaml", "summary.json", "requests.parquet", "iterations.parquet"]


def test_a_study_resumes_and_another_is_refused(tmp_path):
    out = tmp_path / "out"
    folder = claim(out, "compare", "compare a (/a.yaml)", overwrite=False)
    out.mkdir()
    for name in ("results.csv", "capacity.csv", "compare.html"):
        (out / name).write_text("x")
    folder.finish(["results.csv", "capacity.csv", "compare.html"])
    again = claim(out, "compare", "compare a (/a.yaml)", overwrite=False)  # the same study: resumes
    with pytest.raises(ScenarioError, match=r"already holds the results of compare a \(/a.yaml\)"):
        claim(out, "compare", "compare b (/b.yaml)", overwrite=False)
    with pytest.raises(ScenarioError, match="another run"):
        claim(out, "run", "quickstart", overwrite=False)
    assert again.finish(["results.csv", "compare.html"]) == ["capacity.csv"]  # capacity turned off: the old table goes
    assert {p.name for p in out.iterdir()} == {"compare.html", MANIFEST, "results.csv"}
    other = claim(out, "compare", "compare b (/b.yaml)", overwrite=True)
    assert other.finish(["results.csv"]) == ["compare.html"]


def test_compare_refuses_another_sweep_and_resumes_its_own(tmp_path):
    def sweep(name: str) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nbase_overrides: {{workload.num_requests: 8}}\naxes: {{rate: [2]}}\ncapacity: {{enabled: false}}\n")
        return str(path)

    out = str(tmp_path / "out")
    first = CliRunner().invoke(main, ["compare", "-q", sweep("a"), "--out", out, "--workers", "1"], catch_exceptions=False)
    assert first.exit_code == 0, first.stderr
    resumed = CliRunner().invoke(main, ["compare", sweep("a"), "--out", out, "--workers", "1"], catch_exceptions=False)
    assert resumed.exit_code == 0 and "1 runs (1 from the cache)" in resumed.stdout
    other = CliRunner().invoke(main, ["compare", "-q", sweep("b"), "--out", out, "--workers", "1"], catch_exceptions=False)
    assert other.exit_code == 2 and "--overwrite" in other.stderr
    replaced = CliRunner().invoke(main, ["compare", "-q", sweep("b"), "--out", out, "--workers", "1", "--overwrite"], catch_exceptions=False)
    assert replaced.exit_code == 0 and json.loads((Path(out) / MANIFEST).read_text())["study"].startswith("compare b ")


def test_tables_fold_long_names_instead_of_cutting_them():
    name = "a-model-name-much-longer-than-the-terminal-is-wide"
    table = Table(title="t")
    table.add_column("name")
    table.add_column("value")
    table.add_row(name, "1")
    buffer = io.StringIO()
    print_table(table, Console(file=buffer, width=24, force_terminal=False))
    text = buffer.getvalue()
    assert "…" not in text
    cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") >= 3)
    assert name in cells  # every character, folded over several lines
    assert console(file=io.StringIO()).width == NO_WRAP_WIDTH  # not a terminal: rows are never wrapped


def test_on_an_80_column_terminal_names_stay_whole_and_numbers_wrap():
    from simulator.listing import list_tables
    from simulator.specs.gpu import GPUS

    buffer = io.StringIO()
    print_table(list_tables("gpus")[0][0].rich(), Console(file=buffer, width=80, force_terminal=False))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    first_cells = {line.split("│")[1].strip() for line in lines if line.count("│") > 2}
    assert set(GPUS) <= first_cells  # every GPU name whole on one line


def test_list_prints_every_name_in_full_and_as_json_or_csv():
    from simulator.specs.gpu import GPUS
    from simulator.specs.model import bundled_model_names

    plain = CliRunner().invoke(main, ["list", "models"], catch_exceptions=False).stdout
    for name in bundled_model_names():
        assert any(line.split("│")[1].strip() == name for line in plain.splitlines() if line.count("│") > 2), name
    listed = json.loads(CliRunner().invoke(main, ["list", "--format", "json"], catch_exceptions=False).stdout)
    assert [m["name"] for m in listed["models"]] == bundled_model_names()
    h100 = next(g for g in listed["gpus"] if g["name"] == "h100-sxm")
    assert h100["bf16_tflops"] == pytest.approx(989.4, rel=1e-3) and h100["memory_gb"] == 80  # NVIDIA H100 SXM datasheet: 989 TFLOPS dense BF16, 80 GB
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, ["list", "gpus", "--format", "csv"], catch_exceptions=False).stdout)))
    assert [r["name"] for r in rows] == list(GPUS)


def test_check_reads_the_trace_and_prints_the_offered_rate(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(VIDUR_TRACE + "5,x,3\n6,20000,3\n")  # a non-integer prompt, and one longer than llama-3-8b's 8,192 tokens
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"workload: {{trace: {trace}, on_invalid: skip}}\n")
    result = CliRunner().invoke(main, ["check", str(scenario)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "GiB KV cache" in out  # the memory plan
    assert "6 rows, 2 bad rows skipped (on_invalid: skip), 4 requests kept" in out
    assert "prompt tokens 10..16" in out and "of max_model_len 8,192" in out
    assert "offered rate: 0.75 req/s over 4.0 s (trace timestamps)" in out
    scenario.write_text(f"workload: {{trace: {trace}}}\n")
    strict = CliRunner().invoke(main, ["check", str(scenario)], catch_exceptions=False)
    assert strict.exit_code == 2 and str(trace) in strict.stderr and len(strict.stderr.strip().splitlines()) == 1


def test_a_profiled_run_names_its_bundle_and_provenance(tmp_path):
    from profiler import TINY_MODEL_CONFIG
    from profiler.fit import fit_bundle
    from simulator.reports.run_header import header_rows
    from tests.test_profiler_fit import synthetic_bundle

    bundle = synthetic_bundle(tmp_path / "bundle")
    (bundle / "provenance.json").write_text(json.dumps({"source": "llmservingsim:somewhere", "device_name": "RTX 4090"}))
    fit_bundle(bundle, html=False)
    scenario = load_scenario(None, [f"model.config={TINY_MODEL_CONFIG}", f"hardware.profile={bundle}", *TINY])
    cost = simulate(scenario).summary["run"]["cost_model"]
    assert cost["kind"] == "profiled" and cost["profile"] == cost["bundle"] == str(bundle)
    assert cost["provenance"] == {"source": "llmservingsim:somewhere", "device_name": "RTX 4090"}
    assert ("cost model", f"profile {bundle} (llmservingsim:somewhere, RTX 4090)") in header_rows({"cost_model": cost})


def test_run_and_profile_compare_print_json_and_csv(tmp_path):
    from tests.test_profiler_fit import synthetic_bundle

    args = ["run", *(x for o in TINY for x in ("--set", o)), "--out", str(tmp_path / "out"), "--no-report"]
    printed = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert printed.exit_code == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads((tmp_path / "out" / "summary.json").read_text())
    row = next(csv.DictReader(io.StringIO(CliRunner().invoke(main, [*args, "--overwrite", "--format", "csv"], catch_exceptions=False).stdout)))
    assert row["run_model"] == "llama-3-8b" and row["run_gpu"] == "h100-sxm" and row["num_requests"] == "6"
    bundle = str(synthetic_bundle(tmp_path / "bundle"))
    ratios = json.loads(CliRunner().invoke(main, ["profile", "compare", bundle, bundle, "--format", "json"], catch_exceptions=False).stdout)
    assert ratios["operators"] and all(r["median"] == pytest.approx(1.0) for r in ratios["operators"])  # a bundle against itself


def test_a_moe_profile_says_which_parts_it_measured():
    from simulator.reports.run_header import header_rows

    prov = {"source": "aiconfigurator:h100_sxm/vllm/0.24.0", "priced": {"measured": ["routed experts + moe_sum (moe.csv)"], "roofline": ["all-reduce"]}}
    run = {"cost_model": {"kind": "profiled", "profile": "p", "bundle": "p", "provenance": prov}}
    rows = dict(header_rows(run))
    assert rows["cost model"] == "profile p (aiconfigurator:h100_sxm/vllm/0.24.0)"
    assert rows["priced"] == "measured: routed experts + moe_sum (moe.csv); roofline: all-reduce"
    assert "priced" not in dict(header_rows({"cost_model": {"kind": "profiled", "profile": "p", "bundle": "p", "provenance": {"source": "s"}}}))
