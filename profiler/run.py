"""``servesim profile``: measure every operator of the catalogue over the sweep, resumably.

One run walks the plan (``catalogue.plan``) in order, skips every measurement whose key is
already in the bundle, times the rest one by one with ``profiler.timer`` and appends each row
as soon as it is measured. Kill it and start it again with the same arguments and it carries on
where it stopped; ``budget_s`` makes it stop by itself before the next measurement would overrun
(what is measured is kept; the next run continues). A tqdm bar shows progress and the ETA.

Implementations: on the CPU the PyTorch operators of ``profiler.ops`` (float32 by default); on
CUDA those and the project's Triton kernels (``profiler.triton_ops``) where a kernel exists. The
TP all-reduce is measured with NCCL when the machine has at least ``tp`` GPUs; otherwise its rows
are priced by the ring formula over the device's link (implementation ``link_model``), which the
simulator replaces with the scenario GPU's link.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler import bundle
from profiler.catalogue import ALL_REDUCE, CPU_OVERHEAD, QUANTIZATIONS, Measurement, check_tp, plan
from profiler.device import describe, now, snapshot
from profiler.sweeps import SweepConfig
from profiler.timer import Timing, steady_host_allocator, time_cpu, time_cuda
from simulator.errors import ScenarioError
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUSpec
from simulator.specs.gpu_file import resolve_gpu
from simulator.specs.model import ModelSpec


@dataclass(frozen=True)
class ProfileOptions:
    """What ``servesim profile`` was asked to do.

    Attributes:
        model: the architecture to profile.
        tps: TP degrees.
        device: ``cuda`` or ``cpu``.
        out: the bundle folder.
        sweep: shapes to measure.
        dtype: dtype of unquantized operators.
        quantizations: quantized GEMM variants to add.
        budget_s: stop before exceeding this many seconds (None: run to the end).
        operators: only these operators (None: all).
        threads: torch intra-op threads on the CPU (with 1, operators are timed in thread CPU time).
        min_time_s: CPU timer: least total timed seconds per measurement.
        progress: show the tqdm bar.
    """

    model: ModelSpec
    tps: tuple[int, ...]
    device: str
    out: Path
    sweep: SweepConfig
    dtype: str
    quantizations: tuple[str, ...] = ()
    budget_s: float | None = None
    operators: frozenset[str] | None = None
    threads: int | None = None
    min_time_s: float = 0.05
    progress: bool = True


@dataclass
class RunSummary:
    """What one run did: measurements planned, found done, measured now, why it stopped, seconds per kind."""

    num_planned: int
    num_done_before: int
    num_measured: int
    num_failed: int
    stopped: str
    seconds_by_kind: dict[str, float]
    out: Path


class DeviceLost(Exception):
    """The GPU is unusable after an operator failed (a sticky CUDA error): the run must stop."""


# (words all in the device name, bundled GPU): the first match wins, so the more specific first
# ("NVIDIA H100 PCIe" before any H100; "NVIDIA L40S" before "NVIDIA L4").
_DEVICE_GPUS = (
    (("h200",), "h200"), (("h100", "pcie"), "h100-pcie"), (("h100",), "h100-sxm"), (("a100", "pcie"), "a100-80gb-pcie"),
    (("a100", "40gb"), "a100-40gb-sxm"), (("a100",), "a100-80gb-sxm"), (("l40s",), "l40s"), (("l4",), "l4"),
    (("rtx pro 6000",), "rtx-pro-6000-server"), (("b300",), "b300"), (("b200",), "b200"), (("4090",), "rtx-4090"),
)


def gpu_spec_for(name: str) -> GPUSpec:
    """The datasheet entry closest to a device name (``NVIDIA H100 80GB HBM3`` -> h100-sxm); H100 otherwise."""
    lowered = name.lower()
    spec = next((gpu for words, gpu in _DEVICE_GPUS if all(w in lowered for w in words)), "h100-sxm")
    return resolve_gpu(spec, "device", "name")


def link_model_timing(tp: int, nbytes: float, gpu: GPUSpec) -> Timing:
    """The ring all-reduce over ``gpu``'s link at its calibrated link efficiency (``RooflineCostModel.ring_all_reduce_time``)."""
    from simulator.specs.calibration import resolve

    bandwidth = gpu.link_bandwidth * resolve(RooflineConfig(), gpu.name, gpu.aiconfigurator_system).values["link_bandwidth_efficiency"]
    t = 2 * (tp - 1) / tp * nbytes / bandwidth + 2 * (tp - 1) * gpu.link_latency_s
    return Timing(t, t, t, t, t, 0, "link_model")


def _check_manifest(opts: ProfileOptions) -> dict[str, Any]:
    """profile.json of the bundle, created or extended; a bundle of another model or device is an error."""
    path = opts.out / bundle.MANIFEST
    manifest = bundle.read_json(path)
    fields = bundle.model_fields(opts.model)
    if manifest is not None:
        old = manifest["model"]
        differs = [k for k in bundle.MODEL_FIELDS if old.get(k) != fields[k]]
        if differs:
            k = differs[0]
            raise ScenarioError("--out", "", str(opts.out), f"holds a profile of {old['name']} ({k} {old.get(k)}), not {opts.model.name} ({k} {fields[k]})", "choose another --out folder")
        for key, value in (("device", opts.device), ("dtype", opts.dtype), ("threads", opts.threads)):
            if manifest.get(key) != value:
                raise ScenarioError("--out", "", str(opts.out), f"was profiled with {key} {manifest.get(key)!r}, this run asks for {value!r}", f"rerun with the bundle's {key} or choose another --out folder")
        tps = sorted(set(manifest["tensor_parallel_sizes"]) | set(opts.tps))
        quants = sorted(set(manifest.get("quantizations", [])) | set(opts.quantizations))
    else:
        tps, quants = sorted(opts.tps), sorted(opts.quantizations)
    manifest = {
        "format": bundle.FORMAT_VERSION, "model": fields, "tensor_parallel_sizes": tps, "device": opts.device,
        "dtype": opts.dtype, "threads": opts.threads, "quantizations": quants, "sweep": dataclasses.asdict(opts.sweep),
    }
    bundle.write_json(path, manifest)
    return manifest


def _implementations(device: str, quantizations: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Per kind (and quantization), the implementations to measure on ``device``."""
    impls: dict[str, tuple[str, ...]] = {}
    if device != "cuda":
        return impls
    from profiler import triton_ops

    for key in ("gemm", "attention_prefill", "attention_decode", *quantizations):
        impls[key] = ("torch", "triton") if triton_ops.available(key) else ("torch",)
    return impls


def profile(opts: ProfileOptions) -> RunSummary:
    """Run (or resume) a profile; see the module docstring.

    Raises:
        ScenarioError: a bad TP degree, no CUDA device for ``cuda``, or ``out`` holding a profile
            of another model, device, dtype or thread count.
    """
    import torch
    from tqdm import tqdm

    from profiler.ops import Builder

    started = time.perf_counter()
    if opts.model.moe is not None:  # the MoE block's operators (profiler/moe_profile.py)
        return _profile_moe(opts, started)
    for tp in opts.tps:
        problem = check_tp(opts.model, tp)
        if problem:
            raise ScenarioError("--tp", "", tp, f"{problem} of {opts.model.name}", "use TP degrees that divide the model's heads and MLP width")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ScenarioError("--device", "", "cuda", "no CUDA GPU is visible to torch", "run on a GPU machine or use --device cpu")
    for q in opts.quantizations:
        if q not in QUANTIZATIONS:
            raise ScenarioError("--quantization", "", q, "unknown quantization", f"use some of {', '.join(QUANTIZATIONS)}")
    if opts.device == "cpu" and opts.threads:
        torch.set_num_threads(opts.threads)
    allocator = steady_host_allocator()
    opts.out.mkdir(parents=True, exist_ok=True)
    _check_manifest(opts)

    info = bundle.read_json(opts.out / bundle.DEVICE)
    here = describe(opts.device)
    if info is None:
        info = here
    elif info.get("name") != here.get("name"):
        raise ScenarioError("--out", "", str(opts.out), f"was measured on {info.get('name')!r}, this machine is {here.get('name')!r}", "choose another --out folder")
    info.setdefault("runs", [])
    bundle.write_json(opts.out / bundle.DEVICE, info)

    gpus = torch.cuda.device_count() if opts.device == "cuda" else 0
    ar_impl = {tp: ("nccl" if gpus >= tp else "link_model") for tp in opts.tps if tp > 1}
    measurements = plan(opts.model, sorted(opts.tps), opts.sweep, opts.dtype, _implementations(opts.device, opts.quantizations),
                        opts.quantizations, ar_impl, set(opts.operators) if opts.operators else None)
    done = bundle.measured_keys(opts.out)
    todo = [m for m in measurements if m.key not in done]
    num_done_before = len(measurements) - len(todo)

    torch.manual_seed(0)
    device = torch.device("cuda" if opts.device == "cuda" else "cpu")
    builder = Builder(device, opts.model, cold_bytes=0 if device.type == "cuda" else 2 * last_level_cache_bytes())
    link_gpu = gpu_spec_for(str(info.get("name", "")))
    writer = bundle.RowWriter(opts.out)
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    num_measured = num_failed = 0
    stopped = "done"
    run_entry = {"started": now(), "num_planned": len(measurements), "num_done_before": num_done_before,
                 "host_allocator": {"glibc_mallopt": allocator} if allocator else "default"}

    def expected_s(kind: str, n: int = 1) -> float:
        return n * seconds[kind] / counts[kind] if counts[kind] else 0.0

    bar = tqdm(total=len(measurements), initial=num_done_before, unit="meas", desc=f"profile {opts.model.name}", disable=not opts.progress, smoothing=0.05)
    try:
        for group in _groups(todo):
            m = group[0]
            if opts.budget_s is not None and time.perf_counter() - started + expected_s(m.kind, len(group)) > opts.budget_s:
                stopped = "budget"
                break
            bar.set_postfix_str(f"{m.operator} {m.implementation} tp{m.tp} {m.shape_dict}", refresh=False)
            t0 = time.perf_counter()
            timings = _measure(group, opts, builder, device, link_gpu, writer)
            seconds[m.kind] += time.perf_counter() - t0
            counts[m.kind] += len(group)
            num_measured += sum(t is not None for t in timings)
            num_failed += sum(t is None for t in timings)
            bar.update(len(group))
    except KeyboardInterrupt:
        stopped = "interrupted"
    except DeviceLost as e:
        stopped = f"device error after {e} (recorded in failures.csv; rerun to continue)"
    finally:
        bar.close()
        writer.close()
        run_entry.update({
            "finished": now(), "stopped": stopped, "num_measured": num_measured, "num_failed": num_failed,
            "wall_s": round(time.perf_counter() - started, 3),
            "seconds_by_kind": {k: round(v, 3) for k, v in seconds.items()}, "measurements_by_kind": dict(counts),
        })
        info["runs"].append(run_entry)
        info["end"] = snapshot(opts.device)
        bundle.write_json(opts.out / bundle.DEVICE, info)
    return RunSummary(len(measurements), num_done_before, num_measured, num_failed, stopped, dict(seconds), opts.out)


def _profile_moe(opts: ProfileOptions, started: float) -> RunSummary:
    """``profile`` for a mixture-of-experts model: router, grouped experts and moe_sum over the token sweep (``profile_moe``).

    Raises:
        ScenarioError: no CUDA device for ``cuda``, or a TP degree that does not divide the expert width.
    """
    import torch

    from profiler.moe_profile import profile_moe

    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ScenarioError("--device", "", "cuda", "no CUDA GPU is visible to torch", "run on a GPU machine or use --device cpu")
    tokens = opts.sweep.token_counts()
    n = profile_moe(opts.model, opts.tps, tokens, opts.device, opts.out, opts.dtype, opts.threads or 1, opts.min_time_s)
    return RunSummary(n, 0, n, 0, "done", {"moe": time.perf_counter() - started}, opts.out)


def _groups(todo: list[Measurement]) -> list[list[Measurement]]:
    """``todo`` in order, one measurement per group, except that every measured all-reduce of one
    TP degree forms one group (one set of spawned ranks measures them all)."""
    groups: list[list[Measurement]] = []
    collective: dict[tuple[int, str], list[Measurement]] = {}
    for m in todo:
        if m.kind == ALL_REDUCE and m.implementation != "link_model":
            key = (m.tp, m.implementation)
            if key not in collective:
                collective[key] = []
                groups.append(collective[key])
            collective[key].append(m)
        else:
            groups.append([m])
    return groups


def last_level_cache_bytes() -> int:
    """The CPU's last-level cache (bytes, from sysfs), 32 MiB when unknown."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        if text.endswith("K"):
            sizes.append(int(text[:-1]) << 10)
        elif text.endswith("M"):
            sizes.append(int(text[:-1]) << 20)
    return max(sizes, default=32 << 20)


def _measure(group: list[Measurement], opts: ProfileOptions, builder, device, link_gpu: GPUSpec, writer: bundle.RowWriter) -> list[Timing | None]:
    """Measure ``group`` (one measurement, or every all-reduce of one TP degree) and write its rows."""
    import torch

    m = group[0]
    if m.kind == ALL_REDUCE:
        if m.implementation == "link_model":
            timings = [link_model_timing(m.tp, m.nbytes, link_gpu)]
        else:
            from profiler.collectives import measure_all_reduce

            try:
                timings = measure_all_reduce(m.tp, [x.shape for x in group], opts.dtype, m.implementation)
            except Exception as e:  # a failed rank: record every shape as failed and go on
                for x in group:
                    writer.fail(x, f"{type(e).__name__}: {e}", now())
                return [None] * len(group)
        for x, t in zip(group, timings):
            writer.write(x, t, now())
        return list(timings)
    try:
        if m.implementation == "triton":
            from profiler import triton_ops

            fn = triton_ops.build(builder, m, opts.dtype)
        else:
            fn = builder.build(m, opts.dtype)
        if m.kind == CPU_OVERHEAD:
            sync = torch.cuda.synchronize if device.type == "cuda" else None
            t = time_cpu(fn, min_time_s=opts.min_time_s, sync=sync)
        elif device.type == "cuda":
            t = time_cuda(fn)
        else:  # one torch thread: all the work is on this thread, so time its CPU time
            t = time_cpu(fn, min_time_s=opts.min_time_s, clock="thread" if opts.threads == 1 else "wall")
    except (RuntimeError, ValueError, torch.cuda.OutOfMemoryError) as e:
        writer.fail(m, f"{type(e).__name__}: {e}", now())
        if device.type == "cuda":
            try:  # an out-of-memory leaves the device usable; an illegal access does not
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except RuntimeError as sticky:
                raise DeviceLost(f"{m.operator} {m.shape_dict}: {sticky}") from e
        return [None]
    writer.write(m, t, now())
    return [t]
