"""MLA priced from the measured module tables: the table at measured shapes, no double counting, the roofline past the grid."""

from __future__ import annotations

import pandas as pd
import pytest

from simulator.cost_models import MoERooflineCostModel, ProfiledMoECostModel
from simulator.cost_models.profiled_mla import _grid
from simulator.engine.batch import Batch
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec

DSV3 = bundled_model_spec("deepseek-v3")
H200 = GPUS["h200"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("aiconfigurator_core")
    from profiler.imports.aiconfigurator_moe import import_moe

    return import_moe("h200_sxm/vllm/0.24.0", DSV3, (8,), tmp_path_factory.mktemp("dsv3"))


def models(bundle) -> tuple[ProfiledMoECostModel, MoERooflineCostModel]:
    """DeepSeek-V3 FP8 on 8 x H200, data-parallel attention 8 (all 128 heads per GPU), EP 8."""
    args = (DSV3, H200, 1, 1, RooflineConfig(), 1, "fp8", "<test>", 8, True)
    return ProfiledMoECostModel(bundle, *args), MoERooflineCostModel(*args)


def measured(bundle, operator: str, seqs: int, axis: str, value: int) -> float:
    mla = pd.read_csv(bundle / "mla.csv")
    row = mla[(mla.operator == operator) & (mla.dtype == "fp8") & (mla.num_heads == 128) & (mla.num_seqs == seqs) & (mla[axis] == value)]
    assert len(row) == 1
    return float(row.median_s.iloc[0])


def test_a_measured_decode_and_prefill_shape_is_priced_at_the_table(bundle) -> None:
    c, _ = models(bundle)
    assert c.sources["attention"].startswith("measured: mla_module")
    # 64 decodes over 1 + 1024 cached tokens each: the generation row batch 64, isl 1, step 1024 (0.20 ms)
    assert c._decode_layer(64, 64 * 1025) == pytest.approx(measured(bundle, "mla_module_decode", 64, "context_tokens", 1025), rel=1e-12)
    # 4 prompts of 2,048 tokens: the context row batch 4, isl 2048 (5.1 ms)
    assert c._prefill_layer([2048] * 4, [0] * 4) == pytest.approx(measured(bundle, "mla_module_prefill", 4, "new_tokens", 2048), rel=1e-12)


def test_the_module_replaces_the_projections_and_keeps_the_norm_and_experts(bundle) -> None:
    c, roof = models(bundle)
    ours, theirs = c.token_parts(512), roof.token_parts(512)
    assert ours["attention_projections"] == 0.0 and theirs["attention_projections"] > 0.0
    assert ours["all_to_all"] == theirs["all_to_all"] and ours["shared_experts"] == theirs["shared_experts"]
    # each layer's token-wise attention side keeps only the input add + RMSNorm (64 tokens per rank)
    assert c._attention_side(64)["elementwise"] == pytest.approx(c.elementwise_time(4 * 64 * DSV3.hidden_size * c.dtype_bytes))
    # a batch of 8 decodes, one per rank: the step carries one decode module call per layer
    batch = Batch()
    batch.num_decode_tokens, batch.decode_context_tokens = 8, 8 * 1025
    assert c.decode_attention_time(batch) == pytest.approx(c.layers * c.mla_module.decode_time(1, 1025))


def test_a_prefix_or_a_shape_past_the_grid_moves_the_price_by_the_roofline(bundle) -> None:
    c, _ = models(bundle)
    mod = c.mla_module
    base = mod.prefill_time([2048], [0])
    lat = c.latent
    ratio = (lat.token_time(2048) + lat.prefill_time([2048], [4096])) / (lat.token_time(2048) + lat.prefill_time([2048], [0]))
    assert mod.prefill_time([2048], [4096]) == pytest.approx(base * ratio)
    # 2,048 decodes: past the measured 1,024, the edge's efficiency held
    edge = mod.decode(1024, 1025)
    assert mod.decode_time(2048, 2048 * 1025) == pytest.approx(edge * mod.roof_decode(2048, 1025) / mod.roof_decode(1024, 1025))


def test_a_skipped_grid_cell_is_filled_from_its_column_by_the_roofline() -> None:
    # (2 prompts, 2 tokens) was not measured: from (1, 2) by the roofline's ratio 4 / 2
    a0, a1, v, filled = _grid({(1, 1): 1.0, (1, 2): 2.0, (2, 1): 3.0}, lambda b, s: b * s)
    assert filled == 1 and v[1, 1] == pytest.approx(2.0 * 4 / 2)


def test_dense_gemms_of_the_moe_model_read_the_measured_gemm_table(bundle) -> None:
    c, roof = models(bundle)
    gemms = pd.read_csv(bundle / "dense_gemm.csv")
    assert {"shared_gate_up_proj", "shared_down_proj", "dense_gate_up_proj", "o_proj", "lm_head"} <= set(gemms.operator)
    assert set(gemms.dtype) == {"bfloat16"}
    # FP8 linears stay the roofline's; lm_head (bf16) reads the table at m = 64
    assert c.linear_time(64, 7168, 4096) == roof.linear_time(64, 7168, 4096)
    head = gemms[(gemms.operator == "lm_head") & (gemms.tp == 1) & (gemms.m == 64)]
    assert c.gemm_time(64, 7168, int(head.n.iloc[0])) == pytest.approx(float(head.median_s.iloc[0]), rel=1e-12)
    assert c.gemm_time(64, 123, 456) == roof.gemm_time(64, 123, 456)
    # a bf16 GEMM at the shared experts' gate/up shape (width 2,048 x 2, one GPU) is the measured row
    # (DeepSeek-V3's experts are measured in FP8 only, so an unquantized replica cannot be built here)
    row = gemms[(gemms.operator == "shared_gate_up_proj") & (gemms.tp == 1) & (gemms.m == 64)]
    assert (row.k.iloc[0], row.n.iloc[0]) == (7168, 4096) and row.origin.iloc[0] == "measured"
    assert c.gemm_time(64, 7168, 4096) == pytest.approx(float(row.median_s.iloc[0]), rel=1e-12)
    assert c.sources["dense_gemms"].startswith("measured")


def test_the_bundle_says_which_parts_are_measured(bundle) -> None:
    import json

    prov = json.loads((bundle / "provenance.json").read_text())
    assert prov["source"] == "aiconfigurator:h200_sxm/vllm/0.24.0" and prov["device_name"] == "NVIDIA H200"
    measured = " ".join(prov["priced"]["measured"])
    assert "mla.csv" in measured and "dense_gemm.csv" in measured and "moe.csv" in measured
    assert "all-to-all" in prov["priced"]["roofline"] and "FP8 dense linears" in prov["priced"]["roofline"]


def test_a_grouped_query_moe_model_prices_attention_from_its_fitted_dense_profile(tmp_path) -> None:
    pytest.importorskip("aiconfigurator_core")
    pytest.importorskip("sklearn")
    from profiler.imports.aiconfigurator_moe import import_moe

    mixtral = bundled_model_spec("mixtral-8x7b")
    out = import_moe("h100_sxm/vllm/0.24.0", mixtral, (2,), tmp_path)
    assert (out / "dense" / "runtime_model.json").is_file()
    c = ProfiledMoECostModel(out, mixtral, GPUS["h100-sxm"], 2, 1, RooflineConfig())
    assert c.sources["attention"].startswith("measured: dense/")
    # the MoE model's layer attention is the dense profile's table, chunks and prefixes as it prices them
    assert c._decode_layer(64, 64_000) == c.dense_attention.attention_decode_time(64, 64_000)
    assert c._prefill_layer([1000, 200], [0, 500]) == c.dense_attention.attention_prefill_time([1000, 200], [0, 500])
    assert "prefill and decode attention (dense/, fitted)" in " ".join(__import__("json").loads((out / "provenance.json").read_text())["priced"]["measured"])
