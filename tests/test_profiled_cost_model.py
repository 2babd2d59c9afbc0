"""The profiled cost model: prices steps from a bundle's tables, extrapolates like the roofline, fails clearly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from profiler import TINY_MODEL_CONFIG
from profiler.catalogue import ELEMENTWISE, GEMM, elementwise_bytes, gemm_counts
from simulator.engine.batch import Batch
from simulator.cost_models import ProfiledCostModel, build_cost_model
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.scenario import RooflineConfig, load_scenario
from simulator.engine.simulation import Simulation
from simulator.specs.gpu import GPUS
from tests.conftest import check_invariants, make_request
from tests.test_profiler_fit import SMALL_SWEEP, TINY, known_time, synthetic_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """A synthetic bundle of the tiny model at TP 1 and 2, fitted on first use by the first test that loads it."""
    return synthetic_bundle(tmp_path_factory.mktemp("profiled") / "bundle", tps=(1, 2))


def cost_model(bundle: Path, tp: int = 1, max_tokens: int = 2048) -> ProfiledCostModel:
    return ProfiledCostModel(bundle, TINY, GPUS["h100-sxm"], tp, 1, RooflineConfig(), 2, "none", max_tokens)


def scenario_yaml(directory: Path, profile: str, tp: int = 1, model: dict | None = None) -> Path:
    data = {
        "name": "profiled", "model": model or {"config": str(TINY_MODEL_CONFIG)},
        "hardware": {"gpu": "h100-sxm", "profile": profile},
        "cluster": {"tensor_parallel_size": tp},
        "workload": {"num_requests": 60, "arrival": {"rate": 20.0},
                     "prompt_tokens": {"distribution": "uniform", "min": 20, "max": 600},
                     "output_tokens": {"distribution": "uniform", "min": 2, "max": 40}},
    }
    path = directory / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fits_on_first_use_and_caches_the_runtime_model_in_the_bundle(bundle_dir):
    assert not (bundle_dir / "runtime_model.json").exists()
    cost_model(bundle_dir)
    meta = json.loads((bundle_dir / "runtime_model.json").read_text())
    assert (bundle_dir / "runtime_model.npz").is_file() and meta["tensor_parallel_sizes"] == [1, 2]
    mtime = (bundle_dir / "runtime_model.npz").stat().st_mtime_ns
    cost_model(bundle_dir, tp=2)  # up to date: loaded, not refitted
    assert (bundle_dir / "runtime_model.npz").stat().st_mtime_ns == mtime


def test_token_time_inside_the_measured_range_follows_the_measured_formula(bundle_dir):
    cm = cost_model(bundle_dir, tp=2)
    h, d, inter = 256, 64, 768 // 2
    q, kv = 2 * d, 1 * d
    for m in (1, 37, 100, 150):
        gemms = [(q + 2 * kv, h), (h, q), (2 * inter, h), (h, inter)]
        layer = sum(known_time(GEMM, {}, *gemm_counts(m, n, k, "float32")) for n, k in gemms)
        for op, count, width in (("add_rmsnorm", 2, h), ("rotary", 1, q + kv), ("kv_cache_write", 1, kv), ("silu_mul", 1, inter)):
            layer += count * known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, elementwise_bytes(op, m, width, 4))
        layer += 2 * cm.roofline.all_reduce_time(m * h * 2)  # one GPU measured: the link model
        embedding = known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, elementwise_bytes("embedding", m, h, 4))
        expected = TINY.num_layers * layer + embedding + cm.roofline.all_reduce_time(m * h * 2)
        assert cm.token_time(m) == pytest.approx(expected, rel=0.03)


def test_beyond_the_measured_range_it_scales_the_edge_by_the_roofline_not_flat(bundle_dir):
    cm = cost_model(bundle_dir)
    qkv = dict((name, t) for name, _, t in cm.layer_operators)["qkv_proj"]
    edge = int(qkv.high)  # 192 tokens: the sweep's largest
    roof = cm.roofline
    for m in (400, 1536, 2048):
        expected = qkv(edge) * roof.gemm_time(m, 256, 512) / roof.gemm_time(edge, 256, 512)
        assert qkv(m) == pytest.approx(expected, rel=1e-9)
    # Far past the edge the H100 roofline leaves its launch-bound floor: 340x the work is far from flat.
    assert qkv(65536) > 3 * qkv(edge)
    assert cm.token_time(2048) > cm.token_time(1024) > cm.token_time(edge)
    # Decode attention past the longest measured context (512) grows with the roofline's bytes.
    ctx_edge = cm.decode.a1[-1]
    at_edge, far = cm.attention_decode_time(8, int(8 * ctx_edge)), cm.attention_decode_time(8, int(8 * 32 * ctx_edge))
    assert far / at_edge == pytest.approx(roof.attention_decode_time(8, 256 * ctx_edge) / roof.attention_decode_time(8, 8 * ctx_edge), rel=1e-6)
    assert far > 1.4 * at_edge  # 32x the context: the bytes outgrow the roofline's attention floor (calibrated H100)


def mixed_batch() -> Batch:
    batch = Batch()
    for i in range(5):  # decodes at contexts 100..500
        r = make_request(i, prompt=100 * (i + 1), output=50)
        r.num_computed_tokens, r.num_generated_tokens = 100 * (i + 1) + 2, 3
        batch.add(r, 1)
    fresh = make_request(10, prompt=300, output=5)
    batch.add(fresh, 300)
    chunk = make_request(11, prompt=900, output=5)
    chunk.num_computed_tokens = 256
    batch.add(chunk, 128)
    return batch


def test_the_same_batch_is_priced_the_same_across_calls_and_models(bundle_dir):
    cm = cost_model(bundle_dir)
    first = cm.step_time(mixed_batch())
    other = Batch.of_decodes([Request(20 + i, 0.0, 50, 10, num_computed_tokens=60) for i in range(7)])
    values = [cm.step_time(mixed_batch()), cm.step_time(other), cm.step_time(mixed_batch()), cm.step_time(other)]
    assert values[0] == values[2] == first and values[1] == values[3]
    assert cost_model(bundle_dir).step_time(mixed_batch()) == first  # memo never leaks between batches
    # The parts add up: token-level work, attention, sampling, host overhead.
    b = mixed_batch()
    parts = (cm.token_time(b.num_tokens) + cm.layers * cm.attention_prefill_time(b.prefill_new_tokens, b.prefill_prefix_tokens)
             + cm.layers * cm.attention_decode_time(b.num_decode_tokens, b.decode_context_tokens) + cm.sample_time(b.num_sampled_tokens)
             + cm.cpu_time(len(b.requests)))
    assert first == pytest.approx(parts, rel=1e-12)


@pytest.mark.parametrize("tp", [1, 2])
def test_the_breakdown_by_operator_adds_up_to_the_step(bundle_dir, tp):
    cm = cost_model(bundle_dir, tp=tp)
    decodes = Batch.of_decodes([Request(20 + i, 0.0, 50, 10, num_computed_tokens=60) for i in range(7)])
    for batch in (mixed_batch(), decodes):
        parts = cm.step_breakdown(batch)
        assert sum(parts.values()) == pytest.approx(cm.step_time(batch), rel=1e-9)
        assert all(v > 0 for v in parts.values())
        assert {"qkv_proj", "down_proj", "attention_decode", "lm_head", "sampling", "cpu_overhead"} <= set(parts)
        assert ("attention_prefill" in parts) == bool(batch.num_prefill_tokens) and ("all_reduce" in parts) == (tp > 1)
        assert parts["qkv_proj"] == pytest.approx(cm.layers * cm.layer_operator_times(batch.num_tokens)["qkv_proj"])


def test_remeasured_bundle_is_refitted_on_next_load(tmp_path):
    sweep = SMALL_SWEEP.replace(max_tokens=64, max_num_seqs=8, max_context=128)
    root = synthetic_bundle(tmp_path / "b", tps=(1,), sweep=sweep)
    before = cost_model(root).token_time(64)
    with open(root / "gemm.csv") as f:
        lines = f.read().splitlines()
    header, rows = lines[0], lines[1:]
    cols = [header.split(",").index(c) for c in ("median_s", "p20_s", "p80_s", "min_s", "mean_s")]
    doubled = [",".join(str(float(v) * 2) if i in cols else v for i, v in enumerate(row.split(","))) for row in rows]
    (root / "gemm.csv").write_text("\n".join([header, *doubled]) + "\n")
    after = cost_model(root).token_time(64)
    assert after > 1.3 * before


def test_quantized_scenarios_price_the_quantized_gemms_or_ask_for_them(bundle_dir, tmp_path):
    sweep = SMALL_SWEEP.replace(max_tokens=64, max_num_seqs=8, max_context=128)
    root = synthetic_bundle(tmp_path / "w8a8", sweep=sweep, quantizations=("w8a8",))
    cm = ProfiledCostModel(root, TINY, GPUS["h100-sxm"], 1, 1, RooflineConfig(), 2, "w8a8", 256)
    ops = cm.layer_operator_times(32)
    assert ops["qkv_proj"] == pytest.approx(known_time(GEMM, {}, *gemm_counts(32, 512, 256, "w8a8")), rel=0.03)
    quant = elementwise_bytes("quantize_activations", 32, 256, 4)
    assert ops["quantize_activations:qkv_proj"] == pytest.approx(known_time(ELEMENTWISE, {"num_tokens": 32}, 0.0, quant), rel=0.03)
    with pytest.raises(ScenarioError, match="no measurements of qkv_proj \\(w4a16\\).*--quantization w4a16"):
        ProfiledCostModel(root, TINY, GPUS["h100-sxm"], 1, 1, RooflineConfig(), 2, "w4a16", 256)


def test_scenario_with_a_missing_profile_is_a_scenario_error(tmp_path):
    path = scenario_yaml(tmp_path, "no-such-bundle")
    scenario = load_scenario(path)
    assert scenario.hardware.profile == str(tmp_path / "no-such-bundle")  # relative to the YAML file
    with pytest.raises(ScenarioError) as err:
        build_cost_model(scenario, resolve_deployment(scenario, str(path)), str(path))
    assert err.value.field == "hardware.profile" and "not found" in str(err.value) and "scenario.yaml" in str(err.value)
    (tmp_path / "not-a-bundle").mkdir()
    scenario = load_scenario(scenario_yaml(tmp_path, "not-a-bundle"))
    with pytest.raises(ScenarioError, match="hardware.profile.*not a profile bundle"):
        build_cost_model(scenario, resolve_deployment(scenario))


def test_bundle_of_another_model_or_an_unprofiled_tp_is_a_scenario_error(bundle_dir, tmp_path):
    scenario = load_scenario(scenario_yaml(tmp_path, str(bundle_dir), model={"name": "llama-3-8b"}))
    with pytest.raises(ScenarioError, match="hardware.profile.*profiled for tiny-llama.*servesim profile --model llama-3-8b"):
        build_cost_model(scenario, resolve_deployment(scenario))
    scenario = load_scenario(scenario_yaml(tmp_path, str(bundle_dir), tp=4))
    with pytest.raises(ScenarioError, match="no measurements at TP 4.*--tp 1,2,4"):
        build_cost_model(scenario, resolve_deployment(scenario))


def test_a_simulation_runs_on_the_profiled_model(bundle_dir, tmp_path):
    shutil.copytree(bundle_dir, tmp_path / "bundle")
    scenario = load_scenario(scenario_yaml(tmp_path, "bundle"))
    sim = Simulation(scenario)
    assert isinstance(sim.cost_model, ProfiledCostModel)
    result = sim.run()
    check_invariants(sim, result)
    assert result.summary["num_completed"] == 60
    assert math.isfinite(result.summary["ttft_s"]["p50"])
