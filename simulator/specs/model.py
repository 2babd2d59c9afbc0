"""Model specs read from Hugging Face ``config.json`` fields.

Only the architecture numbers the cost model and the KV cache need are read: decoder-only,
dense, grouped-query attention, gated (SwiGLU) MLP, RMSNorm, rotary embeddings — the Llama,
Mistral and Qwen2 families. Bundled specs live in ``specs/models/NAME.json``, copies of the
fields of each model's published config.json (the ``_source`` key gives the address).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simulator.errors import ScenarioError

_BUNDLED_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of a decoder-only transformer.

    Attributes:
        name: bundled name or the config.json path it came from.
        num_layers: decoder layers (``num_hidden_layers``).
        hidden_size: model width h.
        intermediate_size: MLP width I (gate and up projections are each h x I).
        num_attention_heads: query heads.
        num_kv_heads: key/value heads (``num_key_value_heads``; equals query heads without GQA).
        head_dim: per-head width (``head_dim``, else ``hidden_size / num_attention_heads``).
        vocab_size: vocabulary size V.
        max_position_embeddings: the longest context the model was trained for (tokens).
        tie_word_embeddings: whether lm_head shares the embedding matrix.
        attention_bias: whether the QKV projection has a bias (Qwen2).
    """

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False

    @property
    def num_params(self) -> int:
        """Parameter count: embedding, per-layer attention/MLP/norm weights, final norm, lm_head."""
        h, d = self.hidden_size, self.head_dim
        qkv = h * (self.num_attention_heads + 2 * self.num_kv_heads) * d
        if self.attention_bias:
            qkv += (self.num_attention_heads + 2 * self.num_kv_heads) * d
        layer = qkv + self.num_attention_heads * d * h + 3 * h * self.intermediate_size + 2 * h
        embedding = self.vocab_size * h
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embedding + self.num_layers * layer + h + lm_head

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Bytes of K and V one token occupies across all layers and KV heads (unsharded)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes


def bundled_model_names() -> list[str]:
    """Names accepted by ``model.name``, sorted."""
    return sorted(p.stem for p in _BUNDLED_DIR.glob("*.json"))


def _read_json(path: Path, field: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ScenarioError(str(path), field, ..., "file not found", "give the path to a Hugging Face config.json") from None
    except json.JSONDecodeError as e:
        raise ScenarioError(str(path), "", ..., f"not valid JSON ({e.msg} at line {e.lineno})", "give a Hugging Face config.json") from None
    if not isinstance(data, dict):
        raise ScenarioError(str(path), "", ..., "not a JSON object", "give a Hugging Face config.json")
    return data


def model_spec_from_hf_config(path: str | Path, name: str | None = None) -> ModelSpec:
    """Read a model spec from a Hugging Face ``config.json``.

    Args:
        path: the config.json file.
        name: the name to give the spec (default: the path).

    Raises:
        ScenarioError: the file is missing, not JSON, or lacks a required field.
    """
    path = Path(path)
    cfg = _read_json(path, "model.config")
    # Multimodal configs nest the language model's fields.
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]
    required = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size", "max_position_embeddings")
    for key in required:
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            raise ScenarioError(str(path), key, cfg.get(key, ...) if key in cfg else ..., "missing or not a positive integer", "give a decoder-only Hugging Face config.json with this field")
    heads = cfg["num_attention_heads"]
    return ModelSpec(
        name=name or str(path),
        num_layers=cfg["num_hidden_layers"],
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_attention_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        vocab_size=cfg["vocab_size"],
        max_position_embeddings=cfg["max_position_embeddings"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
    )


def bundled_model_spec(name: str) -> ModelSpec | None:
    """The bundled spec called ``name`` (case-insensitive), or None when there is none."""
    path = _BUNDLED_DIR / f"{name.lower()}.json"
    if not path.is_file():
        return None
    return model_spec_from_hf_config(path, name=name.lower())
