"""The plan file: its schema (pydantic), the scheduler variants, and ``load_plan``."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from simulator.studies.capacity import PERCENTILE_METRICS, CapacityCriterion, native_rate_rps
from simulator.errors import ScenarioError
from simulator.engine.router import ROUTERS
from simulator.scenario import (
    Scenario,
    SchedulerConfig,
    WorkloadConfig,
    load_scenario,
    read_yaml_mapping,
    scenario_from_dict,
    scenario_to_dict,
)
from simulator.schedulers import SCHEDULERS
from simulator.specs.gpu_file import resolve_gpu
from simulator.specs.model import bundled_model_names
from simulator.specs.prices import GPU_PRICES


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


def describe_slo(plan: Plan) -> str:
    """The plan's SLOs in words: ``P90 TTFT <= 2 s, P99 TBT <= 0.2 s; >= 90 % of requests ...``."""
    parts = [f"{stat.upper()} {metric.removesuffix('_s').upper()} <= {bound:g} s" for metric, stat, bound in plan.criterion.percentile_bounds]
    att = plan.config.slo.attainment
    if att is not None:
        thresholds = " and ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in (("ttft_s", att.ttft_s), ("tpot_s", att.tpot_s), ("e2e_s", att.e2e_s)) if v is not None)
        parts.append(f">= {att.target:.0%} of requests meet {thresholds}")
    return "; ".join(parts)
