"""The sections of a scenario (model, hardware, cluster, scheduler, workload, SLO, output,
uncertainty) and ``Scenario`` itself: frozen pydantic dataclasses with servesim's defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass


_CONFIG = ConfigDict(extra="forbid")

PositiveInt = Annotated[int, Field(ge=1)]
# Floats are finite: `.inf` or `.nan` in a rate, a time scale or an SLO is a mistake, not a limit.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _frozen(cls):
    return dataclass(frozen=True, config=_CONFIG)(cls)


@_frozen
class MoERoutingConfig:
    """How a mixture-of-experts model's router spreads tokens over its experts (ignored for dense models).

    ``balanced``: every expert equally likely, the load auxiliary losses' aim (Switch Transformer,
    Fedus et al. 2022, Sec. 2.2; DeepSeek-V3's auxiliary-loss-free balancing, Sec. 2.1.2).
    ``zipf``: expert popularity falls as rank^-zipf_exponent, the ranks given to the experts by a
    permutation drawn with ``seed`` (which expert is hot, and so which expert-parallel rank is
    loaded most); each token takes its top-k experts as a draw without replacement in proportion
    to popularity (``simulator.cost_models.moe``).
    """

    distribution: Literal["balanced", "zipf"] = "balanced"
    zipf_exponent: PositiveFloat = 1.0
    seed: int = 0


@_frozen
class ModelConfig:
    """Which model: a bundled name or a Hugging Face config.json path."""

    name: str = "llama-3-8b"
    config: str | None = None  # path to a Hugging Face config.json; overrides `name`
    max_model_len: int | None = None  # tokens; default: the model's max_position_embeddings
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    # Weight (and activation) quantization of the linear layers: W8A8 int8 (SmoothQuant), W4A16
    # group-quantized int4 (AWQ/GPTQ, group 128), or FP8 e4m3 weights and activations.
    quantization: Literal["none", "w8a8", "w4a16", "fp8"] = "none"
    moe_routing: MoERoutingConfig = dataclasses.field(default_factory=MoERoutingConfig)


@_frozen
class RooflineConfig:
    """Efficiencies of the roofline cost model: achieved fraction of the datasheet peak.

    A field left unset (None) takes the GPU's calibrated value: fitted per GPU to the vLLM
    kernel tables of NVIDIA's aiconfigurator-core package (GEMM, prefill and decode attention,
    per-kernel floor; elementwise and link efficiencies derived, labelled as assumptions) by
    ``benchmarks/calibrate_roofline_gpus.py`` into ``simulator/specs/roofline_calibration.json``
    (``simulator.specs.calibration``). A GPU without calibration takes the H100 fit to Vidur's
    profiles (``calibration.FALLBACK``). Attention has a floor of its own: an attention call
    (split-KV planning, the kernel, the combine) costs several GEMM-sized floors at small
    shapes. A field set here wins for every GPU; setting ``link_bandwidth_efficiency`` also
    prices the all-reduce by the ring formula instead of the measured all-reduce fits. CPU
    overheads are estimates of vLLM v0's per-step scheduling, input preparation and sampling work.
    """

    gemm_flops_efficiency: Fraction | None = None
    gemm_bandwidth_efficiency: Fraction | None = None
    attention_flops_efficiency: Fraction | None = None
    attention_bandwidth_efficiency: Fraction | None = None
    elementwise_bandwidth_efficiency: Fraction | None = None
    link_bandwidth_efficiency: Fraction | None = None
    kernel_launch_s: NonNegativeFloat | None = None  # per kernel: floor + launch gap under CUDA graphs
    attention_launch_s: NonNegativeFloat | None = None  # per attention call: its fixed cost, as kernel_launch_s
    cpu_overhead_s: NonNegativeFloat = 1e-3  # per iteration: scheduling, input preparation, sampling
    cpu_overhead_per_request_s: NonNegativeFloat = 1e-5  # per request in the batch



@_frozen
class HardwareConfig:
    """Which GPU, and how to price a step on it."""

    gpu: str = "h100-sxm"  # a bundled GPU (``servesim list``) or a GPU spec .yaml file (scenarios/gpus/)
    # A profile bundle folder (``servesim profile`` then ``servesim fit``), or an imported profile
    # by name (``aiconfigurator:h100_sxm/vllm/0.24.0``, ``llmservingsim:FOLDER``, ``vidur:FOLDER``;
    # imported and fitted on first use into a cache): price steps with the fitted runtime models
    # instead of the roofline (the roofline still extrapolates beyond them).
    profile: str | None = None
    roofline: RooflineConfig = dataclasses.field(default_factory=RooflineConfig)


@_frozen
class PoolConfig:
    """One pool of a disaggregated deployment (DistServe): its replicas and their parallelism."""

    num_replicas: Annotated[int, Field(ge=1, le=100_000)] = 1  # beyond 100,000 replicas a run would exhaust memory, not finish
    tensor_parallel_size: PositiveInt = 1
    pipeline_parallel_size: PositiveInt = 1
    # Data-parallel attention ranks inside one replica, for mixture-of-experts models: each rank
    # runs attention on its own requests at tensor_parallel_size, and the MoE layers of all ranks
    # run together (vLLM --data-parallel-size, SGLang --enable-dp-attention --dp).
    data_parallel_size: PositiveInt = 1
    # Experts sharded whole over the replica's tensor_parallel_size x data_parallel_size GPUs,
    # tokens dispatched to them all-to-all, instead of every expert split over the GPUs
    # (vLLM --enable-expert-parallel; SGLang --ep-size equal to --tp-size).
    enable_expert_parallel: bool = False


@_frozen
class KVTransferConfig:
    """The link that moves a request's KV cache from its prefill replica to its decode replica.

    ``bandwidth_gb_per_s`` and ``latency_s`` default by ``link``: NVLink takes the GPU's NVLink
    figures (``servesim list``); InfiniBand takes one 400 Gb/s NDR port per GPU, 50 GB/s, and
    5 us (NVIDIA ConnectX-7 datasheet).
    """

    link: Literal["nvlink", "infiniband"] = "nvlink"
    bandwidth_gb_per_s: PositiveFloat | None = None  # GB/s per direction, overrides the link's
    latency_s: NonNegativeFloat | None = None  # per transfer, overrides the link's


@_frozen
class ClusterConfig:
    """Replicas and the parallelism of each (one replica is one model copy on TP x PP GPUs).

    The ``distserve`` scheduler runs two pools instead: ``prefill`` and ``decode`` (each
    defaulting to one replica at this section's TP and PP), joined by ``kv_transfer``.
    """

    num_replicas: Annotated[int, Field(ge=1, le=100_000)] = 1  # beyond 100,000 replicas a run would exhaust memory, not finish
    tensor_parallel_size: PositiveInt = 1
    pipeline_parallel_size: PositiveInt = 1
    # Data-parallel attention ranks inside one replica, for mixture-of-experts models: each rank
    # runs attention on its own requests at tensor_parallel_size, and the MoE layers of all ranks
    # run together (vLLM --data-parallel-size, SGLang --enable-dp-attention --dp).
    data_parallel_size: PositiveInt = 1
    # Experts sharded whole over the replica's tensor_parallel_size x data_parallel_size GPUs,
    # tokens dispatched to them all-to-all, instead of every expert split over the GPUs
    # (vLLM --enable-expert-parallel; SGLang --ep-size equal to --tp-size).
    enable_expert_parallel: bool = False
    router: str = "round_robin"
    prefill: PoolConfig | None = None  # distserve only
    decode: PoolConfig | None = None  # distserve only
    kv_transfer: KVTransferConfig = dataclasses.field(default_factory=KVTransferConfig)


@_frozen
class SchedulerConfig:
    """The per-replica batching policy and its knobs (vLLM's names and defaults)."""

    name: str = "vllm"
    max_num_seqs: PositiveInt = 256
    max_num_batched_tokens: PositiveInt | None = None  # default: max(max_model_len, 2048), as vLLM v0
    block_size: PositiveInt = 16  # tokens per KV cache block
    gpu_memory_utilization: Fraction = 0.9
    watermark: Annotated[float, Field(ge=0, lt=1)] = 0.01  # fraction of KV blocks kept free when admitting prefills
    num_gpu_blocks_override: PositiveInt | None = None  # force the KV cache size (blocks), as vLLM's flag
    preemption_mode: Literal["recompute", "swap"] = "recompute"
    swap_space_gib: NonNegativeFloat = 4.0  # CPU memory per GPU for swapped-out KV blocks (vLLM's default)
    # Prefix caching (vLLM's automatic prefix caching): None means the engine's default, on for
    # vllm_v1 and off elsewhere.
    enable_prefix_caching: bool | None = None
    chunk_size: PositiveInt = 512  # Sarathi-Serve: token budget per iteration (prefill chunks + decodes)
    # vllm_v1 only: the vLLM release modelled, "0.8" ... "0.19" (None: "0.19"), and two of its
    # flags, None meaning the release's default (simulator/schedulers/vllm_engine.py).
    engine_version: str | float | None = None
    async_scheduling: bool | None = None
    scheduler_reserve_full_isl: bool | None = None
    # fastserve only (simulator/schedulers/fastserve.py): the skip-join multi-level feedback queue
    # of Wu et al., "Fast Distributed Inference Serving for LLMs" (arXiv 2305.05920, Sec. 4.1).
    # Quanta count iterations: level k (0 = highest priority) runs a request for
    # fastserve_base_quantum x fastserve_quantum_ratio^k iterations before demoting it.
    fastserve_num_levels: Annotated[int, Field(ge=1, le=32)] = 6  # assumed: covers prompts up to 32 iterations' worth
    fastserve_base_quantum: PositiveInt = 1  # the paper's top quantum: one (decode) iteration
    fastserve_quantum_ratio: PositiveInt = 2  # each quantum doubles the one above, as classic MLFQ (Sec. 4.1)
    # Skip-join prices a prompt as ceil(prompt tokens / this) iterations (assumed: on an H100 a
    # 256-token prefill of Llama-3-8B takes about one decode iteration's time, ~7 ms by roofline).
    fastserve_prefill_tokens_per_iteration: PositiveInt = 256
    fastserve_starve_limit_s: PositiveFloat = 10.0  # waited this long unserved: promoted to the top (assumed)
    # sjf only (simulator/schedulers/sjf.py): shortest predicted output first, the predictor's
    # error lognormal with this sigma (0: an oracle), seeded; requests waiting longer than
    # sjf_starve_limit_s since arrival go first, oldest first.
    sjf_predictor_sigma: NonNegativeFloat = 0.5  # assumed: a ranker of moderate quality
    sjf_predictor_seed: Annotated[int, Field(ge=0)] = 0
    sjf_starve_limit_s: PositiveFloat = 10.0  # assumed
    # static only (simulator/schedulers/static.py): dynamic batching as NVIDIA Triton Inference
    # Server's dynamic batcher (model configuration ``dynamic_batching``: ``max_queue_delay_microseconds``
    # and ``preferred_batch_size``). An idle replica holds its waiting requests until this many
    # have queued or the oldest has waited this long. None (the default): a batch forms as soon as
    # the replica is idle, Triton's default delay of 0.
    static_max_queue_delay_ms: NonNegativeFloat | None = None
    static_preferred_batch_size: PositiveInt | None = None  # None: max_num_seqs


@_frozen
class ArrivalConfig:
    """An arrival process for synthetic workloads and for traces without timestamps."""

    process: Literal["poisson", "gamma"] = "poisson"
    rate: PositiveFloat = 5.5  # requests/s
    cv: PositiveFloat = 1.0  # coefficient of variation of inter-arrival times (gamma only)


@_frozen
class LengthConfig:
    """A token-length distribution: fixed, uniform, lognormal or empirical (from a trace file).

    Samples are rounded and clipped to [min, max].
    """

    distribution: Literal["fixed", "uniform", "lognormal", "empirical"] = "lognormal"
    value: PositiveInt | None = None  # fixed
    mean: PositiveFloat | None = None  # lognormal
    median: PositiveFloat | None = None  # lognormal
    min: PositiveInt = 1
    max: PositiveInt | None = None
    file: str | None = None  # empirical: a trace file
    column: str | None = None  # empirical: its column (default: the prompt or output column)

    def __post_init__(self) -> None:
        need = {"fixed": ("value",), "uniform": ("max",), "lognormal": ("mean", "median"), "empirical": ("file",)}
        for name in need[self.distribution]:
            if getattr(self, name) is None:
                raise ValueError(f"distribution {self.distribution!r} needs `{name}`")
        if self.max is not None and self.max < self.min:
            raise ValueError("max must be >= min")
        if self.distribution == "lognormal" and not 0 < self.median <= self.mean:
            raise ValueError("lognormal needs 0 < median <= mean")


# The most synthetic requests one run may hold. Every request's records stay in memory until the
# metrics are computed: about 9 KB per request on the quickstart workload (measured: peak RSS of
# a run of 100,000 requests 1.07 GB, of 10,000 requests 0.26 GB; 0.45 ms of wall time each), so
# 10^7 requests take some 90 GB and over an hour; percentile metrics settle within thousands.
MAX_NUM_REQUESTS = 10_000_000


@_frozen
class WorkloadConfig:
    """Where requests come from: a trace file, or a synthetic generator when ``trace`` is unset."""

    trace: str | None = None
    time_scale: PositiveFloat = 1.0  # replay k times faster: arrival times are divided by k
    max_requests: PositiveInt | None = None  # keep the first N requests
    max_duration_s: PositiveFloat | None = None  # keep requests arriving in the first T seconds
    num_requests: Annotated[int, Field(ge=1, le=MAX_NUM_REQUESTS)] = 2000  # synthetic workloads
    arrival: ArrivalConfig = dataclasses.field(default_factory=ArrivalConfig)
    prompt_tokens: LengthConfig = dataclasses.field(default_factory=lambda: LengthConfig(mean=1155, median=1020, max=7168))
    output_tokens: LengthConfig = dataclasses.field(default_factory=lambda: LengthConfig(mean=211, median=129, max=1000))
    on_invalid: Literal["error", "skip"] = "error"  # a bad trace row or too-long prompt: fail, or skip and count
    # Closed-loop load (``vllm bench serve --max-concurrency N``, genai-perf's concurrency mode):
    # N clients each send their next request when their last one finished, after ``think_time_s``;
    # the requests' own arrival times (trace or arrival process) are then not used.
    concurrency: PositiveInt | None = None
    think_time_s: NonNegativeFloat = 0.0


@_frozen
class SLOConfig:
    """Per-request latency targets; a request meets the SLO when it meets every one set."""

    ttft_s: PositiveFloat | None = 2.0
    tpot_s: PositiveFloat | None = 0.1
    e2e_s: PositiveFloat | None = None


@_frozen
class OutputConfig:
    """Where results go, and how much of the run is kept to compute them.

    ``token_gaps``: ``exact`` keeps every output token's time per request (TBT percentiles exact,
    8 bytes a token); ``histogram`` keeps only a log histogram of the gaps
    (``simulator.engine.token_gaps``: percentiles within 0.5 %, mean and max exact), so memory
    does not grow with output tokens, and ``SimulationResult.tbt_s`` is empty.
    ``iterations``: ``full`` keeps one record per iteration (``iterations.parquet``, the report's
    per-step figures); ``sampled`` keeps every ``iteration_sample_every``-th iteration of each
    replica; ``none`` keeps none. The summary's iteration statistics are exact in every mode
    (accumulated online). ``keep_requests``: keep one ``Request`` object per request for the
    run's life (``Simulation.workload.requests``); false makes each from the workload's columns
    when it arrives and copies its results into numpy columns when it finishes
    (``simulator.engine.request_columns``), so memory follows the requests in flight.
    """

    dir: str | None = None  # default: reports/runs/<scenario name>
    report: bool = True  # write the HTML report
    token_gaps: Literal["exact", "histogram"] = "exact"
    iterations: Literal["full", "sampled", "none"] = "full"
    iteration_sample_every: PositiveInt = 100  # sampled: keep iterations 0, k, 2k, ... of each replica
    keep_requests: bool = True


# The roofline's stated relative error: the median absolute error of the per-layer sum of
# token-level operators against Vidur's H100 measurements, 6.4 % (P90 20 %), from
# ``benchmarks/calibrate_roofline.py`` (benchmarks/README.md, "Roofline calibration").
ROOFLINE_RELATIVE_ERROR = 0.064


@_frozen
class UncertaintyConfig:
    """Prediction intervals: ``replicates`` perturbed runs of the scenario, every summary figure
    reported with a central interval at ``level`` (``simulator.studies.intervals``).

    ``replicates``: 1 (the default) is a plain run, nothing perturbed or added.
    ``workload``: how each replicate's requests differ: ``reseed`` draws the synthetic workload
    (and a length-only trace's arrivals, and the router's choices) with a new seed; ``bootstrap``
    resamples the scenario's requests with replacement; ``fixed`` keeps them; ``auto`` is
    ``bootstrap`` for a trace and ``reseed`` otherwise.
    ``step_time_relative_error``: the cost model's median absolute relative error per step; each
    replicate multiplies every step time by one lognormal factor of that median spread. Unset:
    the fit report's held-out error per operator when ``hardware.profile`` is set, else the
    roofline's measured ``ROOFLINE_RELATIVE_ERROR`` (6.4 %). 0 leaves step times as priced.
    """

    replicates: Annotated[int, Field(ge=1, le=10_000)] = 1
    level: Annotated[float, Field(gt=0, lt=1)] = 0.9
    workload: Literal["auto", "reseed", "bootstrap", "fixed"] = "auto"
    step_time_relative_error: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] | None = None


@_frozen
class Scenario:
    """One deployment under one workload."""

    name: str = "quickstart"
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    hardware: HardwareConfig = dataclasses.field(default_factory=HardwareConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    scheduler: SchedulerConfig = dataclasses.field(default_factory=SchedulerConfig)
    workload: WorkloadConfig = dataclasses.field(default_factory=WorkloadConfig)
    slo: SLOConfig = dataclasses.field(default_factory=SLOConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    uncertainty: UncertaintyConfig = dataclasses.field(default_factory=UncertaintyConfig)
