"""The vLLM v1 scheduler on small hand-checked stories."""

import pytest

from simulator.errors import ScenarioError
from simulator.engine.kv_cache import BlockManager
from simulator.engine.prefix_cache import PrefixCachingBlockManager
from simulator.engine.request import RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.vllm import VLLMScheduler
from simulator.schedulers.vllm_v1 import VLLMV1Scheduler
from tests.conftest import ids, make_request, run_step


def make_scheduler(num_blocks=100, block_size=4, max_num_seqs=8, max_num_batched_tokens=16, **config):
    config = SchedulerConfig(name="vllm_v1", max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, block_size=block_size, **config)
    return VLLMV1Scheduler(config, BlockManager(num_blocks, block_size, 0.0), max_num_batched_tokens or 100_000, max_model_len=64)


def test_long_prompt_is_chunked_to_the_budget_left():
    s = make_scheduler(max_num_batched_tokens=16)
    long, short = make_request(0, prompt=40, output=2), make_request(1, prompt=5, output=2)
    s.add_request(long)
    s.add_request(short)
    b1, _ = run_step(s, 0.0)  # the long prompt takes the whole budget; the short one waits
    assert ids(b1.requests) == [0] and b1.num_new_tokens == [16] and b1.num_sampled_tokens == 0
    b2, _ = run_step(s, 1.0)
    assert b2.num_new_tokens == [16] and b2.prefill_prefix_tokens == [16]
    b3, _ = run_step(s, 2.0)  # the last 8 prompt tokens, then the short prompt fills the budget
    assert ids(b3.requests) == [0, 1] and b3.num_new_tokens == [8, 5] and b3.num_tokens == 13
    assert long.first_token_time == 3.0 and short.first_token_time == 3.0


def test_running_requests_first_then_waiting_with_the_rest():
    s = make_scheduler(max_num_batched_tokens=16)
    s.add_request(make_request(0, prompt=4, output=5))
    run_step(s, 0.0)
    s.add_request(make_request(1, prompt=30, output=2))
    b, _ = run_step(s, 1.0)  # one decode token, then a 15-token chunk of the new prompt
    assert ids(b.requests) == [0, 1] and b.num_new_tokens == [1, 15]
    assert b.num_decode_tokens == 1 and b.num_prefill_tokens == 15


def test_decodes_that_use_the_whole_budget_keep_new_requests_waiting():
    s = make_scheduler(max_num_batched_tokens=2)
    for i in range(3):
        s.add_request(make_request(i, prompt=1, output=3))
    b1, _ = run_step(s, 0.0)
    assert ids(b1.requests) == [0, 1]
    b2, _ = run_step(s, 1.0)
    assert ids(b2.requests) == [0, 1] and ids(s.waiting) == [2]
    _, finished = run_step(s, 2.0)  # both finish; the third gets in next
    assert ids(finished) == [0, 1]
    b4, _ = run_step(s, 3.0)
    assert ids(b4.requests) == [2]


def test_max_num_seqs_caps_running_requests():
    s = make_scheduler(max_num_seqs=2, max_num_batched_tokens=100)
    for i in range(3):
        s.add_request(make_request(i, prompt=4, output=5))
    batch = s.schedule(0.0)
    assert len(batch) == 2 and len(s.running) == 2 and ids(s.waiting) == [2]


def test_blocks_cover_only_the_tokens_scheduled_so_far():
    s = make_scheduler(block_size=4, max_num_batched_tokens=8)
    r = make_request(0, prompt=30, output=2)
    s.add_request(r)
    s.schedule(0.0)
    assert s.block_manager.num_blocks_held(r) == 2  # 8 tokens, not the whole 30-token prompt


def test_preempts_the_last_running_request_and_admits_nobody_in_that_step():
    # 4 blocks of 4 tokens. Two 8-token prompts fill them; the first decode of the older needs a
    # 3rd block: the last running request is preempted by recompute, and the waiting request
    # is not admitted in that step even though the freed blocks would fit it.
    s = make_scheduler(num_blocks=4, block_size=4, max_num_batched_tokens=16, enable_prefix_caching=False)
    old, new = make_request(0, prompt=8, output=3), make_request(1, prompt=8, output=3)
    s.add_request(old)
    s.add_request(new)
    run_step(s, 0.0)
    s.add_request(make_request(2, prompt=2, output=1))
    b2, _ = run_step(s, 1.0)
    assert ids(b2.requests) == [0] and b2.num_preemptions == 1
    assert new.status == RequestStatus.PREEMPTED and new.num_computed_tokens == 0 and new.num_generated_tokens == 1
    assert ids(s.waiting) == [1, 2]
    # Next step: the preempted request is at the head, its 9 tokens need 3 blocks, 1 is free:
    # it waits, and FCFS keeps the small request behind it.
    b3, _ = run_step(s, 2.0)
    assert ids(b3.requests) == [0] and ids(s.waiting) == [1, 2]


def test_default_budget_is_the_v1_default_when_unset():
    # vllm serve's v1 default on H100-class GPUs, whatever the deployment resolved for v0.
    s = make_scheduler(max_num_batched_tokens=None)
    assert s.max_num_batched_tokens == s.token_budget == 8192
    assert make_scheduler(max_num_batched_tokens=512).token_budget == 512


def test_prefix_caching_is_on_by_default_for_v1_only():
    s = make_scheduler()
    assert s.prefix_caching and isinstance(s.block_manager, PrefixCachingBlockManager)
    assert not make_scheduler(enable_prefix_caching=False).prefix_caching
    v0 = VLLMScheduler(SchedulerConfig(), BlockManager(10, 16), 2048, 2048)
    assert not v0.prefix_caching and type(v0.block_manager) is BlockManager


def test_swap_is_refused_with_the_field_and_the_fix():
    with pytest.raises(ScenarioError) as e:
        make_scheduler(preemption_mode="swap")
    assert e.value.field == "scheduler.preemption_mode" and "recompute" in e.value.fix
