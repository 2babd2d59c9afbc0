"""The architectures servesim reads from a config.json, found by ``model_type`` in one registry.

A config names its family by ``model_type`` (else by its ``architectures`` class names); the
family's reader turns the fields into a ``ModelSpec``. A family servesim does not know, or fields
its reader would ignore (experts in a config typed ``llama``), are one ``ScenarioError`` line: a
model is never silently read as a different one.

Dense families (their Hugging Face modelling files in transformers ``models/<family>/``):

- ``llama``: GQA, SwiGLU, RMSNorm, rotary; ``attention_bias`` on q, k, v and o, ``mlp_bias``.
- ``mistral``: Llama's layout; ``sliding_window`` (when set) bounds every layer's attention.
- ``qwen2``: Llama's layout with a bias on q, k and v (always, as Qwen2Attention has it).
- ``qwen3``: Llama's layout with a per-head RMSNorm of q and k (``q_norm``, ``k_norm``).
- ``opt``: multi-head attention with biases, a two-matrix ReLU MLP of ``ffn_dim`` (fc1, fc2,
  with biases), LayerNorm with a bias, a learned position table of ``max_position_embeddings +
  2`` rows, tied embeddings, and ``project_in`` / ``project_out`` when ``word_embed_proj_dim``
  differs from ``hidden_size`` (it does not in OPT-13B: both are 5,120).

Mixture-of-experts families: ``simulator/specs/architectures_moe.py``.

A config without ``model_type`` or ``architectures`` (servesim's own small test configs) is read
as ``llama`` — the layout of the fields it must then have — and refused if it has expert fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from simulator.errors import ScenarioError
from simulator.specs.architectures_moe import read_deepseek_v3, read_gpt_oss, read_llama4, read_mixtral, read_qwen3_moe
from simulator.specs.hf_config import FOREIGN_KEYS, HFConfig, common_fields, qwen_sliding
from simulator.specs.model_spec import ModelSpec


def _gated_activation(cfg: HFConfig, family: str) -> None:
    """A gated family's MLP must be SiLU-gated (``hidden_act``), the one the cost models price."""
    act = cfg.text("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise cfg.error("hidden_act", f"is not the SiLU gate of {family}'s MLP, which servesim prices", "give a config.json whose hidden_act is silu")


def read_llama(cfg: HFConfig, name: str) -> ModelSpec:
    """Llama 2 / 3 (Touvron et al. 2023; Grattafiori et al. 2024, Sec. 3.2), also CodeLlama."""
    cfg.refuse(FOREIGN_KEYS, "llama")
    _gated_activation(cfg, "llama")
    f = common_fields(cfg)
    bias = cfg.flag("attention_bias", False)
    return ModelSpec(name=name, architecture="llama", intermediate_size=cfg.integer("intermediate_size"), attention_bias=bias, o_proj_bias=bias,
                     mlp_bias=cfg.flag("mlp_bias", False), **f)


def read_mistral(cfg: HFConfig, name: str) -> ModelSpec:
    """Mistral 7B (Jiang et al. 2023, Sec. 2: sliding-window attention, W = 4,096 in v0.1)."""
    cfg.refuse(FOREIGN_KEYS, "mistral")
    _gated_activation(cfg, "mistral")
    f = common_fields(cfg)
    window = cfg.optional_int("sliding_window")
    return ModelSpec(name=name, architecture="mistral", intermediate_size=cfg.integer("intermediate_size"), sliding_window=window,
                     sliding_layers=tuple(range(f["num_layers"])) if window else (), **f)


def read_qwen2(cfg: HFConfig, name: str) -> ModelSpec:
    """Qwen2 / Qwen2.5 (Yang et al. 2024, Sec. 2.2.1: QKV bias)."""
    cfg.refuse(FOREIGN_KEYS, "qwen2")
    _gated_activation(cfg, "qwen2")
    f = common_fields(cfg)
    window, sliding = qwen_sliding(cfg, f["num_layers"])
    return ModelSpec(name=name, architecture="qwen2", intermediate_size=cfg.integer("intermediate_size"), attention_bias=True,
                     sliding_window=window, sliding_layers=sliding, **f)


def read_qwen3(cfg: HFConfig, name: str) -> ModelSpec:
    """Qwen3 dense (Qwen3 technical report, Sec. 2: QK-Norm, no QKV bias)."""
    cfg.refuse(FOREIGN_KEYS, "qwen3")
    _gated_activation(cfg, "qwen3")
    f = common_fields(cfg)
    window, sliding = qwen_sliding(cfg, f["num_layers"])
    bias = cfg.flag("attention_bias", False)
    return ModelSpec(name=name, architecture="qwen3", intermediate_size=cfg.integer("intermediate_size"), attention_bias=bias, o_proj_bias=bias,
                     qk_norm="rmsnorm", sliding_window=window, sliding_layers=sliding, **f)


def read_opt(cfg: HFConfig, name: str) -> ModelSpec:
    """OPT (Zhang et al. 2022, Sec. 2.1; transformers models/opt/modeling_opt.py)."""
    cfg.refuse(FOREIGN_KEYS, "opt")
    act = cfg.text("activation_function", "relu")
    if act != "relu":
        raise cfg.error("activation_function", "is not OPT's ReLU, which servesim prices", "give a config.json whose activation_function is relu")
    f = common_fields(cfg)
    f["tie_word_embeddings"] = cfg.flag("tie_word_embeddings", True)  # OPT ties lm_head to embed_tokens
    hidden = f["hidden_size"]
    proj = cfg.integer("word_embed_proj_dim", hidden)
    bias = cfg.flag("enable_bias", True)
    return ModelSpec(
        name=name, architecture="opt", intermediate_size=cfg.integer("ffn_dim"), ffn_kind="relu", mlp_bias=bias, attention_bias=bias,
        o_proj_bias=bias, norm_kind="layernorm", position_kind="learned", num_position_embeddings=f["max_position_embeddings"] + 2,
        word_embed_proj_dim=proj if proj != hidden else None, **f,
    )


@dataclass(frozen=True, slots=True)
class Architecture:
    """One family a config.json may name.

    Attributes:
        model_type: the config's ``model_type``.
        classes: the ``architectures`` class names of that family (a config without
            ``model_type`` is found by these).
        read: the reader of the family's fields.
        moe: whether its MLPs are mixtures of experts.
    """

    model_type: str
    classes: tuple[str, ...]
    read: Callable[[HFConfig, str], ModelSpec]
    moe: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("llama", ("LlamaForCausalLM",), read_llama),
        Architecture("mistral", ("MistralForCausalLM",), read_mistral),
        Architecture("qwen2", ("Qwen2ForCausalLM",), read_qwen2),
        Architecture("qwen3", ("Qwen3ForCausalLM",), read_qwen3),
        Architecture("opt", ("OPTForCausalLM",), read_opt),
        Architecture("mixtral", ("MixtralForCausalLM",), read_mixtral, moe=True),
        Architecture("qwen3_moe", ("Qwen3MoeForCausalLM",), read_qwen3_moe, moe=True),
        Architecture("deepseek_v3", ("DeepseekV3ForCausalLM",), read_deepseek_v3, moe=True),
        Architecture("gpt_oss", ("GptOssForCausalLM",), read_gpt_oss, moe=True),
        Architecture("llama4", ("Llama4ForConditionalGeneration", "Llama4ForCausalLM"), read_llama4, moe=True),
    )
}
# model_type spellings of a family's text-only config.
ALIASES = {"llama4_text": "llama4"}
_BY_CLASS = {cls: a.model_type for a in ARCHITECTURES.values() for cls in a.classes}


def supported_model_types() -> list[str]:
    """The ``model_type`` values servesim reads, in registry order."""
    return list(ARCHITECTURES)


def _architecture(source: str, data: dict[str, Any]) -> Architecture:
    """The family ``data`` names (``model_type``, else ``architectures``, else llama), checked against its classes."""
    supported = ", ".join(ARCHITECTURES)
    fix = f"use a config.json of one of: {supported}"
    classes = data.get("architectures")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise ScenarioError(source, "architectures", classes, "must be a list of class names", fix)
    model_type = data.get("model_type")
    if model_type is None:
        known = [_BY_CLASS[c] for c in classes or () if c in _BY_CLASS]
        if classes and not known:
            raise ScenarioError(source, "architectures", classes, "names no architecture servesim reads (and model_type is missing)", fix)
        model_type = known[0] if known else "llama"
    if not isinstance(model_type, str):
        raise ScenarioError(source, "model_type", model_type, "must be a string", fix)
    arch = ARCHITECTURES.get(ALIASES.get(model_type, model_type))
    if arch is None:
        raise ScenarioError(source, "model_type", model_type, "is not an architecture servesim reads", fix)
    for c in classes or ():
        other = _BY_CLASS.get(c)
        if other is not None and other != arch.model_type:
            raise ScenarioError(source, "architectures", classes, f"names {c}, a {other} model, but model_type is {model_type}",
                                "give the model's Hugging Face config.json unchanged")
    return arch


def spec_from_config(source: str, data: dict[str, Any], name: str) -> ModelSpec:
    """The ``ModelSpec`` of a parsed config.json object.

    Multimodal configs nest the language model's fields under ``text_config`` (Llama 4); they
    are read from there when the top level has no ``hidden_size``.

    Args:
        source: the file, for error messages.
        data: the parsed JSON object.
        name: the spec's name.

    Raises:
        ScenarioError: an unknown ``model_type``, classes of another family, a missing or bad
            field, or a field of a family other than the one named.
    """
    arch = _architecture(source, data)
    text = data.get("text_config")
    if "hidden_size" not in data and isinstance(text, dict):
        return arch.read(HFConfig(source, text, "text_config."), name)
    return arch.read(HFConfig(source, data), name)
