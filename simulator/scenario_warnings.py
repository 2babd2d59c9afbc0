"""Scenarios that run as written but whose results may mislead: one warning line each.

The rule between errors and warnings (README, "Mistakes and warnings"):

* an error (``ScenarioError``, exit code 2) when servesim cannot simulate what the scenario asks
  for: a value no engine accepts, a deployment that cannot exist, a behaviour the named
  scheduler does not have (``preemption_mode: swap`` where nothing swaps), a number that cannot
  be priced (TP across nodes) or held (10^12 requests);
* a warning (one ``servesim: warning:`` line on stderr, the run goes on) when the simulation is
  exactly what the scenario says but a reader of its results may be misled: fields of another
  kind of deployment (``simulation.unused_fields``: sweeps share one base scenario across
  schedulers), prefix caching with nothing to cache, a profile measured on the CPU pricing a GPU.

``servesim run`` and ``servesim check`` print these; sweeps and plans, which build many
scenarios from one, do not.
"""

from __future__ import annotations

import json
from pathlib import Path

from simulator.scenario import PROFILE_SOURCE_KINDS, Scenario
from simulator.workload import has_prefix_keys


def prefix_caching_without_keys(scenario: Scenario, source: str) -> str | None:
    """``enable_prefix_caching: true`` on a workload without prefix keys: nothing can be reused.

    Only a trace's ``hash_ids`` (Mooncake) key KV blocks (``simulator.engine.prefix_cache``); synthetic
    workloads and other traces share nothing. The engine default (``null``: on for vllm_v1) is
    not warned about.

    Raises:
        ScenarioError: the trace cannot be read (as the run would).
    """
    if scenario.scheduler.enable_prefix_caching is not True or has_prefix_keys(scenario.workload, source):
        return None
    what = "a synthetic workload" if scenario.workload.trace is None else "a trace without hash_ids"
    return f"scheduler.enable_prefix_caching is on, but {what} has no prefix keys (only Mooncake traces' hash_ids give them), so no KV block is ever reused"


def cpu_profile_for_gpu(scenario: Scenario) -> str | None:
    """A ``hardware.profile`` bundle measured with ``servesim profile --device cpu`` (profile.json ``device: cpu``).

    Its times are the CPU's (torch reference kernels), not the scenario GPU's. A folder that is
    not a readable bundle is left to the cost model, which names the problem.
    """
    profile = scenario.hardware.profile
    if profile is None or profile.partition(":")[0] in PROFILE_SOURCE_KINDS:
        return None  # imported profiles are GPU measurements
    try:
        manifest = json.loads((Path(profile) / "profile.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("device") != "cpu":
        return None
    return (f"hardware.profile = {profile!r} was measured on the CPU (profile.json device: cpu): every step is priced at CPU "
            f"times, not {scenario.hardware.gpu}'s; use it to try the pipeline, and a bundle measured on the GPU to predict it")


def scenario_warnings(scenario: Scenario, source: str) -> list[str]:
    """Every warning for ``scenario``, in the order printed (``source`` names the scenario file).

    Raises:
        ScenarioError: the trace cannot be read.
    """
    return [w for w in (prefix_caching_without_keys(scenario, source), cpu_profile_for_gpu(scenario)) if w]
