"""JSON Schemas of servesim's YAML files, so editors complete and check them as they are typed.

Generated from the pydantic models that validate the files (``TypeAdapter(...).json_schema()``,
JSON Schema draft 2020-12): ``Scenario`` (``simulator.scenario``), ``SweepFile``
(``simulator.studies.sweep``) and ``PlanConfig`` (``simulator.studies.plan``). The schema says what the loaders
say, plus what they accept beyond the models: a bare string for a section's main field
(``model: llama-3-8b``, ``hardware: h100-sxm``, ``scheduler: vllm``); and it names the values
registries know: scheduler and router names (``enum``), bundled GPUs (or a ``.yaml`` GPU spec
file), bundled models (``examples``: a model given by ``config`` may carry any name).

Checks that need the specs (TP divides the heads, the model fits) or cross fields
(``__post_init__``) stay with the loaders; the schema is for typing, not a second validator.

Point the YAML language server (VS Code's YAML extension, and other editors') at a schema with a
first line ``# yaml-language-server: $schema=PATH_OR_URL`` in the YAML file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

KINDS = ("scenario", "sweep", "plan")
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SHORTHANDS = {"ModelConfig": "name", "HardwareConfig": "gpu", "SchedulerConfig": "name"}  # as simulator.scenario._SHORTHANDS


def _names() -> dict[str, list[str]]:
    from simulator.engine.router import ROUTERS
    from simulator.schedulers import SCHEDULERS
    from simulator.specs.gpu import GPUS
    from simulator.specs.model import bundled_model_names

    return {"schedulers": list(SCHEDULERS), "routers": list(ROUTERS), "gpus": list(GPUS), "models": bundled_model_names()}


def _annotate(defs: dict[str, Any], names: dict[str, list[str]]) -> None:
    """Put the registries' names on the scenario sections' fields (in place)."""
    if "SchedulerConfig" in defs:
        defs["SchedulerConfig"]["properties"]["name"] |= {"enum": names["schedulers"]}
    if "ClusterConfig" in defs:
        defs["ClusterConfig"]["properties"]["router"] |= {"enum": names["routers"]}
    if "ModelConfig" in defs:
        defs["ModelConfig"]["properties"]["name"] |= {"examples": names["models"]}
    if "HardwareConfig" in defs:
        gpu = defs["HardwareConfig"]["properties"]["gpu"]
        base = {k: v for k, v in gpu.items() if k not in ("type",)}
        defs["HardwareConfig"]["properties"]["gpu"] = base | {
            "anyOf": [{"type": "string", "enum": names["gpus"]}, {"type": "string", "pattern": r"(?i)\.ya?ml$"}],
            "description": "a bundled GPU (servesim list gpus) or the path of a GPU spec .yaml file, relative to this file",
        }


def _allow_shorthands(schema: dict[str, Any], names: dict[str, list[str]]) -> None:
    """Let ``model``, ``hardware`` and ``scheduler`` be a bare string (their main field) wherever they appear."""
    for prop in schema.get("properties", {}).values():
        ref = prop.get("$ref", "")
        target = ref.rsplit("/", 1)[-1]
        if target in _SHORTHANDS:
            main = copy.deepcopy(schema["$defs"][target]["properties"][_SHORTHANDS[target]])
            main.pop("default", None)
            main.pop("title", None)
            prop.pop("$ref")
            prop["anyOf"] = [{"$ref": ref}, main]


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind of file: ``scenario``, ``sweep`` or ``plan``.

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "scenario":
        from simulator.scenario import Scenario as model
    elif kind == "sweep":
        from simulator.studies.sweep import SweepFile as model
    elif kind == "plan":
        from simulator.studies.plan import PlanConfig as model
    else:
        raise ValueError(f"unknown schema {kind!r}; use one of {', '.join(KINDS)}")
    schema = TypeAdapter(model).json_schema()
    names = _names()
    defs = schema.get("$defs", {})
    _annotate(defs, names)
    if kind == "scenario":
        _allow_shorthands(schema, names)
    title = {"scenario": "servesim scenario", "sweep": "servesim sweep file (servesim compare)", "plan": "servesim plan file (servesim plan)"}[kind]
    return {"$schema": DRAFT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}


def write_schema(kind: str, out: Path | None) -> str:
    """The schema as indented JSON text; also written to ``out`` when given (folders created).

    Raises:
        ValueError: an unknown kind. OSError: ``out`` cannot be written.
    """
    text = json.dumps(json_schema(kind), indent=2) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text
