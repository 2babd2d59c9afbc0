"""What a deployment must meet to count as serving a rate: an SLO attainment target, percentile
bounds, or both.
"""

from __future__ import annotations

from dataclasses import dataclass


# Latency statistics of a run summary (``simulator.engine.metrics.summarize``) that a percentile bound
# may name, with the percentiles each one reports.
PERCENTILE_METRICS: dict[str, tuple[str, ...]] = {
    "ttft_s": ("p50", "p90", "p99"),
    "tpot_s": ("p50", "p90", "p99"),
    "e2e_s": ("p50", "p90", "p99"),
    "normalized_e2e_s": ("p50", "p90", "p99"),
    "scheduling_delay_s": ("p50", "p90", "p99"),
    "tbt_s": ("p50", "p99"),
}


@dataclass(frozen=True)
class CapacityCriterion:
    """What "meets the SLOs" means for a run's summary (DESIGN.md, Capacity).

    Attainment form (DistServe): ``slo_attainment >= attainment_target``, with the per-request
    SLOs in the scenario's ``slo`` section. Percentile form (Vidur): every bound holds, e.g.
    ``(("ttft_s", "p90", 2.0), ("tbt_s", "p99", 0.2))``, read from ``summary[metric][percentile]``.
    Both forms may be combined; set ``attainment_target=None`` for the percentile form alone.

    Attributes:
        attainment_target: fraction in (0, 1], or None.
        percentile_bounds: ``(metric, percentile, bound_s)`` triples; metrics and percentiles as
            in ``PERCENTILE_METRICS``; bounds in seconds (a bound holds when value <= bound).

    Raises:
        ValueError: no condition at all, a target outside (0, 1], an unknown metric or
            percentile, or a bound <= 0.
    """

    attainment_target: float | None = 0.9
    percentile_bounds: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.attainment_target is None and not self.percentile_bounds:
            raise ValueError("a capacity criterion needs an attainment target or a percentile bound")
        if self.attainment_target is not None and not 0 < self.attainment_target <= 1:
            raise ValueError(f"attainment_target must be in (0, 1], got {self.attainment_target}")
        for metric, percentile, bound in self.percentile_bounds:
            if metric not in PERCENTILE_METRICS:
                raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(PERCENTILE_METRICS)}")
            if percentile not in PERCENTILE_METRICS[metric]:
                raise ValueError(f"{metric} reports {', '.join(PERCENTILE_METRICS[metric])}, not {percentile!r}")
            if not bound > 0:
                raise ValueError(f"the bound on {percentile} {metric} must be > 0 s, got {bound}")

    def met(self, summary: dict) -> bool:
        """Whether a run's summary meets the criterion.

        A run that did not finish every request (stopped early) never meets it. A percentile
        with no data (TPOT when every request makes one token) violates no bound.
        """
        if summary.get("stopped_early") or summary.get("num_completed") != summary.get("num_requests"):
            return False
        if self.attainment_target is not None:
            attainment = summary.get("slo_attainment")
            if attainment is None or not attainment >= self.attainment_target:  # NaN misses
                return False
        for metric, percentile, bound in self.percentile_bounds:
            value = summary[metric][percentile]
            if value is not None and not value <= bound:
                return False
        return True

    def describe(self, slo: dict | None = None) -> str:
        """One line for reports: ``SLO attainment >= 90% (TTFT <= 2 s, TPOT <= 0.1 s)``,
        ``P99 TBT <= 100 ms and P50 scheduling delay <= 2 s``."""
        parts = []
        if self.attainment_target is not None:
            slos = ", ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in (slo or {}).items() if v is not None)
            parts.append(f"SLO attainment >= {self.attainment_target:.0%}" + (f" ({slos})" if slos else ""))
        for metric, percentile, bound in self.percentile_bounds:
            name = metric.removesuffix("_s")
            name = name.upper() if name in ("ttft", "tpot", "tbt", "e2e") else name.replace("_", " ")
            parts.append(f"{percentile.upper()} {name} <= " + (f"{bound:g} s" if bound >= 1 else f"{bound * 1e3:g} ms"))
        return " and ".join(parts)

    def to_dict(self) -> dict:
        """Plain data (for cache keys and reports)."""
        return {"attainment_target": self.attainment_target, "percentile_bounds": [list(b) for b in self.percentile_bounds]}
