"""Reading a scenario: YAML or a dict, ``--set`` overrides, relative paths, and validation errors
turned into one ``ScenarioError`` line; and the scenario back to plain data.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from simulator.errors import ScenarioError
from simulator.yaml_files import read_yaml_mapping
from simulator.scenario.sections import MAX_NUM_REQUESTS, Scenario


_ADAPTER = TypeAdapter(Scenario)
# Fields that hold file paths: relative paths in a YAML file are relative to that file.
_PATH_FIELDS = ("model.config", "hardware.profile", "workload.trace", "workload.prompt_tokens.file", "workload.output_tokens.file")
# hardware.gpu is a bundled GPU name or, ending in one of these, a GPU spec file (a path like the above).
GPU_FILE_SUFFIXES = (".yaml", ".yml")
# hardware.profile may name an imported profile, ``KIND:WHAT`` (profiler/imports/__init__.py).
PROFILE_SOURCE_KINDS = ("aiconfigurator", "llmservingsim", "vidur")
# A bare string stands for the section's main field: `model: llama-3-8b`, `hardware: h100-sxm`.
_SHORTHANDS = {"model": "name", "hardware": "gpu", "scheduler": "name"}


def _get(tree: dict, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _set(tree: dict, path: str, value: Any, source: str, defaults: dict | None = None) -> None:
    """Set ``tree[a][b]... = value``; a missing section starts from ``defaults``' copy of it."""
    keys = path.split(".")
    for i, key in enumerate(keys[:-1]):
        node = tree.get(key)
        default = defaults.get(key) if isinstance(defaults, dict) else None
        defaults = default
        if node is None:
            node = tree[key] = copy.deepcopy(default) if isinstance(default, dict) else {}
        elif isinstance(node, str) and key in _SHORTHANDS and i == 0:
            node = tree[key] = {_SHORTHANDS[key]: node}
        elif not isinstance(node, dict):
            raise ScenarioError(source, ".".join(keys[: i + 1]), node, "is not a section", "set a field of a section, e.g. workload.trace=PATH")
        tree = node
    tree[keys[-1]] = value


def _resolve_paths(tree: dict, base: Path, only: set[str] | None = None) -> None:
    for path in (*_PATH_FIELDS, "hardware.gpu"):
        if only is not None and path not in only:
            continue
        value = _get(tree, path)
        if path == "hardware.gpu" and not (isinstance(value, str) and value.lower().endswith(GPU_FILE_SUFFIXES)):
            continue  # a bundled GPU name
        if path == "hardware.profile" and isinstance(value, str) and value.partition(":")[0] in PROFILE_SOURCE_KINDS:
            kind, _, rest = value.partition(":")  # a named profile: only a source folder is a path
            if kind != "aiconfigurator" and rest and not Path(rest).expanduser().is_absolute():
                _set(tree, path, f"{kind}:{(base / Path(rest).expanduser()).resolve()}", "")
            continue
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            _set(tree, path, str((base / Path(value).expanduser()).resolve()), "")


def _fix_for(error: dict, path: str) -> str:
    kind = error["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        cls = _section_class(path.rsplit(".", 1)[0] if "." in path else "")
        known = ", ".join(f.name for f in dataclasses.fields(cls)) if cls else ""
        return f"remove it; known fields here: {known}"
    if kind == "literal_error":
        return "use one of the values listed"
    if kind == "less_than_equal" and path == "workload.num_requests":
        return f"simulate at most {MAX_NUM_REQUESTS:,} requests: each holds about 9 KB of records until the run ends (some 90 GB at the limit), and percentiles settle within thousands"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return "use a value in that range"
    if kind == "finite_number":
        return "give a finite number (.inf and .nan are not allowed here)"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.startswith("dataclass"):
        return "give a value of the type this field takes (see scenarios/quickstart.yaml)"
    return "see scenarios/quickstart.yaml for a valid example"


def _section_class(path: str) -> type | None:
    cls: type | None = Scenario
    for key in filter(None, path.split(".")):
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls and dataclasses.is_dataclass(cls) else {}
        if key not in fields:
            return None
        default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else None
        cls = type(default) if dataclasses.is_dataclass(default) else None
    return cls


def scenario_from_dict(data: dict, source: str = "<scenario>") -> Scenario:
    """Validate a plain dict (as read from YAML) into a ``Scenario``.

    Raises:
        ScenarioError: an unknown key, a wrong type or an out-of-range value; the message names
            ``source``, the dotted field path, the value and the fix.
    """
    data = dict(data)
    for section, main in _SHORTHANDS.items():
        if isinstance(data.get(section), str):
            data[section] = {main: data[section]}
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err["loc"] if not str(x).startswith("function-")]
        path = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "unexpected_keyword_argument":
            msg = "unknown field"
        value = err.get("input", ...)
        if isinstance(value, dict) and err["type"] not in ("extra_forbidden",):
            value = ...
        raise ScenarioError(source, path or "(top level)", value, msg, _fix_for(err, path)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the field path and the value parsed as YAML (``8`` -> int).

    Raises:
        ScenarioError: the text has no ``=`` or an empty field path.
    """
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ScenarioError("--set", "", text, "expected FIELD=VALUE", "write e.g. --set cluster.num_replicas=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def load_scenario(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario YAML (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    Relative paths in the file are taken relative to the file; relative paths given with
    ``--set`` are taken relative to the working directory.

    Raises:
        ScenarioError: a missing file, malformed YAML, an unknown key, a wrong type or an
            out-of-range value.
    """
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        data = read_yaml_mapping(path, "scenario", "check the path; bundled scenarios are in scenarios/")
        for section, main in _SHORTHANDS.items():
            if isinstance(data.get(section), str):
                data[section] = {main: data[section]}
        _resolve_paths(data, path.parent.resolve())
    set_paths = set()
    for text in overrides:
        field, value = parse_override(text)
        _set(data, field, value, "--set", defaults=scenario_to_dict(Scenario()))
        set_paths.add(field)
    _resolve_paths(data, Path.cwd(), only=set_paths)
    if overrides:
        source += " (with --set " + " ".join(overrides) + ")"
    return scenario_from_dict(data, source)


def scenario_to_dict(scenario: Scenario) -> dict:
    """The scenario as plain data (for ``scenario.yaml`` in the results folder)."""
    return dataclasses.asdict(scenario)
