"""The cost-model protocol: how long one iteration of one replica takes."""

from __future__ import annotations

from typing import Protocol

from simulator.engine.batch import Batch


class CostModel(Protocol):
    """Prices an iteration. Implementations: roofline (datasheet), profiled (measured)."""

    def step_time(self, batch: Batch) -> float:
        """Seconds one replica takes to run ``batch`` (GPU work plus per-iteration CPU overhead)."""
        ...
