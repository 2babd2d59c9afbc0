"""One suite over every scheduler: the invariants hold on real traces under KV pressure, with
preemption by recompute or by swap, and with prefix caching on or off."""

import json

import pytest

from simulator.engine.deployment import NO_SWAP_SCHEDULERS, SWAP_SCHEDULERS
from simulator.errors import ScenarioError
from simulator.scenario import load_scenario
from simulator.schedulers import SCHEDULERS
from simulator.engine.simulation import Simulation
from tests.conftest import check_invariants

# preemption_mode: swap runs where the scheduler swaps and is refused elsewhere (simulator.engine.deployment).
SWAPPING = sorted(SWAP_SCHEDULERS)
NOT_SWAPPING = sorted(NO_SWAP_SCHEDULERS)
# Simulated time allowed after the last arrival: the pressured workloads below drain in minutes,
# so requests still unfinished an hour later mean a livelock (preempted over and over).
DRAIN_S = 3600.0


def pressured(trace, scheduler: str, seed: int = 0, extra: tuple[str, ...] = ()):
    # The first 600 Azure conversation requests, replayed 4x faster into 1,500 KV blocks
    # (24,000 tokens): every policy runs out of KV cache at some point.
    return load_scenario(None, [
        f"workload.trace={trace}", "workload.on_invalid=skip", "workload.max_requests=600", "workload.time_scale=4",
        "scheduler.num_gpu_blocks_override=1500", f"scheduler.name={scheduler}", f"seed={seed}", *extra,
    ])


def pressured_shared_prefixes(trace, scheduler: str, extra: tuple[str, ...] = ()):
    # The first 300 Mooncake conversation requests (prompts over 16,384 tokens skipped), whose
    # hash_ids share prefixes, into 2,500 KV blocks (40,000 tokens): two or three long prompts fill it.
    return load_scenario(None, [
        f"workload.trace={trace}", "workload.on_invalid=skip", "workload.max_requests=300", "model.max_model_len=16384",
        "scheduler.num_gpu_blocks_override=2500", f"scheduler.name={scheduler}", *extra,
    ])


def run_to_completion(scenario):
    """Build and run ``scenario``; fail (rather than hang) if requests never finish."""
    sim = Simulation(scenario)
    requests = sim.workload.requests
    sim.env.run(until=requests[-1].arrival_time + DRAIN_S)
    assert sim.num_finished == len(requests), f"{len(requests) - sim.num_finished} requests unfinished {DRAIN_S:.0f} s after the last arrival"
    return sim, sim.run()


def check_preemptions_counted(result) -> None:
    # Preemptions and swaps are counted per request and in total; swaps are preemptions.
    df = result.requests
    assert result.summary["num_preemptions"] == int(df["num_preemptions"].sum())
    assert result.summary["num_swaps"] == int(df["num_swaps"].sum())
    assert (df["num_swaps"] <= df["num_preemptions"]).all()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_invariants_under_kv_pressure(azure_conv, scheduler):
    sim, result = run_to_completion(pressured(azure_conv, scheduler))
    check_invariants(sim, result)
    check_preemptions_counted(result)
    assert result.summary["num_swaps"] == 0


@pytest.mark.parametrize("scheduler", SWAPPING)
def test_invariants_with_preemption_by_swap(azure_conv, scheduler):
    sim, result = run_to_completion(pressured(azure_conv, scheduler, extra=("scheduler.preemption_mode=swap",)))
    check_invariants(sim, result)
    check_preemptions_counted(result)
    # 4 GiB of swap space holds 2,048 Llama-3-8B blocks, more than the 1,500 on the GPU: where
    # swapped requests go back in before new ones are admitted, every preemption is a swap.
    # FastServe admits new requests at higher levels ahead of swapped ones, so requests pile up
    # in CPU memory and, once it is full, the rest are preempted by recompute.
    if scheduler == "fastserve":
        assert 0 < result.summary["num_swaps"] < result.summary["num_preemptions"]
    else:
        assert result.summary["num_swaps"] == result.summary["num_preemptions"]


@pytest.mark.parametrize("scheduler", NOT_SWAPPING)
def test_swap_refused_where_the_engine_cannot_swap(azure_conv, scheduler):
    with pytest.raises(ScenarioError, match="preemption_mode"):
        Simulation(pressured(azure_conv, scheduler, extra=("scheduler.preemption_mode=swap",)))


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_invariants_with_shared_prefixes(mooncake_conv, scheduler, enabled):
    sim, result = run_to_completion(pressured_shared_prefixes(mooncake_conv, scheduler, (f"scheduler.enable_prefix_caching={enabled}",)))
    check_invariants(sim, result)
    check_preemptions_counted(result)
    # An unbounded cache replayed in arrival order bounds what any cache can serve.
    seen: set[int] = set()
    num_replayed = 0
    for r in sim.workload.requests:
        n = 0
        while n < len(r.block_hashes) and r.block_hashes[n] in seen:
            n += 1
        num_replayed += min(n * 512, r.num_prompt_tokens)
        seen.update(r.block_hashes)
    rate = result.summary["prefix_cache_hit_rate"]
    assert (rate > 0) == enabled
    assert rate <= num_replayed / result.requests["num_prompt_tokens"].sum()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_same_seed_same_summary(azure_conv, scheduler):
    a = Simulation(pressured(azure_conv, scheduler)).run().summary
    b = Simulation(pressured(azure_conv, scheduler)).run().summary
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_orca_batches_far_smaller_than_vllm_at_same_load(azure_conv):
    # Max-length reservation caps Orca's batch (vLLM paper, Sec. 6.2).
    def mean_batch(name):
        scenario = load_scenario(None, [f"workload.trace={azure_conv}", "workload.on_invalid=skip", "workload.max_requests=1500", "workload.time_scale=6",
                                        "scheduler.num_gpu_blocks_override=6000", f"scheduler.name={name}"])
        return Simulation(scenario).run().summary["mean_batch_size"]

    assert mean_batch("orca") < 0.5 * mean_batch("vllm")


def test_sarathi_lowers_tail_tbt_on_prefill_heavy_load():
    # Long prompts, short outputs: vLLM's prefill-only iterations stall every running decode;
    # Sarathi-Serve's chunks keep decode gaps near one budget-sized iteration.
    base = ["workload.num_requests=400", "workload.arrival.rate=6",
            "workload.prompt_tokens={distribution: uniform, min: 3000, max: 6000}",
            "workload.output_tokens={distribution: uniform, min: 50, max: 150}"]
    from simulator.engine.simulation import simulate

    vllm = simulate(load_scenario(None, base + ["scheduler.name=vllm"])).summary
    sarathi = simulate(load_scenario(None, base + ["scheduler.name=sarathi"])).summary
    assert sarathi["tbt_s"]["p99"] < 0.5 * vllm["tbt_s"]["p99"]
