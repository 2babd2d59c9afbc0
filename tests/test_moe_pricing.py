"""Mixture-of-experts step pricing: routing, expert weights read, all-to-all, latent attention, DP and EP."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from simulator.engine.batch import Batch
from simulator.cost_models import MoERooflineCostModel, build_cost_model
from simulator.cost_models.moe import ExpertRouting, all_to_all_time, expert_ranges
from simulator.engine.deployment import resolve_deployment
from simulator.engine.request import Request
from simulator.scenario import MoERoutingConfig, RooflineConfig, load_scenario
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec
from tests.conftest import REPO

DEEPSEEK_DP8 = ["model.name=deepseek-v3", "model.quantization=fp8", "hardware.gpu=h200", "scheduler.name=vllm_v1", "model.max_model_len=32768",
                "cluster.tensor_parallel_size=1", "cluster.data_parallel_size=8", "cluster.enable_expert_parallel=true"]


def decode_batch(contexts: list[int]) -> Batch:
    batch = Batch()
    for i, context in enumerate(contexts):
        request = Request(i, 0.0, context, 100)
        request.num_computed_tokens = context
        batch.add(request, 1)
    return batch


def prefill_batch(lengths: list[int]) -> Batch:
    batch = Batch()
    for i, n in enumerate(lengths):
        batch.add(Request(i, 0.0, n, 10), n)
    return batch


def monte_carlo_distinct(routing_draws: np.ndarray, num_tokens: int, rng: np.random.Generator, trials: int = 400) -> float:
    """Mean distinct experts over ``trials`` batches of ``num_tokens`` tokens, each token a row of ``routing_draws``."""
    counts = []
    for _ in range(trials):
        rows = routing_draws[rng.integers(0, len(routing_draws), num_tokens)]
        counts.append(len(np.unique(rows)))
    return float(np.mean(counts))


@pytest.mark.parametrize("num_tokens", [1, 4, 16, 64])
def test_expected_distinct_experts_match_a_seeded_monte_carlo_of_top_k_routing(num_tokens):
    rng = np.random.default_rng(7)
    experts, k = 64, 6
    # Balanced: each token a uniform k-subset of the experts.
    draws = np.array([rng.choice(experts, k, replace=False) for _ in range(4_000)])
    routing = ExpertRouting(experts, k, MoERoutingConfig())
    assert routing.distinct_experts(num_tokens) == pytest.approx(monte_carlo_distinct(draws, num_tokens, rng), rel=0.02)
    # Zipf: draws without replacement in proportion to popularity, made here with numpy's own sampler.
    cfg = MoERoutingConfig(distribution="zipf", zipf_exponent=1.2, seed=3)
    skewed = ExpertRouting(experts, k, cfg)
    popularity = np.arange(1, experts + 1, dtype=float) ** -1.2
    popularity = popularity[np.random.default_rng(3).permutation(experts)]
    draws = np.array([rng.choice(experts, k, replace=False, p=popularity / popularity.sum()) for _ in range(4_000)])
    assert skewed.distinct_experts(num_tokens) == pytest.approx(monte_carlo_distinct(draws, num_tokens, rng), rel=0.03)
    assert skewed.distinct_experts(num_tokens) <= routing.distinct_experts(num_tokens) + 1e-9  # skew concentrates tokens


def test_inclusion_probabilities_sum_to_top_k_and_experts_are_placed_contiguously():
    for cfg in (MoERoutingConfig(), MoERoutingConfig(distribution="zipf", seed=1)):
        routing = ExpertRouting(256, 8, cfg, num_gpus=8)
        assert routing.inclusion.sum() == pytest.approx(8, rel=1e-9)
        assert sum(routing.pairs(10, g) for g in range(8)) == pytest.approx(80, rel=1e-9)
    assert [len(r) for r in expert_ranges(10, 4)] == [3, 3, 2, 2] and expert_ranges(10, 4)[1] == range(3, 6)


def test_a_batch_of_one_decode_reads_the_active_experts_weights_only():
    mixtral = bundled_model_spec("mixtral-8x7b")
    gpu = GPUS["h100-sxm"]
    cost = MoERooflineCostModel(mixtral, gpu, 2, 1, RooflineConfig())
    h, w = mixtral.hidden_size, mixtral.moe.expert_intermediate_size // 2
    # Two experts' gate/up (h x 2w) and down (w x h) slices in bf16, plus the token's tiny activations.
    weights = 2 * 3 * h * w * 2
    layer = cost.moe_layer
    expected = weights / layer.expert_bandwidth
    bandwidth_part = layer.experts_time(1) - layer.experts_fixed_s(2) - cost.elementwise_time(3 * 2 * w * 2)
    assert bandwidth_part == pytest.approx(expected, rel=0.01)
    # A long prefill touches all eight experts: eight experts' weights, not two.
    assert cost.moe_layer.routing.distinct_experts(4096) == pytest.approx(8, rel=1e-6)
    # The whole decode step reads about the active parameters (12.9 B, Mixtral's card) over 2 GPUs: within a factor 1.5.
    step = cost.step_time(decode_batch([100])) - cost.host_time(decode_batch([100]))
    active_read = 12.9e9 * 2 / 2 / gpu.memory_bandwidth
    assert active_read < step < 1.5 * active_read / 0.75  # calibrated GEMM bandwidth efficiency ~0.8


def test_all_to_all_bytes_by_hand_for_deepseek_on_eight_gpus():
    s = load_scenario(None, DEEPSEEK_DP8)
    d = resolve_deployment(s)
    cost = build_cost_model(s, d)
    routing = cost.moe_layer.routing
    # A token's 8 experts, a uniform 8-subset of 256, land on GPU g unless all avoid its 32: 1 - C(224, 8) / C(256, 8).
    hit = 1 - math.comb(224, 8) / math.comb(256, 8)
    assert routing.remote_gpus_per_token == pytest.approx(8 * hit * 7 / 8, rel=1e-12)
    # 64 tokens per rank, bf16 hidden 7168: dispatch and combine each send tokens x h x 2 x remote GPUs bytes per GPU.
    nbytes = 64 * 7_168 * 2 * routing.remote_gpus_per_token
    assert cost.moe_layer.all_to_all_time(64) == pytest.approx(2 * (nbytes / cost.link_bandwidth + cost.collective_latency_s(8)), rel=1e-12)
    # Sixteen GPUs: 7 of 15 peers on the node, the rest over InfiniBand (50 GB/s), the slower of the two.
    t = all_to_all_time(cost, 1e6, 16)
    assert t == pytest.approx(max(1e6 * 7 / 15 / cost.link_bandwidth + cost.collective_latency_s(8), 1e6 * 8 / 15 / 50e9 + 5e-6), rel=1e-12)


def test_latent_attention_decode_reads_the_compressed_cache():
    deepseek = bundled_model_spec("deepseek-v3")
    cost = MoERooflineCostModel(deepseek, GPUS["h200"], 8, 1, RooflineConfig(attention_flops_efficiency=1.0, attention_bandwidth_efficiency=1.0))
    mla = cost.latent
    grown = mla.decode_time(1, 100_000) - mla.decode_time(1, 0)
    # 100,000 extra cached tokens: 576 bf16 elements each read once; 16 heads x 2 x (576 + 512) FLOPs each.
    reads = 100_000 * 576 * 2 / GPUS["h200"].memory_bandwidth
    flops = 100_000 * 16 * 2 * (576 + 512) / GPUS["h200"].bf16_flops
    assert grown == pytest.approx(max(reads, flops), rel=1e-6)


def test_step_breakdown_adds_up_to_the_step_time_and_dp_splits_the_batch():
    s = load_scenario(None, DEEPSEEK_DP8)
    d = resolve_deployment(s)
    cost = build_cost_model(s, d)
    for batch in (decode_batch([1_000] * 64), prefill_batch([2_000, 300, 40]), decode_batch([10])):
        assert sum(cost.step_breakdown(batch).values()) == pytest.approx(cost.step_time(batch), rel=1e-12)
    # Eight ranks: 64 decodes cost each rank's attention of 8 requests, the same as 8 decodes on a one-rank replica.
    single = MoERooflineCostModel(d.model, d.gpu, 1, 1, RooflineConfig(), 2, "fp8")
    assert cost.decode_attention_time(decode_batch([1_000] * 64)) == pytest.approx(single.decode_attention_time(decode_batch([1_000] * 8)), rel=1e-12)
    # Prefill chunks are spread: three equal prompts on eight ranks cost one prompt's attention.
    assert cost.prefill_attention_time(prefill_batch([1_000] * 3)) == pytest.approx(cost.prefill_attention_time(prefill_batch([1_000])), rel=1e-12)


def test_data_parallel_ranks_pool_their_kv_blocks_and_scheduler_limits():
    one = resolve_deployment(load_scenario(None, DEEPSEEK_DP8[:-3] + ["cluster.tensor_parallel_size=8"]))
    dp = resolve_deployment(load_scenario(None, DEEPSEEK_DP8))
    assert dp.num_gpus == 8 and dp.num_kv_blocks % 8 == 0
    # TP 8 replicates the latent on every GPU; DP 8 caches each request once: more blocks in all.
    assert dp.num_kv_blocks > one.num_kv_blocks
    config = dp.scheduler_config(load_scenario(None, DEEPSEEK_DP8).scheduler)
    assert (config.max_num_seqs, config.max_num_batched_tokens) == (8 * 256, 8 * 8_192)


@pytest.mark.parametrize("sets, field", [
    (["cluster.data_parallel_size=2"], "cluster.data_parallel_size"),
    (["cluster.enable_expert_parallel=true"], "cluster.enable_expert_parallel"),
    (["model.name=mixtral-8x7b", "cluster.tensor_parallel_size=2", "cluster.data_parallel_size=3"], "cluster.data_parallel_size"),
])
def test_moe_parallelism_mistakes_are_one_line(tmp_path, sets, field):
    args = [sys.executable, "-m", "simulator.cli", "check", str(REPO / "scenarios" / "quickstart.yaml")]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_an_expert_parallel_run_is_deterministic_and_finishes_every_request(tmp_path):
    from simulator.engine.simulation import Simulation

    sets = DEEPSEEK_DP8 + ["workload.num_requests=60", "workload.arrival.rate=4"]
    first = Simulation(load_scenario(REPO / "scenarios" / "quickstart.yaml", sets)).run()
    second = Simulation(load_scenario(REPO / "scenarios" / "quickstart.yaml", sets)).run()
    strip = lambda summary: {k: v for k, v in summary.items() if k not in ("wall_time_s", "run")}  # noqa: E731
    assert first.summary["num_completed"] == 60 and strip(first.summary) == strip(second.summary)
    assert first.requests["ttft_s"].equals(second.requests["ttft_s"])
