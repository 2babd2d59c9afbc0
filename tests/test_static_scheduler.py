"""Static (request-level) batching on small hand-checked stories."""

from simulator.engine.kv_cache import BlockManager
from simulator.engine.request import RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.static import StaticScheduler
from tests.conftest import ids, make_request, run_step


def make_scheduler(num_blocks=100, block_size=4, max_num_seqs=8, max_num_batched_tokens=64, max_model_len=16):
    config = SchedulerConfig(name="static", max_num_seqs=max_num_seqs, block_size=block_size, watermark=0.0)
    return StaticScheduler(config, BlockManager(num_blocks, block_size, 0.0), max_num_batched_tokens, max_model_len)


def test_batch_is_capped_by_max_num_seqs_and_max_length_reservations():
    # Each request reserves max_model_len = 16 tokens = 4 blocks; 10 blocks hold two batches' worth.
    s = make_scheduler(num_blocks=10)
    for i in range(3):
        s.add_request(make_request(i, prompt=4, output=2))
    batch = s.schedule(0.0)
    assert ids(batch.requests) == [0, 1] and batch.num_prefill_tokens == 8 and ids(s.waiting) == [2]
    s2 = make_scheduler(max_num_seqs=1)
    for i in range(2):
        s2.add_request(make_request(i, prompt=4, output=2))
    assert ids(s2.schedule(0.0).requests) == [0]


def test_prompts_of_a_batch_fit_the_token_budget():
    s = make_scheduler(max_num_batched_tokens=20)
    for i, prompt in enumerate((8, 8, 8)):
        s.add_request(make_request(i, prompt=prompt, output=2))
    assert ids(s.schedule(0.0).requests) == [0, 1]


def test_finished_requests_idle_until_the_whole_batch_ends():
    s = make_scheduler()
    short, long = make_request(0, prompt=4, output=2), make_request(1, prompt=6, output=4)
    s.add_request(short)
    s.add_request(long)
    run_step(s, 0.0)  # prefill both: first tokens at t=1
    s.add_request(make_request(2, prompt=3, output=1))  # arrives mid-batch: waits for the next one
    _, finished = run_step(s, 1.0)  # short's last token at t=2; it does not leave
    assert finished == [] and short.num_generated_tokens == 2 and short.status == RequestStatus.RUNNING
    b3, finished = run_step(s, 2.0)  # short idles in its slot; its discarded decode is priced
    assert ids(b3.requests) == [1] and b3.num_idle_slots == 1 and b3.num_decode_tokens == 2
    assert b3.decode_context_tokens == (6 + 2) + (4 + 2) and finished == []  # each attends over its tokens
    _, finished = run_step(s, 3.0)  # long's last token at t=4: the whole batch ends
    assert ids(finished) == [0, 1] and short.finish_time == long.finish_time == 4.0
    assert list(short.token_times) == [1.0, 2.0]  # its tokens kept the times they were generated
    assert s.block_manager.num_free_blocks == s.block_manager.num_blocks
    b5, _ = run_step(s, 4.0)  # only now does the next batch form
    assert ids(b5.requests) == [2] and b5.num_prefill_tokens == 3
