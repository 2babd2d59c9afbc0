"""Writing an imported profile bundle: foreign measurements as catalogue rows, gaps filled and labelled.

An importer (``profiler.imports.aiconfigurator``, ``.llmservingsim``, ``.vidur``) reads someone
else's kernel timings and hands each one to ``ImportedBundle.add`` as a row of the operator
catalogue (``profiler.catalogue``) at the model's tensor-parallel shard shapes. The bundle it
writes is the one ``servesim profile`` writes (``profile.json``, ``device.json``, one tidy CSV per
operator kind), so ``servesim fit`` and ``hardware.profile`` use it unchanged, plus
``provenance.json``: where every row came from.

Each row carries its origin in the ``timer`` column, ``<source>:<origin>``:

- ``measured``: the source timed exactly this shape;
- ``interpolated``: derived from the source's measurements of neighbouring shapes (a GEMM width
  between two measured widths, a message size between two measured sizes), holding the measured
  efficiency and scaling the roofline time (DESIGN.md: "hold the measured efficiency");
- ``filled``: the source never timed this operator; it is priced by the roofline at the
  efficiencies calibrated on the source's own operators of the same class (``calibrate``), so the
  bundle is complete and says which operators were filled and how (``provenance.json``,
  ``filled``);
- ``assumed``: the per-iteration host overhead (``cpu_overhead``), which no kernel database
  times, from the ``RooflineConfig`` defaults.

Operator classes for filling: ``gemm`` (FLOPs and bandwidth efficiency of the source's GEMMs),
``attention`` (prefill FLOPs, decode bandwidth) and ``memory`` (streaming kernels: the source's
elementwise operators; a source without them lends the bandwidth efficiency of its decode
attention at large batch x context, the purest streaming kernel it timed). Each class's
per-kernel floor is the fastest kernel the source timed in it: no kernel of the class ran faster,
so the floor is at most that. The TP all-reduce is never filled: without a measurement the
simulator prices it with the scenario GPU's link model.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from profiler import bundle
from profiler.catalogue import (
    ALL_REDUCE, ATTENTION_DECODE, ATTENTION_PREFILL, CPU_OVERHEAD, DTYPE_BYTES, ELEMENTWISE, GEMM, KINDS, SHAPE_COLUMNS,
    decode_counts, elementwise_bytes, elementwise_width, gemm_counts, gemm_shape, layer_dims, model_operators, prefill_counts,
)
from profiler.sweeps import SweepConfig
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUSpec
from simulator.specs.model import ModelSpec

PROVENANCE = "provenance.json"
ORIGINS = ("measured", "interpolated", "filled", "assumed")


@dataclass(frozen=True)
class Source:
    """Who measured, on what, with which software: the provenance of an imported bundle.

    Attributes:
        spec: the name a scenario or the command line uses, e.g. ``aiconfigurator:h100_sxm/vllm/0.24.0``.
        kind: the importer (``aiconfigurator``, ``llmservingsim``, ``vidur``).
        device_name: the GPU as the source names it (``NVIDIA H100 80GB HBM3``).
        licence: the data's licence.
        url: where the data is kept.
        details: everything else worth keeping (package version, system, framework and version,
            files read, collection dates).
    """

    spec: str
    kind: str
    device_name: str
    licence: str
    url: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Row:
    kind: str
    operator: str
    implementation: str
    dtype: str
    tp: int
    shape: tuple[int, ...]
    flops: float
    nbytes: float
    seconds: float
    origin: str
    num_samples: int


def counts(kind: str, operator: str, shape: tuple[int, ...], dtype: str, float_bytes: float) -> tuple[float, float]:
    """(FLOPs, bytes) of one catalogue row, with the catalogue's formulas.

    Args:
        kind, operator: the catalogue row's kind and operator.
        shape: the kind's ``SHAPE_COLUMNS`` in order.
        dtype: the row's dtype (a float dtype, or a quantization for GEMMs).
        float_bytes: bytes per element of activations and KV (2 for bf16).
    """
    s = dict(zip(SHAPE_COLUMNS[kind], shape))
    if kind == GEMM:
        return gemm_counts(s["m"], s["n"], s["k"], dtype)
    if kind == ELEMENTWISE:
        return 0.0, elementwise_bytes(operator, s["num_tokens"], s["width"], float_bytes)
    if kind == ATTENTION_PREFILL:
        return prefill_counts(s["num_seqs"], s["new_tokens"], s["prefix_tokens"], s["num_heads"], s["num_kv_heads"], s["head_dim"], float_bytes)
    if kind == ATTENTION_DECODE:
        return decode_counts(s["num_seqs"], s["context_tokens"], s["num_heads"], s["num_kv_heads"], s["head_dim"], float_bytes)
    if kind == ALL_REDUCE:
        return 0.0, float(s["num_tokens"] * s["width"] * float_bytes)
    return 0.0, 0.0


@dataclass(frozen=True)
class ClassCalibration:
    """Roofline efficiencies of one operator class, calibrated on a source's own rows.

    Attributes:
        flops_efficiency, bandwidth_efficiency: achieved fraction of the datasheet peak (median
            over the class's compute-bound and memory-bound rows; None when it has no such rows).
        floor_s: the fastest kernel of the class (s).
        calibrated_on: the operators the values come from.
        num_rows: rows used.
    """

    flops_efficiency: float | None
    bandwidth_efficiency: float | None
    floor_s: float
    calibrated_on: tuple[str, ...]
    num_rows: int

    def time(self, flops: float, nbytes: float, gpu: GPUSpec) -> float:
        """The roofline time (s) of ``flops`` and ``nbytes`` at these efficiencies plus the floor.

        A class the source never timed on one side of the ridge borrows the other side's
        efficiency (streaming classes have no FLOPs, so theirs never matters).
        """
        e_f = self.flops_efficiency or self.bandwidth_efficiency or 1.0
        e_b = self.bandwidth_efficiency or self.flops_efficiency or 1.0
        return max(flops / (gpu.bf16_flops * e_f), nbytes / (gpu.memory_bandwidth * e_b)) + self.floor_s


def calibrate(rows: list[_Row], gpu: GPUSpec) -> ClassCalibration | None:
    """Efficiencies of ``rows`` (one class) against ``gpu``'s datasheet peaks, or None without rows.

    Each row's efficiency is its roofline time at efficiency 1 over its time above the floor;
    rows within twice the floor are left out (there the floor, not the work, sets the time).
    """
    if not rows:
        return None
    floor = min(r.seconds for r in rows)
    e_f, e_b = [], []
    for r in rows:
        above = r.seconds - floor
        if r.seconds < 2 * floor or above <= 0:
            continue
        t_f, t_b = r.flops / gpu.bf16_flops, r.nbytes / gpu.memory_bandwidth
        (e_f if t_f > t_b else e_b).append(max(t_f, t_b) / above)
    clip = lambda v: float(np.clip(np.median(v), 0.02, 1.0)) if v else None  # noqa: E731
    return ClassCalibration(clip(e_f), clip(e_b), floor, tuple(sorted({r.operator for r in rows})), len(rows))


class ImportedBundle:
    """Rows of one imported profile, written as a profile bundle.

    Args:
        out: the bundle folder (created).
        model: the architecture whose shard shapes the rows are at.
        tps: TP degrees imported.
        source: the provenance.
        gpu: datasheet numbers of the measured GPU (for filling and calibration).
        dtype: the float dtype of the measurements (``bfloat16``).
        num_compute_units: SMs of the GPU (wave features of the fit), None when unknown.
    """

    def __init__(self, out: Path, model: ModelSpec, tps: tuple[int, ...], source: Source, gpu: GPUSpec,
                 dtype: str = "bfloat16", num_compute_units: int | None = None) -> None:
        self.out, self.model, self.tps, self.source, self.gpu = Path(out), model, tuple(sorted(tps)), source, gpu
        self.dtype, self.num_compute_units = dtype, num_compute_units
        self.rows: list[_Row] = []
        # The fastest kernel the source timed anywhere (s), when the importer knows it: the floor of
        # filled streaming kernels (else the fastest computing kernel among the bundle's rows).
        self.kernel_floor_s: float | None = None
        self.filled: dict[str, dict[str, Any]] = {}
        # Operators the source times inside another one (``{"kv_cache_write": "attention"}``: vLLM's
        # attention layer writes the KV cache itself): never filled, priced as 0 by the simulator.
        self.fused: dict[str, str] = {}
        self.notes: list[str] = []

    # -- adding rows -------------------------------------------------------------------------
    def add(self, kind: str, operator: str, implementation: str, tp: int, shape: tuple[int, ...], seconds: float,
            origin: str = "measured", dtype: str | None = None, num_samples: int = 1) -> None:
        """One row: ``operator`` at ``shape`` (the kind's ``SHAPE_COLUMNS``) took ``seconds`` on one GPU."""
        assert kind in KINDS and origin in ORIGINS, (kind, origin)
        assert len(shape) == len(SHAPE_COLUMNS[kind]), (kind, shape)
        if not (seconds > 0 and np.isfinite(seconds)):
            return  # a failed or empty measurement
        dt_ = dtype or self.dtype
        flops, nbytes = counts(kind, operator, tuple(int(x) for x in shape), dt_, DTYPE_BYTES[self.dtype])
        self.rows.append(_Row(kind, operator, implementation, dt_, int(tp), tuple(int(x) for x in shape), flops, nbytes, float(seconds), origin, int(num_samples)))

    def has(self, operator: str, tp: int | None = None, dtype: str | None = None) -> bool:
        """Whether some row times ``operator`` (at ``tp``, in ``dtype``)."""
        dt_ = dtype or self.dtype
        return any(r.operator == operator and r.dtype == dt_ and (tp is None or r.tp == tp) for r in self.rows)

    def note(self, text: str) -> None:
        """A remark kept in provenance.json (what the source measures differently, what was left out)."""
        self.notes.append(text)

    # -- filling ------------------------------------------------------------------------------
    def calibrations(self) -> dict[str, ClassCalibration | None]:
        """Per class (gemm, attention, memory), the roofline calibrated on this source's own rows."""
        own = [r for r in self.rows if r.origin in ("measured", "interpolated") and r.dtype == self.dtype]
        gemm = calibrate([r for r in own if r.kind == GEMM], self.gpu)
        prefill = calibrate([r for r in own if r.kind == ATTENTION_PREFILL], self.gpu)
        decode = calibrate([r for r in own if r.kind == ATTENTION_DECODE], self.gpu)
        attention = None
        if prefill or decode:
            parts = [c for c in (prefill, decode) if c]
            attention = ClassCalibration(prefill.flops_efficiency if prefill else None, decode.bandwidth_efficiency if decode else None,
                                         min(c.floor_s for c in parts), tuple(sorted({o for c in parts for o in c.calibrated_on})), sum(c.num_rows for c in parts))
        memory = calibrate([r for r in own if r.kind == ELEMENTWISE], self.gpu)
        if memory is None and decode is not None:
            floor = self.kernel_floor_s or min(r.seconds for r in own if r.kind != ALL_REDUCE)
            memory = ClassCalibration(None, decode.bandwidth_efficiency, floor, decode.calibrated_on, decode.num_rows)
        return {"gemm": gemm, "attention": attention, "memory": memory}

    def fill_missing(self, sweep: SweepConfig | None = None, defaults: RooflineConfig | None = None) -> None:
        """Add rows for every operator of the catalogue no row times, priced as the module docstring says.

        The sweep (default: the GPU sweep of ``servesim profile``) sets the shapes. TP-independent
        operators are filled at the first TP degree only (the fit reuses them, as for profiles).
        """
        sweep = sweep or SweepConfig.for_device("cuda")
        defaults = defaults or RooflineConfig()
        cal = self.calibrations()
        b = DTYPE_BYTES[self.dtype]
        for op in model_operators(self.model):  # the model family's operators (OPT: up_proj, relu, LayerNorm ...)
            if op.name == "quantize_activations":
                self._fill_quantize(sweep, cal["memory"])
                continue
            if op.name == "all_reduce" or op.name in self.fused:
                continue  # the link model prices an unmeasured all-reduce
            for tp in self.tps if op.tp_dependent else self.tps[:1]:
                if self.has(op.name, tp if op.tp_dependent else None):
                    continue
                d = layer_dims(self.model, tp)
                if op.kind == CPU_OVERHEAD:
                    for s in sweep.cpu_overhead_batches():
                        self.add(CPU_OVERHEAD, op.name, "python", tp, (s, sweep.cpu_overhead_context, sweep.block_size),
                                 defaults.cpu_overhead_s + defaults.cpu_overhead_per_request_s * s, "assumed", dtype="none")
                    self.filled[op.name] = {"origin": "assumed", "how": "RooflineConfig cpu_overhead_s + cpu_overhead_per_request_s x requests (estimates of vLLM's per-step host work)"}
                    continue
                klass = {GEMM: "gemm", ATTENTION_PREFILL: "attention", ATTENTION_DECODE: "attention"}.get(op.kind, "memory")
                c = cal[klass] or cal["gemm"] or cal["memory"]
                if c is None:
                    continue
                shapes: list[tuple[int, ...]] = []
                if op.kind == GEMM:
                    n, k = gemm_shape(op.name, d)
                    shapes = [(m, n, k) for m in (sweep.token_counts() if op.sweep == "tokens" else sweep.sampled_counts())]
                elif op.kind == ELEMENTWISE:
                    w = elementwise_width(op.name, d)
                    shapes = [(m, w) for m in (sweep.token_counts() if op.sweep == "tokens" else sweep.sampled_counts())]
                elif op.kind == ATTENTION_DECODE:
                    shapes = [(s, ctx, d.q_heads, d.kv_heads, d.head_dim, sweep.block_size) for s, ctx in sweep.decode_grid(self.model.max_position_embeddings)]
                elif op.kind == ATTENTION_PREFILL:
                    shapes = [(1, n, ctx, d.q_heads, d.kv_heads, d.head_dim, sweep.block_size) for n, ctx in sweep.prefill_grid(self.model.max_position_embeddings)]
                for shape in shapes:
                    f, nb = counts(op.kind, op.name, shape, self.dtype, b)
                    self.add(op.kind, op.name, "roofline", tp, shape, c.time(f, nb, self.gpu), "filled")
                self.filled[op.name] = {
                    "origin": "filled", "class": klass, "flops_efficiency": c.flops_efficiency, "bandwidth_efficiency": c.bandwidth_efficiency,
                    "floor_s": c.floor_s, "calibrated_on": list(c.calibrated_on), "gpu_spec": self.gpu.name,
                }

    def _fill_quantize(self, sweep: SweepConfig, cal: ClassCalibration | None) -> None:
        """Per-token activation quantization before each W8A8 / FP8 GEMM the source timed (a streaming kernel)."""
        from profiler.catalogue import linear_operators

        b = DTYPE_BYTES[self.dtype]
        for q in sorted({r.dtype for r in self.rows if r.kind == GEMM and r.dtype in ("w8a8", "fp8")}):
            for tp in self.tps:
                if cal is None or self.has("quantize_activations", tp, q):
                    continue
                widths = sorted({gemm_shape(name, layer_dims(self.model, tp))[1] for name in linear_operators(self.model)})
                for w in widths:
                    for m in sweep.token_counts():
                        self.add(ELEMENTWISE, "quantize_activations", "roofline", tp, (m, w),
                                 cal.time(0.0, elementwise_bytes("quantize_activations", m, w, b), self.gpu), "filled", dtype=q)
                self.filled["quantize_activations"] = {
                    "origin": "filled", "class": "memory", "bandwidth_efficiency": cal.bandwidth_efficiency, "floor_s": cal.floor_s,
                    "calibrated_on": list(cal.calibrated_on), "gpu_spec": self.gpu.name, "quantizations": [q],
                }

    # -- writing ------------------------------------------------------------------------------
    def quantizations(self) -> list[str]:
        return sorted({r.dtype for r in self.rows if r.kind == GEMM and r.dtype not in DTYPE_BYTES})

    def write(self) -> Path:
        """Write the bundle (replacing the CSVs of an earlier import into the same folder); returns its folder."""
        self.out.mkdir(parents=True, exist_ok=True)
        by_kind: dict[str, list[_Row]] = defaultdict(list)
        for r in self.rows:
            by_kind[r.kind].append(r)
        date = str(self.source.details.get("measured_at", ""))
        for kind in KINDS:
            path = bundle.csv_path(self.out, kind)
            if kind not in by_kind:
                path.unlink(missing_ok=True)
                continue
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(bundle.columns(kind))
                for r in sorted(by_kind[kind], key=lambda r: (r.operator, r.implementation, r.dtype, r.tp, r.shape)):
                    t = f"{r.seconds:.6g}"
                    w.writerow([r.operator, r.implementation, r.dtype, r.tp, *r.shape, f"{r.flops:.6g}", f"{r.nbytes:.6g}",
                                t, t, t, t, t, r.num_samples, f"{self.source.kind}:{r.origin}", 0, date])
            tmp.replace(path)
        (self.out / bundle.FAILURES).unlink(missing_ok=True)
        imported_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        bundle.write_json(self.out / bundle.MANIFEST, {
            "format": bundle.FORMAT_VERSION, "model": bundle.model_fields(self.model), "tensor_parallel_sizes": list(self.tps),
            "device": "cuda", "dtype": self.dtype, "threads": None, "quantizations": self.quantizations(), "sweep": None,
            "imported_from": self.source.spec, "fused": self.fused,
        })
        bundle.write_json(self.out / bundle.DEVICE, {
            "device": "cuda", "name": self.source.device_name, "num_compute_units": self.num_compute_units,
            "memory_bytes": self.gpu.memory_bytes, "gpu_spec": self.gpu.name, "date": date or None,
            "imported_from": self.source.spec, "imported_at": imported_at,
        })
        per_op: dict[str, Counter] = defaultdict(Counter)
        impls: dict[str, set[str]] = defaultdict(set)
        for r in self.rows:
            key = f"{r.operator}|{r.dtype}|tp{r.tp}"
            per_op[key][r.origin] += 1
            impls[key].add(r.implementation)
        cal = self.calibrations()
        bundle.write_json(self.out / PROVENANCE, {
            "source": self.source.spec, "kind": self.source.kind, "device_name": self.source.device_name, "licence": self.source.licence,
            "url": self.source.url, "details": self.source.details, "imported_at": imported_at, "gpu_spec": self.gpu.name,
            "operators": {k: {"rows": dict(v), "implementations": sorted(impls[k])} for k, v in sorted(per_op.items())},
            "filled": self.filled, "fused": self.fused,
            "calibration": {k: (None if c is None else {"flops_efficiency": c.flops_efficiency, "bandwidth_efficiency": c.bandwidth_efficiency,
                                                        "floor_s": c.floor_s, "calibrated_on": list(c.calibrated_on), "num_rows": c.num_rows})
                            for k, c in cal.items()},
            "notes": self.notes,
        })
        return self.out


def read_provenance(root: Path) -> dict[str, Any] | None:
    """provenance.json of an imported bundle, or None for a bundle ``servesim profile`` measured."""
    return bundle.read_json(Path(root) / PROVENANCE)
