"""Sweep files: one base scenario and the axes to vary, expanded into the runs of a sweep.

A sweep file (YAML; ``scenarios/compare-*.yaml``) reads::

    name: compare-azure-conv            # default: the file name without .yaml
    description: vLLM vs Sarathi-Serve vs Orca on the Azure conversation trace
    base: azure-conv-llama3-8b-h100.yaml   # a scenario file, relative to this file (default: the defaults)
    base_overrides:                     # like --set, applied to the base (mapping or list of "a.b=value")
      workload.max_requests: 2000
    axes:                               # every combination runs
      scheduler.name: [vllm, sarathi, orca]
      rate: [2, 4, 6, 8, 10]            # the load axis: req/s; or rate_scale: multiples of the native rate
    series: [scheduler.name]            # fields that label the lines (default: every non-load axis)
    capacity:                           # on by default (enabled: false turns it off)
      attainment_target: 0.9            # DistServe form, with the scenario's slo section; null: off
      percentiles: {tbt_s: {p99: 0.1}}  # Vidur / Sarathi-Serve form: bounds in seconds
      rel_tol: 0.05                     # bisection stops when the bracket is within 5 %
      max_runs: 12                      # most runs per capacity
      rate_lo: null                     # optional first bracket (req/s); default: a cost-model estimate
      rate_hi: null
      early_stop: true                  # end runs that have surely missed
    latency_cdf_rate: 6                 # req/s at which the report shows latency CDFs
    executor: local                     # or ray; --executor overrides
    max_workers: null                   # --workers overrides
    address: null                       # Ray cluster address; --address overrides

Any scenario field is an axis by its dotted path (``scheduler.chunk_size``,
``cluster.num_replicas``, ``cluster.tensor_parallel_size``, ...); names of schedulers, routers
and models are plain values, checked when the scenario is built. Relative paths in
``base_overrides`` and axis values (``workload.trace``, ...) are relative to the sweep file.

The load axis sets the arrival rate with ``simulator.studies.capacity.with_rate``: ``rate`` in req/s, or
``rate_scale`` as multiples of ``native_rate_rps`` (a trace's own rate; a synthetic workload's
``workload.arrival.rate``). Without a load axis every configuration runs at its own rate.

Every mistake raises ``ScenarioError`` naming the sweep file and the field.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.studies.capacity import PERCENTILE_METRICS, CapacityCriterion, native_rate_rps, with_rate
from simulator.errors import ScenarioError
from simulator.scenario import _PATH_FIELDS, Scenario, load_scenario, parse_override, read_yaml_mapping

__all__ = ["LOAD_AXES", "CapacitySpec", "Configuration", "RunSpec", "Sweep", "SweepFile", "is_sweep_file", "load_sweep"]

LOAD_AXES = ("rate", "rate_scale")
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class CapacitySpec(BaseModel):
    """The ``capacity`` section: whether to find each series' capacity, and by what criterion.

    ``percentiles`` maps a summary metric to bounds on its percentiles in seconds, e.g.
    ``{tbt_s: {p99: 0.1}, scheduling_delay_s: {p50: 2.0}}`` (Sarathi-Serve's capacity); set
    ``attainment_target: null`` to use the percentile form alone.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    attainment_target: Annotated[float, Field(gt=0, le=1)] | None = 0.9
    percentiles: dict[str, dict[str, PositiveFloat]] = Field(default_factory=dict)
    rel_tol: Annotated[float, Field(gt=0, lt=1)] = 0.05
    max_runs: Annotated[int, Field(ge=2)] = 12
    rate_lo: PositiveFloat | None = None
    rate_hi: PositiveFloat | None = None
    early_stop: bool = True


class SweepFile(BaseModel):
    """A sweep file as written (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    base: str | None = None
    base_overrides: dict[str, Any] | list[str] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    series: list[str] | None = None
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)
    latency_cdf_rate: PositiveFloat | None = None
    executor: Literal["local", "ray"] = "local"
    max_workers: Annotated[int, Field(ge=1)] | None = None
    address: str | None = None


@dataclass(frozen=True)
class Configuration:
    """One combination of the non-load axes: one line in the plots, one capacity.

    Attributes:
        label: the series fields' values: ``sarathi`` for one field, ``name=sarathi,
            chunk_size=512`` for several, ``base`` for none.
        values: every non-load axis' value, by dotted path.
        scenario: the base scenario with these values set (at its own rate).
    """

    label: str
    values: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: a configuration at one arrival rate.

    Attributes:
        config_index: index into ``Sweep.configurations``.
        rate_rps: the arrival rate (req/s).
        load_value: the load axis' value as written (a rate or a multiple), None without one.
        scenario: the scenario to simulate.
    """

    config_index: int
    rate_rps: float
    load_value: float | None
    scenario: Scenario


@dataclass(frozen=True)
class Sweep:
    """A validated, expanded sweep.

    Attributes:
        name, description: from the file.
        source: the sweep file's path (for errors and reports).
        axes: non-load axes, by dotted path, in file order.
        load_axis: ``"rate"``, ``"rate_scale"`` or None.
        series: the fields in the labels.
        configurations: one per combination of the non-load axes.
        runs: one per configuration and load value.
        criterion: the capacity criterion, or None when capacity is off.
        capacity: the ``capacity`` section.
        latency_cdf_rate: the rate (req/s) whose runs the latency CDFs show.
        file: the parsed file.
    """

    name: str
    description: str
    source: str
    axes: dict[str, list[Any]]
    load_axis: str | None
    series: tuple[str, ...]
    configurations: tuple[Configuration, ...]
    runs: tuple[RunSpec, ...]
    criterion: CapacityCriterion | None
    capacity: CapacitySpec
    latency_cdf_rate: float | None
    file: SweepFile


def is_sweep_file(path: str | Path) -> bool:
    """Whether a YAML file is a sweep file (it has ``axes``) rather than a scenario."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "axes" in data


def _fix(kind: str, loc: str) -> str:
    if kind == "extra_forbidden":
        section = CapacitySpec if loc.startswith("capacity.") else SweepFile
        return f"remove it; known fields here: {', '.join(section.model_fields)}"
    if kind == "literal_error":
        return "use one of the values listed"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value in that range"
    return "see scenarios/compare-azure-conv.yaml for a valid example"


def _read(path: Path) -> SweepFile:
    source = str(path)
    data = read_yaml_mapping(path, "sweep", "check the path; bundled sweeps are scenarios/compare-*.yaml", layout="fields")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        # pydantic adds the union member tried to a location (e.g. "dict[str,any]"); drop it.
        loc = ".".join(str(x) for x in err["loc"] if not (isinstance(x, str) and ("[" in x or x in ("int", "float", "str"))))
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        value = err.get("input", ...)
        if isinstance(value, dict) and err["type"] != "extra_forbidden":
            value = ...
        raise ScenarioError(source, loc or "(top level)", value, msg, _fix(err["type"], loc)) from None


def _override_text(path: str, value: Any, base_dir: Path) -> str:
    """``path=value`` as ``--set`` takes it; relative file paths made relative to ``base_dir``."""
    if path in _PATH_FIELDS and isinstance(value, str) and not Path(value).expanduser().is_absolute():
        value = str((base_dir / Path(value).expanduser()).resolve())
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip()
    return f"{path}={text.removesuffix('...').strip()}"


def _label(values: dict[str, Any], series: tuple[str, ...]) -> str:
    """``sarathi`` for one series field; ``name=sarathi, chunk_size=512`` for several."""
    if len(series) == 1:
        return str(values[series[0]])
    return ", ".join(f"{path.rsplit('.', 1)[-1]}={values[path]}" for path in series) or "base"


def load_sweep(path: str | Path) -> Sweep:
    """Read, validate and expand a sweep file.

    Checks, each failing with a ``ScenarioError`` naming the file and the field: the schema;
    the base scenario and its overrides; each axis value applied alone to the base; at most one
    load axis, with positive values; ``series`` naming non-load axes that tell configurations
    apart; the capacity criterion; and that each configuration builds (model, GPU, parallelism,
    scheduler and router names, the trace).
    """
    from simulator.engine.simulation import Simulation

    path = Path(path)
    source = str(path)
    spec = _read(path)
    base_dir = path.parent.resolve()
    base_path = (base_dir / spec.base) if spec.base is not None else None
    if base_path is not None and not base_path.is_file():
        raise ScenarioError(source, "base", spec.base, "scenario file not found", "give a scenario path relative to the sweep file")

    if isinstance(spec.base_overrides, dict):
        base_overrides = [_override_text(k, v, base_dir) for k, v in spec.base_overrides.items()]
    else:
        base_overrides = []
        for text in spec.base_overrides:
            try:
                key, value = parse_override(text)
            except ScenarioError as e:
                raise ScenarioError(source, "base_overrides", text, e.problem, e.fix) from None
            base_overrides.append(_override_text(key, value, base_dir))

    def build(overrides: list[str], blame: str) -> Scenario:
        # The base file alone loaded first, so an error here lies in the overrides.
        try:
            return load_scenario(base_path, overrides)
        except ScenarioError as e:
            raise ScenarioError(source, f"{blame}.{e.field}" if e.field else blame, e.value, e.problem, e.fix) from None

    load_scenario(base_path)  # errors in the base scenario name its own file
    override_fields = {text.partition("=")[0] for text in base_overrides}
    build(base_overrides, "base_overrides")

    load_axes = [name for name in spec.axes if name in LOAD_AXES]
    if len(load_axes) > 1:
        raise ScenarioError(source, "axes", load_axes, "more than one load axis", "give either rate (req/s) or rate_scale (multiples of the native rate)")
    load_axis = load_axes[0] if load_axes else None
    axes = {name: values for name, values in spec.axes.items() if name not in LOAD_AXES}
    for name, values in spec.axes.items():
        if not values:
            raise ScenarioError(source, f"axes.{name}", values, "has no values", "list at least one value")
        if len({yaml.safe_dump(v) for v in values}) < len(values):
            raise ScenarioError(source, f"axes.{name}", values, "repeats a value", "list each value once")
    if load_axis is not None:
        for value in spec.axes[load_axis]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise ScenarioError(source, f"axes.{load_axis}", value, "must be a positive number", "give rates in req/s (rate) or multiples of the trace's rate (rate_scale)")
    for name, values in axes.items():
        for value in values:
            build(base_overrides + [_override_text(name, value, base_dir)], "axes")

    series = tuple(spec.series) if spec.series is not None else tuple(axes)
    for name in series:
        if name not in axes:
            raise ScenarioError(source, "series", name, "is not a non-load axis", f"name fields listed under axes: {', '.join(axes) or '(none)'}")

    criterion = None
    if spec.capacity.enabled:
        bounds = tuple((metric, pct, bound) for metric, pcts in spec.capacity.percentiles.items() for pct, bound in pcts.items())
        try:
            criterion = CapacityCriterion(spec.capacity.attainment_target, bounds)
        except ValueError as e:
            known = ", ".join(f"{metric} ({'/'.join(pcts)})" for metric, pcts in PERCENTILE_METRICS.items())
            raise ScenarioError(source, "capacity", ..., str(e), f"percentile metrics: {known}") from None
        if spec.capacity.rate_lo is not None and spec.capacity.rate_hi is not None and spec.capacity.rate_lo >= spec.capacity.rate_hi:
            raise ScenarioError(source, "capacity.rate_lo", spec.capacity.rate_lo, f"is not below rate_hi = {spec.capacity.rate_hi}", "give rate_lo < rate_hi")

    configurations: list[Configuration] = []
    labels: dict[str, dict] = {}
    names = list(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        values = dict(zip(names, combo))
        scenario = build(base_overrides + [_override_text(n, v, base_dir) for n, v in values.items()], "axes")
        label = _label(values, series)
        if label in labels:
            raise ScenarioError(source, "series", list(series), f"two configurations share the label {label!r} ({labels[label]} and {values})", "add the axes that differ to series")
        labels[label] = values
        where = f"{source} (series {label})"
        try:
            Simulation(scenario, where)
        except ScenarioError as e:
            if e.source != where:  # a trace or config file names itself
                raise
            if e.field in axes:
                blame = f"axes ({label}): {e.field}"
            elif e.field in override_fields or base_path is None:
                blame = f"base_overrides: {e.field}"
            else:
                raise ScenarioError(str(base_path), e.field, e.value, e.problem, e.fix) from None
            raise ScenarioError(source, blame, e.value, e.problem, e.fix) from None
        configurations.append(Configuration(label, values, scenario))

    runs: list[RunSpec] = []
    for index, config in enumerate(configurations):
        if load_axis is None:
            runs.append(RunSpec(index, native_rate_rps(config.scenario, source) * config.scenario.workload.time_scale, None, config.scenario))
            continue
        native = native_rate_rps(config.scenario, source) if load_axis == "rate_scale" else 1.0
        for value in spec.axes[load_axis]:
            rate = float(value) * native
            runs.append(RunSpec(index, rate, float(value), with_rate(config.scenario, rate, source)))

    return Sweep(
        name=spec.name or path.stem,
        description=spec.description,
        source=source,
        axes=axes,
        load_axis=load_axis,
        series=series,
        configurations=tuple(configurations),
        runs=tuple(runs),
        criterion=criterion,
        capacity=spec.capacity,
        latency_cdf_rate=spec.latency_cdf_rate,
        file=spec,
    )
