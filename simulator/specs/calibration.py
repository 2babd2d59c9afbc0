"""Per-GPU roofline calibration: efficiencies and all-reduce prices fitted to measured kernels.

``roofline_calibration.json`` beside this file holds, per servesim GPU name, the roofline fields
(``RooflineConfig``'s efficiencies and per-kernel floor) fitted to that GPU's kernel tables in
NVIDIA's aiconfigurator-core package, the alpha-beta all-reduce fits (vLLM's custom all-reduce
and NCCL, per TP degree), and the provenance of each: package and version, system, framework
and version, tables, fit date, and a label per field saying whether it was fitted or assumed.
It holds fitted parameters only, never table rows. ``benchmarks/calibrate_roofline_gpus.py``
writes it; results and method are in ``benchmarks/README.md``.

``resolve(params, gpu_name)`` gives the values a cost model uses: a field the scenario sets
wins; else the GPU's calibrated value; for a GPU without calibration, ``FALLBACK`` (the H100 fit
to Vidur's profiles, the defaults servesim used for every GPU before), labelled so.

The file's ``moe`` section (written by ``benchmarks/moe_kernel_check.py``, which must run after
``calibrate_roofline_gpus.py`` since that one rewrites the file) holds, per GPU and expert weight
dtype (``bf16``, ``fp8``), the routed experts' prices fitted to vLLM's measured ``fused_experts``
(``MOE_FIELDS``). A GPU or dtype without a fit takes the GPU's own GEMM values:
``moe_flops_efficiency`` = ``gemm_flops_efficiency``, ``moe_bandwidth_efficiency`` =
``gemm_bandwidth_efficiency``, ``moe_call_s`` = two kernel floors (the two grouped GEMMs),
``moe_expert_s`` = 0, which is the roofline ``MoELayer`` priced before the fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from simulator.scenario import RooflineConfig

CALIBRATION_FILE = Path(__file__).parent / "roofline_calibration.json"

ROOFLINE_FIELDS = (
    "gemm_flops_efficiency", "gemm_bandwidth_efficiency", "attention_flops_efficiency",
    "attention_bandwidth_efficiency", "elementwise_bandwidth_efficiency", "link_bandwidth_efficiency",
    "kernel_launch_s", "attention_launch_s",
)

# The H100 fit to Vidur's public H100 profiles (Llama-2-7B/70B layers, fp16 cuBLAS; NCCL on an
# H100 DGX) by benchmarks/calibrate_roofline.py: 0.665 GEMM FLOPs, 0.835 GEMM bandwidth, 0.585
# elementwise bandwidth, 0.765 link (8 GPUs, >= 16 MB), 3.4 us floor per kernel plus ~1 us of
# launch gap. Attention efficiencies are estimates: FlashAttention-2 reaches 50-70 % of peak
# FLOPs in prefill (Dao 2023); paged decode 60-80 % of bandwidth at large batch; an attention
# call's floor is that of any kernel.
FALLBACK: dict[str, float] = {
    "gemm_flops_efficiency": 0.665,
    "gemm_bandwidth_efficiency": 0.835,
    "attention_flops_efficiency": 0.55,
    "attention_bandwidth_efficiency": 0.70,
    "elementwise_bandwidth_efficiency": 0.585,
    "link_bandwidth_efficiency": 0.765,
    "kernel_launch_s": 4e-6,
    "attention_launch_s": 4e-6,
}
MOE_FIELDS = ("moe_flops_efficiency", "moe_bandwidth_efficiency", "moe_call_s", "moe_expert_s")
MOE_DTYPES = {"none": "bf16", "fp8": "fp8"}  # servesim quantization -> the fitted expert weight dtype
MOE_FALLBACK_SOURCE = "no MoE kernel fit for this GPU and dtype: the GPU's GEMM efficiencies, two kernel floors per call, no per-expert cost"

FALLBACK_SOURCE = "no calibration for this GPU: H100 defaults (fit to Vidur's H100 profiles, attention estimated)"


@dataclass(frozen=True, slots=True)
class AlphaBeta:
    """An all-reduce priced ``latency_s + nbytes / bandwidth`` (Hockney's alpha-beta model)."""

    latency_s: float  # s
    bandwidth: float  # bytes/s of message size (algorithm bandwidth), not bus bandwidth

    def time(self, nbytes: float) -> float:
        """Seconds to all-reduce ``nbytes`` bytes."""
        return self.latency_s + nbytes / self.bandwidth


@dataclass(frozen=True, slots=True)
class AllReduceFit:
    """All-reduce prices of one GPU's TP group, fitted per TP degree to measured tables.

    ``custom`` holds the TP degrees where vLLM's custom all-reduce applies (two GPUs, or any
    fully NVLink-connected group: ``CustomAllreduce.__init__`` and ``should_custom_ar`` in
    vllm/distributed/device_communicators/custom_all_reduce.py), used for messages below
    ``custom_max_bytes`` (its ``max_size``, 8 MiB); NCCL prices everything else.
    """

    nccl: dict[int, AlphaBeta]
    custom: dict[int, AlphaBeta]
    custom_max_bytes: int

    def time(self, tp: int, nbytes: float) -> float | None:
        """Seconds to all-reduce ``nbytes`` bytes over ``tp`` GPUs; None for an unmeasured TP."""
        nccl = self.nccl.get(tp)
        if nccl is None:
            return None
        t = nccl.time(nbytes)
        custom = self.custom.get(tp)
        if custom is not None and nbytes < self.custom_max_bytes:
            t = min(t, custom.time(nbytes))
        return t


@dataclass(frozen=True, slots=True)
class GPUCalibration:
    """One GPU's entry of ``roofline_calibration.json``.

    Attributes:
        gpu: servesim GPU name.
        values: every ``ROOFLINE_FIELDS`` value (efficiencies are fractions of the datasheet
            numbers in ``reference``; floors in s).
        sources: per field, how it was obtained (``fitted: ...`` or ``assumed: ...``).
        all_reduce: the measured all-reduce fits, None where the GPU has no tables.
        reference: the datasheet peaks the efficiencies are fractions of (FLOP/s, bytes/s).
        provenance: package, version, system, framework, tables, fit date, script.
    """

    gpu: str
    values: dict[str, float]
    sources: dict[str, str]
    all_reduce: AllReduceFit | None
    reference: dict[str, float]
    provenance: dict[str, Any]

    @property
    def label(self) -> str:
        """One line naming where the numbers come from."""
        p = self.provenance
        proxy = f", proxy: measured on {p['proxy_of']}" if p.get("proxy_of") else ""
        return f"{p['package']} {p['package_version']} {p['system']}, {p['framework']} {p['framework_version']}{proxy}"


def _alpha_beta(table: dict[str, dict[str, float]] | None) -> dict[int, AlphaBeta]:
    return {int(tp): AlphaBeta(v["latency_s"], v["bandwidth"]) for tp, v in (table or {}).items()}


def _entry(name: str, raw: dict[str, Any]) -> GPUCalibration:
    ar = raw.get("all_reduce")
    all_reduce = None
    if ar is not None:
        all_reduce = AllReduceFit(_alpha_beta(ar["nccl"]), _alpha_beta(ar.get("custom")), int(ar["custom_max_bytes"]))
    roof = raw["roofline"]
    missing = [f for f in ROOFLINE_FIELDS if f not in roof]
    assert not missing, f"{CALIBRATION_FILE}: {name} lacks {missing}; rerun benchmarks/calibrate_roofline_gpus.py"
    return GPUCalibration(
        gpu=name, values={f: float(roof[f]["value"]) for f in ROOFLINE_FIELDS},
        sources={f: str(roof[f]["source"]) for f in ROOFLINE_FIELDS}, all_reduce=all_reduce,
        reference={k: float(v) for k, v in raw["reference"].items()}, provenance=dict(raw["provenance"]),
    )


@cache
def _read(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


@cache
def load(path: Path = CALIBRATION_FILE) -> dict[str, GPUCalibration]:
    """Every GPU entry of the calibration file, by servesim GPU name (read once)."""
    return {name: _entry(name, raw) for name, raw in _read(path)["gpus"].items()}


@cache
def load_moe(path: Path = CALIBRATION_FILE) -> dict[str, dict[str, dict[str, Any]]]:
    """The MoE kernel fits by servesim GPU name, then dtype (``bf16``/``fp8``): ``MOE_FIELDS`` values and ``source``.

    Empty when the file has no ``moe`` section (``benchmarks/moe_kernel_check.py`` not run).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for gpu, by_dtype in _read(path).get("moe", {}).get("gpus", {}).items():
        for dtype, raw in by_dtype.items():
            missing = [f for f in MOE_FIELDS if f not in raw]
            assert not missing, f"{path}: moe.gpus.{gpu}.{dtype} lacks {missing}; rerun benchmarks/moe_kernel_check.py"
            out.setdefault(gpu, {})[dtype] = {**{f: float(raw[f]) for f in MOE_FIELDS}, "source": str(raw["source"])}
    return out


def for_gpu(name: str) -> GPUCalibration | None:
    """The calibration of GPU ``name``, None for a GPU the file does not cover."""
    return load().get(name)


@dataclass(frozen=True, slots=True)
class RooflineParameters:
    """The roofline fields a cost model uses for one GPU, each with where it came from.

    Attributes:
        values: every ``ROOFLINE_FIELDS`` value.
        sources: per field, ``scenario`` (set by the user), the calibration's label, or
            ``FALLBACK_SOURCE``.
        all_reduce: measured all-reduce prices, None to price the ring formula over the link
            (no tables, or ``link_bandwidth_efficiency`` set in the scenario).
        label: one line saying which calibration applies.
        moe: per expert weight dtype (``bf16``, ``fp8``) with a fit, ``MOE_FIELDS`` values and
            ``source``; see ``moe_values``.
    """

    values: dict[str, float]
    sources: dict[str, str]
    all_reduce: AllReduceFit | None
    label: str
    moe: dict[str, dict[str, Any]] = field(default_factory=dict)

    def moe_values(self, quantization: str) -> dict[str, Any]:
        """The routed experts' prices under ``quantization``: ``MOE_FIELDS`` values and ``source``.

        The GPU's fit for the dtype (``MOE_DTYPES``), else its GEMM values: efficiencies
        ``gemm_flops_efficiency`` / ``gemm_bandwidth_efficiency``, ``2 x kernel_launch_s`` per
        call, no per-expert cost (``MOE_FALLBACK_SOURCE``). W8A8 and W4A16 experts have no
        measured tables here and always take that fallback.
        """
        fit = self.moe.get(MOE_DTYPES.get(quantization, ""))
        return fit if fit is not None else moe_fallback(self.values)


def moe_fallback(values: dict[str, float]) -> dict[str, Any]:
    """The routed experts' prices of a GPU without a MoE fit, from its roofline ``values`` (``MOE_FALLBACK_SOURCE``)."""
    return {"moe_flops_efficiency": values["gemm_flops_efficiency"], "moe_bandwidth_efficiency": values["gemm_bandwidth_efficiency"],
            "moe_call_s": 2 * values["kernel_launch_s"], "moe_expert_s": 0.0, "source": MOE_FALLBACK_SOURCE}


def for_system(system: str | None) -> GPUCalibration | None:
    """The calibration measured on aiconfigurator system ``system``, else that of the bundled GPU of that system; None without either."""
    if system is None:
        return None
    measured = next((c for c in load().values() if c.provenance.get("system") == system and not c.provenance.get("proxy_of")), None)
    if measured is not None:
        return measured
    from simulator.specs.gpu import GPUS

    return next((for_gpu(g.name) for g in GPUS.values() if g.aiconfigurator_system == system and for_gpu(g.name)), None)


def resolve(params: RooflineConfig, gpu_name: str, system: str | None = None) -> RooflineParameters:
    """The roofline fields for ``gpu_name``: the scenario's where set, else calibrated, else FALLBACK.

    A GPU the file does not name (a GPU spec file) takes the calibration of its
    ``aiconfigurator_system`` when it gives one. The MoE fits are those of ``gpu_name`` itself
    (a GPU measured with vLLM MoE tables), dropped when the scenario sets a GEMM efficiency. A scenario that sets
    ``link_bandwidth_efficiency`` asks for the ring formula at that efficiency, so the measured
    all-reduce fits are not used then.
    """
    cal = for_gpu(gpu_name) or for_system(system)
    values, sources = {}, {}
    for f in ROOFLINE_FIELDS:
        user = getattr(params, f)
        if user is not None:
            values[f], sources[f] = float(user), "scenario"
        elif cal is not None:
            values[f], sources[f] = cal.values[f], f"{cal.label}: {cal.sources[f]}"
        else:
            values[f], sources[f] = FALLBACK[f], FALLBACK_SOURCE
    all_reduce = cal.all_reduce if cal is not None and params.link_bandwidth_efficiency is None else None
    label = f"{gpu_name}: calibrated ({cal.label})" if cal is not None else f"{gpu_name}: {FALLBACK_SOURCE}"
    # The MoE fit holds only with the GEMM values it was fitted beside, so a scenario that sets them keeps the fallback.
    own_gemm = params.gemm_flops_efficiency is None and params.gemm_bandwidth_efficiency is None
    moe = load_moe().get(gpu_name, {}) if own_gemm else {}
    return RooflineParameters(values, sources, all_reduce, label, moe)
