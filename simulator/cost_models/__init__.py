"""Cost models: price one iteration (``step_time(batch) -> seconds``).

``build_cost_model`` picks the model a scenario asks for: the roofline by default, the profiled
model when ``hardware.profile`` names a profile bundle or an imported profile
(``aiconfigurator:SYSTEM/FRAMEWORK/VERSION``, ``llmservingsim:FOLDER``, ``vidur:FOLDER``).
"""

from __future__ import annotations

from simulator.cost_models.base import CostModel
from simulator.cost_models.profiled import ProfiledCostModel
from simulator.cost_models.roofline import RooflineCostModel
from simulator.deployment import Deployment
from simulator.errors import ScenarioError
from simulator.scenario import PROFILE_SOURCE_KINDS, Scenario


def build_cost_model(scenario: Scenario, deployment: Deployment, source: str = "<scenario>") -> CostModel:
    """The cost model of one replica of ``deployment`` (its model, GPU, TP and PP).

    Raises:
        ScenarioError: ``hardware.profile`` names a bundle that cannot be used; the model is a
            mixture of experts (MoE steps are not priced yet).
    """
    profile = scenario.hardware.profile
    if profile is not None:
        kind, _, what = profile.partition(":")
        if kind == "aiconfigurator":
            _check_system(what.split("/")[0], deployment, profile, source)
        if kind in PROFILE_SOURCE_KINDS:
            from profiler.imports import named_profile  # pandas and scikit-learn: only for a named profile

            profile = str(named_profile(profile, deployment.model, deployment.tensor_parallel_size, source))
        return ProfiledCostModel(
            profile, deployment.model, deployment.gpu, deployment.tensor_parallel_size,
            deployment.pipeline_parallel_size, scenario.hardware.roofline, deployment.dtype_bytes, deployment.quantization,
            deployment.max_num_batched_tokens, source,
        )
    return RooflineCostModel(
        deployment.model, deployment.gpu, deployment.tensor_parallel_size, deployment.pipeline_parallel_size,
        scenario.hardware.roofline, deployment.dtype_bytes, deployment.quantization, source,
    )


def _check_system(system: str, deployment: Deployment, profile: str, source: str) -> None:
    """A named aiconfigurator profile must be of the scenario's GPU (a GPU spec file without a system may take any).

    Raises:
        ScenarioError: ``hardware.gpu`` is a bundled GPU whose aiconfigurator system is another.
    """
    own = deployment.gpu.aiconfigurator_system
    if own is not None and own != system:
        raise ScenarioError(source, "hardware.profile", profile, f"was measured on {system}, but hardware.gpu is {deployment.gpu.name} ({own})",
                            f"use aiconfigurator:{own}/... for this GPU, or set hardware.gpu to the profile's GPU")


__all__ = ["CostModel", "ProfiledCostModel", "RooflineCostModel", "build_cost_model"]
