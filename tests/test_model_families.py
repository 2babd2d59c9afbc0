"""Model families read from config.json: each family's own fields, and one-line errors for what is not understood.

Toy configs are written by the tests; the expected parameter counts are worked out by hand from
the modules each family's Hugging Face modelling code creates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.errors import ScenarioError
from simulator.specs.model import model_spec_from_hf_config
from tests.conftest import REPO

# A toy width shared by the fixtures: h 64, 4 query heads and 2 KV heads of 16, MLP 128, 2 layers.
TOY = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "num_hidden_layers": 2,
       "vocab_size": 100, "max_position_embeddings": 256, "tie_word_embeddings": False}
# Per layer of the toy Llama: q 64x64 + k, v 64x32 each + o 64x64 = 12,288; gate, up, down 3 x 64 x 128 = 24,576;
# two RMSNorm weights 128. Embedding and lm_head 2 x 100 x 64, final norm 64.
TOY_ATTENTION, TOY_MLP, TOY_NORMS, TOY_VOCAB = 12_288, 24_576, 128, 12_800


def write_config(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    return path


def read(tmp_path: Path, **fields):
    return model_spec_from_hf_config(write_config(tmp_path, **fields))


def test_llama_toy_counts_by_hand(tmp_path):
    spec = read(tmp_path, model_type="llama", **TOY)
    assert spec.num_params == 2 * (TOY_ATTENTION + TOY_MLP + TOY_NORMS) + TOY_VOCAB + 64 == 86_848
    assert (spec.ffn_kind, spec.norm_kind, spec.position_kind, spec.moe) == ("gated_silu", "rmsnorm", "rotary", None)


def test_qwen2_has_qkv_bias_and_qwen3_a_per_head_qk_norm(tmp_path):
    qwen2 = read(tmp_path, model_type="qwen2", **TOY)
    assert qwen2.attention_bias and not qwen2.o_proj_bias
    assert qwen2.num_params == 86_848 + 2 * (64 + 2 * 32)  # q, k, v biases per layer
    qwen3 = read(tmp_path, model_type="qwen3", head_dim=32, **TOY)
    assert qwen3.qk_norm == "rmsnorm" and qwen3.head_dim == 32
    # head_dim 32: q 64x128 + k, v 64x64 each + o 128x64 = 24,576; q_norm and k_norm 2 x 32.
    assert qwen3.num_params == 2 * (24_576 + 64 + TOY_MLP + TOY_NORMS) + TOY_VOCAB + 64


def test_sliding_windows_per_family(tmp_path):
    mistral = read(tmp_path, model_type="mistral", sliding_window=32, **TOY)
    assert (mistral.sliding_window, mistral.sliding_layers) == (32, (0, 1))
    assert read(tmp_path, model_type="mistral", sliding_window=None, **TOY).sliding_layers == ()
    # Qwen: the window applies only with use_sliding_window, from layer max_window_layers on.
    assert read(tmp_path, model_type="qwen2", sliding_window=32, **TOY).sliding_window is None
    qwen = read(tmp_path, model_type="qwen3", sliding_window=32, use_sliding_window=True, max_window_layers=1, **TOY)
    assert (qwen.sliding_window, qwen.sliding_layers) == (32, (1,))


def test_opt_reads_ffn_dim_relu_layernorm_learned_positions(tmp_path):
    fields = {k: v for k, v in TOY.items() if k not in ("intermediate_size", "num_key_value_heads", "tie_word_embeddings")}
    spec = read(tmp_path, model_type="opt", ffn_dim=256, activation_function="relu", word_embed_proj_dim=64, **fields)
    assert (spec.ffn_kind, spec.norm_kind, spec.position_kind, spec.intermediate_size) == ("relu", "layernorm", "learned", 256)
    assert spec.num_kv_heads == 4 and spec.tie_word_embeddings and spec.word_embed_proj_dim is None
    # Per layer: q, k, v, out_proj 4 x 64 x 64 + 4 x 64 biases = 16,640; fc1 64x256 + 256, fc2 256x64 + 64 = 33,088;
    # two LayerNorms (weight and bias) 256. Tied embedding 100 x 64, positions (256 + 2) x 64, final LayerNorm 128.
    assert spec.num_params == 2 * (16_640 + 33_088 + 256) + 6_400 + 258 * 64 + 128
    narrow = read(tmp_path, model_type="opt", ffn_dim=256, word_embed_proj_dim=32, **fields)
    # A 32-wide embedding: the table is 100 x 32, project_in and project_out 32 x 64 each.
    assert narrow.embedding_dim == 32
    assert narrow.num_params == spec.num_params - 6_400 + 3_200 + 2 * 2_048
    with pytest.raises(ScenarioError, match=r"activation_function = 'gelu'"):
        read(tmp_path, model_type="opt", ffn_dim=256, activation_function="gelu", **fields)


def test_mixtral_experts_total_and_active(tmp_path):
    spec = read(tmp_path, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, **TOY)
    assert spec.moe is not None and spec.moe.moe_layers == (0, 1)
    # Per layer: router 64 x 4 plus 4 experts of 24,576; a token runs 2 of them.
    layer = TOY_ATTENTION + TOY_NORMS + 256 + 4 * TOY_MLP
    assert spec.num_params == 2 * layer + TOY_VOCAB + 64
    assert spec.num_active_params == spec.num_params - 2 * 2 * TOY_MLP
    with pytest.raises(ScenarioError, match="num_experts_per_tok = 8: exceeds the 4 experts"):
        read(tmp_path, model_type="mixtral", num_local_experts=4, num_experts_per_tok=8, **TOY)


def test_qwen3_moe_sparse_step_and_dense_only_layers(tmp_path):
    fields = dict(TOY, num_hidden_layers=6)
    spec = read(tmp_path, model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                decoder_sparse_step=2, mlp_only_layers=[3], **fields)
    assert spec.moe.moe_layers == (1, 5)  # (i + 1) % 2 == 0, but layer 3 is dense
    assert spec.qk_norm == "rmsnorm" and spec.moe.expert_intermediate_size == 32
    with pytest.raises(ScenarioError, match="mlp_only_layers"):
        read(tmp_path, model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, mlp_only_layers=[6], **fields)


def test_deepseek_v3_dense_first_layers_shared_experts_and_mla(tmp_path):
    fields = dict(TOY, num_hidden_layers=4, num_key_value_heads=4)
    spec = read(tmp_path, model_type="deepseek_v3", n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=32,
                first_k_dense_replace=1, q_lora_rank=24, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, **fields)
    assert spec.moe.moe_layers == (1, 2, 3) and spec.mla.kv_lora_rank == 16
    assert spec.head_dim == 24 and spec.kv_elements_per_token_layer() == 16 + 8  # the latent and the shared rotary key
    # MLA per layer: q_a 64x24 + its norm 24 + q_b 24 x 4 x 24; kv_a 64 x (16 + 8) + its norm 16 + kv_b 16 x 4 x (16 + 16); o 4 x 16 x 64.
    attention = 1_536 + 24 + 2_304 + 1_536 + 16 + 2_048 + 4_096
    expert = 3 * 64 * 32
    moe_mlp = 64 * 8 + 8 * expert + expert  # router, 8 routed experts, 1 shared expert of the same width
    total = 4 * (attention + TOY_NORMS) + TOY_MLP + 3 * moe_mlp + TOY_VOCAB + 64
    assert spec.num_params == total
    assert spec.num_active_params == total - 3 * 6 * expert


def test_gpt_oss_alternating_windows_biases_and_sinks(tmp_path):
    fields = dict(TOY, num_hidden_layers=4)
    spec = read(tmp_path, model_type="gpt_oss", num_local_experts=4, experts_per_token=2, sliding_window=16,
                layer_types=["sliding_attention", "full_attention"] * 2, **fields)
    assert (spec.sliding_layers, spec.sliding_window, spec.attention_sinks) == ((0, 2), 16, True)
    # Attention with biases (q, k, v 128, o 64) and 4 sinks; experts with biases (2 x 128 + 64); router with a bias.
    attention = TOY_ATTENTION + 128 + 64 + 4
    expert = TOY_MLP + 2 * 128 + 64
    assert spec.num_params == 4 * (attention + TOY_NORMS + 64 * 4 + 4 + 4 * expert) + TOY_VOCAB + 64
    with pytest.raises(ScenarioError, match="layer_types"):
        read(tmp_path, model_type="gpt_oss", num_local_experts=4, experts_per_token=2, sliding_window=16, layer_types=["sliding_attention"], **fields)


def test_llama4_text_config_interleaved_moe_and_shared_expert(tmp_path):
    text = dict(TOY, num_hidden_layers=4, intermediate_size=32, intermediate_size_mlp=128, num_local_experts=4, num_experts_per_tok=1,
                interleave_moe_layer_step=2, use_qk_norm=True, model_type="llama4_text")
    spec = read(tmp_path, model_type="llama4", architectures=["Llama4ForConditionalGeneration"], text_config=text)
    assert spec.moe.moe_layers == (1, 3) and spec.qk_norm == "l2" and spec.intermediate_size == 128
    expert = 3 * 64 * 32
    assert spec.num_params == 4 * (TOY_ATTENTION + TOY_NORMS) + 2 * TOY_MLP + 2 * (64 * 4 + 4 * expert + expert) + TOY_VOCAB + 64


def test_unknown_model_type_is_one_line_naming_file_field_value_and_the_supported_list(tmp_path):
    path = write_config(tmp_path, model_type="falcon", **TOY)
    with pytest.raises(ScenarioError) as e:
        model_spec_from_hf_config(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: model_type = 'falcon': ")
    for family in ("llama", "mistral", "qwen2", "qwen3", "opt", "mixtral", "qwen3_moe", "deepseek_v3", "gpt_oss", "llama4"):
        assert family in message


@pytest.mark.parametrize("fields, field", [
    ({"model_type": "llama", "num_local_experts": 8, "num_experts_per_tok": 2}, "num_local_experts"),  # Mixtral typed as Llama
    ({"num_experts": 8, "moe_intermediate_size": 32}, "num_experts"),  # no model_type: read as Llama, but it has experts
    ({"model_type": "qwen3", "num_experts": 8}, "num_experts"),
    ({"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1}, "n_shared_experts"),
    ({"model_type": "llama", "architectures": ["MixtralForCausalLM"]}, "architectures"),
])
def test_moe_looking_configs_the_reader_would_misread_are_refused(tmp_path, fields, field):
    with pytest.raises(ScenarioError) as e:
        read(tmp_path, **TOY, **fields)
    assert f": {field} = " in str(e.value) and "\n" not in str(e.value)


def test_servesim_check_refuses_them_in_one_line(tmp_path):
    config = write_config(tmp_path, model_type="llama", num_local_experts=8, num_experts_per_tok=2, **TOY)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(dict(TOY, model_type="mamba")))
    for path, words in ((config, "num_local_experts = 8"), (unknown, "model_type = 'mamba'")):
        proc = subprocess.run([sys.executable, "-m", "simulator.cli", "check", str(REPO / "scenarios" / "quickstart.yaml"), "--set", f"model.config={path}"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("name, total, active", [
    # Published figures (billions): Mistral AI's announcements, Qwen's and Meta's model cards, DeepSeek-V3's
    # report, OpenAI's gpt-oss model card (active without the embedding), OPT's and Code Llama's papers (sizes
    # by name only); benchmarks/model_params.py prints the sources.
    ("mixtral-8x7b", 46.7, 12.9), ("mixtral-8x22b", 141, 39), ("qwen3-30b-a3b", 30.5, 3.3), ("qwen3-235b-a22b", 235, 22),
    ("deepseek-v3", 671, 37), ("llama-4-scout", 109, 17), ("qwen3-8b", 8.2, None), ("qwen3-14b", 14.8, None), ("qwen3-32b", 32.8, None),
    ("opt-13b", 13, None), ("codellama-34b", 34, None), ("gpt-oss-20b", 20.91, None), ("gpt-oss-120b", 116.83, None),
])
def test_bundled_models_match_published_parameter_counts(name, total, active):
    from simulator.specs.model import bundled_model_spec

    spec = bundled_model_spec(name)
    assert spec.num_params / 1e9 == pytest.approx(total, rel=0.02)
    if active is not None:
        assert spec.num_active_params / 1e9 == pytest.approx(active, rel=0.02)


def test_gpt_oss_active_parameters_as_its_model_card_counts_them():
    from simulator.specs.model import bundled_model_spec

    for name, active in (("gpt-oss-20b", 3.61), ("gpt-oss-120b", 5.13)):
        spec = bundled_model_spec(name)
        assert (spec.num_active_params - spec.vocab_size * spec.hidden_size) / 1e9 == pytest.approx(active, abs=0.005)


# -- pricing the dense families ---------------------------------------------------------------
def roofline(model, gpu=None, **overrides):
    from simulator.cost_models.roofline import RooflineCostModel
    from simulator.scenario import RooflineConfig
    from simulator.specs.gpu import GPUS

    return RooflineCostModel(model, gpu or GPUS["h100-sxm"], 1, 1, RooflineConfig(**overrides))


def compute_only_gpu():
    """An H100 with boundless memory bandwidth: every memory-bound kernel costs nothing, a GEMM its FLOPs at peak."""
    import dataclasses

    from simulator.specs.gpu import GPUS

    return dataclasses.replace(GPUS["h100-sxm"], memory_bandwidth=1e30, aiconfigurator_system=None)


EXACT = dict(gemm_flops_efficiency=1.0, gemm_bandwidth_efficiency=1.0, attention_flops_efficiency=1.0, attention_bandwidth_efficiency=1.0,
             elementwise_bandwidth_efficiency=1.0, link_bandwidth_efficiency=1.0, kernel_launch_s=0.0, attention_launch_s=0.0)


def llama_twin(model):
    """A Llama-layout model of ``model``'s widths: gated SiLU MLP, RMSNorm, rotary."""
    from simulator.specs.model import ModelSpec

    return ModelSpec(name="llama-twin", num_layers=model.num_layers, hidden_size=model.hidden_size, intermediate_size=model.intermediate_size,
                     num_attention_heads=model.num_attention_heads, num_kv_heads=model.num_kv_heads, head_dim=model.head_dim,
                     vocab_size=model.vocab_size, max_position_embeddings=model.max_position_embeddings)


def test_opt_13b_layer_runs_no_gate_gemm():
    from simulator.specs.model import bundled_model_spec

    opt = bundled_model_spec("opt-13b")
    h, ffn = 5120, 20480
    # GEMM FLOPs per token per layer, by hand: QKV h x 3h, O h x h, fc1 h x ffn, fc2 ffn x h, 2 FLOPs per multiply-add.
    opt_flops = 2 * (h * 3 * h + h * h + h * ffn + ffn * h)
    assert opt_flops == 629_145_600
    twin_flops = opt_flops + 2 * h * ffn  # the same widths with a gate: one more h x ffn GEMM
    gpu = compute_only_gpu()
    m = 4096
    for model, flops in ((opt, opt_flops), (llama_twin(opt), twin_flops)):
        cost = roofline(model, gpu, **EXACT)
        assert cost.layer_token_time(m) * gpu.bf16_flops == pytest.approx(m * flops, rel=1e-9)
    assert set(roofline(opt).linear_shapes()) == {"qkv_proj", "o_proj", "up_proj", "down_proj"}
    assert [name for name, _, _ in roofline(opt).layer_elementwise()] == ["add_layernorm", "kv_cache_write", "relu"]


def test_opt_13b_decode_step_is_cheaper_by_the_gate_weights_it_does_not_read():
    from simulator.engine.batch import Batch
    from simulator.engine.request import Request
    from simulator.specs.gpu import GPUS
    from simulator.specs.model import bundled_model_spec

    opt = bundled_model_spec("opt-13b")
    gpu = GPUS["h100-sxm"]
    batch = Batch.of_decodes([Request(0, 0.0, 100, 10, num_computed_tokens=100)])
    opt_cost, twin_cost = roofline(opt, gpu, **EXACT), roofline(llama_twin(opt), gpu, **EXACT)
    # Batch 1 is memory-bound: the twin also reads 40 gate matrices of 5,120 x 20,480 bf16 weights (8.4 GB).
    gate_bytes = 40 * 5120 * 20480 * 2
    difference = twin_cost.step_time(batch) - opt_cost.step_time(batch)
    assert difference == pytest.approx(gate_bytes / gpu.memory_bandwidth, rel=0.01)


def test_qwen3_prices_its_per_head_qk_norm():
    from simulator.specs.model import bundled_model_spec

    qwen3 = bundled_model_spec("qwen3-8b")
    names = [name for name, _, _ in roofline(qwen3).layer_elementwise()]
    assert names == ["add_rmsnorm", "qk_norm", "rotary", "kv_cache_write", "silu_mul"]
    extra = roofline(qwen3).layer_token_time(256) - roofline(llama_twin(qwen3)).layer_token_time(256)
    assert extra > 0  # the q and k norms: two more memory-bound kernels


def test_windowed_prefill_pairs_by_hand():
    from simulator.cost_models.roofline import windowed_prefill

    # 100 new tokens from position 1, window 32: positions 1..32 see themselves and all before (528 pairs), 68 more see 32.
    assert windowed_prefill(100, 0, 32) == (528 + 68 * 32, 100)
    # 10 tokens after 50 cached: every query sees 32 keys; the keys read start at position 51 - 31 + 1 = 21 (41 tokens).
    assert windowed_prefill(10, 50, 32) == (320, 41)
    assert windowed_prefill(10, 5, 32) == (10 * (5 + 11 / 2), 15)  # within the window: the causal count


def decode_batch(contexts):
    from simulator.engine.batch import Batch
    from simulator.engine.request import Request

    return Batch.of_decodes([Request(i, 0.0, c - 1, 10, num_computed_tokens=c - 1) for i, c in enumerate(contexts)])


def memory_only(model):
    import dataclasses

    from simulator.specs.gpu import GPUS

    gpu = dataclasses.replace(GPUS["h100-sxm"], bf16_flops=1e30, aiconfigurator_system=None)
    return roofline(model, gpu, **EXACT), gpu


def test_sliding_window_bounds_decode_attention():
    from simulator.specs.model import bundled_model_spec

    mistral = bundled_model_spec("mistral-7b")  # window 4,096 on all 32 layers
    cost, _ = memory_only(mistral)
    at_window, far = cost.step_time(decode_batch([4096, 4096])), cost.step_time(decode_batch([4096, 20_000]))
    assert far == at_window  # past the window a layer reads 4,096 tokens of context, however long the request
    twin, gpu = memory_only(llama_twin(mistral))
    # Without the window the longer context reads 15,904 more tokens of K and V on each layer: 32 layers x 8 KV heads x 128 x 2 x 2 bytes each.
    grown = twin.step_time(decode_batch([4096, 20_000])) - twin.step_time(decode_batch([4096, 4096]))
    assert grown == pytest.approx(15_904 * 32 * 8 * 128 * 2 * 2 / gpu.memory_bandwidth, rel=1e-9)


def test_alternating_windows_bound_half_the_layers():
    import dataclasses

    from simulator.specs.model import bundled_model_spec

    base = bundled_model_spec("llama-3-8b")
    alternating = dataclasses.replace(base, sliding_window=128, sliding_layers=tuple(range(0, 32, 2)))  # gpt-oss's pattern, dense
    cost, gpu = memory_only(alternating)
    grown = cost.step_time(decode_batch([10_000])) - cost.step_time(decode_batch([1_000]))
    # Only the 16 full-attention layers read the 9,000 extra tokens (8 KV heads x 128 x K and V x 2 bytes each).
    assert grown == pytest.approx(9_000 * 16 * 8 * 128 * 2 * 2 / gpu.memory_bandwidth, rel=1e-9)


def test_servesim_run_prices_an_moe_model_and_a_profile_of_one_is_refused_in_one_line(tmp_path):
    base = [sys.executable, "-m", "simulator.cli", "run", str(REPO / "scenarios" / "quickstart.yaml"), "--set", "model.name=mixtral-8x7b",
            "--set", "cluster.tensor_parallel_size=2", "--set", "workload.num_requests=5", "--no-report"]
    proc = subprocess.run(base + ["--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(base + ["--set", f"hardware.profile={tmp_path}", "--out", str(tmp_path / "out2")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hardware.profile" in lines[0] and "mixture-of-experts" in lines[0] and "mixtral-8x7b" in lines[0]


def test_profiled_cost_model_prices_opt_from_its_bundle(tmp_path):
    from profiler.catalogue import ELEMENTWISE, GEMM, gemm_counts
    from simulator.cost_models import ProfiledCostModel
    from simulator.scenario import RooflineConfig
    from simulator.specs.gpu import GPUS
    from tests.test_profiler_fit import known_time, synthetic_bundle

    opt = read(tmp_path, model_type="opt", ffn_dim=256, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=100, max_position_embeddings=512)
    root = synthetic_bundle(tmp_path / "bundle", tps=(1,), model=opt)
    cost = ProfiledCostModel(root, opt, GPUS["h100-sxm"], 1, 1, RooflineConfig(), 2, "none", 256)
    names = [name for name, _, _ in cost.layer_operators]
    assert names == ["qkv_proj", "o_proj", "up_proj", "down_proj", "add_layernorm", "kv_cache_write", "relu"]
    for m in (1, 37, 100):
        # The synthetic device's time of each operator at its bytes, float32: GEMMs (n, k) QKV 3h x h, O h x h, up 4h x h, down h x 4h;
        # add + LayerNorm 5 m h, the KV write 4 m (kv width), ReLU 2 m ffn; the embedding 2 m h and the position embedding 5 m h.
        layer = sum(known_time(GEMM, {}, *gemm_counts(m, n, k, "float32")) for n, k in ((192, 64), (64, 64), (256, 64), (64, 256)))
        layer += 2 * known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, 5 * m * 64 * 4)
        layer += known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, 4 * m * 64 * 4) + known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, 2 * m * 256 * 4)
        embedding = known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, 2 * m * 64 * 4) + known_time(ELEMENTWISE, {"num_tokens": m}, 0.0, 5 * m * 64 * 4)
        assert cost.token_time(m) == pytest.approx(2 * layer + embedding, rel=0.03)
    parts = cost.step_breakdown(decode_batch([50, 90]))
    assert {"up_proj", "relu", "add_layernorm", "layernorm", "lm_head"} <= set(parts) and "rotary" not in parts
    assert sum(parts.values()) == pytest.approx(cost.step_time(decode_batch([50, 90])), rel=1e-9)


def test_profiled_cost_model_bounds_sliding_window_decode(tmp_path):
    import dataclasses

    from simulator.cost_models import ProfiledCostModel
    from simulator.scenario import RooflineConfig
    from simulator.specs.gpu import GPUS
    from tests.test_profiler_fit import TINY, synthetic_bundle

    root = synthetic_bundle(tmp_path / "bundle", tps=(1,))
    windowed = dataclasses.replace(TINY, sliding_window=64, sliding_layers=tuple(range(TINY.num_layers)))
    cost = ProfiledCostModel(root, windowed, GPUS["h100-sxm"], 1, 1, RooflineConfig(), 2, "none", 256)
    plain = ProfiledCostModel(root, TINY, GPUS["h100-sxm"], 1, 1, RooflineConfig(), 2, "none", 256)
    assert cost.step_time(decode_batch([64, 64])) == cost.step_time(decode_batch([64, 400]))
    assert plain.step_time(decode_batch([64, 400])) > plain.step_time(decode_batch([64, 64]))


def test_cpu_profiler_builds_every_operator_of_opt_and_qwen3(tmp_path):
    torch = pytest.importorskip("torch")
    from profiler.catalogue import plan
    from profiler.ops import Builder
    from profiler.sweeps import SweepConfig

    sweep = SweepConfig.for_device("cpu").replace(max_tokens=16, points_per_octave=1, max_num_seqs=2, max_context=64)
    opt = read(tmp_path, model_type="opt", ffn_dim=256, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=100, max_position_embeddings=64)
    qwen3 = read(tmp_path, model_type="qwen3", **dict(TOY, max_position_embeddings=64))
    for model, own in ((opt, {"up_proj", "relu", "add_layernorm", "position_embedding", "layernorm"}), (qwen3, {"qk_norm"})):
        rows = plan(model, [1], sweep, "float32", {})
        assert own <= {m.operator for m in rows}
        builder = Builder(torch.device("cpu"), model)
        for m in rows:
            if m.operator in own:
                builder.build(m, "float32")()  # runs on the CPU


# -- memory plan ----------------------------------------------------------------------------------
def test_experts_are_sharded_over_tp_and_stages_hold_their_own_layers():
    from simulator.engine.deployment import weight_bytes_per_gpu
    from simulator.specs.model import bundled_model_spec

    mixtral = bundled_model_spec("mixtral-8x7b")
    # All 46.7 B parameters in bf16 over 2 GPUs: every expert is split, none replicated (the 32 routers, 8 x 4096 each, are).
    assert weight_bytes_per_gpu(mixtral, 2, 1, 2) == pytest.approx((46.7e9 / 2 + 32 * 8 * 4_096 / 2) * 2, rel=0.002)
    deepseek = bundled_model_spec("deepseek-v3")
    # One layer by hand. MLA: q_a 7168 x 1536 + norm, q_b 1536 x 128 x 192, kv_a 7168 x 576 + norm 512, kv_b 512 x 128 x 256, o 128 x 128 x 7168.
    h = 7_168
    attention = h * 1_536 + 1_536 + 1_536 * 128 * 192 + h * 576 + 512 + 512 * 128 * 256 + 128 * 128 * h
    expert = 3 * h * 2_048
    moe_layer = attention + 2 * h + 256 * h + 256 + 257 * expert  # router and its bias, 256 routed experts and 1 shared
    dense_layer = attention + 2 * h + 3 * h * 18_432
    assert (deepseek.params_of_layer(60), deepseek.params_of_layer(0)) == (moe_layer, dense_layer)
    # PP 2: stage 0 holds layers 0-30 (the 3 dense ones) and the embedding, stage 1 layers 31-60, the final norm and lm_head.
    table = 129_280 * h
    stage0, stage1 = 3 * dense_layer + 28 * moe_layer + table, 30 * moe_layer + table + h
    assert stage1 > stage0
    router = 256 * h + 256  # replicated on every GPU
    assert weight_bytes_per_gpu(deepseek, 8, 2, 1) == pytest.approx((stage1 - 30 * router) / 8 + 30 * router, rel=1e-9)
    # Expert parallelism over TP 8 x DP 1: 32 whole experts per GPU instead of 1/8 of each of 256: the same bytes.
    assert weight_bytes_per_gpu(deepseek, 8, 2, 1, expert_parallel=True) == pytest.approx(weight_bytes_per_gpu(deepseek, 8, 2, 1), rel=1e-9)
    # DP 8 attention with EP 8, TP 1: attention, norms and the shared expert whole on every GPU, 32 routed experts.
    moe_rest = moe_layer - router - 256 * expert
    expect = 30 * (moe_rest + router + 32 * expert) + table + h
    assert weight_bytes_per_gpu(deepseek, 1, 2, 1, dp=8, expert_parallel=True) == pytest.approx(expect, rel=1e-9)


def test_kv_cache_of_latent_attention_and_of_sliding_windows():
    from simulator.engine.deployment import kv_cache_layout
    from simulator.specs.model import bundled_model_spec

    # DeepSeek-V3: 512 latent + 64 rotary-key elements per layer and token, bf16, the same on every TP rank.
    block, _ = kv_cache_layout(bundled_model_spec("deepseek-v3"), 8, 1, 16, 2, 256)
    assert block == 16 * 61 * (512 + 64) * 2
    # gpt-oss-120b at TP 4: the pool holds the 18 full-attention layers (2 KV heads per GPU x 64 x K and V x 2 bytes);
    # the 18 sliding layers keep 128 tokens: ceil(128 / 16) + 1 = 9 blocks for each of 256 requests.
    block, reserve = kv_cache_layout(bundled_model_spec("gpt-oss-120b"), 4, 1, 16, 2, 256)
    assert block == 16 * 18 * 2 * 2 * 64 * 2
    assert reserve == 256 * 9 * 16 * 18 * 2 * 2 * 64 * 2
    # Mistral slides on every layer: the pool keeps them all (the whole context per request).
    assert kv_cache_layout(bundled_model_spec("mistral-7b"), 1, 1, 16, 2, 256) == (16 * 32 * 2 * 8 * 128 * 2, 0.0)


def test_servesim_check_gives_an_moe_memory_plan(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "check", str(REPO / "scenarios" / "quickstart.yaml"), "--set", "model.name=mixtral-8x7b",
                           "--set", "cluster.tensor_parallel_size=2"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mixtral-8x7b" in proc.stdout and "43.5 GiB weights" in proc.stdout


def test_the_profiler_refuses_to_measure_an_moe_model_as_dense():
    from profiler.catalogue import plan
    from profiler.sweeps import SweepConfig
    from simulator.specs.model import bundled_model_spec

    with pytest.raises(ScenarioError, match="mixture-of-experts"):
        plan(bundled_model_spec("qwen3-30b-a3b"), [1], SweepConfig.for_device("cpu"), "float32", {})
