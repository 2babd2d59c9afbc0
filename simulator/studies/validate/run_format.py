"""The measured-run format: one real serving run, described so that servesim can simulate it.

A measured run is a YAML file (``runs/*.yaml``), optionally beside a per-request table::

    name: h100-llama3-8b-tp1-c16            # unique within a folder of runs
    description: ...
    source: {name: ..., licence: Apache-2.0, url: ...}      # where the measurement is kept
    engine: {name: vllm, version: 0.12.0, settings: {max_num_seqs: 256}}   # as measured (informational)
    hardware: 1 x NVIDIA H100 80GB HBM3                     # as measured (informational)
    scenario:                                # how servesim simulates it
      base: ../scenarios/quickstart.yaml     # optional; relative to this file
      set: {model.name: llama-3.1-8b, workload.concurrency: 16, ...}   # dotted fields, as --set
    metrics:                                 # the definitions the measurement used
      ttft: send_to_first_token              # (the only one: TTFT from the client's send)
      tpot: excluding_first_token            # or including_first_token (E2E / output tokens)
      itl: per_token                         # gaps between consecutive tokens
    measured:                                # any subset; times in seconds
      ttft_s: {mean: 0.12, p50: 0.11, p90: 0.2, p99: 0.4}
      tpot_s: {mean: 0.012}
      itl_s: {p50: 0.011, p99: 0.03}
      e2e_s: {mean: 2.5}
      request_throughput_rps: 6.2
      output_throughput_tps: 1300
      slo_attainment: 0.97                   # with the scenario's SLOs
    requests: per_request.csv                # optional: one row per request (ttft_s, tpot_s, e2e_s)
    tolerance: {latency_pct: 15, attainment_points: 5}    # the verdict's bounds

Definitions map onto servesim's metrics (DESIGN.md, Metrics): TTFT from arrival (a closed-loop
client's send is the arrival); TPOT excluding the first token is servesim's TPOT (vLLM's
``benchmark_serving`` and genai-perf's inter-token latency); TPOT including the first token is
servesim's normalized E2E (E2E / output tokens); ITL per token is servesim's TBT.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.yaml_files import read_yaml_mapping

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)
Stat = Literal["mean", "p50", "p90", "p99"]
LATENCIES = ("ttft_s", "tpot_s", "itl_s", "e2e_s")
RATES = ("request_throughput_rps", "output_throughput_tps")


@dataclass(frozen=True, config=_CONFIG)
class RunSource:
    """Where the measurement is kept."""

    name: str
    licence: str
    url: str | None = None


@dataclass(frozen=True, config=_CONFIG)
class Engine:
    """The engine as measured (informational: the scenario decides what is simulated)."""

    name: str
    version: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, config=_CONFIG)
class ScenarioSpec:
    """How servesim simulates the run: a base scenario file and ``--set`` style overrides."""

    base: str | None = None
    set: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, config=_CONFIG)
class Metrics:
    """The metric definitions of the measurement."""

    ttft: Literal["send_to_first_token"] = "send_to_first_token"
    tpot: Literal["excluding_first_token", "including_first_token"] = "excluding_first_token"
    itl: Literal["per_token"] = "per_token"


Positive = Field(gt=0)


@dataclass(frozen=True, config=_CONFIG)
class Measured:
    """The measured values: latency statistics (s) per metric, rates, SLO attainment (0..1)."""

    ttft_s: dict[Stat, Any] = dataclasses.field(default_factory=dict)
    tpot_s: dict[Stat, Any] = dataclasses.field(default_factory=dict)
    itl_s: dict[Stat, Any] = dataclasses.field(default_factory=dict)
    e2e_s: dict[Stat, Any] = dataclasses.field(default_factory=dict)
    request_throughput_rps: float | None = Field(default=None, gt=0)
    output_throughput_tps: float | None = Field(default=None, gt=0)
    slo_attainment: float | None = Field(default=None, ge=0, le=1)

    def __post_init__(self) -> None:
        for name in LATENCIES:
            for stat, value in getattr(self, name).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise ValueError(f"measured.{name}.{stat} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, config=_CONFIG)
class Tolerance:
    """The verdict's bounds: |signed error| of every latency statistic and rate, and of SLO attainment."""

    latency_pct: float = Field(default=15.0, gt=0)
    attainment_points: float = Field(default=5.0, gt=0)


@dataclass(frozen=True, config=_CONFIG)
class MeasuredRun:
    """One measured run (module docstring); ``path`` is the file it came from (set on load)."""

    name: str
    source: RunSource
    scenario: ScenarioSpec
    measured: Measured
    description: str = ""
    engine: Engine | None = None
    hardware: str | None = None
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    requests: str | None = None
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)
    path: str | None = None


_ADAPTER = TypeAdapter(MeasuredRun)
KIND = "measured run"


def parse_run(data: dict, source: str) -> MeasuredRun:
    """A ``MeasuredRun`` from a mapping (a YAML file's, or a loader's).

    Raises:
        ScenarioError: a missing or unknown field, a wrong type, a non-positive time; one line
            naming ``source``, the field, the value and the fix.
    """
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-")) or "(top level)"
        value = err.get("input", ...)
        if isinstance(value, (dict, list)):
            value = ...
        if err["type"] == "missing":
            raise ScenarioError(source, field, ..., "missing field", "add it (see simulator/studies/validate/run_format.py for the format)") from None
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            raise ScenarioError(source, field, value, "unknown field", "remove it (see simulator/studies/validate/run_format.py for the format)") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ScenarioError(source, field, value, msg, "give a value of the type and range the format takes (simulator/studies/validate/run_format.py)") from None


def load_run(path: str | Path) -> MeasuredRun:
    """Read one measured-run YAML file.

    Raises:
        ScenarioError: the file cannot be read or parsed (see ``read_yaml_mapping``), or its
            contents are not a valid run (``parse_run``), or its ``requests`` table is missing.
    """
    path = Path(path)
    data = read_yaml_mapping(path, KIND, "give a measured-run .yaml file or a folder of them")
    run = parse_run(data, str(path))
    if run.requests is not None and not (path.parent / run.requests).is_file():
        raise ScenarioError(str(path), "requests", run.requests, "per-request table not found", "give a CSV or parquet file, relative to the run file")
    return dataclasses.replace(run, path=str(path.resolve()))


def load_runs(path: str | Path) -> list[MeasuredRun]:
    """One run file, or every ``*.yaml`` / ``*.yml`` of a folder (sorted), names unique.

    Raises:
        ScenarioError: nothing to read, a bad file, or two runs of one name.
    """
    path = Path(path)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    if not files:
        raise ScenarioError(str(path), "", ..., "holds no measured-run .yaml file", "give a run file or a folder of them")
    runs = [load_run(f) for f in files]
    seen: dict[str, str] = {}
    for run in runs:
        if run.name in seen:
            raise ScenarioError(str(run.path), "name", run.name, f"is also the name of {seen[run.name]}", "give every run its own name")
        seen[run.name] = str(run.path)
    return runs
