"""One suite over every scheduler: the invariants hold on a real trace under KV pressure."""

import json

import pytest

from simulator.scenario import load_scenario
from simulator.schedulers import SCHEDULERS
from simulator.simulation import Simulation
from tests.conftest import check_invariants


def pressured(trace, scheduler: str, seed: int = 0):
    # The first 600 Azure conversation requests, replayed 4x faster into 1,500 KV blocks
    # (24,000 tokens): every policy runs out of KV cache at some point.
    return load_scenario(None, [
        f"workload.trace={trace}", "workload.on_invalid=skip", "workload.max_requests=600", "workload.time_scale=4",
        "scheduler.num_gpu_blocks_override=1500", f"scheduler.name={scheduler}", f"seed={seed}",
    ])


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_invariants_under_kv_pressure(azure_conv, scheduler):
    sim = Simulation(pressured(azure_conv, scheduler))
    result = sim.run()
    check_invariants(sim, result)
    # Preemptions are counted per request and in total; none is preempted forever.
    assert result.summary["num_preemptions"] == int(result.requests["num_preemptions"].sum())


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
    from simulator.simulation import simulate

    vllm = simulate(load_scenario(None, base + ["scheduler.name=vllm"])).summary
    sarathi = simulate(load_scenario(None, base + ["scheduler.name=sarathi"])).summary
    assert sarathi["tbt_s"]["p99"] < 0.5 * vllm["tbt_s"]["p99"]
