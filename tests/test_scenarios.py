"""Every bundled scenario loads and resolves; the quickstart file spells out the defaults."""

import dataclasses
from pathlib import Path

import pytest

from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.scenario import Scenario, load_scenario
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_names, bundled_model_spec
from tests.conftest import REPO

SCENARIOS = sorted(p for p in (REPO / "scenarios").glob("*.yaml") if not p.name.startswith(("compare-", "plan-")))  # sweeps and plans have their own tests


def test_scenarios_exist():
    assert {p.name for p in SCENARIOS} >= {"quickstart.yaml", "azure-conv-llama3-8b-h100.yaml"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_bundled_scenario_loads_and_resolves(path: Path):
    scenario = load_scenario(path)
    deployment = resolve_deployment(scenario, str(path))
    assert deployment.num_kv_blocks > 0
    if scenario.workload.trace:
        assert Path(scenario.workload.trace).is_absolute()


def test_quickstart_file_equals_builtin_defaults():
    loaded = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    assert dataclasses.replace(loaded, description="") == Scenario()


def test_bundled_models_match_published_sizes():
    assert set(bundled_model_names()) >= {"llama-2-7b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "mistral-7b", "qwen2.5-7b", "qwen2.5-32b"}
    # Parameter counts from the model cards (billions), within 2 %.
    published = {"llama-2-7b": 6.74, "llama-2-70b": 68.98, "llama-3-8b": 8.03, "llama-3-70b": 70.55, "mistral-7b": 7.24, "qwen2.5-7b": 7.62, "qwen2.5-32b": 32.76}
    for name, billions in published.items():
        assert bundled_model_spec(name).num_params / 1e9 == pytest.approx(billions, rel=0.02), name


def test_bundled_gpus_have_sources():
    assert set(GPUS) >= {"a100-80gb-sxm", "h100-sxm", "h200", "l40s", "b200", "rtx-4090"}
    for gpu in GPUS.values():
        assert gpu.source and gpu.bf16_flops > 0 and gpu.memory_bandwidth > 0


def test_kv_capacity_llama3_8b_h100():
    # 80 GB x 0.9 = 67.1 GiB usable; 15.0 GiB weights; 128 KiB of KV per token (32 layers x 8 KV
    # heads x 128 x 2 x 2 bytes), so about 49 GiB / 2 MiB per 16-token block = ~25k blocks.
    d = resolve_deployment(Scenario())
    assert d.weight_bytes_per_gpu / 2**30 == pytest.approx(14.96, abs=0.05)
    assert 24_000 < d.num_kv_blocks < 27_000


def test_model_from_hugging_face_config_path(tmp_path):
    import json

    config = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 512,
              "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    scenario = load_scenario(None, [f"model.config={path}"])
    d = resolve_deployment(scenario)
    assert (d.model.num_layers, d.model.num_kv_heads, d.model.head_dim, d.max_model_len) == (4, 2, 32, 2048)


def test_hugging_face_config_missing_field_is_a_clear_error(tmp_path):
    from simulator.errors import ScenarioError

    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 256}')
    with pytest.raises(ScenarioError, match="num_hidden_layers"):
        resolve_deployment(load_scenario(None, [f"model.config={path}"]))


def test_chunked_prefill_budget_may_be_below_the_context():
    # vLLM v0 refuses a budget below max_model_len; chunked prefill splits long prompts instead.
    common = ["model.max_model_len=8192", "scheduler.max_num_batched_tokens=2048"]
    with pytest.raises(ScenarioError, match="scheduler.max_num_batched_tokens"):
        resolve_deployment(load_scenario(None, common + ["scheduler.name=vllm"]))
    assert resolve_deployment(load_scenario(None, common + ["scheduler.name=vllm_v1"])).max_num_batched_tokens == 2048
    sarathi = resolve_deployment(load_scenario(None, common + ["scheduler.name=sarathi", "scheduler.chunk_size=256"]))
    assert sarathi.max_num_batched_tokens == 256  # sizes the activation reserve
    v1_default = resolve_deployment(load_scenario(None, ["scheduler.name=vllm_v1"]))
    assert v1_default.max_num_batched_tokens == 8192
