"""DistServe: prefill and decode pools, the KV transfer between them, and when disaggregation pays."""

import json

import numpy as np
import pytest
import simpy

from simulator.errors import ScenarioError
from simulator.engine.kv_transfer import KVTransferNetwork
from simulator.scenario import load_scenario
from simulator.engine.simulation import Simulation, simulate
from tests.conftest import REPO, check_invariants

# Llama-3-8B: 2 (K and V) x 32 layers x 8 KV heads x 128 head_dim x 2 bytes (bf16) per token.
KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2
FIXED = ["workload.prompt_tokens={distribution: fixed, value: 2000}", "workload.output_tokens={distribution: fixed, value: 20}"]


def distserve(*overrides: str) -> Simulation:
    return Simulation(load_scenario(None, ["scheduler.name=distserve", *overrides]))


def light(*overrides: str) -> list[str]:
    """A light load: requests 0.5 s apart, each done long before the next arrives."""
    return ["workload.num_requests=20", "workload.arrival.rate=2", *FIXED, *overrides]


def test_pools_keep_the_invariants_with_several_replicas_each():
    sim = distserve("workload.num_requests=400", "workload.arrival.rate=25", "cluster.prefill={num_replicas: 2}", "cluster.decode={num_replicas: 3}",
                    "cluster.router=least_outstanding")
    result = sim.run()
    check_invariants(sim, result)
    assert sim.replica_roles == {0: "prefill", 1: "prefill", 2: "decode", 3: "decode", 4: "decode"}
    assert result.replica_roles == sim.replica_roles
    it = result.iterations
    assert (it["role"].astype(str) == it["replica_id"].map(sim.replica_roles)).all()
    # Prefill replicas run prompts only, decode replicas decodes only (nothing was preempted).
    assert result.summary["num_preemptions"] == 0
    assert (it.loc[it["role"] == "prefill", "num_decode_tokens"] == 0).all()
    assert (it.loc[it["role"] == "decode", "num_prefill_tokens"] == 0).all()
    df = result.requests
    assert set(df["prefill_replica_id"]) == {0, 1} and set(df["replica_id"]) == {2, 3, 4}
    # The first token is delivered at the end of prefill (DistServe's context stage streams it);
    # the KV moves afterwards.
    assert np.allclose(df["first_token_time"], df["prefill_end_time"])
    assert (df["kv_transfer_end_time"] > df["prefill_end_time"]).all()


def test_same_seed_same_run():
    runs = [distserve("workload.num_requests=300", "workload.arrival.rate=20", "cluster.decode={num_replicas: 2}", f"seed={seed}").run() for seed in (0, 0, 1)]
    for r in runs:
        r.summary.pop("wall_time_s")
    assert json.dumps(runs[0].summary, sort_keys=True) == json.dumps(runs[1].summary, sort_keys=True)
    assert runs[0].requests.equals(runs[1].requests)
    assert json.dumps(runs[0].summary, sort_keys=True) != json.dumps(runs[2].summary, sort_keys=True)


def test_one_token_requests_finish_at_the_prefill_replica():
    sim = distserve("workload.num_requests=50", "workload.arrival.rate=5", "workload.output_tokens={distribution: fixed, value: 1}")
    result = sim.run()
    df = result.requests
    assert sim.num_finished == 50 and df["finish_time"].notna().all()
    for replica in sim.replicas:
        assert replica.scheduler.block_manager.num_free_blocks == replica.scheduler.block_manager.num_blocks
    assert (df["replica_id"] == 0).all() and df["kv_transfer_s"].isna().all()
    assert (df["ttft_s"] == df["e2e_s"]).all()
    assert not sim.replicas[1].records  # the decode replica never ran


def test_transfer_time_is_latency_plus_bytes_over_bandwidth():
    df = distserve(*light("cluster.kv_transfer.link=infiniband")).run().requests
    # One 400 Gb/s port per GPU: 50 GB/s, 5 us; requests arrive apart, so no transfer shares the link.
    assert np.allclose(df["kv_transfer_s"], 5e-6 + 2000 * KV_BYTES_PER_TOKEN / 50e9)
    assert (df["kv_transfer_wait_s"] == 0).all()
    nvlink = distserve(*light()).run().requests
    assert np.allclose(nvlink["kv_transfer_s"], 4.3e-6 + 2000 * KV_BYTES_PER_TOKEN / 450e9)  # H100 NVLink, per direction


def test_tensor_parallel_shards_move_in_parallel():
    def streaming_s(tp: int) -> float:
        pool = f"{{tensor_parallel_size: {tp}}}"
        df = distserve(*light("cluster.kv_transfer.latency_s=0", f"cluster.prefill={pool}", f"cluster.decode={pool}")).run().requests
        return float(df["kv_transfer_s"].mean())

    assert streaming_s(2) == pytest.approx(streaming_s(1) / 2)
    # A TP2 prefill replica sending to a TP1 decode replica is limited by the one receiving GPU.
    df = distserve(*light("cluster.kv_transfer.latency_s=0", "cluster.prefill={tensor_parallel_size: 2}")).run().requests
    assert float(df["kv_transfer_s"].mean()) == pytest.approx(streaming_s(1))


def test_kv_transfer_time_shows_in_tpot_not_ttft():
    slow = distserve(*light("cluster.kv_transfer.link=infiniband")).run().requests
    fast = distserve(*light("cluster.kv_transfer.bandwidth_gb_per_s=1000000", "cluster.kv_transfer.latency_s=0")).run().requests
    transfer_s = 5e-6 + 2000 * KV_BYTES_PER_TOKEN / 50e9  # 5.2 ms
    # The first token leaves with the prefill; the transfer delays the second, over 19 gaps.
    assert np.allclose(slow["ttft_s"], fast["ttft_s"])
    assert np.allclose((slow["tpot_s"] - fast["tpot_s"]) * 19, transfer_s, rtol=0.01)


def test_concurrent_transfers_share_bandwidth_max_min_fairly():
    env = simpy.Environment()
    # Ports s1, s2 (senders) and d1, d2 (receivers), bytes/s.
    network = KVTransferNetwork(env, {"s1": 2.0, "s2": 2.0, "d1": 0.5, "d2": 2.0}, latency_s=0.0)
    done: dict[str, float] = {}

    def send(name, src, dst, nbytes):
        network.send(src, dst, nbytes, lambda: done.setdefault(name, env.now))

    # d1 caps a at 0.5; s1 has 1.5 left for b, but d2 splits 2.0 evenly between b and c: 1 each.
    send("a", "s1", "d1", 0.5)
    send("b", "s1", "d2", 1.0)
    send("c", "s2", "d2", 1.0)
    env.run()
    assert done == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})


def test_a_transfer_speeds_up_when_another_ends():
    env = simpy.Environment()
    network = KVTransferNetwork(env, {"p": 1.0, "d": 1.0}, latency_s=0.25)
    done: dict[str, float] = {}
    network.send("p", "d", 1.0, lambda: done.setdefault("short", env.now))
    network.send("p", "d", 3.0, lambda: done.setdefault("long", env.now))
    env.run()
    # Both stream from 0.25 s at 0.5 B/s; the short one ends at 2.25 s, the long one has 2 B
    # left and streams alone at 1 B/s: 4.25 s.
    assert done == pytest.approx({"short": 2.25, "long": 4.25})


def test_decode_memory_backs_up_into_the_prefill_replica():
    # 300 blocks (4,800 tokens) per replica, 1,000-token prompts with 200-token outputs arriving
    # together: the decode replica holds about three requests at a time; the rest wait for its
    # memory while their KV stays on the prefill replica.
    sim = distserve("workload.num_requests=30", "workload.arrival.rate=1000", "scheduler.num_gpu_blocks_override=300", "model.max_model_len=4096",
                    "workload.prompt_tokens={distribution: fixed, value: 1000}", "workload.output_tokens={distribution: fixed, value: 200}")
    result = sim.run()
    check_invariants(sim, result)
    df = result.requests
    assert (df["kv_transfer_wait_s"] > 0.5).sum() >= 20
    prefill = result.iterations[result.iterations["role"] == "prefill"]
    blocks_of_batch = 63 * prefill["batch_size"]  # ceil(1000 / 16) per prompt
    assert (prefill["num_kv_blocks_used"] > blocks_of_batch).any()  # blocks held for transfers


def test_pool_parallelism_errors_name_the_pool_field():
    with pytest.raises(ScenarioError) as e:
        distserve("cluster.decode={tensor_parallel_size: 3}")
    assert e.value.field == "cluster.decode.tensor_parallel_size"
    with pytest.raises(ScenarioError) as e:
        distserve("cluster.prefill={pipeline_parallel_size: 64}")
    assert e.value.field == "cluster.prefill.pipeline_parallel_size"
    with pytest.raises(ScenarioError) as e:  # an unset pool takes the cluster's parallelism
        distserve("cluster.tensor_parallel_size=3")
    assert e.value.field == "cluster.tensor_parallel_size"


def test_each_pool_has_its_own_kv_cache_size():
    sim = distserve("cluster.prefill={tensor_parallel_size: 2}")
    prefill, decode = sim.deployments["prefill"], sim.deployments["decode"]
    assert prefill.tensor_parallel_size == 2 and decode.tensor_parallel_size == 1
    # Half the weights per GPU leave more room for KV; each block holds half the heads.
    assert prefill.num_kv_blocks > 2 * decode.num_kv_blocks
    assert sim.replicas[0].scheduler.block_manager.num_blocks == prefill.num_kv_blocks
    assert sim.replicas[1].scheduler.block_manager.num_blocks == decode.num_kv_blocks


def test_distserve_meets_a_tight_tpot_slo_where_colocated_vllm_cannot():
    # Chatbot-like load (Azure conversation shape) at 19 req/s on two H100s, TTFT <= 250 ms and
    # TPOT <= 15 ms. Colocated vLLM stalls every running decode for each arriving prompt (its
    # prefill-only iterations), so TPOT misses; one prefill plus one decode replica keeps decode
    # iterations free of prefills (DistServe, Sec. 2.2 and 6.2).
    base = ["workload.num_requests=400", "workload.arrival.rate=19", "slo.ttft_s=0.25", "slo.tpot_s=0.015",
            "workload.prompt_tokens={distribution: lognormal, mean: 1155, median: 1020, max: 7168}",
            "workload.output_tokens={distribution: lognormal, mean: 211, median: 129, max: 1000}"]
    disaggregated = simulate(load_scenario(None, base + ["scheduler.name=distserve"])).summary
    colocated = simulate(load_scenario(None, base + ["scheduler.name=vllm", "cluster.num_replicas=2"])).summary
    assert disaggregated["slo_attainment"] >= 0.9  # benchmarks/distserve_vs_vllm.py: capacity 21 vs 15 req/s
    assert colocated["slo_attainment"] <= 0.75
    assert disaggregated["tpot_s"]["p90"] < colocated["tpot_s"]["p90"]


def test_command_line_shows_the_pools(tmp_path):
    from tests.test_cli import servesim

    pools = ["--set", "scheduler.name=distserve", "--set", "cluster.prefill={num_replicas: 2, tensor_parallel_size: 2}", "--set", "cluster.kv_transfer.link=infiniband"]
    check = servesim("check", "scenarios/quickstart.yaml", *pools, cwd=REPO)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert "prefill pool: llama-3-8b on h100-sxm, TP 2 x PP 1" in lines[0]
    assert "decode pool: llama-3-8b on h100-sxm, TP 1 x PP 1" in lines[1]
    assert "KV transfer over infiniband: 50 GB/s per GPU, 5 us" in lines[2]
    out = tmp_path / "out"
    run = servesim("run", "--no-report", "--set", "workload.num_requests=50", *pools, "--out", str(out), cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "2 prefill replica(s) of TP2 PP1 + 1 decode replica(s) of TP1 PP1" in " ".join(run.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_replicas"] == {"prefill": 2, "decode": 1} and summary["kv_transfer_s"]["p50"] > 0


def test_run_report_labels_each_replica_with_its_pool():
    from simulator.reports.run_report import iteration_figure

    result = distserve("workload.num_requests=40", "workload.arrival.rate=10", "cluster.decode={num_replicas: 2}").run()
    names = {trace.name for trace in iteration_figure(result.iterations).data}
    assert names == {"replica 0 (prefill)", "replica 1 (decode)", "replica 2 (decode)"}
