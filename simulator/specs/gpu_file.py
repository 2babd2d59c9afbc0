"""GPU spec files: a GPU's datasheet numbers in YAML, for GPUs servesim does not bundle.

``hardware.gpu`` names a bundled GPU (``simulator.specs.gpu.GPUS``, case-insensitive) or a YAML
file ending in ``.yaml``/``.yml`` (relative to the scenario file, as ``hardware.profile``). The
file holds the ``GPUSpec`` fields in the units datasheets print, each name saying its unit::

    name: h100-pcie-mine          # optional; default: the file name without .yaml
    memory_gb: 80                 # GB = 1e9 bytes, as the datasheet states it
    memory_bandwidth_gb_per_s: 2000
    bf16_tflops: 756.5            # dense (no 2:4 sparsity), FP32 accumulate
    fp8_tflops: 1513              # required; null when the GPU has no FP8 tensor cores
    int8_tops: 1513
    interconnect:                 # what the TP all-reduce runs over
      kind: pcie                  # nvlink or pcie
      bandwidth_gb_per_s: 64      # per direction (half NVLink's marketing figure)
      latency_s: 8.0e-6           # per hop of one collective step
    pcie_bandwidth_gb_per_s: 64   # host link, per direction
    source: "where every figure comes from"
    aiconfigurator_system: h100_pcie   # optional: the matching aiconfigurator-core system

``scenarios/gpus/example-gpu.yaml`` is a complete example. Every mistake in the file is a
``ScenarioError`` naming the file, the field, the value and the fix.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.scenario import GPU_FILE_SUFFIXES, read_yaml_mapping
from simulator.specs.gpu import GIGA, GPUS, TERA, GPUSpec

EXAMPLE = "scenarios/gpus/example-gpu.yaml"


def _not_bool(value: Any) -> Any:
    # YAML's true/false would pass as 1.0/0.0; a figure is never a yes/no.
    if isinstance(value, bool):
        raise ValueError("is true/false, not a number")
    return value


Figure = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)]
_CONFIG = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_CONFIG)
class InterconnectFields:
    """The GPU-to-GPU link of a GPU spec file."""

    kind: Literal["nvlink", "pcie"]
    bandwidth_gb_per_s: Figure
    latency_s: Figure


@dataclass(frozen=True, config=_CONFIG)
class GPUFileFields:
    """A GPU spec file as written (units in the names); ``to_spec`` converts to ``GPUSpec``."""

    memory_gb: Figure
    memory_bandwidth_gb_per_s: Figure
    bf16_tflops: Figure
    fp8_tflops: Figure | None
    int8_tops: Figure
    interconnect: InterconnectFields
    pcie_bandwidth_gb_per_s: Figure
    source: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)] | None = None
    aiconfigurator_system: str | None = None

    def to_spec(self, default_name: str) -> GPUSpec:
        """The ``GPUSpec`` in SI units (bytes, bytes/s, FLOP/s); ``default_name`` when unnamed."""
        link = self.interconnect
        return GPUSpec(
            name=self.name or default_name,
            bf16_flops=self.bf16_tflops * TERA,
            fp8_flops=None if self.fp8_tflops is None else self.fp8_tflops * TERA,
            int8_ops=self.int8_tops * TERA,
            memory_bandwidth=self.memory_bandwidth_gb_per_s * GIGA,
            memory_bytes=self.memory_gb * GIGA,
            link_bandwidth=link.bandwidth_gb_per_s * GIGA,
            link_latency_s=link.latency_s,
            link_kind=link.kind,
            pcie_bandwidth=self.pcie_bandwidth_gb_per_s * GIGA,
            source=self.source,
            aiconfigurator_system=self.aiconfigurator_system,
        )


_ADAPTER = TypeAdapter(GPUFileFields)
_SECTIONS: dict[str, type] = {"": GPUFileFields, "interconnect": InterconnectFields}
# What to write for each field when it is missing.
_HINTS = {
    "memory_gb": "device memory in GB, 1e9 bytes",
    "memory_bandwidth_gb_per_s": "HBM/GDDR bandwidth in GB/s",
    "bf16_tflops": "the dense BF16 tensor-core peak in TFLOPS",
    "fp8_tflops": "the dense FP8 tensor-core peak in TFLOPS, or null without FP8 tensor cores",
    "int8_tops": "the dense INT8 tensor-core peak in TOPS",
    "interconnect": "a section with kind (nvlink or pcie), bandwidth_gb_per_s and latency_s",
    "kind": "nvlink or pcie",
    "bandwidth_gb_per_s": "the link's bandwidth per direction in GB/s",
    "latency_s": "the link's per-hop latency in seconds, e.g. 8.0e-6",
    "pcie_bandwidth_gb_per_s": "the host PCIe bandwidth per direction in GB/s",
    "source": "where each figure comes from (datasheet and which figures)",
}


def _error(path: Path, error: dict) -> ScenarioError:
    """One pydantic error of a GPU spec file as a ``ScenarioError``."""
    loc = [str(x) for x in error["loc"] if not str(x).startswith("function-")]
    field, kind = ".".join(loc) or "(top level)", error["type"]
    name = loc[-1] if loc else ""
    value = error.get("input", ...)
    if kind == "missing":
        return ScenarioError(str(path), field, ..., "missing field", f"add `{name}:` with {_HINTS.get(name, 'its value')} (see {EXAMPLE})")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = ", ".join(f.name for f in dataclasses.fields(_SECTIONS.get(".".join(loc[:-1]), GPUFileFields)))
        return ScenarioError(str(path), field, value, "unknown field", f"remove it; known fields here: {known}")
    if kind == "literal_error":
        return ScenarioError(str(path), field, value, "unknown interconnect kind", "use nvlink or pcie (a GPU without NVLink all-reduces over PCIe)")
    if kind in ("greater_than", "finite_number"):
        return ScenarioError(str(path), field, value, "must be a positive finite number", f"give {_HINTS.get(name, 'the datasheet figure')}")
    if kind == "dataclass_type":
        return ScenarioError(str(path), field, value, "is not a section", f"write it as a section, e.g. `{field}: {{kind: pcie, bandwidth_gb_per_s: 64, latency_s: 8.0e-6}}`")
    if isinstance(value, (dict, list)):
        value = ...
    problem = error["msg"].removeprefix("Value error, ")
    return ScenarioError(str(path), field, value, problem, f"give {_HINTS.get(name, 'a value of the right type')} (see {EXAMPLE})")


# (path, mtime_ns, size) -> the spec; a file is read again after it changes.
_LOADED: dict[tuple[str, int, int], GPUSpec] = {}


def load_gpu_file(path: str | Path) -> GPUSpec:
    """The ``GPUSpec`` of a GPU spec YAML file (format: this module's docstring).

    Memoized per (path, modification time, size): a plan resolves the same file many times.

    Raises:
        ScenarioError: the file is missing, unreadable, not valid YAML or not a mapping; a field
            is missing, unknown, of the wrong type, zero, negative or infinite; an interconnect
            kind other than nvlink or pcie. The message names the file and the field.
    """
    path = Path(path)
    try:
        stat = path.stat()
        memo = (str(path), stat.st_mtime_ns, stat.st_size)
        if memo in _LOADED:
            return _LOADED[memo]
        data = read_yaml_mapping(path, "GPU spec", f"check the path; {EXAMPLE} is an example", layout="fields", allow_empty=False)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ScenarioError(str(path), "", ..., f"cannot read the GPU spec file ({reason})", "give a readable UTF-8 YAML file") from None
    try:
        fields = _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise _error(path, e.errors()[0]) from None
    spec = _LOADED[memo] = fields.to_spec(path.stem)
    return spec


def is_gpu_file(value: str) -> bool:
    """Whether a ``hardware.gpu`` value names a GPU spec file (ends in .yaml or .yml)."""
    return value.lower().endswith(GPU_FILE_SUFFIXES)


def resolve_gpu(value: str, source: str, field: str = "hardware.gpu", base: Path | None = None) -> GPUSpec:
    """The GPU a scenario or plan names: a bundled name (case-insensitive) or a GPU spec file.

    Args:
        value: ``h100-sxm``, ``H100-SXM`` or ``path/to/gpu.yaml``.
        source: the file ``value`` came from (for the error message).
        field: the field it came from (``hardware.gpu``, ``search.gpus.0``).
        base: the folder a relative file path is relative to; default: the working directory
            (scenario files make ``hardware.gpu`` paths absolute when they are loaded).

    Raises:
        ScenarioError: an unknown name (the bundled names listed), a missing file, or any
            mistake inside the file (``load_gpu_file``).
    """
    spec = GPUS.get(value.lower())
    if spec is not None:
        return spec
    if not is_gpu_file(value):
        raise ScenarioError(source, field, value, "unknown GPU", f"use one of {', '.join(GPUS)}, or a GPU spec .yaml file (see {EXAMPLE})")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.is_file():
        problem = "is a directory, not a GPU spec file" if path.is_dir() else f"GPU spec file not found ({path})"
        raise ScenarioError(source, field, value, problem, "check the path (in a scenario file, a relative path is relative to that file)")
    return load_gpu_file(path)
