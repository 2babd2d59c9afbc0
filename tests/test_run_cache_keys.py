"""Run-cache keys follow everything a run's prices depend on: GPU spec files and named profiles too."""

from __future__ import annotations

import shutil

from simulator.studies.run_cache import run_key
from simulator.scenario import load_scenario
from tests.conftest import REPO


def test_editing_a_gpu_spec_file_changes_the_key(tmp_path):
    spec = tmp_path / "gpu.yaml"
    shutil.copy(REPO / "scenarios" / "gpus" / "example-gpu.yaml", spec)
    before = run_key(load_scenario(None, [f"hardware.gpu={spec}"]))
    assert run_key(load_scenario(None, [f"hardware.gpu={spec}"])) == before  # deterministic
    spec.write_text(spec.read_text().replace("memory_gb: 80", "memory_gb: 94"))
    assert run_key(load_scenario(None, [f"hardware.gpu={spec}"])) != before


def test_a_named_profile_is_keyed_by_its_data(tmp_path, monkeypatch):
    systems = tmp_path / "systems"
    (systems / "data").mkdir(parents=True)
    (systems / "data" / "table.bin").write_bytes(b"one")
    monkeypatch.setenv("AICONFIGURATOR_SYSTEMS", str(systems))
    name = ["hardware.profile=aiconfigurator:toy_sxm/vllm/1.0"]
    before = run_key(load_scenario(None, name))
    assert before != run_key(load_scenario(None, ["hardware.profile=aiconfigurator:toy_sxm/vllm/2.0"]))
    (systems / "data" / "table.bin").write_bytes(b"two")
    assert run_key(load_scenario(None, name)) != before
