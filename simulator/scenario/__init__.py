"""The scenario: one deployment under one workload, as one tree of frozen dataclasses.

Loaded from YAML in one place (``load_scenario``), overridden from the command line with
``--set a.b=value``, validated on load (types, unknown keys, ranges) and never mutated after.
Checks that need the model and GPU specs (TP divides the heads, the model fits, KV blocks > 0)
happen when the simulation is built (``simulator.engine.deployment``), with the same kind of error.

Every field has a default; the defaults are the quickstart scenario (``scenarios/quickstart.yaml``
spells them out): Llama-3-8B on one H100-SXM, the vLLM scheduler, and a synthetic workload with
the published statistics of the Azure 2023 conversation trace (Splitwise, ISCA'24, Table 2 and
Fig. 3: 5.5 req/s; prompt mean 1155, median 1020; output mean 211, median 129 tokens).

The package holds the sections (``simulator.scenario.sections``) and their loading
(``simulator.scenario.loading``); everything is imported from ``simulator.scenario``.
"""

from __future__ import annotations

from simulator.scenario.sections import (  # noqa: F401
    PositiveInt,
    PositiveFloat,
    NonNegativeFloat,
    Fraction,
    MoERoutingConfig,
    ModelConfig,
    RooflineConfig,
    HardwareConfig,
    PoolConfig,
    KVTransferConfig,
    ClusterConfig,
    SchedulerConfig,
    ArrivalConfig,
    LengthConfig,
    MAX_NUM_REQUESTS,
    WorkloadConfig,
    SLOConfig,
    OutputConfig,
    ROOFLINE_RELATIVE_ERROR,
    UncertaintyConfig,
    Scenario,
    _frozen,
)
from simulator.scenario.loading import (  # noqa: F401
    GPU_FILE_SUFFIXES,
    PROFILE_SOURCE_KINDS,
    scenario_from_dict,
    parse_override,
    load_scenario,
    scenario_to_dict,
    _PATH_FIELDS,
    _SHORTHANDS,
)
from simulator.yaml_files import read_yaml_mapping  # noqa: F401

__all__ = [
    "ArrivalConfig",
    "ClusterConfig",
    "Fraction",
    "GPU_FILE_SUFFIXES",
    "HardwareConfig",
    "KVTransferConfig",
    "LengthConfig",
    "MAX_NUM_REQUESTS",
    "MoERoutingConfig",
    "ModelConfig",
    "NonNegativeFloat",
    "OutputConfig",
    "PROFILE_SOURCE_KINDS",
    "PoolConfig",
    "PositiveFloat",
    "PositiveInt",
    "ROOFLINE_RELATIVE_ERROR",
    "RooflineConfig",
    "SLOConfig",
    "Scenario",
    "SchedulerConfig",
    "UncertaintyConfig",
    "WorkloadConfig",
    "load_scenario",
    "parse_override",
    "scenario_from_dict",
    "scenario_to_dict",
    "read_yaml_mapping",
]
