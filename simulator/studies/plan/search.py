"""``run_plan``: search every candidate, size and price the feasible ones, and the SLO sensitivity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator.engine.deployment import resolve_model
from simulator.studies.executors import Executor
from simulator.scenario import Scenario, scenario_to_dict
from simulator.engine.simulation import simulate
from simulator.workload import load_workload
from simulator.studies.plan.candidates import (
    Candidate,
    enumerate_candidates,
    pareto_frontier,
    replicas_needed,
    scale_slo,
    usd_per_million_output_tokens,
)
from simulator.studies.plan.config import Plan
from simulator.studies.plan.intervals import capacity_intervals
from simulator.studies.plan.tasks import CapacityTask, VerifyTask, run_capacity_task, run_verify_task, verification_scenario


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
    table = capacity_intervals(plan, candidates, table, executor, cache)  # adds INTERVAL_COLUMNS with uncertainty.replicates > 1

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


