"""A CPU profile of the tiny model, end to end: stop on budget, get killed, resume, fit, simulate.

This is the CI run of the whole measuring path (no GPU): `servesim profile --device cpu` on a
small sweep, twice interrupted, then completed (each profile a process of its own), then
`servesim fit` and a scenario priced by the bundle (in this process).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from profiler import TINY_MODEL_CONFIG
from profiler.catalogue import KINDS, SHAPE_COLUMNS, plan, row_key
from profiler.sweeps import SweepConfig
from simulator.cli import main
from simulator.specs.model import model_spec_from_hf_config
from tests.conftest import REPO

# Measuring runs torch (the `profile` extra); without it the whole path is skipped.
pytest.importorskip("torch", reason="profiling needs torch (pip install -e '.[profile]')")

SMALL = ["--max-tokens", "32", "--points-per-octave", "1", "--max-num-seqs", "8", "--max-context", "64", "--min-time-ms", "5"]


def profile_args(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "simulator.cli", "profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cpu", "--out", str(out), "-q", *SMALL, *extra]


def rows_by_key(out: Path) -> list[tuple[str, ...]]:
    keys = []
    for kind in KINDS:
        path = out / f"{kind}.csv"
        if path.is_file():
            with open(path, newline="") as f:
                keys += [row_key(kind, row) for row in csv.DictReader(f)]
    return keys


def planned() -> int:
    spec = model_spec_from_hf_config(TINY_MODEL_CONFIG)
    sweep = SweepConfig.for_device("cpu").replace(max_tokens=32, points_per_octave=1, max_num_seqs=8, max_context=64)
    return len(plan(spec, [1], sweep, "float32", {}))


@pytest.mark.slow
def test_cpu_profile_stops_on_budget_survives_a_kill_resumes_and_fits(tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    total = planned()

    # 1. A budget of 2 s stops the run cleanly before the end.
    first = subprocess.run(profile_args(out, "--budget-minutes", "0.033"), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "(budget)" in first.stdout
    after_budget = rows_by_key(out)
    assert 0 < len(after_budget) < total

    # 2. Killed mid-run (and a torn half row, as a kill during a write leaves).
    proc = subprocess.Popen(profile_args(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while len(rows_by_key(out)) < len(after_budget) + 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    after_kill = rows_by_key(out)
    assert len(after_kill) > len(after_budget)
    with open(out / "elementwise.csv", "a") as f:
        f.write("rotary,torch,float32,1,3")

    # 3. Resume: finishes, skips what is there, duplicates nothing.
    third = subprocess.run(profile_args(out), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "(done)" in third.stdout and "servesim fit" in third.stdout
    keys = rows_by_key(out)
    assert len(keys) == len(set(keys)) == total
    assert set(after_kill) <= set(keys)
    for kind in KINDS:
        if kind == "all_reduce":
            assert not (out / "all_reduce.csv").exists()  # TP 1 only: no all-reduce
            continue
        text = (out / f"{kind}.csv").read_text()
        header = text.splitlines()[0].split(",")
        assert header[:4] == ["operator", "implementation", "dtype", "tp"]
        assert set(SHAPE_COLUMNS[kind]) | {"median_s", "p20_s", "p80_s", "min_s", "mean_s", "num_samples", "flops", "nbytes"} <= set(header)
    device = json.loads((out / "device.json").read_text())
    for key in ("name", "num_compute_units", "torch", "triton", "python", "hostname", "cpu_model", "date", "start", "end"):
        assert key in device, key
    assert [r["stopped"] for r in device["runs"]][0] == "budget" and device["runs"][-1]["stopped"] == "done"
    assert device["runs"][-1]["num_done_before"] == len(after_kill)
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):  # glibc: thresholds fixed
        assert device["runs"][-1]["host_allocator"] == {"glibc_mallopt": {"mmap_max": 0, "trim_threshold_bytes": 1 << 30}}
    assert set(device["runs"][-1]["seconds_by_kind"]) <= set(KINDS)

    # 4. Fit: the report names every operator with its held-out error.
    # Fit and run in this process: only the profile itself must be a process of its own (to be killed).
    monkeypatch.chdir(tmp_path)
    fit = CliRunner().invoke(main, ["fit", str(out)], catch_exceptions=False)
    assert fit.exit_code == 0, fit.stderr
    assert "qkv_proj" in fit.stdout and "median %" in fit.stdout
    report = json.loads((out / "fit_report.json").read_text())
    assert report["target"] == "median_s" and report["summary"]["pooled_median_ape_pct"] is not None
    assert {e["operator"] for e in report["operators"]} >= {"qkv_proj", "attention_decode", "attention_prefill", "cpu_overhead"}
    for e in report["operators"]:
        assert e["median_ape_pct"] is not None and e["p95_ape_pct"] >= e["median_ape_pct"] >= 0
    assert (out / "fit_report.html").stat().st_size > 100_000 and (out / "runtime_model.npz").is_file()

    # 5. A scenario priced by the bundle (relative path, beside the YAML file).
    scenario = {
        "model": {"config": str(TINY_MODEL_CONFIG)}, "hardware": {"gpu": "h100-sxm", "profile": "bundle"},
        "workload": {"num_requests": 40, "arrival": {"rate": 50.0}, "prompt_tokens": {"distribution": "uniform", "max": 300},
                     "output_tokens": {"distribution": "uniform", "max": 20}},
        "output": {"report": False},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    run = CliRunner().invoke(main, ["run", "s.yaml", "--out", "results", "-q"], catch_exceptions=False)
    assert run.exit_code == 0, run.stderr
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["num_completed"] == 40


@pytest.mark.slow
def test_all_reduce_is_measured_over_spawned_ranks():
    # gloo on the CPU exercises the path NCCL takes on a multi-GPU machine.
    code = textwrap.dedent("""
        from profiler.collectives import measure_all_reduce
        timings = measure_all_reduce(2, [(1, 256), (64, 256)], "float32", "gloo")
        assert len(timings) == 2 and all(t.median_s > 0 and t.num_samples == 25 for t in timings), timings
        print("ok", [t.timer for t in timings])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "gloo_perf_counter" in proc.stdout


@pytest.mark.slow
def test_triton_measurements_launch_the_kernels_with_their_documented_layouts():
    pytest.importorskip("triton", reason="the Triton kernels need triton (pip install -e '.[profile]'; Linux only)")
    # The Triton interpreter runs the project's kernels on the CPU: every adapter's arguments
    # must pass the launchers' checks and produce outputs of the right shape.
    code = textwrap.dedent("""
        import os
        os.environ["TRITON_INTERPRET"] = "1"
        import torch
        from profiler import TINY_MODEL_CONFIG, triton_ops
        from profiler.catalogue import Measurement
        from profiler.ops import Builder
        from simulator.specs.model import model_spec_from_hf_config
        model = model_spec_from_hf_config(TINY_MODEL_CONFIG)
        builder = Builder(torch.device("cpu"), model)
        cases = [
            (Measurement("gemm", "qkv_proj", "triton", "float32", 1, (5, 512, 256), 0, 0), (5, 512)),
            (Measurement("gemm", "down_proj", "triton", "w8a8", 1, (3, 256, 768), 0, 0), (3, 256)),
            (Measurement("gemm", "o_proj", "triton", "w4a16", 1, (2, 256, 256), 0, 0), (2, 256)),
            (Measurement("attention_decode", "attention_decode", "triton", "float32", 1, (3, 40, 4, 2, 64, 16), 0, 0), (3, 4, 64)),
            (Measurement("attention_prefill", "attention_prefill", "triton", "float32", 1, (2, 5, 20, 4, 2, 64, 16), 0, 0), (10, 4, 64)),
        ]
        for m, shape in cases:
            out = triton_ops.build(builder, m, "float32")()
            assert tuple(out.shape) == shape, (m.operator, m.dtype, tuple(out.shape))
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok" in proc.stdout


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_cuda_profile_measures_torch_and_triton_and_fits(tmp_path):
    out = tmp_path / "gpu"
    args = [sys.executable, "-m", "simulator.cli", "profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cuda", "--out", str(out), "-q",
            "--operators", "qkv_proj,attention_decode,attention_prefill,sampling,cpu_overhead", "--quantization", "w8a8",
            "--max-tokens", "256", "--points-per-octave", "2", "--max-num-seqs", "16", "--max-context", "512"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(out / "gemm.csv", newline="") as f:
        gemm = list(csv.DictReader(f))
    assert {(r["implementation"], r["dtype"]) for r in gemm} >= {("torch", "bfloat16"), ("triton", "bfloat16"), ("triton", "w8a8")}
    assert {r["timer"] for r in gemm} <= {"cuda_do_bench", "cuda_graph"}
    device = json.loads((out / "device.json").read_text())
    assert device["num_compute_units"] > 1 and device["cuda"]
    fit = subprocess.run([sys.executable, "-m", "simulator.cli", "fit", str(out), "-q"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    meta = json.loads((out / "runtime_model.json").read_text())
    assert set(meta["tables"]["qkv_proj|bfloat16|tp1"]["implementations"]) == {"torch", "triton"}


def test_cpu_attention_copies_read_disjoint_blocks_scattered_over_one_pool():
    import torch

    from profiler.catalogue import ATTENTION_DECODE, Measurement
    from profiler.ops import Builder

    model = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")
    m = next(x for x in plan(model, [1], SweepConfig.for_device("cpu"), "float32", {}, ())
             if x.kind == ATTENTION_DECODE and x.shape_dict["num_seqs"] == 4 and x.shape_dict["context_tokens"] == 64)
    assert isinstance(m, Measurement)
    builder = Builder(torch.device("cpu"), model, cold_bytes=1 << 20)
    pools, tables = set(), []
    real = builder._paged_cache

    def spy(*args, **kwargs):
        k, v, t = real(*args, **kwargs)
        pools.add((k.data_ptr(), v.data_ptr(), k.shape[0]))
        tables.append(t)
        return k, v, t

    builder._paged_cache = spy
    fn = builder.build(m, "float32")
    fn()
    copies = len(tables)
    assert copies > 1 and len(pools) == 1  # one pool for every copy
    (_, _, num_blocks), = pools
    used = torch.cat([t.flatten() for t in tables]).tolist()
    assert num_blocks == copies * 4 * 4 == len(used) == len(set(used))  # 4 requests x 4 blocks each, disjoint
    assert used != sorted(used)  # scattered, not handed out in order


def test_layer_stack_runs_real_steps_and_times_them_by_the_catalogue_names():
    import torch

    from profiler.catalogue import OPERATORS
    from profiler.model import Entry, LayerStack

    model = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")
    stack = LayerStack(model, max_tokens_per_request=256, max_requests=8, device=torch.device("cpu"), dtype=torch.float32)
    # Requests hold disjoint blocks, scattered over the pool.
    assert sorted(stack.block_order) == list(range(len(stack.block_order))) and stack.block_order != sorted(stack.block_order)
    entries = [Entry(0, 40, True), Entry(64, 32, False), Entry(99, 1, True), Entry(150, 1, True)]
    times: dict[str, float] = {}
    sampled = stack.step(entries, times)
    assert len(sampled) == 3 and all(0 <= t < model.vocab_size for t in sampled)  # the chunk in the middle of its prompt does not sample
    expected = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "add_rmsnorm", "rotary", "kv_cache_write", "silu_mul",
                "attention_prefill", "attention_decode", "embedding", "rmsnorm", "lm_head", "sampling", "cpu_overhead"}
    assert set(times) == expected and expected <= set(OPERATORS) and all(t > 0 for t in times.values())
    assert len(stack.step(entries)) == 3  # untimed, the same step
