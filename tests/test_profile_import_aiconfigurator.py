"""Importing aiconfigurator-core's kernel tables: mapping at TP shards, labelled rows, named profiles, bad input.

Most stories run on a toy "system" whose tables the tests write (``AICONFIGURATOR_SYSTEMS``
points the importer at it): every latency there is exactly 1.25 x the roofline at efficiency 1
plus 5 us, so what the importer must produce at any shape is known without reading its code.
One story reads a real table from the installed package (skipped when it is not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from profiler import TINY_MODEL_CONFIG
from profiler.catalogue import gemm_counts
from profiler.fit import fit_bundle
from profiler.imports import build, cache_root, import_profile, named_profile
from simulator.errors import ScenarioError
from simulator.specs.model import bundled_model_spec, model_spec_from_hf_config
from tests.conftest import one_line_error

TINY = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")
PEAK, BANDWIDTH = 100e12, 1e12
SLOW, FLOOR = 1.25, 5e-6
WIDTHS = (128, 256, 512, 1024, 2048)
MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def toy_gemm_s(m, n, k):
    flops, nbytes = gemm_counts(np.asarray(m, dtype=float), float(n), float(k), "bfloat16")
    return SLOW * np.maximum(flops / PEAK, nbytes / BANDWIDTH) + FLOOR


def write_toy_system(root: Path, version: str = "1.0") -> Path:
    """A systems folder with one system, ``toy_sxm``, measured by framework ``vllm`` at ``version``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "toy_sxm.yaml").write_text(yaml.safe_dump({
        "gpu": {"mem_bw": BANDWIDTH, "mem_capacity": 40e9, "bfloat16_tc_flops": PEAK, "int8_tc_flops": 2 * PEAK, "fp8_tc_flops": 2 * PEAK},
        "node": {"intra_node_bw": 100e9, "pcie_bw": 32e9, "p2p_latency": 1e-5},
    }))
    data = root / "data" / "toy_sxm"
    head = {"framework": "VLLM", "version": version, "device": "Toy GPU"}
    gemm = [dict(head, op_name="gemm", kernel_source="torch.nn.functional.linear", gemm_dtype="bfloat16", m=m, n=n, k=k,
                 latency=float(toy_gemm_s(m, n, k)) * 1e3) for m in MS for n in WIDTHS for k in WIDTHS]
    attn = dict(head, kernel_source="vllm_flash_attn", num_heads=4, num_key_value_heads=2, head_dim=64, beam_width=1,
                attn_dtype="bfloat16", kv_cache_dtype="bfloat16", window_size=0)
    ctx = [dict(attn, op_name="context_attention", batch_size=b, isl=n, step=0, latency=0.01 + 1e-6 * b * n) for b in (1, 4) for n in (16, 64, 256, 1024)]
    gen = [dict(attn, op_name="generation_attention", batch_size=b, isl=1, step=s, latency=0.008 + 1e-7 * b * s) for b in (1, 8, 64) for s in (15, 127, 1023)]
    nccl = [dict(head, op_name="all_reduce", kernel_source="NCCL", nccl_dtype="half", num_gpus=2, message_size=2 ** e, latency=0.006 + 2 ** e / 50e9 * 1e3)
            for e in range(8, 26)]
    for rel, rows in ((f"gemm/vllm/{version}/gemm_perf.parquet", gemm), (f"attention/vllm/{version}/context_attention_perf.parquet", ctx),
                      (f"attention/vllm/{version}/generation_attention_perf.parquet", gen), ("comm/nccl/2.0/nccl_perf.parquet", nccl)):
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(path)
    return root


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    root = write_toy_system(tmp_path / "systems")
    monkeypatch.setenv("AICONFIGURATOR_SYSTEMS", str(root))
    monkeypatch.setenv("SERVESIM_CACHE_DIR", str(tmp_path / "cache"))
    return root


def rows(out: Path, kind: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{kind}.csv")


def test_gemms_map_onto_tp_shards_measured_or_interpolated_at_the_measured_efficiency(toy, tmp_path):
    out = import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1, 2), tmp_path / "b")
    g = rows(out, "gemm")
    # TP 1: qkv is 256 x (4 + 2 x 2) x 64 = 512 wide (on the grid); gate/up 1,536 (between 1,024 and 2,048).
    qkv1 = g[(g.operator == "qkv_proj") & (g.tp == 1)]
    assert set(zip(qkv1.n, qkv1.k)) == {(512, 256)} and (qkv1.timer == "aiconfigurator:measured").all()
    qkv2 = g[(g.operator == "qkv_proj") & (g.tp == 2)]
    assert set(zip(qkv2.n, qkv2.k)) == {(256, 256)}  # (2 + 2 x 1) heads x 64 at TP 2
    up = g[(g.operator == "gate_up_proj") & (g.tp == 1)]
    assert set(zip(up.n, up.k)) == {(1536, 256)} and (up.timer == "aiconfigurator:interpolated").all()
    # The toy's efficiency is the same everywhere, so holding it must give the toy's time at 1,536
    # (up to the floor, which interpolation in efficiency cannot separate: a few percent at tiny m).
    expected = toy_gemm_s(up.m.to_numpy(), 1536, 256)
    big = up.m.to_numpy() >= 256
    assert np.allclose(up.median_s.to_numpy()[big], expected[big], rtol=0.02)
    assert sorted(qkv1.m) == list(MS)
    assert np.allclose(qkv1.median_s, toy_gemm_s(qkv1.m.to_numpy(), 512, 256), rtol=1e-5)


def test_attention_rows_keep_their_shapes_and_a_missing_head_count_is_scaled_and_labelled(toy, tmp_path):
    out = import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1, 2), tmp_path / "b")
    dec = rows(out, "attention_decode")
    d1 = dec[dec.tp == 1]
    row = d1[(d1.num_seqs == 8) & (d1.context_tokens == 128)]  # step 127 -> 128 tokens of context
    assert len(row) == 1 and row.median_s.iloc[0] == pytest.approx((0.008 + 1e-7 * 8 * 127) * 1e-3, rel=1e-5)
    d2 = dec[dec.tp == 2]  # 2 query / 1 KV heads were never measured: half the 4/2 time, same GQA ratio
    assert (d2.timer == "aiconfigurator:interpolated").all() and (d2.num_heads == 2).all()
    assert d2.median_s.sum() == pytest.approx(0.5 * d1.median_s.sum(), rel=1e-6)
    pre = rows(out, "attention_prefill")
    assert set(pre[pre.tp == 1].num_seqs) == {1, 4} and (pre.prefix_tokens == 0).all()


def test_missing_operators_are_filled_and_provenance_says_how(toy, tmp_path):
    out = import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1, 2), tmp_path / "b")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["source"] == "aiconfigurator:toy_sxm/vllm/1.0" and prov["details"]["framework_version"] == "1.0"
    assert set(prov["filled"]) == {"add_rmsnorm", "rotary", "kv_cache_write", "silu_mul", "embedding", "rmsnorm", "sampling", "cpu_overhead"}
    assert prov["filled"]["rmsnorm"]["calibrated_on"] == ["attention_decode"]
    assert prov["filled"]["cpu_overhead"]["origin"] == "assumed"
    ew = rows(out, "elementwise")
    assert (ew.timer == "aiconfigurator:filled").all()
    # The all-reduce is measured (NCCL at TP 2), never filled.
    ar = rows(out, "all_reduce")
    assert set(ar.tp) == {2} and set(ar.implementation) == {"nccl"}
    manifest = json.loads((out / "profile.json").read_text())
    assert manifest["imported_from"] == "aiconfigurator:toy_sxm/vllm/1.0" and manifest["tensor_parallel_sizes"] == [1, 2]


def test_an_imported_bundle_fits_and_prices_a_scenario_by_name(toy, tmp_path):
    from simulator.scenario import load_scenario
    from simulator.engine.simulation import simulate

    (tmp_path / "toy-gpu.yaml").write_text(yaml.safe_dump({
        "memory_gb": 40, "memory_bandwidth_gb_per_s": 1000, "bf16_tflops": 100, "fp8_tflops": 200, "int8_tops": 200,
        "interconnect": {"kind": "nvlink", "bandwidth_gb_per_s": 100, "latency_s": 1e-5}, "pcie_bandwidth_gb_per_s": 32,
        "source": "the toy system of this test", "aiconfigurator_system": "toy_sxm",
    }))
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(yaml.safe_dump({
        "name": "toy", "model": {"config": str(TINY_MODEL_CONFIG), "max_model_len": 1024},
        "hardware": {"gpu": "toy-gpu.yaml", "profile": "aiconfigurator:toy_sxm/vllm/1.0"},
        "scheduler": {"name": "vllm", "max_num_batched_tokens": 1024},
        "workload": {"num_requests": 20, "arrival": {"process": "poisson", "rate": 5.0},
                     "prompt_tokens": {"distribution": "fixed", "value": 100}, "output_tokens": {"distribution": "fixed", "value": 10}},
        "output": {"dir": str(tmp_path / "run")},
    }))
    scenario = load_scenario(scenario_file)
    assert scenario.hardware.profile == "aiconfigurator:toy_sxm/vllm/1.0"  # a name, not resolved as a path
    result = simulate(scenario, source=str(scenario_file))
    assert len(result.requests) == 20
    cached = list(cache_root().iterdir())
    assert len(cached) == 1 and (cached[0] / "runtime_model.json").is_file()
    stamp = (cached[0] / "runtime_model.json").stat().st_mtime_ns
    again = named_profile("aiconfigurator:toy_sxm/vllm/1.0", result.deployment.model, 1)
    assert again == cached[0] and (again / "runtime_model.json").stat().st_mtime_ns == stamp  # not rebuilt
    # A bundled GPU of another aiconfigurator system is a mistake, not a silent mix of two GPUs.
    with pytest.raises(ScenarioError, match="was measured on toy_sxm, but hardware.gpu is h100-sxm"):
        simulate(load_scenario(scenario_file, ["hardware.gpu=h100-sxm"]), source=str(scenario_file))


@pytest.mark.parametrize("spec, words", [
    ("aiconfigurator:nope_sxm/vllm/1.0", ["unknown system", "toy_sxm"]),
    ("aiconfigurator:toy_sxm/sglang/1.0", ["no 'sglang' tables", "vllm"]),
    ("aiconfigurator:toy_sxm/vllm/9.9", ["no version '9.9'", "1.0"]),
    ("aiconfigurator:toy_sxm", ["SYSTEM/FRAMEWORK/VERSION"]),
])
def test_unknown_names_are_one_error_listing_what_exists(toy, tmp_path, spec, words):
    with pytest.raises(ScenarioError) as e:
        build(spec, TINY, (1,), tmp_path / "b")
    for w in words:
        assert w in str(e.value)


def cli(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def exits_with_one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, *words)


def test_bad_tables_and_a_missing_package_are_one_line_and_exit_code_2(toy, tmp_path, monkeypatch):
    import os

    env = dict(os.environ)
    table = toy / "data" / "toy_sxm" / "gemm" / "vllm" / "1.0" / "gemm_perf.parquet"
    table.write_bytes(b"not a parquet file")
    exits_with_one_line(cli("profile", "import", "aiconfigurator:toy_sxm/vllm/1.0", "--model", str(TINY_MODEL_CONFIG), "--out", "b", cwd=tmp_path, env=env),
                   "gemm_perf.parquet", "cannot be read")
    empty = {c: pd.Series(dtype="float64") for c in ("m", "n", "k", "latency")} | {c: pd.Series(dtype="str") for c in ("device", "kernel_source", "gemm_dtype")}
    pd.DataFrame(empty).to_parquet(table)
    exits_with_one_line(cli("profile", "import", "aiconfigurator:toy_sxm/vllm/1.0", "--model", str(TINY_MODEL_CONFIG), "--out", "b", cwd=tmp_path, env=env),
                   "empty table")
    pd.DataFrame({"m": [1], "n": [128], "k": [128]}).to_parquet(table)  # no latency column
    exits_with_one_line(cli("profile", "import", "aiconfigurator:toy_sxm/vllm/1.0", "--model", str(TINY_MODEL_CONFIG), "--out", "b", cwd=tmp_path, env=env),
                   "gemm_perf.parquet", "column missing")
    # No package and no AICONFIGURATOR_SYSTEMS: a stub module that fails to import stands in for a
    # missing install (sitecustomize would be heavier; -c keeps the interpreter the same).
    env.pop("AICONFIGURATOR_SYSTEMS")
    code = ("import sys; sys.modules['aiconfigurator_core'] = None; sys.argv = ['servesim', 'profile', 'import', "
            "'aiconfigurator:h100_sxm/vllm/0.24.0', '--model', 'llama-3-8b', '--out', 'b']; from simulator.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    exits_with_one_line(proc, "aiconfigurator-core", "servesim[aiconfigurator]")
    assert not (tmp_path / "b" / "gemm.csv").exists()


def test_an_import_never_overwrites_a_measured_bundle(toy, tmp_path):
    measured = tmp_path / "measured"
    measured.mkdir()
    (measured / "profile.json").write_text("{}")
    with pytest.raises(ScenarioError, match="measured profile bundle"):
        import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1,), measured)


def test_a_real_table_of_the_installed_package(tmp_path, monkeypatch):
    pytest.importorskip("aiconfigurator_core")
    monkeypatch.delenv("AICONFIGURATOR_SYSTEMS", raising=False)
    from profiler.imports.aiconfigurator import package_root

    model = bundled_model_spec("llama-3-8b")
    out = import_profile("aiconfigurator:h100_sxm/vllm/0.24.0", model, (1, 2), tmp_path / "h100")
    raw = pd.read_parquet(package_root() / "data/h100_sxm/gemm/vllm/0.24.0/gemm_perf.parquet")
    raw = raw[(raw.gemm_dtype == "bfloat16") & (raw.n == 6144) & (raw.k == 4096)].set_index("m")["latency"]
    g = rows(out, "gemm")
    qkv = g[(g.operator == "qkv_proj") & (g.dtype == "bfloat16") & (g.tp == 1)].set_index("m")
    assert (qkv.timer == "aiconfigurator:measured").all()  # (32 + 2 x 8) x 128 = 6,144 wide: on the grid
    assert np.allclose(qkv.median_s, raw.loc[qkv.index] * 1e-3, rtol=1e-5)
    assert set(g[g.dtype == "fp8"].operator) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    ew = rows(out, "elementwise")  # FP8 GEMMs need their activations quantized: filled, per GEMM input width
    quant = ew[(ew.operator == "quantize_activations") & (ew.dtype == "fp8")]
    assert set(quant.tp) == {1, 2} and set(quant[quant.tp == 1].width) == {4096, 14336}
    report = fit_bundle(out, html=False)
    assert {e["operator"] for e in report["operators"]} >= {"qkv_proj", "attention_decode", "attention_prefill", "all_reduce"}


def test_two_bundles_compare_operator_by_operator(tmp_path, monkeypatch):
    """A second toy system whose GEMMs are twice as slow: the comparison says 2x for GEMMs, 1x for attention."""
    from profiler.compare import class_summary, compare_bundles

    fast = write_toy_system(tmp_path / "fast")
    slow = write_toy_system(tmp_path / "slow")
    table = slow / "data" / "toy_sxm" / "gemm" / "vllm" / "1.0" / "gemm_perf.parquet"
    g = pd.read_parquet(table)
    g["latency"] *= 2.0
    g.to_parquet(table)
    monkeypatch.setenv("AICONFIGURATOR_SYSTEMS", str(fast))
    a = import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1,), tmp_path / "a")
    monkeypatch.setenv("AICONFIGURATOR_SYSTEMS", str(slow))
    b = import_profile("aiconfigurator:toy_sxm/vllm/1.0", TINY, (1,), tmp_path / "b")
    ratios = {r.operator: r for r in compare_bundles(a, b) if r.dtype == "bfloat16"}
    assert ratios["qkv_proj"].median == pytest.approx(2.0, rel=0.02)
    assert ratios["attention_decode"].median == pytest.approx(1.0, rel=0.02)
    assert ratios["rmsnorm"].filled == "A+B"  # both filled it from the roofline
    summary = class_summary(list(ratios.values()))
    assert summary["GEMM"][0] == pytest.approx(2.0, rel=0.02) and "elementwise" not in summary
    with pytest.raises(ScenarioError, match="not a profile bundle"):
        compare_bundles(a, tmp_path / "nothing")


def test_the_model_familys_operators_are_imported_and_a_moe_model_is_refused(toy, tmp_path):
    opt = bundled_model_spec("opt-13b")  # a two-matrix ReLU MLP, LayerNorm, learned positions
    out = import_profile("aiconfigurator:toy_sxm/vllm/1.0", opt, (1,), tmp_path / "opt")
    g = rows(out, "gemm")
    assert "up_proj" in set(g.operator) and "gate_up_proj" not in set(g.operator)
    assert set(g[g.operator == "up_proj"].n) == {opt.intermediate_size}
    filled = json.loads((out / "provenance.json").read_text())["filled"]
    assert {"relu", "add_layernorm", "layernorm", "position_embedding"} <= set(filled) and "rotary" not in filled
    with pytest.raises(ScenarioError, match="mixture-of-experts model: importing its expert kernels is not available yet"):
        build("aiconfigurator:toy_sxm/vllm/1.0", bundled_model_spec("mixtral-8x7b"), (2,), tmp_path / "moe")
