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

from simulator.studies.plan.config import (
    AttainmentSLO,
    PlanSLO,
    PoolSpec,
    SearchSpace,
    Limits,
    CapacitySearch,
    PlanConfig,
    SchedulerVariant,
    Plan,
    load_plan,
    describe_slo,
)
from simulator.studies.plan.candidates import (
    Candidate,
    enumerate_candidates,
    scale_replicas,
    scale_slo,
    replicas_needed,
    usd_per_million_output_tokens,
    pareto_frontier,
)
from simulator.studies.plan.tasks import (
    CapacityTask,
    CapacityOutcome,
    run_capacity_task,
    VerifyTask,
    VerifyOutcome,
    verification_scenario,
    run_verify_task,
)
from simulator.studies.plan.search import (
    PlanResult,
    RESULT_COLUMNS,
    mean_output_tokens,
    run_plan,
    SENSITIVITY_COLUMNS,
    write_results,
)

__all__ = [
    "AttainmentSLO",
    "Candidate",
    "CapacityOutcome",
    "CapacitySearch",
    "CapacityTask",
    "Limits",
    "Plan",
    "PlanConfig",
    "PlanResult",
    "PlanSLO",
    "PoolSpec",
    "RESULT_COLUMNS",
    "SENSITIVITY_COLUMNS",
    "SchedulerVariant",
    "SearchSpace",
    "VerifyOutcome",
    "VerifyTask",
    "describe_slo",
    "enumerate_candidates",
    "load_plan",
    "mean_output_tokens",
    "pareto_frontier",
    "replicas_needed",
    "run_capacity_task",
    "run_plan",
    "run_verify_task",
    "scale_replicas",
    "scale_slo",
    "usd_per_million_output_tokens",
    "verification_scenario",
    "write_results",
]
