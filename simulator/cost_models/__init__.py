"""Cost models: price one iteration (``step_time(batch) -> seconds``).

``build_cost_model`` picks the model a scenario asks for: the roofline by default (for a
mixture-of-experts model, ``MoERooflineCostModel``: MoE layers, latent attention, data-parallel
attention and expert parallelism), the profiled model when ``hardware.profile`` names a profile bundle or an imported profile
(``aiconfigurator:SYSTEM/FRAMEWORK/VERSION``, ``llmservingsim:FOLDER``, ``vidur:FOLDER``).
"""

from __future__ import annotations

from simulator.cost_models.base import CostModel
from simulator.cost_models.profiled import ProfiledCostModel
from simulator.cost_models.profiled_moe import REQUIRED as MOE_OPERATORS, ProfiledMoECostModel
from simulator.cost_models.roofline import RooflineCostModel
from simulator.cost_models.roofline_moe import MoERooflineCostModel
from simulator.engine.deployment import Deployment
from simulator.errors import ScenarioError
from simulator.scenario import PROFILE_SOURCE_KINDS, Scenario


def build_cost_model(scenario: Scenario, deployment: Deployment, source: str = "<scenario>") -> CostModel:
    """The cost model of one replica of ``deployment`` (its model, GPU, TP and PP).

    Raises:
        ScenarioError: ``hardware.profile`` names a bundle that cannot be used; for a
            mixture-of-experts model, one without its MoE operators (the line names them).
    """
    profile = scenario.hardware.profile
    model = deployment.model
    if model.moe is not None:
        args = (model, deployment.gpu, deployment.tensor_parallel_size, deployment.pipeline_parallel_size, scenario.hardware.roofline,
                deployment.dtype_bytes, deployment.quantization, source, deployment.data_parallel_size, deployment.expert_parallel,
                scenario.model.moe_routing)
        if profile is None:
            return MoERooflineCostModel(*args)
        return ProfiledMoECostModel(_moe_bundle(profile, deployment, source), *args)
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


def _moe_bundle(profile: str, deployment: Deployment, source: str) -> str:
    """The MoE bundle folder ``hardware.profile`` names for a mixture-of-experts replica.

    ``aiconfigurator:`` sources are imported (and cached) at the replica's MoE group size (both splits);
    a folder is used as it is. Other sources hold no MoE operators.

    Raises:
        ScenarioError: a source kind without MoE tables (one line naming the missing operators),
            or the import's own errors.
    """
    kind, _, what = profile.partition(":")
    if kind not in PROFILE_SOURCE_KINDS:
        return profile
    model = deployment.model
    if kind != "aiconfigurator":
        raise ScenarioError(source, "hardware.profile", profile, f"{kind} profiles hold no MoE operators (missing: {', '.join(MOE_OPERATORS)}) for the mixture-of-experts model {model.name}",
                            "use aiconfigurator:SYSTEM/vllm/VERSION, or remove hardware.profile to price it with the roofline")
    _check_system(what.split("/")[0], deployment, profile, source)
    from profiler.imports.aiconfigurator_moe import named_moe_profile  # pandas: only for a named profile

    return str(named_moe_profile(profile, model, deployment.parallelism.moe_group, source))


def _check_system(system: str, deployment: Deployment, profile: str, source: str) -> None:
    """A named aiconfigurator profile must be of the scenario's GPU (a GPU spec file without a system may take any).

    Raises:
        ScenarioError: ``hardware.gpu`` is a bundled GPU whose aiconfigurator system is another.
    """
    own = deployment.gpu.aiconfigurator_system
    if own is not None and own != system:
        raise ScenarioError(source, "hardware.profile", profile, f"was measured on {system}, but hardware.gpu is {deployment.gpu.name} ({own})",
                            f"use aiconfigurator:{own}/... for this GPU, or set hardware.gpu to the profile's GPU")


__all__ = ["CostModel", "MoERooflineCostModel", "ProfiledCostModel", "ProfiledMoECostModel", "RooflineCostModel", "build_cost_model"]
