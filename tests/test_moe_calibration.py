"""The routed experts' calibration: stored fits reach ``MoELayer.experts_time``, GPUs without tables fall back."""

from __future__ import annotations

import json

import pytest

from simulator.cost_models import MoERooflineCostModel
from simulator.scenario import RooflineConfig
from simulator.specs.calibration import CALIBRATION_FILE, MOE_FALLBACK_SOURCE, MOE_FIELDS, load_moe
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec


def stored(gpu: str, dtype: str) -> dict[str, float]:
    """The fit as written in the file, read without servesim's loader."""
    with open(CALIBRATION_FILE) as f:
        return json.load(f)["moe"]["gpus"][gpu][dtype]


def mixtral_tp2(gpu: str, params: RooflineConfig | None = None, quantization: str = "none") -> MoERooflineCostModel:
    return MoERooflineCostModel(bundled_model_spec("mixtral-8x7b"), GPUS[gpu], 2, 1, params or RooflineConfig(), quantization=quantization)


def by_hand(cost: MoERooflineCostModel, tokens: int, e_f: float, e_b: float, call_s: float, expert_s: float, peak: float) -> float:
    """Mixtral's routed experts at TP 2 for ``tokens`` tokens, bf16: 8 experts, top 2, each a 1/2 slice of width 14336."""
    h, w, b = 4096, 14336 // 2, 2
    pairs = 2 * tokens
    experts = 8 * (1 - (1 - 2 / 8) ** tokens)  # balanced routing: each expert in a token's 2 with probability 1/4
    bw = cost.gpu.memory_bandwidth * e_b
    gate_up = max(4 * pairs * h * w / (peak * e_f), (pairs * h * b + experts * h * 2 * w * b + pairs * 2 * w * b) / bw)
    down = max(2 * pairs * w * h / (peak * e_f), (pairs * w * b + experts * w * h * b + pairs * h * b) / bw)
    return gate_up + down + call_s + experts * expert_s + cost.elementwise_time(3 * pairs * w * b)


@pytest.mark.parametrize("tokens", [1, 16, 4096])  # one expert pair, most experts read, compute-bound prefill
def test_a_measured_gpu_prices_its_experts_from_the_stored_fit(tokens):
    fit = stored("h100-sxm", "bf16")
    cost = mixtral_tp2("h100-sxm")
    expected = by_hand(cost, tokens, fit["moe_flops_efficiency"], fit["moe_bandwidth_efficiency"], fit["moe_call_s"], fit["moe_expert_s"],
                       GPUS["h100-sxm"].bf16_flops)
    assert cost.moe_layer.experts_time(tokens) == pytest.approx(expected, rel=1e-9)
    assert cost.moe_layer.prices["source"].startswith("fitted: vllm")


def test_the_fit_changes_the_price_from_the_gemm_fallback():
    cost = mixtral_tp2("h100-sxm")
    v = cost.resolved.values
    fallback = by_hand(cost, 1, v["gemm_flops_efficiency"], v["gemm_bandwidth_efficiency"], 2 * v["kernel_launch_s"], 0.0, GPUS["h100-sxm"].bf16_flops)
    fit = stored("h100-sxm", "bf16")
    assert fit["moe_call_s"] != pytest.approx(2 * v["kernel_launch_s"])  # a fit, not a copy of the GEMM floor
    assert cost.moe_layer.experts_time(1) != pytest.approx(fallback, rel=1e-3)


def test_fp8_experts_take_the_fp8_fit_at_the_fp8_peak():
    fit = stored("h200", "fp8")
    cost = mixtral_tp2("h200", quantization="fp8")
    layer = cost.moe_layer
    assert layer.expert_peak == pytest.approx(GPUS["h200"].fp8_flops * fit["moe_flops_efficiency"], rel=1e-12)
    assert layer.expert_bandwidth == pytest.approx(GPUS["h200"].memory_bandwidth * fit["moe_bandwidth_efficiency"], rel=1e-12)
    assert layer.experts_fixed_s(3) == pytest.approx(fit["moe_call_s"] + 3 * fit["moe_expert_s"], rel=1e-12)


def test_a_gpu_without_moe_tables_falls_back_to_its_gemm_prices():
    # H100 PCIe has no aiconfigurator MoE tables; A100's vLLM table holds power-law routing only.
    for gpu in ("h100-pcie", "a100-80gb-sxm"):
        assert gpu not in load_moe()
        cost = mixtral_tp2(gpu)
        v = cost.resolved.values
        assert cost.moe_layer.prices["source"] == MOE_FALLBACK_SOURCE
        expected = by_hand(cost, 16, v["gemm_flops_efficiency"], v["gemm_bandwidth_efficiency"], 2 * v["kernel_launch_s"], 0.0,
                           GPUS[gpu].bf16_flops)
        assert cost.moe_layer.experts_time(16) == pytest.approx(expected, rel=1e-9)
        # the fallback is the plain roofline's GEMM: same peak and bandwidth as the dense linear layers
        assert cost.moe_layer.expert_bandwidth == pytest.approx(cost.gemm_bandwidth, rel=1e-12)
        assert cost.moe_layer.expert_peak == pytest.approx(cost.linear_peak, rel=1e-12)


def test_a_scenario_setting_gemm_efficiencies_and_an_unmeasured_dtype_keep_the_fallback():
    cost = mixtral_tp2("h100-sxm", RooflineConfig(gemm_bandwidth_efficiency=0.5))
    assert cost.moe_layer.prices["source"] == MOE_FALLBACK_SOURCE
    assert cost.moe_layer.expert_bandwidth == pytest.approx(GPUS["h100-sxm"].memory_bandwidth * 0.5, rel=1e-12)
    assert mixtral_tp2("h100-sxm", quantization="w4a16").moe_layer.prices["source"] == MOE_FALLBACK_SOURCE


def test_the_loader_reads_a_moe_section_and_refuses_an_incomplete_one(tmp_path):
    path = tmp_path / "cal.json"
    entry = {"moe_flops_efficiency": 0.5, "moe_bandwidth_efficiency": 0.8, "moe_call_s": 2e-5, "moe_expert_s": 1e-8, "source": "fitted: x"}
    path.write_text(json.dumps({"gpus": {}, "moe": {"gpus": {"g": {"bf16": entry}}}}))
    assert load_moe(path) == {"g": {"bf16": entry}}
    (tmp_path / "none.json").write_text(json.dumps({"gpus": {}}))
    assert load_moe(tmp_path / "none.json") == {}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gpus": {}, "moe": {"gpus": {"g": {"bf16": {k: entry[k] for k in MOE_FIELDS[:2]} | {"source": "x"}}}}}))
    with pytest.raises(AssertionError, match="moe_call_s"):
        load_moe(bad)
