"""Shared test factories and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.request import Request

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"
AZURE_CONV = TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv"


def make_request(request_id: int = 0, prompt: int = 10, output: int = 3, arrival: float | None = None) -> Request:
    """A request with ``prompt`` prompt tokens that generates ``output`` tokens."""
    return Request(request_id=request_id, arrival_time=float(request_id) if arrival is None else arrival, num_prompt_tokens=prompt, num_output_tokens=output)


@pytest.fixture
def azure_conv() -> Path:
    if not AZURE_CONV.is_file():
        pytest.skip(f"public trace not found at {AZURE_CONV}")
    return AZURE_CONV
