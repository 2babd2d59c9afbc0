"""The vLLM v0 scheduler on small hand-checked stories."""

from simulator.engine.kv_cache import BlockManager
from simulator.engine.request import RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.vllm import VLLMScheduler
from tests.conftest import make_request, run_step


def make_scheduler(num_blocks=100, block_size=4, max_num_seqs=8, max_num_batched_tokens=32, watermark=0.0):
    config = SchedulerConfig(max_num_seqs=max_num_seqs, block_size=block_size, watermark=watermark)
    return VLLMScheduler(config, BlockManager(num_blocks, block_size, watermark), max_num_batched_tokens, max_model_len=64)


def test_prefill_batch_formed_under_token_budget():
    s = make_scheduler(max_num_batched_tokens=32)
    for i, prompt in enumerate((10, 12, 11, 5)):
        s.add_request(make_request(i, prompt=prompt, output=4))
    batch = s.schedule(0.0)
    # 10 + 12 = 22 fit; adding 11 would make 33 > 32, and FCFS does not skip ahead to the 5.
    assert [r.request_id for r in batch.requests] == [0, 1]
    assert batch.num_new_tokens == [10, 12] and batch.num_prefill_tokens == 22 and batch.num_decode_tokens == 0
    assert [r.request_id for r in s.waiting] == [2, 3]


def test_prefill_preferred_then_decode_when_nothing_fits():
    s = make_scheduler(max_num_batched_tokens=16)
    s.add_request(make_request(0, prompt=10, output=3))
    b1, _ = run_step(s, 0.0)
    assert b1.num_prefill_tokens == 10
    s.add_request(make_request(1, prompt=8, output=2))
    b2, _ = run_step(s, 1.0)  # a waiting request that fits: prefill-only iteration
    assert [r.request_id for r in b2.requests] == [1] and b2.num_decode_tokens == 0
    b3, _ = run_step(s, 2.0)  # nothing waiting: decode both
    assert [r.request_id for r in b3.requests] == [0, 1] and b3.num_new_tokens == [1, 1]


def test_max_num_seqs_caps_running_requests():
    s = make_scheduler(max_num_seqs=2, max_num_batched_tokens=100)
    for i in range(3):
        s.add_request(make_request(i, prompt=4, output=5))
    batch = s.schedule(0.0)
    assert len(batch) == 2 and len(s.waiting) == 1


def test_token_counts_first_token_and_finish():
    s = make_scheduler()
    r = make_request(0, prompt=6, output=3)
    s.add_request(r)
    run_step(s, 0.0)  # prefill: first token at t=1
    assert (r.num_computed_tokens, r.num_generated_tokens, r.first_token_time) == (6, 1, 1.0)
    run_step(s, 1.0)
    _, finished = run_step(s, 2.0)
    assert finished == [r] and r.status == RequestStatus.FINISHED
    assert r.finish_time == 3.0 and list(r.token_times) == [1.0, 2.0, 3.0]
    assert s.block_manager.num_free_blocks == s.block_manager.num_blocks


def test_preemption_under_block_pressure_newest_recomputes_later():
    # 4 blocks of 4 tokens. Two requests of 8-token prompts take 2 blocks each; the first decode
    # writes token 8 (0-based), which needs a third block for each: only the oldest can get one.
    s = make_scheduler(num_blocks=4, block_size=4, max_num_batched_tokens=16)
    old, new = make_request(0, prompt=8, output=3), make_request(1, prompt=8, output=3)
    s.add_request(old)
    s.add_request(new)
    b1, _ = run_step(s, 0.0)
    assert len(b1) == 2 and s.block_manager.num_free_blocks == 0
    b2, _ = run_step(s, 1.0)
    assert [r.request_id for r in b2.requests] == [0] and b2.num_preemptions == 1
    assert new.status == RequestStatus.PREEMPTED and new.num_preemptions == 1
    assert new.num_computed_tokens == 0 and new.num_generated_tokens == 1  # output kept, KV dropped
    assert list(s.waiting) == [new]
    # Old finishes; new is recomputed: its prompt and its one output token are prefilled again.
    _, finished = run_step(s, 2.0)
    assert finished == [old]
    b4, _ = run_step(s, 3.0)
    assert b4.requests == [new] and b4.num_new_tokens == [9] and b4.num_prefill_tokens == 9
    assert new.num_generated_tokens == 2
    _, finished = run_step(s, 4.0)
    assert finished == [new] and new.finish_time == 5.0
    assert s.block_manager.num_free_blocks == 4


def test_request_preempts_itself_when_it_is_the_newest():
    s = make_scheduler(num_blocks=2, block_size=4, max_num_batched_tokens=16)
    r = make_request(0, prompt=8, output=3)
    s.add_request(r)
    run_step(s, 0.0)
    batch = s.schedule(1.0)  # needs a third block, none free, nobody newer to evict
    assert batch is None and r.status == RequestStatus.PREEMPTED
    assert s.block_manager.num_free_blocks == 2
