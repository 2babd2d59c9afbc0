"""Capacity planning: the cheapest deployment that serves a workload at a target rate within SLOs.

A plan file (YAML) names a workload and a target rate R, the SLOs, the candidates to search (GPU
types with their prices, models and quantization, tensor and pipeline parallelism, schedulers and
their knobs, DistServe pools) and the limits (GPUs available per type, most replicas). For every
candidate replica configuration ``run_plan``:

1. checks that it can be deployed at all (``resolve_deployment``: the model fits, TP divides the
   heads, ...) and that one replica is within the GPUs available;
2. finds the capacity of one replica: the highest arrival rate whose run meets the SLOs, by
   bisection on the rate (``simulator.studies.capacity.find_capacity``, to the plan's relative tolerance);
3. sizes the deployment: ceil(R / capacity) replicas, then runs that deployment at R with the
   plan's router and, while it misses the SLOs, adds a replica and runs again (at most
   ``capacity.max_extra_replicas`` times), so routing effects between replicas are checked;
4. prices it: GPUs x USD per GPU-hour, and USD per million output tokens = (USD per hour) /
   (R x mean output tokens per request of the workload x 3600 s) x 1e6.

Candidates that cannot be deployed, meet the SLOs at no rate, exceed the limits or fail the
check at R stay in the results with the stage and the reason; none is dropped. The cheapest
feasible candidate (USD per hour at R; ties go to more capacity headroom, then fewer GPUs) is
the recommendation. The top few are searched again with every SLO bound scaled by 0.5x..2x to
show how the choice depends on the SLOs.

SLOs come in the two forms users state them, mapped onto ``CapacityCriterion``:

* percentile bounds (Vidur, Agrawal et al. MLSys'24, Section 5: P90 TTFT <= 2 s and P99 TBT <=
  200 ms): ``slo.percentiles: {ttft_s: {p90: 2.0}, tbt_s: {p99: 0.2}}``;
* an attainment target (DistServe, Zhong et al. OSDI'24, Section 2: at least 90 % of requests
  meet TTFT <= x and TPOT <= y): ``slo.attainment: {target: 0.9, ttft_s: x, tpot_s: y}``; the
  per-request thresholds go into the scenario's ``slo`` section.

Every simulation is cached by a hash of its full scenario (``RunCache``), so a plan that is
interrupted resumes, and an edited plan re-runs only the candidates whose runs changed.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from simulator.studies.capacity import PERCENTILE_METRICS, CapacityCriterion, evaluate, find_capacity, native_rate_rps, with_rate
from simulator.engine.deployment import resolve_deployment, resolve_model
from simulator.errors import ScenarioError
from simulator.studies.executors import Executor
from simulator.engine.router import ROUTERS
from simulator.studies.run_cache import RunCache
from simulator.scenario import (
    Scenario,
    SchedulerConfig,
    SLOConfig,
    WorkloadConfig,
    load_scenario,
    read_yaml_mapping,
    scenario_from_dict,
    scenario_to_dict,
)
from simulator.schedulers import SCHEDULERS
from simulator.engine.simulation import simulate
from simulator.specs.gpu_file import is_gpu_file, resolve_gpu
from simulator.specs.model import bundled_model_names, bundled_model_spec
from simulator.specs.prices import GPU_PRICES
from simulator.workload import load_workload

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1)]

_SCHEDULER_FIELDS = {f.name for f in dataclasses.fields(SchedulerConfig)}
# Keys of a scheduler entry that are not SchedulerConfig fields.
_VARIANT_KEYS = ("label", "prefill", "decode", "kv_transfer")
_CONFIG = ConfigDict(extra="forbid")


def _frozen(cls):
    return pydantic_dataclass(frozen=True, config=_CONFIG)(cls)


# ---------------------------------------------------------------------------------------------
# The plan file
# ---------------------------------------------------------------------------------------------


@_frozen
class AttainmentSLO:
    """DistServe's form: at least ``target`` of the requests meet every threshold set."""

    target: Fraction = 0.9
    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None
    e2e_s: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None:
            raise ValueError("set at least one per-request threshold: ttft_s, tpot_s or e2e_s")


@_frozen
class PlanSLO:
    """The SLOs every candidate must meet at the target rate: either form, or both."""

    # metric -> {statistic: bound in seconds}, e.g. {ttft_s: {p90: 2.0}, tbt_s: {p99: 0.2}}
    percentiles: dict[str, dict[str, PositiveFloat]] = dataclasses.field(default_factory=dict)
    attainment: AttainmentSLO | None = None

    def __post_init__(self) -> None:
        if not self.percentiles and self.attainment is None:
            raise ValueError("set percentiles (e.g. {ttft_s: {p90: 2.0}}), attainment, or both")


@_frozen
class PoolSpec:
    """One DistServe pool of a candidate; unset parallelism takes the search axis' value."""

    num_replicas: PositiveInt = 1
    tensor_parallel_size: PositiveInt | None = None
    pipeline_parallel_size: PositiveInt | None = None


@_frozen
class SearchSpace:
    """The axes whose product is the set of candidate replica configurations."""

    gpus: Annotated[list[str], Field(min_length=1)]
    models: list[str] | None = None  # bundled names; default: the base scenario's model
    quantization: list[Literal["none", "w8a8", "w4a16", "fp8"]] | None = None  # default: the base's
    tensor_parallel_size: Annotated[list[PositiveInt], Field(min_length=1)] = dataclasses.field(default_factory=lambda: [1])
    pipeline_parallel_size: Annotated[list[PositiveInt], Field(min_length=1)] = dataclasses.field(default_factory=lambda: [1])
    # Mixture-of-experts axes (``cluster.data_parallel_size`` and ``cluster.enable_expert_parallel``);
    # a dense model is enumerated at DP 1 without expert parallelism only.
    data_parallel_size: Annotated[list[PositiveInt], Field(min_length=1)] = dataclasses.field(default_factory=lambda: [1])
    expert_parallel: Annotated[list[bool], Field(min_length=1)] = dataclasses.field(default_factory=lambda: [False])
    # Each entry: {name, label?, any scheduler field (chunk_size, max_num_seqs, ...), and for
    # disaggregated schedulers prefill / decode pools and kv_transfer}. Default: the base's.
    schedulers: list[dict[str, Any]] | None = None


@_frozen
class Limits:
    """What may be deployed: GPUs available per type (unlisted: unlimited) and most replicas."""

    max_replicas: PositiveInt = 64
    gpus_available: dict[str, PositiveInt] = dataclasses.field(default_factory=dict)


@_frozen
class CapacitySearch:
    """How capacities are searched and checked."""

    rel_tol: Annotated[float, Field(gt=0, lt=1)] = 0.05  # bisection stops when hi - lo <= rel_tol x lo
    max_runs: PositiveInt = 12  # simulations per bisection
    rate_lo_rps: PositiveFloat | None = None  # bracket of the bisection; default: find_capacity's
    rate_hi_rps: PositiveFloat | None = None
    max_extra_replicas: NonNegativeInt = 3  # replicas added beyond ceil(R / capacity) when the check at R fails
    sensitivity_factors: list[PositiveFloat] = dataclasses.field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0])
    sensitivity_top: NonNegativeInt = 3  # cheapest candidates searched again at scaled SLOs


@_frozen
class PlanConfig:
    """A plan file, validated (see the module docstring and scenarios/plan-*.yaml)."""

    slo: PlanSLO
    search: SearchSpace
    name: str | None = None  # default: the file name without .yaml
    description: str = ""
    base: str | None = None  # a scenario file (relative to the plan file); default: the built-in defaults
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # dotted scenario field -> value
    workload: WorkloadConfig | None = None  # replaces the base scenario's workload section
    seed: Annotated[int, Field(ge=0)] | None = None
    target_rate_rps: PositiveFloat | None = None
    target_rate_scale: PositiveFloat | None = None  # R = this x the trace's (or arrival process') native rate
    router: str | None = None  # default: the base scenario's
    prices: dict[str, PositiveFloat] = dataclasses.field(default_factory=dict)  # USD per GPU-hour, by GPU
    limits: Limits = dataclasses.field(default_factory=Limits)
    capacity: CapacitySearch = dataclasses.field(default_factory=CapacitySearch)

    def __post_init__(self) -> None:
        if (self.target_rate_rps is None) == (self.target_rate_scale is None):
            raise ValueError("set exactly one of target_rate_rps and target_rate_scale")


_PLAN_ADAPTER = TypeAdapter(PlanConfig)
_PLAN_PATH_FIELDS = ("trace", "prompt_tokens.file", "output_tokens.file")


@dataclass(frozen=True)
class SchedulerVariant:
    """One scheduler entry of the search: its label, scheduler fields and DistServe pools."""

    label: str
    fields: dict[str, Any]
    prefill: PoolSpec | None = None
    decode: PoolSpec | None = None
    kv_transfer: dict[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    """A loaded plan: the validated file plus everything resolved from it.

    Attributes:
        config: the file's contents.
        source: the plan file's path (named in errors).
        name: the plan's name.
        base: the base scenario with the plan's workload, seed, router, SLO and overrides applied
            (one replica; candidates change its model, GPU, parallelism and scheduler).
        target_rate_rps: R (requests/s).
        criterion: the SLOs as a ``CapacityCriterion``.
        prices: USD per GPU-hour of every GPU searched (bundled, overridden by the file).
        variants: the scheduler entries.
    """

    config: PlanConfig
    source: str
    name: str
    base: Scenario
    target_rate_rps: float
    criterion: CapacityCriterion
    prices: dict[str, float]
    variants: tuple[SchedulerVariant, ...]


def _plan_error(source: str, error: ValidationError) -> ScenarioError:
    err = error.errors()[0]
    loc = [str(x) for x in err["loc"] if not str(x).startswith("function-")]
    path = ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        msg = "unknown field"
        fix = "remove it; see scenarios/plan-llama3-8b-azure-conv.yaml for the plan fields"
    elif kind == "missing":
        fix = "add it; see scenarios/plan-llama3-8b-azure-conv.yaml"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short"):
        fix = "use a value in that range"
    elif kind == "literal_error":
        fix = "use one of the values listed"
    else:
        fix = "see scenarios/plan-llama3-8b-azure-conv.yaml for a valid example"
    value = err.get("input", ...)
    if isinstance(value, dict) and kind != "extra_forbidden":
        value = ...
    return ScenarioError(source, path or "(top level)", value, msg, fix)


def _set_dotted(tree: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {} if node is None else node
        if not isinstance(node, dict):
            raise KeyError(key)
        tree = node
    tree[keys[-1]] = value


def _resolve_workload_paths(data: dict, base_dir: Path) -> None:
    for path in _PLAN_PATH_FIELDS:
        node, keys = data, path.split(".")
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            node[keys[-1]] = str((base_dir / Path(value).expanduser()).resolve())


def _variant(entry: dict[str, Any], index: int, source: str) -> SchedulerVariant:
    field = f"search.schedulers.{index}"
    if not isinstance(entry, dict) or "name" not in entry:
        raise ScenarioError(source, field, entry if not isinstance(entry, dict) else ..., "a scheduler entry needs a name", "write e.g. {name: sarathi, chunk_size: 256}")
    name = entry["name"]
    if name not in SCHEDULERS:
        raise ScenarioError(source, f"{field}.name", name, "unknown scheduler", f"use one of {', '.join(SCHEDULERS)}")
    fields = {k: v for k, v in entry.items() if k not in _VARIANT_KEYS}
    for key in fields:
        if key not in _SCHEDULER_FIELDS:
            known = ", ".join(sorted(_SCHEDULER_FIELDS | set(_VARIANT_KEYS)))
            raise ScenarioError(source, f"{field}.{key}", fields[key], "unknown field", f"remove it; known fields here: {known}")
    try:
        SchedulerConfig(**fields)
    except ValidationError as e:
        inner = _plan_error(source, e)
        raise ScenarioError(source, f"{field}.{inner.field}", inner.value, inner.problem, inner.fix) from None
    pools: dict[str, PoolSpec | None] = {}
    for pool in ("prefill", "decode"):
        spec = entry.get(pool)
        try:
            pools[pool] = None if spec is None else TypeAdapter(PoolSpec).validate_python(spec)
        except ValidationError as e:
            inner = _plan_error(source, e)
            raise ScenarioError(source, f"{field}.{pool}.{inner.field}", inner.value, inner.problem, inner.fix) from None
    if (pools["prefill"] is None) != (pools["decode"] is None):
        raise ScenarioError(source, field, ..., "names one pool but not the other", "give both prefill and decode pools, or neither")
    label = entry.get("label")
    if label is None:
        knobs = [f"{k}={v}" for k, v in fields.items() if k != "name"]
        label = name + (" " + " ".join(knobs) if knobs else "")
    return SchedulerVariant(str(label), fields, pools["prefill"], pools["decode"], entry.get("kv_transfer"))


def load_plan(path: str | Path) -> Plan:
    """Read, validate and resolve a plan file.

    Relative paths in the file (``base``, ``workload.trace``, ...) are taken relative to it.

    Raises:
        ScenarioError: a missing or malformed file; an unknown field; a wrong type or range; an
            unknown GPU, model, scheduler or router; a GPU without a price; both or neither of
            ``target_rate_rps`` and ``target_rate_scale``; an invalid base scenario or override.
            The message names the plan file and the field.
    """
    path = Path(path)
    source = str(path)
    data = read_yaml_mapping(path, "plan", "check the path; example plans are in scenarios/plan-*.yaml", allow_empty=False)
    base_dir = path.parent.resolve()
    if isinstance(data.get("workload"), dict):
        data["workload"] = copy.deepcopy(data["workload"])
        _resolve_workload_paths(data["workload"], base_dir)
    try:
        config = _PLAN_ADAPTER.validate_python(data)
    except ValidationError as e:
        raise _plan_error(source, e) from None

    search = config.search
    for i, gpu in enumerate(search.gpus):  # a bundled name or a GPU spec file relative to the plan
        resolve_gpu(gpu, source, f"search.gpus.{i}", base_dir)
    for gpu in list(config.prices) + list(config.limits.gpus_available):
        resolve_gpu(gpu, source, f"{'prices' if gpu in config.prices else 'limits.gpus_available'}.{gpu}", base_dir)
    prices: dict[str, float] = {}
    for gpu in search.gpus:
        key = gpu.lower()
        given = {k.lower(): v for k, v in config.prices.items()}
        if key in given:
            prices[key] = float(given[key])
        elif key in GPU_PRICES:
            prices[key] = GPU_PRICES[key].usd_per_gpu_hour
        else:
            raise ScenarioError(source, f"prices.{key}", ..., f"no bundled price for {key}", f"add `prices: {{{key}: USD per GPU-hour}}` to the plan")
    for i, model in enumerate(search.models or ()):
        if model.lower() not in bundled_model_names():
            raise ScenarioError(source, f"search.models.{i}", model, "unknown model", f"use one of {', '.join(bundled_model_names())}, or set model.config in the base scenario and leave models out")
    if config.router is not None and config.router not in ROUTERS:
        raise ScenarioError(source, "router", config.router, "unknown router", f"use one of {', '.join(ROUTERS)}")
    for metric, bounds in config.slo.percentiles.items():
        if metric not in PERCENTILE_METRICS:
            raise ScenarioError(source, f"slo.percentiles.{metric}", metric, "not a latency the summary reports", f"use one of {', '.join(PERCENTILE_METRICS)}")
        for stat in bounds:
            if stat not in PERCENTILE_METRICS[metric]:
                raise ScenarioError(source, f"slo.percentiles.{metric}.{stat}", stat, f"not a statistic reported for {metric}", f"use one of {', '.join(PERCENTILE_METRICS[metric])}")

    # The base scenario, with the plan's workload, seed, router, SLOs and overrides.
    if config.base is not None:
        base_path = Path(config.base).expanduser()
        base_path = base_path if base_path.is_absolute() else base_dir / base_path
        if not base_path.is_file():
            raise ScenarioError(source, "base", config.base, f"scenario file not found ({base_path})", "give a scenario .yaml path relative to the plan file")
        base = load_scenario(base_path)
    else:
        base = Scenario()
    tree = scenario_to_dict(base)
    if config.workload is not None:
        tree["workload"] = dataclasses.asdict(config.workload)
    if config.seed is not None:
        tree["seed"] = config.seed
    if config.router is not None:
        tree["cluster"]["router"] = config.router
    attainment = config.slo.attainment
    tree["slo"] = {"ttft_s": None, "tpot_s": None, "e2e_s": None}
    if attainment is not None:
        tree["slo"] = {"ttft_s": attainment.ttft_s, "tpot_s": attainment.tpot_s, "e2e_s": attainment.e2e_s}
    tree["cluster"]["num_replicas"] = 1
    for key, value in config.overrides.items():
        try:
            _set_dotted(tree, key, value)
        except KeyError:
            raise ScenarioError(source, f"overrides.{key}", value, "is not a scenario field", "name a field as section.field, e.g. model.max_model_len") from None
    tree["name"] = config.name or path.stem
    try:
        base = scenario_from_dict(tree, source)
    except ScenarioError as e:
        field = f"overrides.{e.field}" if e.field in config.overrides else e.field
        raise ScenarioError(source, field, e.value, e.problem, e.fix) from None

    variants = tuple(_variant(entry, i, source) for i, entry in enumerate(search.schedulers)) if search.schedulers else (
        SchedulerVariant(base.scheduler.name, {"name": base.scheduler.name}),
    )
    if config.target_rate_rps is not None:
        target = float(config.target_rate_rps)
    else:
        target = float(config.target_rate_scale) * native_rate_rps(base, source)
    percentile_bounds = tuple((metric, stat, float(bound)) for metric, bounds in config.slo.percentiles.items() for stat, bound in bounds.items())
    criterion = CapacityCriterion(attainment_target=attainment.target if attainment else None, percentile_bounds=percentile_bounds)
    return Plan(config, source, tree["name"], base, target, criterion, prices, variants)


# ---------------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One replica configuration to size and price.

    Attributes:
        index: position in the plan's enumeration (the row of the results table).
        label: a readable name (``h100-sxm llama-3-8b TP2 sarathi chunk_size=256``).
        gpu, model, quantization, scheduler: the axes' values (``scheduler`` is the variant label).
        tensor_parallel_size, pipeline_parallel_size: of a colocated replica (for DistServe,
            the search axis' values that pools without their own take).
        data_parallel_size, expert_parallel: a mixture-of-experts replica's attention ranks and
            whether its experts are placed whole (DP 1, False for a dense model).
        pools: DistServe pools as text (``2xTP1 prefill + 1xTP2 decode``), else "".
        gpus_per_replica: GPUs of one replica (for DistServe, one prefill + decode unit).
        scenario: the one-replica scenario, or None when it cannot be built.
        reason: why it cannot be deployed, or "".
    """

    index: int
    label: str
    gpu: str
    model: str
    quantization: str
    scheduler: str
    scheduler_name: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    pools: str
    gpus_per_replica: int
    scenario: Scenario | None
    reason: str
    data_parallel_size: int = 1
    expert_parallel: bool = False


def _pool_dict(pool: PoolSpec, tp: int, pp: int) -> dict[str, int]:
    return {
        "num_replicas": pool.num_replicas,
        "tensor_parallel_size": pool.tensor_parallel_size or tp,
        "pipeline_parallel_size": pool.pipeline_parallel_size or pp,
    }


def enumerate_candidates(plan: Plan) -> list[Candidate]:
    """Every candidate replica configuration of the plan, with deployment checks done.

    The product GPUs x models x quantization x TP x PP x scheduler entries, in that order; a
    DistServe entry whose pools fix their own parallelism is enumerated once per GPU, model and
    quantization. Each candidate's scenario is resolved (``resolve_deployment``; for DistServe,
    each pool at its own parallelism); a ``ScenarioError`` becomes the candidate's reason.
    """
    search = plan.config.search
    base_tree = scenario_to_dict(plan.base)
    models = [m.lower() for m in search.models] if search.models else [plan.base.model.name]
    quantizations = search.quantization or [plan.base.model.quantization]
    candidates: list[Candidate] = []
    seen: set[tuple] = set()
    sparse = {m: _is_moe(plan, m) for m in models}
    for gpu, model, quant, tp, pp, dp, ep, variant in itertools.product(
        [g.lower() for g in search.gpus], models, quantizations, search.tensor_parallel_size, search.pipeline_parallel_size,
        search.data_parallel_size, search.expert_parallel, plan.variants,
    ):
        if (not sparse[model] and (dp > 1 or ep)) or (ep and tp * dp == 1):
            continue  # the MoE axes mean nothing for a dense model; experts on one GPU are placed whole either way
        pools: dict[str, dict[str, int]] | None = None
        if variant.prefill is not None:
            pools = {"prefill": _pool_dict(variant.prefill, tp, pp), "decode": _pool_dict(variant.decode, tp, pp)}
            pool_specs = (variant.prefill, variant.decode)
            uses_tp = any(p.tensor_parallel_size is None for p in pool_specs)
            uses_pp = any(p.pipeline_parallel_size is None for p in pool_specs)
            key = (gpu, model, quant, variant.label, tp if uses_tp else None, pp if uses_pp else None)
            if key in seen:
                continue
            seen.add(key)
        tree = copy.deepcopy(base_tree)
        written = next(g for g in search.gpus if g.lower() == gpu)  # a spec file's path keeps its case
        tree["hardware"]["gpu"] = str(Path(plan.source).parent.resolve() / Path(written).expanduser()) if is_gpu_file(written) else gpu
        if search.models:
            tree["model"]["name"], tree["model"]["config"] = model, None
        tree["model"]["quantization"] = quant
        tree["cluster"].update(num_replicas=1, tensor_parallel_size=tp, pipeline_parallel_size=pp, data_parallel_size=dp, enable_expert_parallel=ep)
        tree["scheduler"].update(variant.fields)
        if pools is not None:
            tree["cluster"]["prefill"], tree["cluster"]["decode"] = pools["prefill"], pools["decode"]
            if variant.kv_transfer is not None:
                tree["cluster"]["kv_transfer"] = {**tree["cluster"]["kv_transfer"], **variant.kv_transfer}
            gpus_per_replica = sum(p["num_replicas"] * p["tensor_parallel_size"] * p["pipeline_parallel_size"] for p in pools.values())
            pools_text = " + ".join(
                f"{p['num_replicas']}xTP{p['tensor_parallel_size']}" + (f"PP{p['pipeline_parallel_size']}" if p["pipeline_parallel_size"] > 1 else "") + f" {role}"
                for role, p in pools.items()
            )
            shape = pools_text
        else:
            tree["cluster"]["prefill"] = tree["cluster"]["decode"] = None  # colocated, whatever the base
            gpus_per_replica, pools_text = tp * pp * dp, ""
            shape = f"TP{tp}" + (f" PP{pp}" if pp > 1 else "") + (f" DP{dp}" if dp > 1 else "") + (f" EP{tp * dp}" if ep else "")
        model_text = model + ("" if quant == "none" else f" {quant}")
        label = f"{gpu} {model_text} {shape} {variant.label}"
        scenario, reason = None, ""
        try:
            scenario = scenario_from_dict(tree, plan.source)
            _check_deployment(scenario, pools, plan.source)
        except ScenarioError as e:
            reason = f"{e.field}: {e.problem}" if e.field else e.problem
            scenario = None
        candidates.append(Candidate(
            index=len(candidates), label=label, gpu=gpu, model=model, quantization=quant, scheduler=variant.label,
            scheduler_name=variant.fields["name"], tensor_parallel_size=tp, pipeline_parallel_size=pp, pools=pools_text,
            gpus_per_replica=gpus_per_replica, scenario=scenario, reason=reason, data_parallel_size=dp, expert_parallel=ep,
        ))
    return candidates


def _is_moe(plan: Plan, model: str) -> bool:
    """Whether a candidate model is a mixture of experts (an unknown name is left to the deployment check)."""
    if not plan.config.search.models:
        try:
            return resolve_model(plan.base, plan.source).moe is not None
        except ScenarioError:
            return False
    spec = bundled_model_spec(model)
    return spec is not None and spec.moe is not None


def _check_deployment(scenario: Scenario, pools: dict[str, dict[str, int]] | None, source: str) -> None:
    """Raise the ``ScenarioError`` that building this deployment would raise (each pool's own)."""
    if pools is None:
        resolve_deployment(scenario, source)
        return
    for role in pools:
        resolve_deployment(scenario, source, role=role)


def scale_replicas(scenario: Scenario, num_replicas: int) -> Scenario:
    """``scenario`` with ``num_replicas`` copies of its replica (for DistServe, of each pool).

    The workload grows with the deployment so each replica sees about as many requests as in a
    one-replica capacity run: ``workload.max_requests`` (when set) and, for a synthetic workload,
    ``workload.num_requests`` are multiplied by ``num_replicas``.
    """
    cluster = scenario.cluster
    if cluster.prefill is not None and cluster.decode is not None:
        cluster = dataclasses.replace(
            cluster,
            prefill=dataclasses.replace(cluster.prefill, num_replicas=cluster.prefill.num_replicas * num_replicas),
            decode=dataclasses.replace(cluster.decode, num_replicas=cluster.decode.num_replicas * num_replicas),
        )
    else:
        cluster = dataclasses.replace(cluster, num_replicas=cluster.num_replicas * num_replicas)
    workload = scenario.workload
    if workload.max_requests is not None:
        workload = dataclasses.replace(workload, max_requests=workload.max_requests * num_replicas)
    if workload.trace is None:
        workload = dataclasses.replace(workload, num_requests=workload.num_requests * num_replicas)
    return dataclasses.replace(scenario, cluster=cluster, workload=workload)


def scale_slo(scenario: Scenario, criterion: CapacityCriterion, factor: float) -> tuple[Scenario, CapacityCriterion]:
    """Every SLO bound (percentile bounds and per-request thresholds) times ``factor``."""
    slo = scenario.slo
    scaled_slo = SLOConfig(**{k: None if v is None else v * factor for k, v in dataclasses.asdict(slo).items()})
    bounds = tuple((metric, stat, bound * factor) for metric, stat, bound in criterion.percentile_bounds)
    return dataclasses.replace(scenario, slo=scaled_slo), dataclasses.replace(criterion, percentile_bounds=bounds)


# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------


def replicas_needed(target_rate_rps: float, capacity_rps: float) -> int:
    """ceil(R / capacity): replicas of one configuration that together reach R (at least 1)."""
    return max(1, math.ceil(target_rate_rps / capacity_rps - 1e-9))


def usd_per_million_output_tokens(usd_per_hour: float, target_rate_rps: float, mean_output_tokens: float) -> float:
    """Cost of a million output tokens: (USD/h) / (R x output tokens per request x 3600 s) x 1e6."""
    return usd_per_hour / (target_rate_rps * mean_output_tokens * 3600.0) * 1e6


def pareto_frontier(capacity_rps: np.ndarray, usd_per_hour: np.ndarray) -> np.ndarray:
    """Mask of the points no other point dominates (as much capacity or more for as little or less).

    Args:
        capacity_rps, usd_per_hour: one value per candidate (NaN: not on the frontier).

    Returns:
        Boolean array, True on the cost-versus-capacity Pareto frontier.
    """
    cap, cost = np.asarray(capacity_rps, float), np.asarray(usd_per_hour, float)
    ok = np.isfinite(cap) & np.isfinite(cost)
    mask = np.zeros(len(cap), dtype=bool)
    for i in np.flatnonzero(ok):
        better = ok & (cap >= cap[i]) & (cost <= cost[i]) & ((cap > cap[i]) | (cost < cost[i]))
        mask[i] = not better.any()
    return mask


# ---------------------------------------------------------------------------------------------
# Tasks (module-level so executors can pickle them)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityTask:
    """Find one candidate's single-replica capacity (one bisection)."""

    scenario: Scenario
    criterion: CapacityCriterion
    rel_tol: float
    max_runs: int
    rate_lo_rps: float | None
    rate_hi_rps: float | None
    cache_dir: str | None
    rate_floor_rps: float | None = None  # below this, more replicas than allowed would be needed


@dataclass(frozen=True)
class CapacityOutcome:
    """A bisection's answer: capacity (None when no rate meets the SLOs), runs, reason, error."""

    capacity_rps: float | None
    points: tuple[tuple[float, bool], ...]
    reason: str
    error: str = ""


def run_capacity_task(task: CapacityTask) -> CapacityOutcome:
    """Run one bisection; a ``ScenarioError`` (e.g. a workload this model cannot hold) is an outcome."""
    kwargs: dict[str, Any] = {"rel_tol": task.rel_tol, "max_runs": task.max_runs}
    if task.rate_lo_rps is not None:
        kwargs["rate_lo"] = task.rate_lo_rps
    if task.rate_hi_rps is not None:
        kwargs["rate_hi"] = task.rate_hi_rps
    if task.rate_floor_rps is not None:
        kwargs["rate_floor"] = task.rate_floor_rps
    cache = RunCache(task.cache_dir) if task.cache_dir else None
    try:
        result = find_capacity(task.scenario, task.criterion, cache=cache, **kwargs)
    except ScenarioError as e:
        return CapacityOutcome(None, (), "", f"{e.field}: {e.problem}" if e.field else e.problem)
    return CapacityOutcome(result.capacity_rps, tuple((float(r), bool(m)) for r, m, _ in result.points), result.reason)


@dataclass(frozen=True)
class VerifyTask:
    """Run a candidate's full deployment at R, adding replicas while it misses the SLOs."""

    scenario: Scenario  # one replica
    criterion: CapacityCriterion
    target_rate_rps: float
    first_num_replicas: int
    max_num_replicas: int  # the plan's limits (replicas and GPUs) as a replica count
    max_extra_replicas: int
    cache_dir: str | None


@dataclass(frozen=True)
class VerifyOutcome:
    """The check at R: the replica count that met the SLOs (None: none within the bound)."""

    num_replicas: int | None
    runs: tuple[tuple[int, bool], ...]
    summary: dict | None  # of the last run
    error: str = ""


def verification_scenario(scenario: Scenario, num_replicas: int, target_rate_rps: float) -> Scenario:
    """The deployment of ``num_replicas`` copies of ``scenario``'s replica, at rate R."""
    return with_rate(scale_replicas(scenario, num_replicas), target_rate_rps)


def run_verify_task(task: VerifyTask) -> VerifyOutcome:
    """Check the sized deployment at R with the plan's router (see the module docstring, step 3)."""
    cache = RunCache(task.cache_dir) if task.cache_dir else None
    runs: list[tuple[int, bool]] = []
    summary = None
    last = min(task.first_num_replicas + task.max_extra_replicas, task.max_num_replicas)
    try:
        for n in range(task.first_num_replicas, last + 1):
            met, summary = evaluate(verification_scenario(task.scenario, n, task.target_rate_rps), task.criterion, cache=cache)
            runs.append((n, met))
            if met:
                return VerifyOutcome(n, tuple(runs), summary)
    except ScenarioError as e:
        return VerifyOutcome(None, tuple(runs), summary, f"{e.field}: {e.problem}" if e.field else e.problem)
    return VerifyOutcome(None, tuple(runs), summary)


# ---------------------------------------------------------------------------------------------
# The plan run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    """What a plan produced.

    Attributes:
        plan: the loaded plan.
        table: one row per candidate (columns in ``RESULT_COLUMNS``), ranked feasible first,
            cheapest first.
        sensitivity: one row per (candidate, SLO factor): ``rank`` (in ``table``), ``candidate``,
            ``deployment``, ``slo_factor``, ``capacity_rps``, ``replicas_estimate``,
            ``usd_per_hour_estimate``; in rank order.
        winner_summary: the winner's verification-run summary at R (None without a winner).
        winner_scenario: the winner's verified deployment at R (None without a winner).
        winner_requests: that run's per-request table (``metrics.request_table``), or None.
    """

    plan: Plan
    table: pd.DataFrame
    sensitivity: pd.DataFrame
    winner_summary: dict | None
    winner_scenario: Scenario | None
    winner_requests: pd.DataFrame | None = None

    @property
    def winner(self) -> pd.Series | None:
        """The recommended deployment's row, or None when no candidate is feasible."""
        ok = self.table[self.table["feasible"]]
        return None if ok.empty else ok.iloc[0]


RESULT_COLUMNS = (
    "rank", "candidate", "deployment", "gpu", "model", "quantization", "scheduler", "scheduler_name",
    "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "expert_parallel", "pools", "gpus_per_replica", "usd_per_gpu_hour",
    "usd_per_replica_hour", "feasible", "stage", "reason", "capacity_rps", "capacity_note", "capacity_num_runs",
    "replicas_estimate", "num_replicas", "num_gpus", "usd_per_hour", "usd_per_million_output_tokens",
    "mean_output_tokens", "headroom", "verify_num_runs", "verify_slo_attainment", "verify_ttft_p90_s",
    "verify_ttft_p99_s", "verify_tpot_p90_s", "verify_tbt_p99_s", "verify_e2e_p90_s", "pareto",
)


def _stat(summary: dict | None, metric: str, key: str) -> float:
    value = (summary or {}).get(metric, {}) or {}
    value = value.get(key) if isinstance(value, dict) else None
    return float("nan") if value is None else float(value)


def mean_output_tokens(scenario: Scenario, source: str = "<plan>") -> float:
    """Mean output tokens per request of the scenario's workload (after truncation to max_model_len).

    The plan prices every candidate on this one number, the workload's, so candidates of equal
    cost per hour have equal cost per token.
    """
    max_model_len = scenario.model.max_model_len or resolve_model(scenario, source).max_position_embeddings
    requests = load_workload(scenario.workload, scenario.seed, max_model_len, source).requests
    return float(np.mean([r.num_output_tokens for r in requests]))


def _max_replicas(plan: Plan, gpu: str, gpus_per_replica: int) -> int:
    available = {k.lower(): v for k, v in plan.config.limits.gpus_available.items()}.get(gpu)
    by_gpus = available // gpus_per_replica if available is not None else plan.config.limits.max_replicas
    return min(plan.config.limits.max_replicas, by_gpus)


def _limit_reason(plan: Plan, gpu: str, gpus_per_replica: int, num_replicas: int) -> str:
    limits = plan.config.limits
    available = {k.lower(): v for k, v in limits.gpus_available.items()}.get(gpu)
    if available is not None and num_replicas * gpus_per_replica > available:
        return f"needs {num_replicas} replica(s) x {gpus_per_replica} = {num_replicas * gpus_per_replica} {gpu} GPUs, {available} available"
    if num_replicas > limits.max_replicas:
        return f"needs {num_replicas} replicas, limits.max_replicas is {limits.max_replicas}"
    return ""


def run_plan(plan: Plan, executor: Executor, cache_dir: str | Path | None = None, winner_run: bool = True) -> PlanResult:
    """Search, size, check and price every candidate of ``plan`` (see the module docstring).

    Args:
        plan: from ``load_plan``.
        executor: runs the bisections and checks (``simulator.studies.executors.make_executor``).
        cache_dir: the ``RunCache`` folder; None runs everything afresh.
        winner_run: run the winner's deployment at R once more in this process and keep its
            per-request table for the report.

    Raises:
        ScenarioError: only for problems of the plan as a whole; a candidate's own problems
            become its row's reason.
    """
    cache = str(Path(cache_dir).resolve()) if cache_dir is not None else None
    cfg = plan.config.capacity
    target = plan.target_rate_rps
    candidates = enumerate_candidates(plan)
    rows: list[dict[str, Any]] = []
    for c in candidates:
        price = plan.prices[c.gpu]
        rows.append({
            "candidate": c.index, "deployment": c.label, "gpu": c.gpu, "model": c.model, "quantization": c.quantization,
            "scheduler": c.scheduler, "scheduler_name": c.scheduler_name, "tensor_parallel_size": c.tensor_parallel_size,
            "pipeline_parallel_size": c.pipeline_parallel_size, "data_parallel_size": c.data_parallel_size, "expert_parallel": c.expert_parallel,
            "pools": c.pools, "gpus_per_replica": c.gpus_per_replica,
            "usd_per_gpu_hour": price, "usd_per_replica_hour": price * c.gpus_per_replica,
            "feasible": False, "stage": "deployment" if c.reason else "", "reason": c.reason, "capacity_note": "",
        })
        if not c.reason and _max_replicas(plan, c.gpu, c.gpus_per_replica) < 1:
            rows[-1].update(stage="limits", reason=_limit_reason(plan, c.gpu, c.gpus_per_replica, 1))

    # 1. Capacity of one replica of every deployable candidate.
    to_search = [c for c in candidates if not rows[c.index]["stage"]]
    tasks = [
        CapacityTask(c.scenario, plan.criterion, cfg.rel_tol, cfg.max_runs, cfg.rate_lo_rps, cfg.rate_hi_rps, cache,
                     rate_floor_rps=plan.target_rate_rps / max(1, _max_replicas(plan, c.gpu, c.gpus_per_replica)))
        for c in to_search
    ]
    for i, outcome in executor.map(run_capacity_task, tasks, desc="capacity"):
        row = rows[to_search[i].index]
        row["capacity_num_runs"] = len(outcome.points)
        if outcome.error:
            row.update(stage="capacity", reason=outcome.error)
        elif outcome.capacity_rps is None:
            row.update(stage="capacity", reason=f"no rate meets the SLOs ({outcome.reason})" if outcome.reason else "no rate meets the SLOs")
        else:
            row["capacity_rps"] = outcome.capacity_rps
            row["capacity_note"] = outcome.reason  # e.g. a lower bound: every rate tried met

    # 2. Size each for R; check the sized deployment at R.
    to_verify: list[Candidate] = []
    verify_tasks: list[VerifyTask] = []
    for c in candidates:
        row = rows[c.index]
        if row["stage"]:
            continue
        n = replicas_needed(target, row["capacity_rps"])
        row["replicas_estimate"] = n
        limit = _max_replicas(plan, c.gpu, c.gpus_per_replica)
        if n > limit:
            why = _limit_reason(plan, c.gpu, c.gpus_per_replica, n)
            row.update(stage="limits", reason=f"one replica sustains {row['capacity_rps']:.3g} req/s, so R {why}")
            continue
        to_verify.append(c)
        verify_tasks.append(VerifyTask(c.scenario, plan.criterion, target, n, limit, cfg.max_extra_replicas, cache))
    mean_out_by_len: dict[int, float] = {}
    for i, outcome in executor.map(run_verify_task, verify_tasks, desc="check at R"):
        c = to_verify[i]
        row = rows[c.index]
        row["verify_num_runs"] = len(outcome.runs)
        summary = outcome.summary
        if summary is not None:
            row.update(
                verify_slo_attainment=summary.get("slo_attainment"), verify_ttft_p90_s=_stat(summary, "ttft_s", "p90"),
                verify_ttft_p99_s=_stat(summary, "ttft_s", "p99"), verify_tpot_p90_s=_stat(summary, "tpot_s", "p90"),
                verify_tbt_p99_s=_stat(summary, "tbt_s", "p99"), verify_e2e_p90_s=_stat(summary, "e2e_s", "p90"),
            )
        if outcome.error:
            row.update(stage="verification", reason=outcome.error)
            continue
        if outcome.num_replicas is None:
            tried = ", ".join(str(n) for n, _ in outcome.runs)
            capped = outcome.runs and outcome.runs[-1][0] >= _max_replicas(plan, c.gpu, c.gpus_per_replica)
            why = " (limits reached)" if capped else ""
            row.update(stage="verification", reason=f"misses the SLOs at R = {target:.3g} req/s with {tried} replica(s){why}")
            continue
        n = outcome.num_replicas
        usd_per_hour = n * row["usd_per_replica_hour"]
        max_model_len = c.scenario.model.max_model_len or resolve_model(c.scenario, plan.source).max_position_embeddings
        if max_model_len not in mean_out_by_len:
            mean_out_by_len[max_model_len] = mean_output_tokens(c.scenario, plan.source)
        mean_out = mean_out_by_len[max_model_len]
        row.update(
            feasible=True, stage="ok", num_replicas=n, num_gpus=n * c.gpus_per_replica, usd_per_hour=usd_per_hour,
            mean_output_tokens=mean_out, usd_per_million_output_tokens=usd_per_million_output_tokens(usd_per_hour, target, mean_out),
            headroom=n * row["capacity_rps"] / target,
        )

    table = pd.DataFrame(rows)
    for col in RESULT_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    table["feasible"] = table["feasible"].astype(bool)
    table = table.sort_values(
        ["feasible", "usd_per_hour", "headroom", "num_gpus", "candidate"], ascending=[False, True, False, True, True], kind="stable", ignore_index=True
    )
    table["rank"] = np.where(table["feasible"], np.arange(1, len(table) + 1), np.nan)
    table["pareto"] = pareto_frontier(table["capacity_rps"].where(table["stage"].isin(["ok", "limits", "verification"])).to_numpy(float), table["usd_per_replica_hour"].to_numpy(float))
    for col in ("capacity_num_runs", "replicas_estimate", "num_replicas", "num_gpus", "verify_num_runs", "rank"):
        table[col] = table[col].astype("Int64")
    table = table[list(RESULT_COLUMNS)]

    sensitivity = _sensitivity(plan, candidates, table, executor, cache)
    winner_summary = winner_scenario = winner_requests = None
    if winner_run and table["feasible"].any():
        best = table.iloc[0]
        c = candidates[int(best["candidate"])]
        winner_scenario = verification_scenario(c.scenario, int(best["num_replicas"]), target)
        run = simulate(winner_scenario, plan.source)
        winner_summary, winner_requests = run.summary, run.requests
    return PlanResult(plan, table, sensitivity, winner_summary, winner_scenario, winner_requests)


SENSITIVITY_COLUMNS = ("rank", "candidate", "deployment", "slo_factor", "capacity_rps", "replicas_estimate", "usd_per_hour_estimate")


def _sensitivity(plan: Plan, candidates: list[Candidate], table: pd.DataFrame, executor: Executor, cache: str | None) -> pd.DataFrame:
    """Capacity of the cheapest few candidates with every SLO bound scaled by each factor.

    The deployment cost at each factor is the estimate ceil(R / capacity) x USD per replica-hour
    (not checked at R).
    """
    cfg = plan.config.capacity
    top = table[table["feasible"]].head(cfg.sensitivity_top)
    jobs: list[tuple[int, float]] = []
    tasks: list[CapacityTask] = []
    for candidate_index in top["candidate"].astype(int):
        c = candidates[candidate_index]
        for factor in cfg.sensitivity_factors:
            scenario, criterion = scale_slo(c.scenario, plan.criterion, factor)
            jobs.append((candidate_index, factor))
            tasks.append(CapacityTask(scenario, criterion, cfg.rel_tol, cfg.max_runs, cfg.rate_lo_rps, cfg.rate_hi_rps, cache))
    rows: list[dict[str, Any]] = []
    by_candidate = table.set_index("candidate")
    for i, outcome in executor.map(run_capacity_task, tasks, desc="SLO sensitivity"):
        candidate_index, factor = jobs[i]
        row = by_candidate.loc[candidate_index]
        cap = outcome.capacity_rps
        n = replicas_needed(plan.target_rate_rps, cap) if cap else None
        rows.append({
            "rank": row["rank"], "candidate": candidate_index, "deployment": row["deployment"], "slo_factor": factor,
            "capacity_rps": cap if cap is not None else np.nan, "replicas_estimate": n,
            "usd_per_hour_estimate": n * row["usd_per_replica_hour"] if n else np.nan,
        })
    frame = pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
    for col in ("rank", "replicas_estimate"):
        frame[col] = frame[col].astype("Int64")
    return frame.sort_values(["rank", "slo_factor"], ignore_index=True)


def write_results(result: PlanResult, out: Path) -> None:
    """Write ``plan.csv``, ``plan.parquet``, ``sensitivity.csv`` and ``base_scenario.yaml`` (the resolved base)."""
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "plan.csv", index=False)
    result.table.to_parquet(out / "plan.parquet", index=False)
    result.sensitivity.to_csv(out / "sensitivity.csv", index=False)
    with open(out / "base_scenario.yaml", "w") as f:
        yaml.safe_dump(scenario_to_dict(result.plan.base), f, sort_keys=False)


def describe_slo(plan: Plan) -> str:
    """The plan's SLOs in words: ``P90 TTFT <= 2 s, P99 TBT <= 0.2 s; >= 90 % of requests ...``."""
    parts = [f"{stat.upper()} {metric.removesuffix('_s').upper()} <= {bound:g} s" for metric, stat, bound in plan.criterion.percentile_bounds]
    att = plan.config.slo.attainment
    if att is not None:
        thresholds = " and ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in (("ttft_s", att.ttft_s), ("tpot_s", att.tpot_s), ("e2e_s", att.e2e_s)) if v is not None)
        parts.append(f">= {att.target:.0%} of requests meet {thresholds}")
    return "; ".join(parts)
