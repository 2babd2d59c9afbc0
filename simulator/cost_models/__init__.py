"""Cost models: price one iteration (``step_time(batch) -> seconds``).

``build_cost_model`` picks the model a scenario asks for: the roofline by default, the profiled
model when ``hardware.profile`` names a profile bundle.
"""

from __future__ import annotations

from simulator.cost_models.base import CostModel
from simulator.cost_models.profiled import ProfiledCostModel
from simulator.cost_models.roofline import RooflineCostModel
from simulator.deployment import Deployment
from simulator.scenario import Scenario


def build_cost_model(scenario: Scenario, deployment: Deployment, source: str = "<scenario>") -> CostModel:
    """The cost model of one replica of ``deployment`` (its model, GPU, TP and PP).

    Raises:
        ScenarioError: ``hardware.profile`` names a bundle that cannot be used.
    """
    if scenario.hardware.profile is not None:
        return ProfiledCostModel(
            scenario.hardware.profile, deployment.model, deployment.gpu, deployment.tensor_parallel_size,
            deployment.pipeline_parallel_size, scenario.hardware.roofline, deployment.dtype_bytes, deployment.quantization,
            deployment.max_num_batched_tokens, source,
        )
    return RooflineCostModel(
        deployment.model, deployment.gpu, deployment.tensor_parallel_size, deployment.pipeline_parallel_size,
        scenario.hardware.roofline, deployment.dtype_bytes, deployment.quantization,
    )


__all__ = ["CostModel", "ProfiledCostModel", "RooflineCostModel", "build_cost_model"]
