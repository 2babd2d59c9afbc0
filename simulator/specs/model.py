"""Model specs read from Hugging Face ``config.json`` files, and the bundled ones.

``model_spec_from_hf_config`` reads a config.json; its ``model_type`` picks the family's reader
(``simulator/specs/architectures.py``: llama, mistral, qwen2, qwen3, opt, and the
mixture-of-experts families mixtral, qwen3_moe, deepseek_v3, gpt_oss, llama4). Bundled specs
live in ``specs/models/NAME.json``, copies of the architecture fields of each model's published
config.json (the ``_source`` key gives the address). ``ModelSpec`` and its parts are defined in
``simulator/specs/model_spec.py`` and exported here.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.errors import ScenarioError
from simulator.specs.architectures import spec_from_config, supported_model_types
from simulator.specs.model_spec import MLASpec, ModelSpec, MoESpec

_BUNDLED_DIR = Path(__file__).parent / "models"


def bundled_model_names() -> list[str]:
    """Names accepted by ``model.name``, sorted."""
    return sorted(p.stem for p in _BUNDLED_DIR.glob("*.json"))


def _read_json(path: Path, field: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ScenarioError(str(path), field, ..., "file not found", "give the path to a Hugging Face config.json") from None
    except IsADirectoryError:
        raise ScenarioError(str(path), field, ..., "is a folder", "give the path of the config.json file inside it") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", ..., "not UTF-8 text", "give a Hugging Face config.json") from None
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
        ScenarioError: the file is missing or not JSON; its ``model_type`` is not one servesim
            reads (the message lists those it does); a field is missing or bad; or it holds
            fields its family does not have (experts in a ``llama`` config).
    """
    path = Path(path)
    return spec_from_config(str(path), _read_json(path, "model.config"), name or str(path))


def bundled_model_spec(name: str) -> ModelSpec | None:
    """The bundled spec called ``name`` (case-insensitive), or None when there is none."""
    path = _BUNDLED_DIR / f"{name.lower()}.json"
    if not path.is_file():
        return None
    return model_spec_from_hf_config(path, name=name.lower())


__all__ = ["MLASpec", "ModelSpec", "MoESpec", "bundled_model_names", "bundled_model_spec", "model_spec_from_hf_config", "supported_model_types"]
