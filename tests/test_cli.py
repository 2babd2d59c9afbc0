"""The command line: a run writes its results; bad input gives one line and exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def servesim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_run_writes_results_folder(tmp_path):
    out = tmp_path / "out"
    proc = servesim("run", str(REPO / "scenarios" / "quickstart.yaml"), "--set", "workload.num_requests=200", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "TTFT" in proc.stdout and "goodput" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("num_requests", "num_completed", "duration_s", "request_throughput_rps", "output_throughput_tps",
                "total_throughput_tps", "ttft_s", "tpot_s", "e2e_s", "tbt_s", "slo_attainment", "goodput_rps",
                "num_preemptions", "wall_time_s"):
        assert key in summary
    assert summary["num_completed"] == 200
    for name in ("requests.parquet", "iterations.parquet", "report.html", "scenario.yaml"):
        assert (out / name).stat().st_size > 0


def bad_trace(tmp_path: Path, rows: str) -> str:
    return str(write(tmp_path / "trace.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows))


BAD_INPUTS = {
    "malformed yaml": (lambda d: [str(write(d / "s.yaml", "model: [llama\n"))], ["s.yaml", "malformed YAML"]),
    "unknown key": (lambda d: [str(write(d / "s.yaml", "cluster:\n  num_replica: 2\n"))], ["s.yaml", "cluster.num_replica", "unknown field"]),
    "wrong type": (lambda d: [str(write(d / "s.yaml", "scheduler:\n  max_num_seqs: many\n"))], ["s.yaml", "scheduler.max_num_seqs", "'many'"]),
    "missing scenario": (lambda d: [str(d / "nope.yaml")], ["nope.yaml", "not found"]),
    "missing trace": (lambda d: ["--set", f"workload.trace={d / 'none.csv'}"], ["workload.trace", "none.csv", "not found"]),
    "negative tokens": (lambda d: ["--set", "workload.trace=" + bad_trace(d, "0.0,10,5\n0.5,-3,5\n")], ["trace.csv", "row 2", "-3", "workload.on_invalid"]),
    "missing tokens": (lambda d: ["--set", "workload.trace=" + bad_trace(d, "0.0,10,5\n0.5,,5\n")], ["trace.csv", "row 2"]),
    "prompt too long": (lambda d: ["--set", "workload.trace=" + bad_trace(d, "0.0,9000,5\n")], ["trace.csv", "row 1", "9000", "max_model_len"]),
    "impossible tp": (lambda d: ["--set", "cluster.tensor_parallel_size=3"], ["cluster.tensor_parallel_size", "3", "attention heads"]),
    "model does not fit": (lambda d: ["--set", "model=llama-3-70b"], ["llama-3-70b", "GiB", "tensor_parallel_size"]),
    "zero kv blocks": (lambda d: ["--set", "scheduler.gpu_memory_utilization=0.22"], ["gpu_memory_utilization", "KV cache"]),
    "bad --set": (lambda d: ["--set", "cluster"], ["--set", "FIELD=VALUE"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_one_line_exit_2(tmp_path, case):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    if args[0] == "--set":
        args = ["--quiet", *args]
    proc = servesim("run", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in expected:
        assert fragment in lines[0], lines[0]


def test_skip_mode_counts_bad_rows(tmp_path):
    trace = bad_trace(tmp_path, "0.0,10,5\n0.5,-3,5\n1.0,20,4\n")
    out = tmp_path / "out"
    proc = servesim("run", "-q", "--set", f"workload.trace={trace}", "--set", "workload.on_invalid=skip", "--out", str(out), "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_completed"] == 2 and summary["num_skipped_requests"] == 1


def test_check_prints_memory_plan(tmp_path):
    proc = servesim("check", str(REPO / "scenarios" / "quickstart.yaml"), cwd=tmp_path)
    assert proc.returncode == 0 and "blocks" in proc.stdout


def test_fields_the_scheduler_ignores_are_warned_about(tmp_path):
    colocated = servesim("check", str(REPO / "scenarios" / "quickstart.yaml"), "--set", "cluster.prefill={num_replicas: 2}",
                         "--set", "cluster.kv_transfer.link=infiniband", cwd=tmp_path)
    assert colocated.returncode == 0, colocated.stderr
    warnings = colocated.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("servesim: warning: ") and "used by disaggregated schedulers" in w for w in warnings)
    assert "cluster.prefill is ignored with scheduler vllm" in warnings[0] and "cluster.kv_transfer" in warnings[1]
    disaggregated = servesim("check", str(REPO / "scenarios" / "quickstart.yaml"), "--set", "scheduler.name=distserve",
                             "--set", "cluster.num_replicas=3", cwd=tmp_path)
    assert disaggregated.returncode == 0, disaggregated.stderr
    assert "cluster.num_replicas is ignored with scheduler distserve" in disaggregated.stderr
    clean = servesim("check", str(REPO / "scenarios" / "quickstart.yaml"), cwd=tmp_path)
    assert clean.returncode == 0 and clean.stderr == ""
