"""MoE profiles: catalogue shapes, importing aiconfigurator's moe_perf rows, refusal, pricing from the table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler.catalogue_moe import expert_counts, expert_shape, mla_decode_counts, moe_plan
from profiler.imports.aiconfigurator_moe import MOE_COLUMNS, select_rows
from simulator.cost_models import ProfiledMoECostModel, build_cost_model
from simulator.cost_models.moe import MoELayer
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.scenario import MoERoutingConfig, RooflineConfig, load_scenario
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec
from tests.conftest import REPO

MIXTRAL = bundled_model_spec("mixtral-8x7b")
H100 = GPUS["h100-sxm"]
TOKENS = (1, 8, 64, 512, 4096)


def test_mixtral_expert_shape_at_tp2_by_hand() -> None:
    shape = expert_shape(MIXTRAL, 2)
    assert shape.key(16) == (16, 8, 2, 4096, 14336 // 2, 1, 2)
    flops, nbytes = expert_counts(shape, 1)
    # one token, two experts: 2 pairs x (gate/up 2*h*2w + down 2*w*h) FLOPs; both experts' slices read
    assert flops == 2 * (4 * 4096 * 7168 + 2 * 7168 * 4096)
    assert nbytes == pytest.approx(2 * 3 * 4096 * 7168 * 2 + 2 * (2 * 4096 + 3 * 7168) * 2)
    ep = expert_shape(MIXTRAL, 4, ep=4)
    assert (ep.num_local_experts, ep.expert_width, ep.moe_tp) == (2, 14336, 1)


def test_distinct_experts_saturate_and_plan_rows() -> None:
    shape = expert_shape(MIXTRAL, 1)
    _, one = expert_counts(shape, 1)
    _, many = expert_counts(shape, 100_000)
    weights = 3 * 4096 * 14336 * 2
    assert one > 2 * weights and many - 100_000 * 2 * (2 * 4096 + 3 * 14336) * 2 == pytest.approx(8 * weights)
    rows = moe_plan(MIXTRAL, [2], [1, 32], "float32")
    assert [r[0] for r in rows] == ["router_gemm", "moe_experts", "moe_sum"] * 2
    assert rows[0][3] == (1, 8, 4096) and rows[2][3] == (1, 3 * 4096)
    with pytest.raises(ScenarioError, match="dense model"):
        expert_shape(bundled_model_spec("llama-3.1-8b"), 1)


def test_mla_decode_counts_by_hand() -> None:
    flops, nbytes = mla_decode_counts(1, 1000, 16)
    assert flops == 2 * 16 * 1000 * (2 * 512 + 64)
    assert nbytes == (1000 * 576 + 16 * (2 * 512 + 64)) * 2


def fixture_table() -> pd.DataFrame:
    rows = []
    for kernel, scale in (("vllm_flashinfer_cutlass", 0.5), ("vllm_unquantizedfusedmoe_triton_tritonexperts", 1.0)):
        for m in TOKENS:
            for dist in ("balanced", "power_law_1.2"):
                rows.append({"kernel_source": kernel, "moe_dtype": "bfloat16", "num_tokens": m, "hidden_size": 4096, "inter_size": 14336, "topk": 2,
                             "num_experts": 8, "moe_tp_size": 2, "moe_ep_size": 1, "distribution": dist, "latency": scale * (0.1 + m * 1e-3)})
    return pd.DataFrame(rows)


def test_select_rows_keeps_balanced_triton_at_the_model_shape() -> None:
    d = select_rows(fixture_table(), MIXTRAL, 2)
    assert list(d.num_tokens) == list(TOKENS)
    assert set(d.kernel_source) == {"vllm_unquantizedfusedmoe_triton_tritonexperts"} and set(d.distribution) == {"balanced"}
    assert select_rows(fixture_table(), MIXTRAL, 4).empty


def write_bundle(root, tp: int = 2, seconds=lambda m: 1e-4 + m * 1e-6) -> None:
    root.mkdir(parents=True, exist_ok=True)
    shape = expert_shape(MIXTRAL, tp)
    with open(root / "moe.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MOE_COLUMNS)
        for m in TOKENS:
            w.writerow(("moe_experts", "fixture", "bfloat16", tp, *shape.key(m), 0.0, 0.0, seconds(m), "measured"))
    (root / "moe_profile.json").write_text(json.dumps({"format": 1, "provenance": {"source": "fixture"}}))


def cost(bundle, routing: MoERoutingConfig | None = None) -> ProfiledMoECostModel:
    return ProfiledMoECostModel(bundle, MIXTRAL, H100, 2, 1, RooflineConfig(), routing=routing)


def test_pricing_equals_the_table_at_measured_shapes_and_scales_the_roofline_past_it(tmp_path) -> None:
    write_bundle(tmp_path)
    c = cost(tmp_path)
    layer = c.moe_layer
    for m in TOKENS:
        assert layer.parts(m, m)["experts"] == pytest.approx(1e-4 + m * 1e-6, rel=1e-12)
    assert layer.parts(100, 100)["experts"] == pytest.approx(1e-4 + 100e-6)  # linear between 64 and 512
    roof = MoELayer(c, MIXTRAL, c.par, MoERoutingConfig())
    big, edge = 8000, 4096
    ratio = (roof.experts_time(big) + roof.combine_time(big)) / (roof.experts_time(edge) + roof.combine_time(edge))
    assert layer.parts(big, big)["experts"] == pytest.approx((1e-4 + edge * 1e-6) * ratio)
    # everything but the experts is the roofline's
    plain = MoELayer(c, MIXTRAL, c.par, MoERoutingConfig()).parts(64, 64)
    ours = layer.parts(64, 64)
    assert {k: v for k, v in ours.items() if k != "experts"} == {k: v for k, v in plain.items() if k != "experts"}


def test_skewed_routing_moves_the_price_by_the_roofline_ratio(tmp_path) -> None:
    write_bundle(tmp_path)
    zipf = MoERoutingConfig(distribution="zipf", zipf_exponent=1.5)
    c = cost(tmp_path, zipf)
    m = 8
    skew = c.moe_layer.experts_time(m) + c.moe_layer.combine_time(m)
    assert c.moe_layer.parts(m, m)["experts"] == pytest.approx((1e-4 + m * 1e-6) * skew / c.moe_layer.roofline_balanced_s(m))
    assert not math.isclose(skew, c.moe_layer.roofline_balanced_s(m))


def test_missing_moe_operators_give_one_line_naming_them(tmp_path) -> None:
    (tmp_path / "profile.json").write_text("{}")
    with pytest.raises(ScenarioError) as e:
        cost(tmp_path)
    assert "moe_experts" in str(e.value) and "\n" not in str(e.value)
    write_bundle(tmp_path / "tp4", tp=4)
    with pytest.raises(ScenarioError, match="no measurements of moe_experts at the float expert shape .* expert TP 2"):
        cost(tmp_path / "tp4")


def test_scenario_with_a_moe_profile_folder_and_an_unsupported_source(tmp_path) -> None:
    write_bundle(tmp_path / "b")
    path = REPO / "scenarios" / "azure-conv-mixtral-8x7b-h100-tp2.yaml"
    scenario = load_scenario(path, [f"hardware.profile={tmp_path / 'b'}"])
    model = build_cost_model(scenario, resolve_deployment(scenario, str(path)))
    assert isinstance(model, ProfiledMoECostModel)
    scenario = load_scenario(path, [f"hardware.profile=vidur:{tmp_path}"])
    with pytest.raises(ScenarioError, match=r"hold no MoE operators \(missing: moe_experts\)"):
        build_cost_model(scenario, resolve_deployment(scenario, str(path)))


@pytest.fixture(scope="module")
def installed_import(tmp_path_factory) -> tuple[Path, str]:
    """(bundle folder, stdout) of ``servesim profile import`` of Mixtral-8x7B at TP 2 from the
    installed package's H100 vLLM tables: one import shared by the tests that read it."""
    pytest.importorskip("aiconfigurator_core")
    from tests.conftest import servesim

    tmp = tmp_path_factory.mktemp("moe-import")
    proc = servesim("profile", "import", "aiconfigurator:h100_sxm/vllm/0.24.0", "--model", "mixtral-8x7b", "--tp", "2", "--out", str(tmp / "b"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "b", proc.stdout


def test_import_from_the_installed_package(installed_import) -> None:
    out, _ = installed_import
    manifest = json.loads((out / "moe_profile.json").read_text())
    assert "moe_experts (bfloat16, expert TP 2)" in manifest["operators"]["2"] and manifest["provenance"]["system"] == "h100_sxm"
    table = pd.read_csv(out / "moe.csv")
    assert (table[table.operator == "router_gemm"].median_s > 0).all()
    table = table[(table.operator == "moe_experts") & (table.dtype == "bfloat16") & (table.ep == 1)].reset_index(drop=True)
    assert (table.expert_width == 7168).all() and table.num_tokens.is_monotonic_increasing and (table.median_s > 0).all()
    c = cost(out)
    m = int(table.num_tokens.iloc[3])
    assert c.moe_layer.parts(m, m)["experts"] == pytest.approx(float(table.median_s.iloc[3]))


def test_profile_import_writes_the_moe_rows_of_a_toy_system(tmp_path, monkeypatch) -> None:
    from profiler.imports import import_profile
    from tests.test_profile_import_aiconfigurator import write_toy_system

    root = write_toy_system(tmp_path / "systems")
    path = root / "data" / "toy_sxm" / "moe" / "vllm" / "1.0" / "moe_perf.parquet"
    path.parent.mkdir(parents=True)
    fixture_table().assign(framework="VLLM", version="1.0", device="Toy GPU", op_name="moe").to_parquet(path)
    monkeypatch.setenv("AICONFIGURATOR_SYSTEMS", str(root))
    out = import_profile("aiconfigurator:toy_sxm/vllm/1.0", MIXTRAL, (2, 4), tmp_path / "b")
    manifest = json.loads((out / "moe_profile.json").read_text())
    assert manifest["operators"] == {"2": ["moe_experts (bfloat16, expert TP 2)", "router_gemm (bfloat16)"], "4": ["router_gemm (bfloat16)"]}
    assert manifest["provenance"]["file"] == "data/toy_sxm/moe/vllm/1.0/moe_perf.parquet" and manifest["provenance"]["device"] == "Toy GPU"
    table = pd.read_csv(out / "moe.csv")
    table = table[table.operator == "moe_experts"]
    assert list(table.num_tokens) == list(TOKENS) and np.allclose(table.median_s, [(0.1 + m * 1e-3) * 1e-3 for m in TOKENS])
    assert cost(out).moe_layer.parts(64, 64)["experts"] == pytest.approx((0.1 + 64e-3) * 1e-3)
    from profiler.commands import run_import

    result = run_import("aiconfigurator:toy_sxm/vllm/1.0", "mixtral-8x7b", "2", tmp_path / "c", fit=True)
    assert result["fit"] is None and result["provenance"]["operators"]["moe_experts|bfloat16|tp2"] == {"rows": {"measured": len(TOKENS)}}


def test_cpu_profile_of_a_tiny_moe_model_prices_its_experts(tmp_path) -> None:
    pytest.importorskip("torch")
    from profiler import TINY_MOE_MODEL_CONFIG
    from profiler.moe_profile import balanced_topk, grouped_experts, profile_moe
    from simulator.specs.model import model_spec_from_hf_config
    import torch

    # the grouped loop equals a dense per-token reference
    x = torch.randn(5, 8)
    ids, weights = balanced_topk(5, 4, 2, "cpu")
    w13, w2 = torch.randn(4, 6, 8), torch.randn(4, 8, 3)
    ref = torch.stack([sum(0.5 * (torch.nn.functional.silu(w13[e, :3] @ x[i]) * (w13[e, 3:] @ x[i])) @ w2[e].T for e in ids[i].tolist()) for i in range(5)])
    assert torch.allclose(grouped_experts(x, ids, weights, w13, w2), ref, atol=1e-5)
    assert sorted(ids[:2].flatten().tolist()) == [0, 1, 2, 3]

    tiny = model_spec_from_hf_config(TINY_MOE_MODEL_CONFIG, name="tiny-mixtral")
    assert profile_moe(tiny, (1,), [1, 4, 16], "cpu", tmp_path, min_time_s=0.002) == 9
    table = pd.read_csv(tmp_path / "moe.csv")
    assert list(table.operator[:3]) == ["router_gemm", "moe_experts", "moe_sum"] and (table.median_s > 0).all()
    c = ProfiledMoECostModel(tmp_path, tiny, H100, 1, 1, RooflineConfig())
    measured = table[table.operator == "moe_experts"].set_index("num_tokens").median_s
    assert c.moe_layer.parts(4, 4)["experts"] == pytest.approx(measured[4])


def test_fp8_and_expert_parallel_rows_are_read_by_their_own_split(tmp_path) -> None:
    write_bundle(tmp_path)
    with pytest.raises(ScenarioError, match="no measurements of moe_experts at the fp8 expert shape"):
        ProfiledMoECostModel(tmp_path, MIXTRAL, H100, 2, 1, RooflineConfig(), quantization="fp8")
    with pytest.raises(ScenarioError, match="EP 2, expert TP 1"):
        ProfiledMoECostModel(tmp_path, MIXTRAL, H100, 1, 1, RooflineConfig(), data_parallel_size=2, expert_parallel=True)


def test_router_gemm_rows_price_the_router(tmp_path) -> None:
    write_bundle(tmp_path)
    shape = expert_shape(MIXTRAL, 2)
    with open(tmp_path / "moe.csv", "a", newline="") as f:
        w = csv.writer(f)
        for m in TOKENS:
            w.writerow(("router_gemm", "fixture", "bfloat16", 2, m, shape.num_local_experts, 2, 4096, 0, 1, 2, 0.0, 0.0, 2e-6 + m * 1e-9, "measured"))
    c = cost(tmp_path)
    softmax = c.elementwise_time(2 * 64 * 8 * 4)
    assert c.moe_layer.parts(64, 64)["router"] == pytest.approx(2e-6 + 64e-9 + softmax)
    assert c.sources["router"] == "measured: router_gemm"


def test_deepseek_v3_imports_fp8_experts_and_the_mla_module_tables(tmp_path) -> None:
    pytest.importorskip("aiconfigurator_core")
    from profiler.imports.aiconfigurator_moe import import_moe

    out = import_moe("h200_sxm/vllm/0.24.0", bundled_model_spec("deepseek-v3"), (8,), tmp_path)
    manifest = json.loads((out / "moe_profile.json").read_text())
    assert "moe_experts (fp8, EP 8)" in manifest["operators"]["8"] and manifest["mla"]["priced"] is True
    mla = pd.read_csv(out / "mla.csv")
    assert set(mla.operator) == {"mla_module_prefill", "mla_module_decode"} and set(mla.dtype) == {"bfloat16", "fp8"}
    assert {128, 16, 1} <= set(mla.num_heads)  # every attention TP degree: data-parallel attention holds all 128 heads
    assert manifest["mla"]["files"][0].startswith("data/h200_sxm/mla/vllm/")
    # the prefill grid joins the two backends the collector recorded (isl <= 512 and >= 1024), one row per point
    pre = mla[(mla.operator == "mla_module_prefill") & (mla.dtype == "fp8") & (mla.num_heads == 128)]
    assert not pre.duplicated(["num_seqs", "new_tokens"]).any() and pre.new_tokens.max() == 32768 and pre.new_tokens.min() == 1


def test_the_command_line_says_a_moe_bundle_is_ready_without_a_fit(installed_import) -> None:
    out, stdout = installed_import
    assert f"use it: --set hardware.profile={out}" in stdout and "servesim fit" not in stdout