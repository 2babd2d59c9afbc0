"""The candidate replica configurations of a plan, and the arithmetic of sizing and pricing them."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.studies.capacity import CapacityCriterion
from simulator.engine.deployment import resolve_deployment, resolve_model
from simulator.errors import ScenarioError
from simulator.scenario import Scenario, SLOConfig, scenario_from_dict, scenario_to_dict
from simulator.specs.gpu_file import is_gpu_file
from simulator.specs.model import bundled_model_spec
from simulator.studies.plan.config import Plan, PoolSpec


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


