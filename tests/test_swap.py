"""Preemption by swap: KV blocks to CPU memory and back, priced over PCIe."""

import simpy

from simulator.engine.deployment import resolve_deployment
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.replica import ITERATION_COLUMNS, Replica
from simulator.engine.request import RequestStatus
from simulator.scenario import SchedulerConfig, load_scenario
from simulator.schedulers.sarathi import SarathiScheduler
from simulator.schedulers.vllm import VLLMScheduler
from tests.conftest import ids, make_request, run_step


def vllm(num_blocks=4, cpu_blocks=10, block_transfer_s=0.5):
    config = SchedulerConfig(block_size=4, watermark=0.0, preemption_mode="swap")
    return VLLMScheduler(config, BlockManager(num_blocks, 4, 0.0), 16, 64, SwapSpace(cpu_blocks, block_transfer_s))


def test_swap_space_of_llama_3_8b_on_h100():
    # One block on one GPU: K and V x 16 tokens x 32 layers x 8 KV heads x 128 dims x 2 bytes
    # = 2 MiB (Llama-3-8B config.json); 4 GiB of swap space holds 2,048 of them; PCIe Gen5 x16
    # moves 64 GB/s per direction (H100 SXM datasheet).
    deployment = resolve_deployment(load_scenario(None, []))
    swap = SwapSpace.for_deployment(deployment, 4.0)
    assert swap.num_blocks == 2048
    assert abs(swap.block_transfer_s - 2 * 1024**2 / 64e9) < 1e-12


def test_newest_request_swaps_out_keeps_its_kv_and_swaps_in_before_new_admissions():
    # 4 blocks of 4 tokens; two 8-token prompts fill them. The older one's first decode needs a
    # 3rd block: the newer one is swapped out with its 2 blocks.
    s = vllm()
    old, new = make_request(0, prompt=8, output=3), make_request(1, prompt=8, output=3)
    s.add_request(old)
    s.add_request(new)
    run_step(s, 0.0)
    b2, _ = run_step(s, 1.0)
    assert ids(b2.requests) == [0] and b2.num_preemptions == 1 and b2.num_swapped_blocks == 2
    assert new.status == RequestStatus.SWAPPED and new.num_swaps == new.num_preemptions == 1
    assert new.num_computed_tokens == 8 and s.num_free_cpu_blocks == 8 and s.swapped == [new]
    # A small request arrives; one block is free, but swapped requests come back first.
    small = make_request(2, prompt=2, output=1)
    s.add_request(small)
    b3, finished = run_step(s, 2.0)  # the new one needs 3 blocks to decode, 1 free: it waits
    assert ids(b3.requests) == [0] and b3.num_swapped_blocks == 0 and finished == [old]
    b4, _ = run_step(s, 3.0)  # swapped in and decoded in the same step, nothing recomputed
    assert ids(b4.requests) == [1] and b4.num_swapped_blocks == 2 and b4.num_prefill_tokens == 0
    assert s.num_free_cpu_blocks == 10 and not s.swapped and new.num_generated_tokens == 2
    b5, _ = run_step(s, 4.0)  # only now the waiting request is admitted
    assert ids(b5.requests) == [2]


def test_full_swap_space_falls_back_to_recompute():
    s = vllm(cpu_blocks=1)  # the victim's 2 blocks do not fit
    old, new = make_request(0, prompt=8, output=3), make_request(1, prompt=8, output=3)
    s.add_request(old)
    s.add_request(new)
    run_step(s, 0.0)
    b2, _ = run_step(s, 1.0)
    assert b2.num_preemptions == 1 and b2.num_swapped_blocks == 0
    assert new.status == RequestStatus.PREEMPTED and new.num_computed_tokens == 0 and new.num_swaps == 0
    assert list(s.waiting) == [new] and not s.swapped and s.num_free_cpu_blocks == 1


class ConstantCost:
    def step_time(self, batch):
        return 1.0


def test_replica_adds_the_pcie_time_of_swapped_blocks_to_the_step():
    env = simpy.Environment()
    s = vllm(block_transfer_s=0.25)
    replica = Replica(env, 0, s, ConstantCost(), lambda request: None)
    for i in range(2):
        replica.add_request(make_request(i, prompt=8, output=3, arrival=0.0))
    env.run(until=100)
    start, end = ITERATION_COLUMNS.index("start_time"), ITERATION_COLUMNS.index("end_time")
    durations = [rec[end] - rec[start] for rec in replica.records]
    # Prefill, then the step that swaps 2 blocks out, ..., the step that swaps them back in.
    assert durations[:2] == [1.0, 1.0 + 2 * 0.25]
    assert sorted(durations) == [1.0] * (len(durations) - 2) + [1.5, 1.5]


def test_sarathi_swaps_out_a_request_mid_prefill_and_resumes_its_chunks():
    config = SchedulerConfig(name="sarathi", block_size=4, watermark=0.0, chunk_size=8, preemption_mode="swap")
    s = SarathiScheduler(config, BlockManager(6, 4, 0.0), 2048, 64, SwapSpace(10, 0.0))
    short, long = make_request(0, prompt=4, output=10), make_request(1, prompt=20, output=2)
    s.add_request(short)
    s.add_request(long)
    b1, _ = run_step(s, 0.0)  # 1 + 5 blocks: the pool is full; chunks of 4 and 4
    assert b1.num_new_tokens == [4, 4]
    b2, _ = run_step(s, 1.0)  # the short one's decode needs a 2nd block: the long one swaps out
    assert ids(b2.requests) == [0] and b2.num_swapped_blocks == 5 and long.num_computed_tokens == 4
    t = 2.0
    while long.status == RequestStatus.SWAPPED:
        batch, _ = run_step(s, t)
        t += 1.0
    # Back with its 5 blocks, it continues its prefill after the 4 tokens it had computed.
    assert batch.requests[-1] is long and batch.num_swapped_blocks == 5 and batch.prefill_prefix_tokens == [4]
    assert short.is_finished
