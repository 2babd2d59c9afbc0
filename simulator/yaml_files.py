"""Reading the YAML files servesim takes (scenario, sweep, plan, GPU spec): one reader, one set of mistakes.

``read_yaml_mapping`` is the only place these files are read. Every mistake in reading one is a
``ScenarioError`` naming the file: missing, a directory, unreadable, not UTF-8 text (a UTF-16
file is named as such by its byte-order mark), malformed YAML (line and column), a key written
twice in one mapping (YAML itself would keep the last one silently), empty, a top level that is
not a mapping, or a file of another kind (a scenario given to ``servesim compare``, a sweep
given to ``servesim run``): then the message says what kind it is and which command takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simulator.errors import ScenarioError

# Top-level fields of each kind of file, as their schemas define them (tests check these against
# Scenario, SweepFile, PlanConfig and GPUFileFields). A file whose fields all belong to another
# kind, and not all to the one expected, is that other kind.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "scenario": frozenset({"name", "description", "seed", "model", "hardware", "cluster", "scheduler", "workload", "slo", "output", "uncertainty"}),
    "sweep": frozenset({"name", "description", "base", "base_overrides", "axes", "series", "capacity", "latency_cdf_rate", "executor", "max_workers", "address"}),
    "plan": frozenset({"name", "description", "base", "overrides", "workload", "seed", "target_rate_rps", "target_rate_scale", "router", "slo", "search", "prices", "limits", "capacity"}),
    "GPU spec": frozenset({"name", "memory_gb", "memory_bandwidth_gb_per_s", "bf16_tflops", "fp8_tflops", "int8_tops", "interconnect", "pcie_bandwidth_gb_per_s", "source", "aiconfigurator_system"}),
    "measured run": frozenset({"name", "description", "source", "engine", "hardware", "scenario", "metrics", "measured", "requests", "tolerance"}),
}
# Where each kind of file goes.
TAKEN_BY = {
    "scenario": "`servesim run FILE` (or `servesim check FILE`)",
    "sweep": "`servesim compare FILE`",
    "plan": "`servesim plan FILE`",
    "GPU spec": "a scenario's `hardware.gpu: FILE` (or a plan's `search.gpus`)",
    "measured run": "`servesim validate FILE`",
}
TRACE_SUFFIXES = (".csv", ".jsonl")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key written twice in one YAML mapping; ``key``, and the 1-based lines of both."""

    def __init__(self, key: Any, first_line: int, node: yaml.Node) -> None:
        self.key, self.first_line, self.line = key, first_line, node.start_mark.line + 1
        super().__init__("while constructing a mapping", None, f"found duplicate key {key!r}", node.start_mark)


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key written twice in one mapping (merge keys ``<<`` excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if key in seen:
                raise DuplicateKeyError(key, seen[key], key_node)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _key_path(text: str, line: int) -> str | None:
    """The dotted path of the mapping key on 1-based ``line`` of ``text`` (for naming a duplicate)."""
    def walk(node: yaml.Node, prefix: str) -> str | None:
        pairs = node.value if isinstance(node, yaml.MappingNode) else [(None, v) for v in node.value] if isinstance(node, yaml.SequenceNode) else []
        for i, (key, value) in enumerate(pairs):
            here = f"{prefix}{key.value if key is not None else i}"
            if key is not None and key.start_mark.line + 1 == line:
                return here
            found = walk(value, here + ".")
            if found:
                return found
        return None

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return walk(root, "") if root is not None else None


def load_yaml(text: str) -> Any:
    """Parse YAML text with ``UniqueKeyLoader``. Raises ``yaml.YAMLError`` (``DuplicateKeyError`` among them)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def read_text(path: Path, kind: str, not_found_fix: str) -> str:
    """The text of a ``kind`` file, decoded as UTF-8 (a UTF-8 byte-order mark is allowed).

    Raises:
        ScenarioError: missing (with ``not_found_fix``), a directory, unreadable (the OS's
            reason), or not UTF-8 text (UTF-16 recognized by its byte-order mark).
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(source, "", ..., f"{kind} file not found", not_found_fix) from None
    except IsADirectoryError:
        raise ScenarioError(source, "", ..., "is a directory", f"give a {kind} .yaml file") from None
    except OSError as e:
        raise ScenarioError(source, "", ..., f"cannot read the {kind} file ({e.strerror or type(e).__name__})", "check the file's permissions") from None
    return decode_utf8(data, source, f"save it as UTF-8 (the {kind} file is YAML text)")


def decode_utf8(data: bytes, source: str, fix: str) -> str:
    """``data`` as UTF-8 text; a leading UTF-8 byte-order mark is dropped.

    Raises:
        ScenarioError: not UTF-8; UTF-16 and UTF-32 are named by their byte-order marks.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        boms = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
        found = next((name for bom, name in boms.items() if data.startswith(bom)), None)
        problem = f"cannot read it: {found} text, not UTF-8 (byte-order mark)" if found else f"cannot read it: not UTF-8 text (undecodable byte {data[e.start]:#04x} at offset {e.start})"
        raise ScenarioError(source, "", ..., problem, fix) from None


def file_kind(data: dict, expected: str) -> str | None:
    """The other kind of file ``data`` is, when its fields are not all ``expected``'s but are all another's."""
    keys = {str(k) for k in data}
    if keys <= KIND_FIELDS[expected]:
        return None
    return next((kind for kind, fields in KIND_FIELDS.items() if kind != expected and keys <= fields), None)


def yaml_file_kind(path: Path) -> str | None:
    """Which kind of servesim YAML file ``path`` is (``scenario``, ``sweep``, ``plan``, ``GPU spec``), or None.

    For naming a file given to the wrong command; never raises (an unreadable file is None).
    """
    try:
        data = load_yaml(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not data:
        return None
    keys = {str(k) for k in data}
    return next((kind for kind, fields in KIND_FIELDS.items() if keys <= fields), None)


def read_yaml_mapping(path: Path, kind: str, not_found_fix: str, layout: str = "sections", allow_empty: bool = False) -> dict:
    """The mapping at the top of a ``kind`` YAML file (``scenario``, ``sweep``, ``plan``, ``GPU spec``).

    An empty file (or one of comments only) is a mistake unless ``allow_empty``: it more likely
    lost its contents than means "all defaults" (``servesim run`` without a file runs those).

    Raises:
        ScenarioError: the file is missing (with ``not_found_fix``), a directory, unreadable,
            not UTF-8, a trace (.csv, .jsonl), not valid YAML (line and column named), has a
            duplicate key (both lines named), is empty, holds no mapping, or is another kind of
            file (named with the command that takes it).
    """
    source = str(path)
    if path.suffix.lower() in TRACE_SUFFIXES and path.is_file():
        raise ScenarioError(source, "", ..., f"is a request trace ({path.suffix}), not a {kind} file", "name it in a scenario as `workload.trace: FILE`")
    text = read_text(path, kind, not_found_fix)
    try:
        data = load_yaml(text)
    except DuplicateKeyError as e:
        raise ScenarioError(source, _key_path(text, e.line) or str(e.key), ..., f"duplicate key at line {e.line} (first at line {e.first_line}); YAML would keep only the last", "keep one of the two") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(e, "problem", None) or "syntax error"
        raise ScenarioError(source, "", ..., f"malformed YAML at {where}: {problem}", "fix the YAML syntax there") from None
    if data is None:
        if not allow_empty:
            extra = " (`servesim run` with no file runs the built-in defaults)" if kind == "scenario" else ""
            raise ScenarioError(source, "", ..., f"the {kind} file is empty", f"write the {kind} as `key: value` {layout}{extra}")
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, "", ..., "the top level is not a mapping", f"write the {kind} as `key: value` {layout}")
    other = file_kind(data, kind)
    if other is not None:
        raise ScenarioError(source, "", ..., f"is a {other} file, not a {kind} file", f"give it to {TAKEN_BY[other]}; {TAKEN_BY[kind]} takes a {kind} file")
    return data
