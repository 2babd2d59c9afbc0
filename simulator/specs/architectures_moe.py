"""Readers of the mixture-of-experts families' config.json fields (Mixtral, Qwen3-MoE, DeepSeek-V3, gpt-oss, Llama 4).

Each reads and checks the fields that decide the weights and the routing, following the
family's Hugging Face configuration class (transformers ``models/<family>/configuration_*.py``)
for defaults and for which layers are sparse:

- ``mixtral``: every layer sparse; ``num_local_experts`` experts of ``intermediate_size``, top
  ``num_experts_per_tok``; Mistral's ``sliding_window`` when set.
- ``qwen3_moe``: layer i sparse unless listed in ``mlp_only_layers`` and when ``(i + 1) %
  decoder_sparse_step == 0``; ``num_experts`` of ``moe_intermediate_size``; dense layers of
  ``intermediate_size``; per-head q/k RMSNorm as Qwen3.
- ``deepseek_v3``: layers from ``first_k_dense_replace`` on (every ``moe_layer_freq``-th) sparse,
  ``n_routed_experts`` of ``moe_intermediate_size`` plus ``n_shared_experts`` fused into one
  shared MLP; multi-head latent attention (``q_lora_rank``, ``kv_lora_rank``,
  ``qk_rope_head_dim``, ``qk_nope_head_dim``, ``v_head_dim``); the multi-token-prediction layers
  (``num_nextn_predict_layers``) are not decoder layers and are left out.
- ``gpt_oss``: every layer sparse, experts and router with biases, attention with biases and
  per-head sinks; ``layer_types`` alternate sliding (``sliding_window``) and full attention.
- ``llama4`` (the ``text_config`` section): layers in ``moe_layers``, else every
  ``interleave_moe_layer_step``-th, sparse with one shared expert of ``intermediate_size``; dense
  layers of ``intermediate_size_mlp``; weightless L2 q/k norm (``use_qk_norm``). Its chunked
  local attention (``attention_chunk_size``) is not a sliding window and is not modelled.

Quantization fields (``quantization_config``: DeepSeek-V3's FP8 blocks, gpt-oss's MXFP4 experts)
are not read: the scenario's ``model.quantization`` decides the weight bytes.
"""

from __future__ import annotations

from simulator.specs.hf_config import FOREIGN_KEYS, HFConfig, common_fields, layer_types_sliding, qwen_sliding
from simulator.specs.model_spec import MLASpec, ModelSpec, MoESpec


def _refuse_others(cfg: HFConfig, family: str, own: tuple[str, ...]) -> None:
    """Fields of other MoE families in this config are a model this reader would misread."""
    for key in FOREIGN_KEYS + ("shared_expert_intermediate_size",):
        if key not in own and cfg.given(key):
            raise cfg.error(key, f"is not a field of model_type {family}, so its reader would ignore it",
                            "give the model's own Hugging Face config.json, whose model_type names its family")


def _routing(cfg: HFConfig, experts_key: str, top_k_key: str, width_key: str) -> tuple[int, int, int]:
    """(experts, experts per token, expert width), checked: 1 <= top-k <= experts."""
    experts = cfg.integer(experts_key)
    top_k = cfg.integer(top_k_key)
    if top_k > experts:
        raise cfg.error(top_k_key, f"exceeds the {experts} experts ({experts_key})")
    return experts, top_k, cfg.integer(width_key)


def _layer_indices(cfg: HFConfig, key: str, num_layers: int) -> tuple[int, ...]:
    """A list of layer indices, each below ``num_layers``."""
    indices = cfg.int_list(key)
    if any(i >= num_layers for i in indices):
        raise cfg.error(key, f"names a layer beyond the {num_layers} layers (num_hidden_layers)")
    return indices


def _all_sliding(cfg: HFConfig, num_layers: int) -> tuple[int | None, tuple[int, ...]]:
    """Mistral's convention: ``sliding_window`` set means every layer attends within it."""
    window = cfg.optional_int("sliding_window")
    return window, tuple(range(num_layers)) if window else ()


def read_mixtral(cfg: HFConfig, name: str) -> ModelSpec:
    """Mixtral (Jiang et al. 2024, "Mixtral of Experts", Sec. 2): every layer's MLP is 8 gated experts, top 2."""
    _refuse_others(cfg, "mixtral", ("num_local_experts", "num_experts_per_tok"))
    f = common_fields(cfg)
    experts, top_k, width = _routing(cfg, "num_local_experts", "num_experts_per_tok", "intermediate_size")
    window, sliding = _all_sliding(cfg, f["num_layers"])
    moe = MoESpec(experts, top_k, width, tuple(range(f["num_layers"])))
    return ModelSpec(name=name, architecture="mixtral", intermediate_size=width, sliding_window=window, sliding_layers=sliding, moe=moe, **f)


def read_qwen3_moe(cfg: HFConfig, name: str) -> ModelSpec:
    """Qwen3-MoE (Qwen3 technical report, Sec. 2): 128 fine-grained experts, top 8, no shared expert."""
    _refuse_others(cfg, "qwen3_moe", ("num_experts", "num_experts_per_tok", "moe_intermediate_size"))
    f = common_fields(cfg)
    layers = f["num_layers"]
    experts, top_k, width = _routing(cfg, "num_experts", "num_experts_per_tok", "moe_intermediate_size")
    step = cfg.integer("decoder_sparse_step", 1)
    dense_only = set(_layer_indices(cfg, "mlp_only_layers", layers))
    moe_layers = tuple(i for i in range(layers) if i not in dense_only and (i + 1) % step == 0)
    window, sliding = qwen_sliding(cfg, layers)
    bias = cfg.flag("attention_bias", False)
    return ModelSpec(name=name, architecture="qwen3_moe", intermediate_size=cfg.integer("intermediate_size"), attention_bias=bias, o_proj_bias=bias,
                     qk_norm="rmsnorm", sliding_window=window, sliding_layers=sliding, moe=MoESpec(experts, top_k, width, moe_layers), **f)


def read_deepseek_v3(cfg: HFConfig, name: str) -> ModelSpec:
    """DeepSeek-V3 (DeepSeek-AI 2024, arXiv:2412.19437, Sec. 2.1): MLA and DeepSeekMoE, 3 dense layers first."""
    own = ("n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size", "kv_lora_rank", "q_lora_rank")
    _refuse_others(cfg, "deepseek_v3", own)
    f = common_fields(cfg)
    layers = f["num_layers"]
    experts, top_k, width = _routing(cfg, "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size")
    shared = cfg.integer("n_shared_experts", 0, minimum=0)
    first_dense = cfg.integer("first_k_dense_replace", 0, minimum=0)
    if first_dense > layers:
        raise cfg.error("first_k_dense_replace", f"exceeds the {layers} layers (num_hidden_layers)")
    freq = cfg.integer("moe_layer_freq", 1)
    moe_layers = tuple(i for i in range(first_dense, layers) if i % freq == 0)
    mla = MLASpec(
        q_lora_rank=cfg.optional_int("q_lora_rank"), kv_lora_rank=cfg.integer("kv_lora_rank"),
        qk_rope_head_dim=cfg.integer("qk_rope_head_dim"), qk_nope_head_dim=cfg.integer("qk_nope_head_dim"), v_head_dim=cfg.integer("v_head_dim"),
    )
    f["head_dim"] = mla.qk_nope_head_dim + mla.qk_rope_head_dim  # the query/key head; values are v_head_dim
    f["num_kv_heads"] = f["num_attention_heads"]  # every head reads the one latent
    moe = MoESpec(experts, top_k, width, moe_layers, shared_intermediate_size=shared * width,
                  router_bias=cfg.text("topk_method", "greedy") == "noaux_tc")  # e_score_correction_bias
    return ModelSpec(name=name, architecture="deepseek_v3", intermediate_size=cfg.integer("intermediate_size"), moe=moe, mla=mla, **f)


def read_gpt_oss(cfg: HFConfig, name: str) -> ModelSpec:
    """gpt-oss (OpenAI 2025, gpt-oss model card, Sec. 2): MoE with biased SwiGLU experts, alternating 128-token windows, sinks."""
    _refuse_others(cfg, "gpt_oss", ("num_local_experts", "num_experts_per_tok", "experts_per_token"))
    f = common_fields(cfg)
    layers = f["num_layers"]
    top_k_key = "num_experts_per_tok" if cfg.given("num_experts_per_tok") else "experts_per_token"
    experts, top_k, width = _routing(cfg, "num_local_experts", top_k_key, "intermediate_size")
    if cfg.given("experts_per_token") and cfg.given("num_experts_per_tok") and cfg.data["experts_per_token"] != top_k:
        raise cfg.error("experts_per_token", f"disagrees with num_experts_per_tok = {top_k}")
    sliding = layer_types_sliding(cfg, layers)
    if sliding is None:  # GptOssConfig's default: even layers slide, odd layers attend to everything
        sliding = tuple(range(0, layers, 2))
    window = cfg.optional_int("sliding_window")
    if sliding and window is None:
        raise cfg.error("sliding_window", "missing, but layer_types has sliding_attention layers")
    bias = cfg.flag("attention_bias", True)
    moe = MoESpec(experts, top_k, width, tuple(range(layers)), expert_bias=True, router_bias=True)
    return ModelSpec(name=name, architecture="gpt_oss", intermediate_size=width, attention_bias=bias, o_proj_bias=bias, attention_sinks=True,
                     sliding_window=window if sliding else None, sliding_layers=sliding, moe=moe, **f)


def read_llama4(cfg: HFConfig, name: str) -> ModelSpec:
    """Llama 4 (Meta 2025, Llama 4 model card): interleaved MoE layers of 16 or 128 experts, top 1, plus a shared expert."""
    _refuse_others(cfg, "llama4", ("num_local_experts", "num_experts_per_tok", "interleave_moe_layer_step"))
    f = common_fields(cfg)
    layers = f["num_layers"]
    experts, top_k, width = _routing(cfg, "num_local_experts", "num_experts_per_tok", "intermediate_size")
    if cfg.data.get("moe_layers") is not None:
        moe_layers = _layer_indices(cfg, "moe_layers", layers)
    else:
        step = cfg.integer("interleave_moe_layer_step", 1)
        moe_layers = tuple(range(step - 1, layers, step))
    dense_width = cfg.integer("intermediate_size_mlp") if len(moe_layers) < layers else cfg.integer("intermediate_size_mlp", width)
    moe = MoESpec(experts, top_k, width, moe_layers, shared_intermediate_size=width)
    return ModelSpec(name=name, architecture="llama4", intermediate_size=dense_width, qk_norm="l2" if cfg.flag("use_qk_norm", False) else "none",
                     attention_bias=cfg.flag("attention_bias", False), o_proj_bias=cfg.flag("attention_bias", False), moe=moe, **f)
