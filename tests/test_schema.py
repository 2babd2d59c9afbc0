"""The JSON Schemas of ``servesim schema`` accept every bundled YAML file and reject mistakes.

Each schema is checked against JSON Schema draft 2020-12 itself, then used with the ``jsonschema``
library (a test dependency) to validate the files under scenarios/ and tests/data/, and to reject
what the loaders reject: an unknown field, an unknown scheduler, a wrong type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from simulator.cli import main
from simulator.schema import json_schema
from tests.conftest import REPO

jsonschema = pytest.importorskip("jsonschema")


def kind_of(path: Path) -> str:
    data = yaml.safe_load(path.read_text())
    return "sweep" if "axes" in data else "plan" if "search" in data else "scenario"


BUNDLED = sorted((REPO / "scenarios").glob("*.yaml")) + sorted((REPO / "tests" / "data").glob("*.yaml"))


def validator(kind: str):
    schema = json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_kind_found_among_the_bundled_files():
    assert {kind_of(p) for p in BUNDLED} == {"scenario", "sweep", "plan"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_yaml_is_valid(path):
    errors = [e.message for e in validator(kind_of(path)).iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == [], (path, errors)


@pytest.mark.parametrize("bad, where", [
    ({"scheduler": {"name": "vllm", "max_num_seq": 8}}, "max_num_seq"),        # a misspelt knob
    ({"cluster": {"tensor_paralel_size": 2}}, "tensor_paralel_size"),
    ({"workload": {"arrival": {"rate": 5, "burst": 2}}}, "burst"),
    ({"colour": "blue"}, "colour"),                                          # an unknown section
])
def test_a_scenario_with_an_unknown_field_is_rejected(bad, where):
    errors = list(validator("scenario").iter_errors(bad))
    assert errors, bad
    assert any(where in json.dumps(e.instance) or where in e.message for e in errors)


def test_registries_and_shorthands_are_in_the_scenario_schema():
    v = validator("scenario")
    assert v.is_valid({"model": "llama-3-8b", "hardware": "h100-sxm", "scheduler": "vllm_v1"})  # the loader's shorthands
    assert v.is_valid({"hardware": {"gpu": "gpus/my-gpu.yaml"}})  # a GPU spec file
    assert not v.is_valid({"scheduler": {"name": "vlm"}})
    assert not v.is_valid({"scheduler": "vlm"})
    assert not v.is_valid({"cluster": {"router": "random"}})
    assert not v.is_valid({"hardware": {"gpu": "h100"}})
    assert not v.is_valid({"cluster": {"num_replicas": "two"}})
    assert not v.is_valid({"scheduler": {"preemption_mode": "evict"}})


def test_sweep_and_plan_schemas_reject_unknown_fields():
    assert not validator("sweep").is_valid({"axes": {"rate": [1]}, "axis": {}})
    assert not validator("plan").is_valid({"slo": {}, "search": {"gpus": ["h100-sxm"]}, "target_rate": 3})


def test_schema_command_prints_or_writes_the_schema(tmp_path):
    printed = CliRunner().invoke(main, ["schema", "scenario"], catch_exceptions=False)
    assert printed.exit_code == 0 and json.loads(printed.stdout) == json_schema("scenario")
    out = tmp_path / "schemas" / "plan.json"
    written = CliRunner().invoke(main, ["schema", "plan", "--out", str(out)], catch_exceptions=False)
    assert written.exit_code == 0 and "yaml-language-server: $schema=" in written.stdout
    assert json.loads(out.read_text()) == json_schema("plan")
