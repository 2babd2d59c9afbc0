"""`servesim profile` and `servesim fit`: bad input is one line and exit code 2; no torch on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from profiler import TINY_MODEL_CONFIG
from tests.conftest import REPO


def servesim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


BAD = {
    "unknown model": (["profile", "--model", "llama-9000", "--device", "cpu", "--out", "b"], ["--model", "llama-9000", "unknown model", "llama-3-8b"]),
    "tp not an integer": (["profile", "--model", str(TINY_MODEL_CONFIG), "--tp", "1,two", "--device", "cpu", "--out", "b"], ["--tp", "'1,two'", "integers"]),
    "tp that does not divide the heads": (["profile", "--model", str(TINY_MODEL_CONFIG), "--tp", "1,3", "--device", "cpu", "--out", "b"], ["--tp", "3", "attention heads", "1, 2, 4"]),
    "unknown operator": (["profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cpu", "--operators", "qkv_proj,flash", "--out", "b"], ["--operators", "flash", "qkv_proj"]),
    "unknown quantization": (["profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cpu", "--quantization", "int3", "--out", "b"], ["--quantization", "int3", "w8a8"]),
    "fit of a missing folder": (["fit", "no-such-profile"], ["no-such-profile", "not found", "servesim profile"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, case):
    args, expected = BAD[case]
    proc = servesim(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("servesim: error:"), proc.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "b").exists()  # nothing written on bad input


def test_fit_of_a_folder_without_a_profile_is_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = servesim("fit", "empty", cwd=tmp_path)
    assert proc.returncode == 2 and "not a profile bundle" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_simulator_and_the_command_line_never_import_torch():
    code = (
        "import sys, simulator, simulator.cli, simulator.engine.simulation, simulator.cost_models, profiler, profiler.fit, profiler.commands, profiler.catalogue\n"
        "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    helptext = subprocess.run([sys.executable, "-m", "simulator.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "profile" in helptext.stdout and "fit" in helptext.stdout
