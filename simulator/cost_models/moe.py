"""Mixture-of-experts layers: where a step's tokens go, and what the experts cost.

Routing (``ExpertRouting``). Each token picks ``k`` of ``E`` experts. Expert i is among a token's
k with probability pi_i (``inclusion``), tokens independently, so among m tokens

    expected distinct experts touched = sum_i 1 - (1 - pi_i)^m,

which sets the expert weights a step reads: a batch-1 decode step of Mixtral reads 2 of 8
experts, a prefill of thousands of tokens reads all of them. Balanced routing (the aim of the
load-balancing losses; Switch Transformer, Fedus et al. 2022, Sec. 2.2) has pi_i = k / E. Zipf
routing gives expert popularity proportional to rank^-s, the ranks assigned to experts by a
seeded permutation, and each token draws its k experts without replacement in proportion to
popularity (a Plackett-Luce draw, done as a Gumbel top-k); pi_i and the per-token spread over
expert-parallel ranks are then estimated once from 20,000 seeded draws (standard error about
0.35 % of pi_i), so a scenario and seed give the same figures every run.

Placement. With expert parallelism over G GPUs, GPU r holds a contiguous range of experts,
the remainder going to the first GPUs (vLLM ``determine_expert_map``,
``model_executor/layers/fused_moe/layer.py``); without it every GPU holds every expert's slice of
the intermediate dimension. A step waits for the most loaded GPU: its routed (token, expert)
pairs, ``m * sum of pi_i`` over its experts, and its distinct experts.

Expert compute (``MoELayer``), per GPU, as vLLM's fused MoE kernels run it
(``fused_moe/fused_moe.py``): the router GEMM ([m, h] x [h, E], a replicated bf16 gate) and a
top-k softmax; a grouped gate/up GEMM and a grouped down GEMM over the GPU's routed pairs, each
``max(FLOPs / peak, bytes / bandwidth)`` with the bytes of the distinct experts' weights plus the
pairs' activations, at the GPU's efficiencies fitted to vLLM's measured ``fused_experts``
(aiconfigurator-core's ``moe_perf`` tables, ``benchmarks/moe_kernel_check.py``;
``simulator.specs.calibration.RooflineParameters.moe_values``), plus a fixed cost per call and
per distinct expert; SiLU * mul over the pairs; ``moe_sum`` adding each token's k outputs; shared
experts as a dense gated MLP at the attention TP degree. Padding each expert's tokens to the
kernel's block size is not modelled (it matters only when compute-bound with few tokens per
expert: held-out shapes of that kind are priced 25-35 % fast on H100, H200 and L40S in bf16,
``benchmarks/README.md``).

Communication. Without data-parallel attention the tokens are on every GPU of the TP group, so
each GPU computes its experts' share and one all-reduce sums the outputs (vLLM's fused MoE
``reduce_results``), as after a dense MLP. With data-parallel attention (D ranks), a rank's
tokens are sent to the GPUs that hold their experts and the outputs sent back: a dispatch and a
combine all-to-all, each token going once to each distinct remote GPU among its k experts
(DeepEP's dispatch, DeepSeek-V3 Sec. 3.2.2; vLLM's ``all2all`` managers). Within a node of eight
GPUs the bytes go over NVLink (each GPU sends at its link bandwidth); the off-node share goes over
one 400 Gb/s InfiniBand NIC per GPU (50 GB/s, 5 us; NVIDIA ConnectX-7 datasheet). Without expert
parallelism and with D > 1, vLLM all-gathers the ranks' tokens and reduce-scatters the outputs
over the T x D GPUs (``NaiveAll2AllManager``), priced by the ring formulas.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from simulator.engine.memory_plan import Parallelism, expert_ranges
from simulator.scenario import MoERoutingConfig
from simulator.specs.model import ModelSpec

if TYPE_CHECKING:
    from simulator.cost_models.roofline import RooflineCostModel

GPUS_PER_NODE = 8  # HGX/DGX boards join 8 GPUs over NVSwitch
INFINIBAND_BANDWIDTH = 50e9  # bytes/s per GPU: one 400 Gb/s NDR port (ConnectX-7)
INFINIBAND_LATENCY_S = 5e-6
ROUTING_DRAWS = 20_000


def expected_distinct(inclusion: np.ndarray, num_tokens: float) -> float:
    """Expected number of experts among ``inclusion`` (each token's inclusion probabilities) that ``num_tokens`` tokens touch."""
    if num_tokens <= 0:
        return 0.0
    return float(np.sum(1.0 - np.power(1.0 - inclusion, num_tokens)))


class ExpertRouting:
    """Per-expert inclusion probabilities and their spread over the expert-parallel GPUs.

    Args:
        num_experts: routed experts E.
        top_k: experts per token k (1 <= k <= E).
        config: the scenario's ``model.moe_routing``.
        num_gpus: GPUs the experts are placed on (1 without expert parallelism).

    Attributes:
        inclusion: shape [E], P(expert i is among a token's k); sums to k.
        gpu_experts: per GPU, the indices of its experts.
        remote_gpus_per_token: expected distinct GPUs other than the token's own that its k
            experts live on (the token's own GPU taken uniformly among the ``num_gpus``).
    """

    def __init__(self, num_experts: int, top_k: int, config: MoERoutingConfig, num_gpus: int = 1) -> None:
        assert 1 <= top_k <= num_experts and num_gpus >= 1
        self.num_experts, self.top_k, self.num_gpus = num_experts, top_k, num_gpus
        self.gpu_experts = [np.arange(r.start, r.stop) for r in expert_ranges(num_experts, num_gpus)]
        if config.distribution == "balanced":
            self.inclusion = np.full(num_experts, top_k / num_experts)
            hits = [_balanced_hit_probability(num_experts, top_k, len(e)) for e in self.gpu_experts]
        else:
            rng = np.random.default_rng(config.seed)
            popularity = np.arange(1, num_experts + 1, dtype=float) ** -config.zipf_exponent
            popularity = popularity[rng.permutation(num_experts)] / popularity.sum()
            # Plackett-Luce top-k: the k largest of log p + Gumbel noise.
            keys = np.log(popularity)[None, :] + rng.gumbel(size=(ROUTING_DRAWS, num_experts))
            chosen = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
            picked = np.zeros((ROUTING_DRAWS, num_experts), dtype=bool)
            np.put_along_axis(picked, chosen, True, axis=1)
            self.inclusion = picked.mean(axis=0)
            hits = [float(picked[:, e].any(axis=1).mean()) for e in self.gpu_experts]
        # A token on GPU r (uniform) reaches each other GPU holding one of its experts once.
        self.remote_gpus_per_token = sum(hits) * (num_gpus - 1) / num_gpus if num_gpus > 1 else 0.0
        self._gpu_inclusion = [self.inclusion[e] for e in self.gpu_experts]

    def distinct_experts(self, num_tokens: float, gpu: int | None = None) -> float:
        """Expected distinct experts ``num_tokens`` tokens touch (on one GPU's experts, or all)."""
        inclusion = self.inclusion if gpu is None else self._gpu_inclusion[gpu]
        return expected_distinct(inclusion, num_tokens)

    def pairs(self, num_tokens: float, gpu: int | None = None) -> float:
        """Expected (token, expert) pairs of ``num_tokens`` tokens on one GPU's experts (or all: k per token)."""
        inclusion = self.inclusion if gpu is None else self._gpu_inclusion[gpu]
        return num_tokens * float(inclusion.sum())


def _balanced_hit_probability(num_experts: int, top_k: int, held: int) -> float:
    """P(a token's k experts, a uniform k-subset of E, include one of ``held`` given experts): 1 - C(E - held, k) / C(E, k)."""
    return 1.0 - math.comb(num_experts - held, top_k) / math.comb(num_experts, top_k)


class MoELayer:
    """The time of one MoE block (router, routed and shared experts, their communication) on a replica.

    Args:
        roofline: the replica's roofline operators (GEMM, linear, elementwise and all-reduce prices).
        model: a mixture-of-experts model.
        par: the replica's parallelism.
        routing: ``model.moe_routing``.
    """

    def __init__(self, roofline: RooflineCostModel, model: ModelSpec, par: Parallelism, routing: MoERoutingConfig) -> None:
        assert model.moe is not None
        self.roof, self.model, self.par, self.moe = roofline, model, par, model.moe
        self.routing = ExpertRouting(self.moe.num_experts, self.moe.num_experts_per_token, routing, par.expert_parallel_size)
        self.width = self.moe.expert_intermediate_size // par.expert_tensor_parallel_size  # per GPU
        self.shared_width = self.moe.shared_intermediate_size // par.tp
        self.prices = roofline.resolved.moe_values(roofline.quantization)  # MOE_FIELDS and their source

    # -- parts ---------------------------------------------------------------------------------
    def router_time(self, rank_tokens: int) -> float:
        """The gate GEMM ([m, h] x [h, E], bf16, replicated) and the top-k softmax over fp32 logits (s)."""
        r, E = self.roof, self.moe.num_experts
        return r.gemm_time(rank_tokens, self.model.hidden_size, E) + r.elementwise_time(2 * rank_tokens * E * 4)

    def expert_terms(self, group_tokens: float, gpu: int | None) -> dict[str, float]:
        """The roofline terms of one GPU's routed experts for ``group_tokens`` tokens (FLOPs, bytes, counts, s).

        Keys: ``gate_up_flops``, ``gate_up_bytes``, ``down_flops``, ``down_bytes`` (the two
        grouped GEMMs: the pairs' activations plus the distinct experts' weight slices),
        ``experts`` (distinct experts touched), ``pairs`` and ``elementwise_s`` (SiLU * mul over
        the pairs and, under FP8, the activations' quantization, priced by the roofline).
        """
        r, h, w, b = self.roof, self.model.hidden_size, self.width, self.roof.dtype_bytes
        wb = r.weight_bytes
        pairs = self.routing.pairs(group_tokens, gpu)
        experts = self.routing.distinct_experts(group_tokens, gpu)
        elementwise = r.elementwise_time(3 * pairs * w * b)
        if r.quantization in ("fp8", "w8a8"):  # quantize the pairs' activations before each GEMM
            elementwise += r.elementwise_time(pairs * h * (b + 1)) + r.elementwise_time(pairs * w * (b + 1))
        return {
            "gate_up_flops": 4 * pairs * h * w, "gate_up_bytes": pairs * h * b + experts * h * 2 * w * wb + pairs * 2 * w * b,
            "down_flops": 2 * pairs * w * h, "down_bytes": pairs * w * b + experts * w * h * wb + pairs * h * b,
            "experts": experts, "pairs": pairs, "elementwise_s": elementwise,
        }

    @property
    def expert_peak(self) -> float:
        """FLOP/s of the grouped expert GEMMs: the linear layers' datasheet peak x ``moe_flops_efficiency``."""
        return self.roof.linear_peak / self.roof.resolved.values["gemm_flops_efficiency"] * self.prices["moe_flops_efficiency"]

    @property
    def expert_bandwidth(self) -> float:
        """Bytes/s the grouped expert GEMMs stream: HBM bandwidth x ``moe_bandwidth_efficiency``."""
        return self.roof.gpu.memory_bandwidth * self.prices["moe_bandwidth_efficiency"]

    def experts_fixed_s(self, experts: float) -> float:
        """The fixed part of one GPU's expert kernels touching ``experts`` experts: ``moe_call_s + experts x moe_expert_s`` (s)."""
        return self.prices["moe_call_s"] + experts * self.prices["moe_expert_s"]

    def price_terms(self, terms: dict[str, float]) -> float:
        """One GPU's routed-expert time from its ``expert_terms`` (s): each grouped GEMM the max of FLOPs and bytes, plus the fixed part."""
        peak, bandwidth = self.expert_peak, self.expert_bandwidth
        gate_up = max(terms["gate_up_flops"] / peak, terms["gate_up_bytes"] / bandwidth)
        down = max(terms["down_flops"] / peak, terms["down_bytes"] / bandwidth)
        return gate_up + down + self.experts_fixed_s(terms["experts"]) + terms["elementwise_s"]

    def experts_time(self, group_tokens: int) -> float:
        """Routed experts on the most loaded GPU for ``group_tokens`` tokens reaching the MoE group (s).

        Gate/up and down grouped GEMMs (``expert_terms``) priced at ``expert_peak`` and
        ``expert_bandwidth`` plus ``experts_fixed_s``, SiLU * mul over the routed pairs. The
        prices are the GPU's fit to vLLM's measured ``fused_experts``
        (``RooflineParameters.moe_values``; ``benchmarks/moe_kernel_check.py``), else its GEMM
        efficiencies and two kernel floors. Router, top-k and ``moe_sum`` are priced apart
        (``router_time``, ``combine_time``).
        """
        if group_tokens <= 0:
            return 0.0
        gpus = range(self.par.expert_parallel_size) if self.par.expert_parallel else [None]
        return max(self.price_terms(self.expert_terms(group_tokens, g)) for g in gpus)

    def combine_time(self, held_tokens: int) -> float:
        """``moe_sum``: each held token's k expert outputs added (read k, write 1 hidden vector) (s)."""
        h, b, k = self.model.hidden_size, self.roof.dtype_bytes, self.moe.num_experts_per_token
        return self.roof.elementwise_time((k + 1) * held_tokens * h * b)

    def shared_time(self, rank_tokens: int) -> float:
        """Shared experts: a gated MLP of the shared width, sharded over the attention TP GPUs (s)."""
        if not self.shared_width:
            return 0.0
        r, h, s, b = self.roof, self.model.hidden_size, self.shared_width, self.roof.dtype_bytes
        return r.linear_time(rank_tokens, h, 2 * s) + r.elementwise_time(3 * rank_tokens * s * b) + r.linear_time(rank_tokens, s, h)

    def all_to_all_time(self, rank_tokens: int) -> float:
        """Dispatch plus combine of one rank's tokens over the expert-parallel GPUs (s); 0 without DP attention and EP.

        Each GPU of a rank sends its 1 / T share of the rank's tokens, each to its
        ``remote_gpus_per_token`` other GPUs, and receives as much back.
        """
        par = self.par
        if not (par.expert_parallel and par.dp > 1):
            return 0.0
        nbytes = rank_tokens / par.tp * self.model.hidden_size * self.roof.dtype_bytes * self.routing.remote_gpus_per_token
        return 2 * all_to_all_time(self.roof, nbytes, par.expert_parallel_size)

    def gather_scatter_time(self, group_tokens: int) -> float:
        """Without EP and with D > 1: all-gather the ranks' tokens, reduce-scatter the outputs, ring formulas over T x D GPUs (s)."""
        par = self.par
        if par.expert_parallel or par.dp == 1:
            return 0.0
        g, r = par.moe_group, self.roof
        nbytes = group_tokens * self.model.hidden_size * r.dtype_bytes
        return 2 * ((g - 1) / g * nbytes / r.link_bandwidth + (g - 1) * r.gpu.link_latency_s)

    def parts(self, group_tokens: int, rank_tokens: int) -> dict[str, float]:
        """One MoE block's time by part (s): ``router``, ``experts``, ``shared_experts``, ``all_to_all``, ``all_reduce``.

        ``group_tokens``: the step's tokens over all data-parallel ranks; ``rank_tokens``: those of
        the most loaded rank.
        """
        par = self.par
        held = group_tokens if par.dp == 1 else rank_tokens
        comm = self.all_to_all_time(rank_tokens) + self.gather_scatter_time(group_tokens)
        reduce = self.roof.all_reduce_time(group_tokens * self.model.hidden_size * self.roof.dtype_bytes) if par.dp == 1 else 0.0
        return {
            "router": self.router_time(rank_tokens),
            "experts": self.experts_time(group_tokens) + self.combine_time(held),
            "shared_experts": self.shared_time(rank_tokens),
            "all_to_all": comm,
            "all_reduce": reduce,
        }


def all_to_all_time(roofline: RooflineCostModel, nbytes_per_gpu: float, group: int) -> float:
    """One all-to-all in which each of ``group`` GPUs sends ``nbytes_per_gpu`` bytes spread evenly over the others (s).

    The on-node share (``GPUS_PER_NODE - 1`` of the ``group - 1`` peers) goes at the GPU's link
    bandwidth after the fixed cost of a collective on the node (``collective_latency_s``), the rest
    at one InfiniBand NIC's; both run at once.
    """
    if group <= 1 or nbytes_per_gpu <= 0:
        return 0.0
    on_node = (min(group, GPUS_PER_NODE) - 1) / (group - 1)
    t = nbytes_per_gpu * on_node / roofline.link_bandwidth + roofline.collective_latency_s(min(group, GPUS_PER_NODE))
    if on_node < 1:
        t = max(t, nbytes_per_gpu * (1 - on_node) / INFINIBAND_BANDWIDTH + INFINIBAND_LATENCY_S)
    return t
