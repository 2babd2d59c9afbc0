"""Cost models: price one iteration (``step_time(batch) -> seconds``)."""

from simulator.cost_models.base import CostModel
from simulator.cost_models.roofline import RooflineCostModel

__all__ = ["CostModel", "RooflineCostModel"]
