"""A cost model whose step times are another's times one fixed factor: one draw of the model's error.

A prediction interval over replicates (``simulator.studies.intervals``) draws, per replicate, one
multiplicative factor from the step-time model's error distribution and prices every step of
that replicate with it: the error of a fitted or roofline model is systematic (the same shapes
are mispriced the same way every step), so one factor per run, not a fresh draw per step, is
what moves a run's figures. The engine's loop is untouched: the wrapper replaces a replica's
``cost_model`` before the run starts, and a plain run never builds one.
"""

from __future__ import annotations

import math
from typing import Any

from simulator.cost_models.base import CostModel
from simulator.engine.batch import Batch

# Median of |z| for a standard normal z: a spread whose median absolute error is e has
# sigma = e / 0.6745 (any statistics text; scipy.stats.halfnorm.median()).
_MEDIAN_ABS_NORMAL = 0.6744897501960817


def log_sigma(relative_error: float) -> float:
    """The sigma of ln(factor) for a lognormal factor whose median |factor - 1| is about ``relative_error``.

    ``relative_error`` is a fraction (0.064 for 6.4 %), >= 0; 0 gives 0 (no spread).
    """
    assert relative_error >= 0, f"relative error must be >= 0, got {relative_error}"
    return math.log1p(relative_error) / _MEDIAN_ABS_NORMAL


def step_time_factor(relative_error: float, z: float) -> float:
    """The factor exp(sigma z) for a standard-normal draw ``z`` (dimensionless, > 0)."""
    return math.exp(log_sigma(relative_error) * z)


class PerturbedCostModel:
    """``inner``'s step times multiplied by ``factor``; everything else is ``inner``'s.

    Host time (``host_time``, the CPU work async scheduling overlaps) is scaled too, so a
    step's host share stays what ``inner`` says it is.

    Args:
        inner: the cost model priced (``simulator.cost_models.base.CostModel``).
        factor: the multiplier, > 0 (dimensionless).
    """

    def __init__(self, inner: CostModel, factor: float) -> None:
        assert factor > 0 and math.isfinite(factor), f"step-time factor must be finite and > 0, got {factor}"
        self.inner, self.factor = inner, factor
        if hasattr(inner, "host_time"):
            self.host_time = self._host_time

    def step_time(self, batch: Batch) -> float:
        """Seconds: ``inner.step_time(batch) * factor``."""
        return self.inner.step_time(batch) * self.factor

    def _host_time(self, batch: Batch) -> float:
        return self.inner.host_time(batch) * self.factor  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this object lacks: the inner model's attributes (bundle, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
