"""Prefix caching: keys from trace block hashes, shared and evictable blocks, exact accounting."""

import numpy as np

from simulator.cost_models import RooflineCostModel
from simulator.engine.kv_cache import BlockManager
from simulator.engine.prefix_cache import PrefixCachingBlockManager, prompt_block_keys
from simulator.engine.request import Request, RequestStatus
from simulator.scenario import RooflineConfig, SchedulerConfig, load_scenario
from simulator.schedulers.vllm import VLLMScheduler
from simulator.schedulers.vllm_v1 import VLLMV1Scheduler
from simulator.engine.simulation import Simulation
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec


def hashed(request_id, hashes, prompt, output=2):
    return Request(request_id, float(request_id), prompt, output, block_hashes=tuple(hashes))


def v1(num_blocks=1000, block_size=16, budget=4096, **config):
    cfg = SchedulerConfig(name="vllm_v1", block_size=block_size, max_num_batched_tokens=budget, **config)
    return VLLMV1Scheduler(cfg, BlockManager(num_blocks, block_size, 0.0), budget, max_model_len=8192)


def test_keys_map_each_512_token_trace_block_onto_kv_blocks():
    keys = prompt_block_keys((7, 9), num_prompt_tokens=600, block_size=16)
    assert len(keys) == 37  # 600 // 16 full blocks; the 38th is partial
    assert keys[0] == 7 * 512 + 15 and keys[31] == 7 * 512 + 511  # 32 KV blocks per trace id
    assert keys[32] == 9 * 512 + 15 and keys[36] == 9 * 512 + 79
    # A block size that does not divide 512: the key is the trace block of the block's last token.
    odd = prompt_block_keys((7, 9), num_prompt_tokens=600, block_size=48)
    assert len(odd) == 12 and odd[0] == 7 * 512 + 47 and odd[10] == 9 * 512 + 15
    assert prompt_block_keys((), 600, 16) == []


def test_second_request_reuses_the_shared_prefix_and_prefills_the_rest():
    s = v1()
    first, second = hashed(0, (1, 2), 1024), hashed(1, (1, 3), 1024)
    s.add_request(first)
    s.schedule(0.0)  # published when scheduled
    s.add_request(second)
    assert s.num_cached_prefix_tokens(second) == 512  # one trace block in common
    batch = s.schedule(1.0)
    assert batch.requests[-1] is second and batch.num_new_tokens[-1] == 512 and batch.prefill_prefix_tokens[-1] == 512
    assert second.num_cached_tokens == 512 and second.num_computed_tokens == 512
    # 64 blocks for the first, 32 new for the second: the 32 shared ones are held twice, stored once.
    assert s.block_manager.num_used_blocks == 96
    s.block_manager.check()


def test_the_last_prompt_token_is_always_computed():
    s = v1()
    s.add_request(hashed(0, (1, 2), 1024))
    s.schedule(0.0)
    twin = hashed(1, (1, 2), 1024)
    s.add_request(twin)
    batch = s.schedule(1.0)
    # All 64 blocks are cached, but at most (1024 - 1) // 16 = 63 are reused: one block recomputed.
    assert twin.num_cached_tokens == 1008 and batch.num_new_tokens[-1] == 16


def test_prefix_caching_off_shares_nothing():
    s = v1(enable_prefix_caching=False)
    s.add_request(hashed(0, (1, 2), 1024))
    s.schedule(0.0)
    twin = hashed(1, (1, 2), 1024)
    s.add_request(twin)
    assert s.num_cached_prefix_tokens(twin) == 0
    s.schedule(1.0)
    assert twin.num_cached_tokens == 0 and s.block_manager.num_used_blocks == 128


def test_vllm_v0_reuses_cached_blocks_when_enabled():
    cfg = SchedulerConfig(enable_prefix_caching=True, watermark=0.0)
    s = VLLMScheduler(cfg, BlockManager(1000, 16, 0.0), 4096, 4096)
    s.add_request(hashed(0, (1, 2), 1024))
    s.on_step_end(s.schedule(0.0), 1.0)
    second = hashed(1, (1, 5), 700)
    s.add_request(second)
    batch = s.schedule(1.0)
    assert batch.requests == [second] and batch.num_new_tokens == [700 - 512] and second.num_cached_tokens == 512


def test_freed_blocks_stay_cached_as_free_and_are_evicted_tail_first():
    bm = PrefixCachingBlockManager(num_blocks=100, block_size=16, watermark=0.0)
    r = hashed(0, (1, 2), 1024)
    bm.allocate(r, 1024)
    bm.cache_blocks(r, 1024)
    r.status = RequestStatus.FINISHED
    bm.free(r)
    assert bm.num_free_blocks == 100 and bm.num_cached_blocks == bm.num_evictable_blocks == 64
    longer = hashed(1, (1, 2, 4), 1100)  # 68 blocks, the first 64 as r's
    assert bm.find_cached_prefix(longer) == (64, 64)
    # A request without hashes takes the 36 empty blocks and one more: r's last block goes.
    other = Request(2, 2.0, 37 * 16, 1)
    bm.allocate(other, 37 * 16)
    assert bm.num_free_blocks == 63 and bm.find_cached_prefix(longer) == (63, 63)
    bm.check()


def test_reused_evictable_blocks_count_against_free_blocks():
    bm = PrefixCachingBlockManager(num_blocks=70, block_size=16, watermark=0.0)
    r = hashed(0, (1, 2), 1024)
    bm.allocate(r, 1024)
    bm.cache_blocks(r, 1024)
    r.status = RequestStatus.FINISHED
    bm.free(r)
    twin = hashed(1, (1, 3), 1024)  # 32 cached, evictable: taking them uses free blocks too
    cached, evictable = bm.find_cached_prefix(twin)
    assert (cached, evictable) == (32, 32)
    assert bm.can_allocate(1024, cached, evictable)  # 32 reused + 32 new <= 70 free
    bm.allocate(twin, 1024, cached)
    # 70 - 32 reused = 38 free (6 empty, r's last 32 evictable); 32 new blocks: the 6 empty ones,
    # then 26 evicted from r's tail, leaving r's blocks 32..37 cached and free.
    assert bm.num_free_blocks == 6 and bm.num_cached_blocks == 38 and bm.num_evictable_blocks == 6
    assert bm.find_cached_prefix(hashed(2, (1, 2), 1024)) == (38, 6)
    bm.check()


def test_block_accounting_is_exact_under_random_operations():
    rng = np.random.default_rng(0)
    bm = PrefixCachingBlockManager(num_blocks=300, block_size=16, watermark=0.0)
    chains = [(1, 2, 3, 4), (1, 2, 5, 6), (7, 8, 9, 10), (1, 11, 12, 13)]
    held: list[Request] = []
    for i in range(2000):
        if held and (rng.random() < 0.45 or bm.num_free_blocks < 140):
            bm.free(held.pop(int(rng.integers(len(held)))))
        else:
            chain = chains[int(rng.integers(len(chains)))][: int(rng.integers(1, 5))]
            r = hashed(i, chain, int(rng.integers(1, len(chain) * 512 + 1)))
            cached, evictable = bm.find_cached_prefix(r)
            if bm.can_allocate(r.num_prompt_tokens, cached, evictable):
                bm.allocate(r, r.num_prompt_tokens, cached)
                bm.cache_blocks(r, int(rng.integers(cached * 16, r.num_prompt_tokens + 1)))
                bm.grow_to(r, r.num_prompt_tokens + int(rng.integers(0, 40)))
                held.append(r)
        bm.check()
    for r in held:
        bm.free(r)
    bm.check()
    assert bm.num_free_blocks == bm.num_blocks


def test_cached_prefix_makes_the_prefill_step_cheaper():
    cost = RooflineCostModel(bundled_model_spec("llama-3-8b"), GPUS["h100-sxm"], 1, 1, RooflineConfig())
    times = {}
    for enabled in (True, False):
        s = v1(enable_prefix_caching=enabled)
        s.add_request(hashed(0, range(8), 4096))
        s.on_step_end(s.schedule(0.0), 1.0)
        s.add_request(hashed(1, (0, 1, 2, 3, 4, 5, 6, 99), 4096))
        batch = s.schedule(1.0)
        times[enabled] = cost.step_time(batch)
    assert times[True] < 0.5 * times[False]


def test_hit_rate_on_mooncake_matches_a_replay_of_its_hash_ids(mooncake_conv):
    # One request at a time (max_num_seqs 1), so each prompt's blocks are all published before
    # the next looks; a cache far larger than the workload, so nothing is evicted. The replay
    # counts a prompt's leading trace blocks seen before (512 tokens each, the last one partial).
    scenario = load_scenario(None, [
        f"workload.trace={mooncake_conv}", "workload.max_requests=200", "model.max_model_len=131072",
        "scheduler.name=vllm_v1", "scheduler.max_num_seqs=1", "scheduler.num_gpu_blocks_override=1000000",
    ])
    sim = Simulation(scenario)
    df = sim.run().requests
    seen: set[int] = set()
    replayed = []
    for r in sim.workload.requests:
        n = 0
        while n < len(r.block_hashes) and r.block_hashes[n] in seen:
            n += 1
        replayed.append(min(n * 512, r.num_prompt_tokens))
        seen.update(r.block_hashes)
    replayed = np.array(replayed)
    gap = replayed - df["num_cached_tokens"].to_numpy()
    prompt = df["num_prompt_tokens"].to_numpy()
    # Equal, except a prompt found whole in the cache: at most its last full block (the last
    # token is computed) plus its partial last block, i.e. at most block_size tokens, go unused.
    assert (gap >= 0).all() and (gap <= 16).all()
    assert (gap[replayed < prompt] == 0).all()
    assert replayed.sum() > 0.05 * prompt.sum()  # the slice does share prefixes
