"""What ran: the resolved deployment, workload and cost model of one simulation, in one place.

``describe_run`` builds the ``run`` section of ``summary.json``; ``header_rows`` turns it into the
short (label, text) lines the console summary and ``report.html`` print above the metrics, so a
results folder, a printed summary and a report all say which model, GPU, parallelism, scheduler,
cost model and workload produced their numbers.

Sections are taken generically from the scenario's frozen dataclasses (``dataclasses.asdict``),
so a field added to ``ClusterConfig`` or ``SchedulerConfig`` appears here without code changes;
scheduler knobs left unset (None: the engine's default) are filled with the value the scheduler
actually ran with.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator.scenario import Scenario, SchedulerConfig

PROVENANCE_FILE = "provenance.json"  # written by profile imports (profiler/imports/bundle_writer.py)
# Scheduler knobs whose resolved value lives on the scheduler under another name.
_RESOLVED_AS = {"enable_prefix_caching": "prefix_caching"}
# vLLM v1's engine flags, resolved by simulator/schedulers/vllm_engine.py (EngineVersion).
_ENGINE_FIELDS = {"engine_version": "version", "async_scheduling": "async_scheduling", "scheduler_reserve_full_isl": "reserve_full_sequence"}


@functools.cache
def servesim_version() -> str:
    """The installed servesim distribution's version (``importlib.metadata``), else ``"unknown"``."""
    try:
        return importlib.metadata.version("servesim")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def offered_rate_rps(arrival_times: Sequence[float] | np.ndarray) -> float | None:
    """The arrival rate the workload offered (requests/s): (N - 1) / (last - first arrival).

    The inverse of the mean gap between consecutive arrivals, which is what a Poisson or gamma
    process at rate r averages to (N / span would overstate it by N / (N - 1)). None with fewer
    than two arrivals or all at one instant.
    """
    times = np.asarray(arrival_times, dtype=np.float64)
    times = times[np.isfinite(times)]
    if len(times) < 2:
        return None
    span = float(times.max() - times.min())
    return (len(times) - 1) / span if span > 0 else None


def resolved_scheduler(scenario: Scenario, scheduler: Any | None) -> dict[str, Any]:
    """``scenario.scheduler`` as a dict, each unset (None) knob replaced by the value ``scheduler`` ran with.

    Args:
        scenario: the scenario run.
        scheduler: one replica's scheduler instance (``simulator.schedulers.base.Scheduler``), or
            None (nothing resolved).
    """
    out = dataclasses.asdict(scenario.scheduler)
    if scheduler is None:
        return out
    engine = getattr(scheduler, "engine", None)
    for name, value in out.items():
        if value is not None:
            continue
        if name in _ENGINE_FIELDS:
            if engine is not None:
                out[name] = getattr(engine, _ENGINE_FIELDS[name])
            continue
        resolved = getattr(scheduler, _RESOLVED_AS.get(name, name), None)
        if isinstance(resolved, (bool, int, float, str)):
            out[name] = resolved
    return out


@functools.lru_cache(maxsize=16)
def _read_provenance(path: str, mtime_ns: int) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def profile_provenance(bundle: str | Path) -> dict | None:
    """The bundle's ``provenance.json`` (imported bundles carry one), None when absent or unreadable."""
    path = Path(bundle) / PROVENANCE_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_provenance(str(path), mtime)


def draws_arrivals(scenario: Scenario, source: str = "<scenario>") -> bool:
    """Whether the scenario's arrival process draws the arrival times: a synthetic workload, or a
    trace without timestamps (a length-only CSV; ``simulator.workload``'s format table).

    Raises:
        ScenarioError: the trace cannot be read (as ``load_workload``; the parse is memoized, so a
            run that loaded it reads it no second time).
    """
    if scenario.workload.trace is None:
        return True
    from simulator.workload import _read_trace

    fmt, _ = _read_trace(Path(scenario.workload.trace), source, "workload.trace")
    return fmt.time is None


def describe_cost_model(scenario: Scenario, cost_model: Any) -> dict[str, Any]:
    """How steps were priced: the roofline and where its efficiencies came from, or the profile.

    Roofline: ``calibration`` is the label of ``simulator.specs.calibration.resolve`` (the GPU's
    fit to aiconfigurator-core tables, its proxy, or the H100 fallback), ``efficiencies`` the
    values used and ``sources`` each one's origin (``scenario`` where the scenario set it).
    Profiled: the ``profile`` as the scenario names it, the bundle folder used (an imported
    profile's cache folder) and its ``provenance.json`` when it has one.
    """
    if cost_model is None:
        return {"kind": None}
    bundle = getattr(cost_model, "bundle", None)
    if bundle is not None:
        return {"kind": "profiled", "profile": scenario.hardware.profile, "bundle": str(bundle),
                "device": getattr(cost_model, "device_name", None), "provenance": profile_provenance(bundle)}
    resolved = getattr(cost_model, "resolved", None)
    if resolved is None:
        return {"kind": type(cost_model).__name__}
    return {"kind": "roofline", "calibration": resolved.label, "efficiencies": dict(resolved.values), "sources": dict(resolved.sources),
            "all_reduce": "measured fits" if resolved.all_reduce is not None else "ring formula over the link"}


def describe_workload(scenario: Scenario) -> dict[str, Any]:
    """The workload as configured: a trace (path, scaling, cuts) or a synthetic spec, and the loop.

    ``arrival`` is the arrival process when it draws the arrival times (synthetic, or a trace
    without timestamps; ``simulator.workload``), None when a trace's own times are replayed.
    """
    load = scenario.workload
    out: dict[str, Any] = {"kind": "trace" if load.trace else "synthetic"}
    if load.trace:
        out |= {"trace": load.trace, "time_scale": load.time_scale, "max_requests": load.max_requests, "max_duration_s": load.max_duration_s}
    else:
        out |= {"num_requests": load.num_requests, "arrival": dataclasses.asdict(load.arrival),
                "prompt_tokens": _length_spec(load.prompt_tokens), "output_tokens": _length_spec(load.output_tokens)}
    out |= {"on_invalid": load.on_invalid, "concurrency": load.concurrency, "think_time_s": load.think_time_s if load.concurrency else None}
    return out


def _length_spec(cfg: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}


def parallelism_fields(deployment: Any) -> dict[str, Any]:
    """A deployment's parallelism, taken generically from its dataclass fields: every
    ``*_parallel_size`` and ``*_parallel`` flag (TP, PP, DP, expert parallelism, ...)."""
    return {f.name: getattr(deployment, f.name) for f in dataclasses.fields(deployment) if f.name.endswith(("_parallel_size", "_parallel"))}


def parallel_text(pool: Mapping[str, Any]) -> str:
    """``TP2 PP1``, plus every other parallelism set away from 1 / off (``DP8 EP``)."""
    short = {"tensor_parallel_size": "TP", "pipeline_parallel_size": "PP", "data_parallel_size": "DP", "expert_parallel": "EP"}
    parts = [f"TP{pool.get('tensor_parallel_size')}", f"PP{pool.get('pipeline_parallel_size')}"]
    for key, value in pool.items():
        if key in ("tensor_parallel_size", "pipeline_parallel_size") or not key.endswith(("_parallel_size", "_parallel")):
            continue
        label = short.get(key, key)
        if value is True:
            parts.append(label)
        elif value not in (None, False, 1):
            parts.append(f"{label}{value}" if key in short else f"{key}={value}")
    return " ".join(parts)


def describe_run(scenario: Scenario, deployments: Mapping[str, Any], replicas: Sequence[Any], replica_roles: Mapping[int, str],
                 arrival_times: Sequence[float] | np.ndarray, achieved_rps: float, source: str = "<scenario>") -> dict[str, Any]:
    """The ``run`` section of ``summary.json``: everything that decided this run's numbers.

    Args:
        scenario: the scenario simulated.
        deployments: per instance role (``colocated``, or ``prefill`` and ``decode``), the
            resolved ``Deployment``.
        replicas: every replica (``simulator.engine.replica.Replica``: ``replica_id``, ``scheduler``,
            ``cost_model``); the first of each role stands for its pool.
        replica_roles: each replica id's role.
        arrival_times: every request's arrival (s; closed loop: its send time).
        achieved_rps: completed requests / run duration (``summary["request_throughput_rps"]``).
        source: the scenario file, for errors reading the trace.

    Returns:
        A JSON-ready dict: ``scenario``, ``seed``, ``servesim_version``, ``model`` (name,
        ``num_params``, ``num_active_params``, dtype, quantization, ``max_model_len``), ``gpu``,
        ``cluster`` (the whole cluster section), ``pools`` (per role: replicas, TP, PP, GPUs,
        KV blocks), ``num_gpus``, ``scheduler`` (resolved knobs), ``cost_model``, ``workload``,
        ``offered_rate_rps`` (``offered_rate_rps`` of the arrivals), ``offered_rate_from``,
        ``configured_rate_rps`` (the arrival process' rate x ``time_scale`` when it drew the arrivals),
        ``achieved_throughput_rps``.
    """
    by_role: dict[str, list[Any]] = {}
    for replica in replicas:
        by_role.setdefault(replica_roles.get(replica.replica_id, "colocated"), []).append(replica)
    pool_sizes = {role: len(members) for role, members in by_role.items()}
    lead = next(iter(by_role.values()), [None])[0]
    draws = draws_arrivals(scenario, source)
    first = next(iter(deployments.values()))
    model = first.model
    pools = {
        role: {"num_replicas": int(pool_sizes.get(role, 0)), **parallelism_fields(d),
               "num_gpus": int(pool_sizes.get(role, 0)) * int(getattr(d, "num_gpus", d.tensor_parallel_size * d.pipeline_parallel_size)),
               "num_kv_blocks": d.num_kv_blocks, "max_num_batched_tokens": d.max_num_batched_tokens}
        for role, d in deployments.items()
    }
    closed = scenario.workload.concurrency is not None
    # Arrivals are divided by time_scale after they are drawn (simulator.workload), synthetic ones too.
    configured = scenario.workload.arrival.rate * scenario.workload.time_scale if draws and not closed else None
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "servesim_version": servesim_version(),
        "model": {"name": model.name, "num_params": int(model.num_params), "num_active_params": int(model.num_active_params),
                  "config": scenario.model.config, "dtype": scenario.model.dtype, "quantization": first.quantization, "max_model_len": first.max_model_len},
        "gpu": first.gpu.name,
        "gpu_file": scenario.hardware.gpu if scenario.hardware.gpu != first.gpu.name else None,
        "cluster": dataclasses.asdict(scenario.cluster),
        "pools": pools,
        "num_gpus": sum(p["num_gpus"] for p in pools.values()),
        "scheduler": resolved_scheduler(scenario, getattr(lead, "scheduler", None)),
        "cost_model": describe_cost_model(scenario, getattr(lead, "cost_model", None)),
        "workload": describe_workload(scenario),
        "offered_rate_rps": offered_rate_rps(arrival_times),
        "offered_rate_from": "closed loop: client send times" if closed else "arrival process" if draws else "trace timestamps",
        "configured_rate_rps": configured,
        "achieved_throughput_rps": achieved_rps,
    }


def header_rows(run: Mapping[str, Any], short: bool = False) -> list[tuple[str, str]]:
    """The run section as short (label, text) lines: model, GPU, parallelism, scheduler, cost
    model, workload, offered vs achieved rate, seed and version. Missing keys are skipped, so an
    older ``summary.json`` still renders.

    Args:
        run: the ``run`` section (``describe_run``).
        short: list only the scheduler knobs set away from ``SchedulerConfig``'s defaults (the
            console header); else every resolved knob (the report).
    """
    rows: list[tuple[str, str]] = []
    model = run.get("model") or {}
    if model:
        active = model.get("num_active_params")
        total = model.get("num_params")
        params = f"{total / 1e9:.2f}B params" if total else ""
        if active and total and active != total:
            params += f", {active / 1e9:.2f}B active"
        quant = model.get("quantization")
        extra = ", ".join(x for x in (params, model.get("dtype"), None if quant in (None, "none") else quant,
                                      f"max_model_len {model['max_model_len']:,}" if model.get("max_model_len") else None) if x)
        rows.append(("model", f"{model.get('name')} ({extra})" if extra else str(model.get("name"))))
    if run.get("gpu"):
        rows.append(("GPU", str(run["gpu"]) + (f" ({run['gpu_file']})" if run.get("gpu_file") else "")))
    pools = run.get("pools") or {}
    if pools:
        parts = [f"{'' if role == 'colocated' else role + ': '}{p['num_replicas']} replica(s) x {parallel_text(p)}" for role, p in pools.items()]
        cluster = run.get("cluster") or {}
        router = f", router {cluster['router']}" if cluster.get("router") else ""
        rows.append(("parallelism", "; ".join(parts) + f" = {run.get('num_gpus', '?')} GPU(s){router}"))
    sched = run.get("scheduler") or {}
    if sched:
        defaults = dataclasses.asdict(SchedulerConfig()) if short else {}
        knobs = [f"{k}={v}" for k, v in sched.items() if k != "name" and v is not None and (not short or (defaults.get(k, v) is not None and defaults.get(k) != v))]
        rows.append(("scheduler", f"{sched.get('name')} ({', '.join(knobs)})" if knobs else str(sched.get("name"))))
    cost = run.get("cost_model") or {}
    if cost.get("kind") == "roofline":
        rows.append(("cost model", f"roofline, {cost.get('calibration')}"))
    elif cost.get("kind") == "profiled":
        prov = cost.get("provenance") or {}
        origin = ", ".join(str(prov[k]) for k in ("source", "device_name") if prov.get(k))
        rows.append(("cost model", f"profile {cost.get('profile')}" + (f" ({origin})" if origin else "") + (f" -> {cost['bundle']}" if cost.get("bundle") != cost.get("profile") else "")))
        priced = prov.get("priced") or {}  # a mixture-of-experts bundle says which parts its tables price
        if priced.get("measured") or priced.get("roofline"):
            rows.append(("priced", f"measured: {', '.join(priced.get('measured') or ['none'])}; roofline: {', '.join(priced.get('roofline') or ['none'])}"))
    load = run.get("workload") or {}
    if load:
        rows.append(("workload", _workload_text(load)))
    offered, achieved = run.get("offered_rate_rps"), run.get("achieved_throughput_rps")
    if achieved is not None:
        configured = run.get("configured_rate_rps")
        text = "-" if offered is None else f"{offered:.3g} req/s"
        text += f" ({run.get('offered_rate_from')}" + (f", configured {configured:g} req/s)" if configured else ")")
        rows.append(("offered vs achieved", f"{text} vs {achieved:.3g} req/s completed"))
    if "seed" in run:
        rows.append(("seed, version", f"seed {run['seed']}, servesim {run.get('servesim_version')}"))
    return rows


def _workload_text(load: Mapping[str, Any]) -> str:
    if load.get("kind") == "trace":
        text = f"trace {load.get('trace')}"
        cuts = [f"time_scale {load['time_scale']:g}" if load.get("time_scale", 1) != 1 else None,
                f"first {load['max_requests']:,} requests" if load.get("max_requests") else None,
                f"first {load['max_duration_s']:g} s" if load.get("max_duration_s") else None]
        cuts = [c for c in cuts if c]
        if cuts:
            text += f" ({', '.join(cuts)})"
    else:
        arrival = load.get("arrival") or {}
        lengths = ", ".join(f"{side} {_length_text(load.get(f'{side}_tokens') or {})}" for side in ("prompt", "output"))
        text = f"synthetic: {load.get('num_requests', 0):,} requests, {arrival.get('process')} arrivals at {arrival.get('rate')} req/s, {lengths}"
    if load.get("concurrency"):
        text += f"; closed loop, {load['concurrency']} clients" + (f", think {load['think_time_s']:g} s" if load.get("think_time_s") else "")
    return text


def _length_text(spec: Mapping[str, Any]) -> str:
    kind = spec.get("distribution")
    if kind == "fixed":
        return f"fixed {spec.get('value')}"
    if kind == "lognormal":
        return f"lognormal mean {spec.get('mean'):g} median {spec.get('median'):g}"
    if kind == "uniform":
        return f"uniform {spec.get('min')}-{spec.get('max')}"
    if kind == "empirical":
        return f"empirical {spec.get('file')}"
    return str(kind)
