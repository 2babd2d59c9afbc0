"""Quantized linear layers: smaller weights, more KV blocks, and the right roofline regime."""

import pytest

from simulator.cost_models import build_cost_model
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.scenario import load_scenario


def _build(quantization: str, gpu: str = "h100-sxm"):
    scenario = load_scenario(None, [f"model.quantization={quantization}", f"hardware.gpu={gpu}"])
    deployment = resolve_deployment(scenario)
    return deployment, build_cost_model(scenario, deployment)


def test_quantized_weights_shrink_and_free_kv_blocks():
    bf16, _ = _build("none")
    w8, _ = _build("w8a8")
    w4, _ = _build("w4a16")
    # Llama-3-8B: 7.0 B layer params + 1.05 B of embedding and lm_head kept in bf16.
    assert w8.weight_bytes_per_gpu < 0.6 * bf16.weight_bytes_per_gpu
    assert w4.weight_bytes_per_gpu < 0.4 * bf16.weight_bytes_per_gpu
    assert bf16.num_kv_blocks < w8.num_kv_blocks < w4.num_kv_blocks


def test_w4a16_speeds_up_memory_bound_decode_but_not_compute_bound_prefill():
    _, bf16 = _build("none")
    _, w4 = _build("w4a16")
    assert w4.token_time(8) < 0.6 * bf16.token_time(8)  # weight reads dominate at 8 tokens
    assert w4.token_time(8192) == pytest.approx(bf16.token_time(8192), rel=0.05)  # same bf16 tensor cores


def test_w8a8_and_fp8_double_the_compute_bound_peak():
    _, bf16 = _build("none")
    for quantization in ("w8a8", "fp8"):
        _, q = _build(quantization)
        assert q.token_time(8192) < 0.75 * bf16.token_time(8192)


def test_fp8_needs_fp8_tensor_cores():
    with pytest.raises(ScenarioError, match="model.quantization.*no FP8 tensor cores"):
        _build("fp8", gpu="a100-80gb-sxm")
