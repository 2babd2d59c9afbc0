"""Reading the fields of a Hugging Face ``config.json``, each mistake one ``ScenarioError`` line.

``HFConfig`` wraps the parsed JSON object of one file (or its ``text_config`` section, for
multimodal checkpoints such as Llama 4): typed getters that name the file and the field when a
value is missing or of the wrong kind. ``common_fields`` reads what every decoder family shares.
"""

from __future__ import annotations

from typing import Any

from simulator.errors import ScenarioError

_MISSING: Any = object()
FIX = "give the model's Hugging Face config.json unchanged"

# Keys only mixture-of-experts or latent-attention configs carry: a dense family's config holding
# one of them (non-null, non-zero) is a model the dense reader would misread.
FOREIGN_KEYS = (
    "num_local_experts", "num_experts", "n_routed_experts", "n_shared_experts", "moe_intermediate_size",
    "num_experts_per_tok", "experts_per_token", "kv_lora_rank", "q_lora_rank", "interleave_moe_layer_step",
)


class HFConfig:
    """Typed, checked access to one config.json object.

    Args:
        source: the file, for error messages.
        data: the JSON object (or the section of it the model's fields live in).
        prefix: the section's path inside the file (``text_config.``), prepended to field names.
    """

    def __init__(self, source: str, data: dict[str, Any], prefix: str = "") -> None:
        self.source, self.data, self.prefix = source, data, prefix

    def error(self, key: str, problem: str, fix: str = FIX) -> ScenarioError:
        """A ScenarioError about field ``key`` (its value shown when present)."""
        value = self.data[key] if key in self.data else ...
        return ScenarioError(self.source, self.prefix + key, value, problem, fix)

    def given(self, key: str) -> bool:
        """Whether ``key`` is present with a value other than null, false, 0 or an empty list."""
        return self.data.get(key) not in (None, False, 0, [], {})

    def integer(self, key: str, default: int = _MISSING, minimum: int = 1) -> int:
        """An integer >= ``minimum`` (a missing or null key takes ``default`` when one is given)."""
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise self.error(key, f"missing (an integer >= {minimum} is required)")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}")
        return value

    def optional_int(self, key: str, minimum: int = 1) -> int | None:
        """An integer >= ``minimum``, or None when the key is missing or null."""
        return None if self.data.get(key) is None else self.integer(key, minimum=minimum)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean (a missing or null key takes ``default``)."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def text(self, key: str, default: str) -> str:
        """A string (a missing or null key takes ``default``)."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def int_list(self, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        """A list of integers >= 0 (a missing or null key takes ``default``)."""
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise self.error(key, "must be a list of integers >= 0")
        return tuple(value)

    def str_list(self, key: str) -> tuple[str, ...] | None:
        """A list of strings, or None when the key is missing or null."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def refuse(self, keys: tuple[str, ...], family: str) -> None:
        """Raise when one of ``keys`` is given: fields ``family``'s reader does not read would be ignored.

        Raises:
            ScenarioError: naming the first such field, e.g. ``num_local_experts`` in a config
                whose ``model_type`` is ``llama`` (a mixture of experts read as a dense model).
        """
        for key in keys:
            if self.given(key):
                raise self.error(key, f"is a mixture-of-experts or latent-attention field, which model_type {family} does not have",
                                 "set model_type to the model's own family (mixtral, qwen3_moe, deepseek_v3, gpt_oss, llama4), as its Hugging Face config.json does")


def common_fields(cfg: HFConfig) -> dict[str, Any]:
    """The ``ModelSpec`` fields every decoder family spells alike.

    ``num_key_value_heads`` defaults to the query heads (no GQA), ``head_dim`` to ``hidden_size /
    num_attention_heads`` (as Hugging Face's Llama code does).

    Raises:
        ScenarioError: a missing or non-positive dimension; KV heads that do not divide the query
            heads; a hidden size the heads do not divide when ``head_dim`` is not given.
    """
    num_layers = cfg.integer("num_hidden_layers")
    hidden = cfg.integer("hidden_size")
    heads = cfg.integer("num_attention_heads")
    kv_heads = cfg.integer("num_key_value_heads", heads)
    if heads % kv_heads:
        raise cfg.error("num_key_value_heads", f"does not divide the {heads} attention heads")
    head_dim = cfg.optional_int("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise cfg.error("hidden_size", f"is not a multiple of the {heads} attention heads and head_dim is not given")
        head_dim = hidden // heads
    return {
        "num_layers": num_layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": cfg.integer("vocab_size"),
        "max_position_embeddings": cfg.integer("max_position_embeddings"),
        "tie_word_embeddings": cfg.flag("tie_word_embeddings", False),
    }


def layer_types_sliding(cfg: HFConfig, num_layers: int) -> tuple[int, ...] | None:
    """Indices of the ``sliding_attention`` layers of a ``layer_types`` list, or None without one.

    Raises:
        ScenarioError: a list of another length than the layers, or a type other than
            ``sliding_attention`` and ``full_attention``.
    """
    types = cfg.str_list("layer_types")
    if types is None:
        return None
    if len(types) != num_layers:
        raise cfg.error("layer_types", f"has {len(types)} entries for {num_layers} layers (num_hidden_layers)")
    unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
    if unknown:
        raise cfg.error("layer_types", f"has layer type {unknown[0]!r}; servesim reads sliding_attention and full_attention")
    return tuple(i for i, t in enumerate(types) if t == "sliding_attention")


def qwen_sliding(cfg: HFConfig, num_layers: int) -> tuple[int | None, tuple[int, ...]]:
    """(window, sliding layers) of a Qwen2 / Qwen3 config.

    The window applies only when ``use_sliding_window`` is true (Hugging Face's Qwen2Config sets
    ``sliding_window`` to None otherwise; the published Qwen2.5 and Qwen3 configs leave it false),
    to the layers ``layer_types`` marks, else to the layers from ``max_window_layers`` on (the first
    ``max_window_layers`` attend to everything).

    Raises:
        ScenarioError: ``use_sliding_window`` without a ``sliding_window``; a bad ``layer_types``.
    """
    if not cfg.flag("use_sliding_window", False):
        return None, ()
    window = cfg.optional_int("sliding_window")
    if window is None:
        raise cfg.error("sliding_window", "missing, but use_sliding_window is true")
    marked = layer_types_sliding(cfg, num_layers)
    if marked is not None:
        return window, marked
    first = cfg.integer("max_window_layers", 0, minimum=0)
    return window, tuple(range(min(first, num_layers), num_layers))
