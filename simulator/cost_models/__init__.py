"""Cost models: price one iteration (``step_time(batch) -> seconds``).

``build_cost_model`` picks the model a scenario asks for: the roofline by default (for a
mixture-of-experts model, ``MoERooflineCostModel``: MoE layers, latent attention, data-parallel
attention and expert parallelism), the profiled model when ``hardware.profile`` names a profile bundle or an imported profile
(``aiconfigurator:SYSTEM/FRAMEWORK/VERSION``, ``llmservingsim:FOLDER``, ``vidur:FOLDER``).
"""

from __future__ import annotations

from simulator.cost_models.base import CostModel
from simulator.cost_models.profiled import ProfiledCostModel
from simulator.cost_models.roofline import RooflineCostModel
from simulator.cost_models.roofline_moe import MoERooflineCostModel
from simulator.engine.deployment import Deployment
from simulator.errors import ScenarioError
from simulator.scenario import PROFILE_SOURCE_KINDS, Scenario


def build_cost_model(scenario: Scenario, deployment: Deployment, source: str = "<scenario>") -> CostModel:
    """The cost model of one replica of ``deployment`` (its model, GPU, TP and PP).

    Raises:
        ScenarioError: ``hardware.profile`` names a bundle that cannot be used, or is given for a
            mixture-of-experts model (profiles hold no MoE or latent-attention operators yet).
    """
    profile = scenario.hardware.profile
    model = deployment.model
    if profile is not None and model.moe is not None:
        raise ScenarioError(source, "hardware.profile", profile, f"{model.name} is a mixture-of-experts model ({model.architecture}), and profiles hold no MoE or latent-attention operators yet",
                            "remove hardware.profile to price it with the roofline, which has MoE, expert-parallel and MLA parts")
    if model.moe is not None:
        return MoERooflineCostModel(
            model, deployment.gpu, deployment.tensor_parallel_size, deployment.pipeline_parallel_size, scenario.hardware.roofline,
            deployment.dtype_bytes, deployment.quantization, source, deployment.data_parallel_size, deployment.expert_parallel,
            scenario.model.moe_routing,
        )
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


__all__ = ["CostModel", "MoERooflineCostModel", "ProfiledCostModel", "RooflineCostModel", "build_cost_model"]
