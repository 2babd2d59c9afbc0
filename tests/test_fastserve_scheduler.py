"""FastServe's skip-join MLFQ on small hand-checked stories."""

import pytest

from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.request import RequestStatus
from simulator.errors import ScenarioError
from simulator.scenario import SchedulerConfig, load_scenario
from simulator.schedulers.fastserve import FastServeScheduler
from simulator.schedulers.vllm import VLLMScheduler
from tests.conftest import check_invariants, ids, make_request, run_step
from tests.test_conformance import check_preemptions_counted, pressured, run_to_completion


def make_scheduler(num_blocks=100, block_size=4, max_num_seqs=8, max_num_batched_tokens=64, swap_blocks=0, **knobs):
    config = SchedulerConfig(name="fastserve", max_num_seqs=max_num_seqs, block_size=block_size, watermark=0.0,
                             preemption_mode="swap" if swap_blocks else "recompute", **knobs)
    return FastServeScheduler(config, BlockManager(num_blocks, block_size, 0.0), max_num_batched_tokens, max_model_len=64,
                              swap_space=SwapSpace(num_blocks=swap_blocks))


def run_until_done(s, requests, arrivals=None, start=0):
    """Step a scheduler 1 s per iteration from ``start``, adding each request at its arrival
    step (None: added already); the step each one finishes at, by id."""
    arrivals = arrivals or {r.request_id: 0 for r in requests}
    done, t = {r.request_id: r.finish_time for r in requests if r.finish_time is not None}, start
    while len(done) < len(requests):
        for r in requests:
            if arrivals[r.request_id] == t:
                s.add_request(r)
        batch = s.schedule(float(t))
        if batch is not None:
            for r in s.on_step_end(batch, t + 1.0):
                done[r.request_id] = t + 1
        t += 1
        assert t < start + 1000
    return done


def test_skip_join_places_a_request_by_its_prefill_iterations():
    # Quanta 1, 2, 4, 8 iterations; a prompt of up to 16 tokens is priced as one iteration.
    s = make_scheduler(fastserve_num_levels=4, fastserve_prefill_tokens_per_iteration=16)
    assert s.quanta == [1, 2, 4, 8]
    for i, prompt in enumerate((10, 16, 17, 40, 64)):
        s.add_request(make_request(i, prompt=prompt, output=2))
    # 1 iteration -> level 0; 2 -> level 1; 3 -> level 2 (quantum 4); 4 -> level 2; beyond 8: the lowest.
    assert [s.level_of(r) for r in s.waiting] == [0, 0, 1, 2, 2]


def test_demoted_after_its_quantum_of_iterations():
    s = make_scheduler(fastserve_num_levels=3)  # quanta 1, 2, 4
    r = make_request(0, prompt=8, output=20)
    s.add_request(r)
    levels = []
    for t in range(8):
        run_step(s, float(t))
        levels.append(s.level_of(r))
    # The prefill spends level 0's quantum; two decodes spend level 1's; the lowest level keeps it.
    assert levels == [1, 1, 2, 2, 2, 2, 2, 2]


def test_short_request_behind_a_long_one_finishes_first():
    # One seat per iteration. The long request has run for a while (demoted to the lowest level)
    # when the short one arrives at level 0: it is preempted at once, keeping its KV blocks.
    long, short = make_request(0, prompt=8, output=30), make_request(1, prompt=8, output=3)
    s = make_scheduler(max_num_seqs=1)
    done = run_until_done(s, [long, short], arrivals={0: 0, 1: 5})
    assert done[1] < done[0]
    assert done[1] == 5 + 3  # served from its arrival on, with no wait
    assert long.num_preemptions == 0  # left out of iterations, never lost its KV cache
    # FCFS vLLM with the same seat runs the long request to the end first.
    v = VLLMScheduler(SchedulerConfig(max_num_seqs=1, block_size=4, watermark=0.0), BlockManager(100, 4, 0.0), 64, max_model_len=64)
    done_v = run_until_done(v, [make_request(0, prompt=8, output=30), make_request(1, prompt=8, output=3)], arrivals={0: 0, 1: 5})
    assert done_v[0] < done_v[1]


def test_left_out_request_keeps_its_kv_blocks():
    s = make_scheduler(max_num_seqs=1)
    long = make_request(0, prompt=8, output=30)
    s.add_request(long)
    for t in range(4):
        run_step(s, float(t))
    s.add_request(make_request(1, prompt=8, output=3))
    batch, _ = run_step(s, 4.0)
    assert ids(batch.requests) == [1]
    assert long.status == RequestStatus.RUNNING and s.block_manager.num_blocks_held(long) == 3  # 8 + 4 tokens in 4-token blocks


def test_lowest_level_loses_its_kv_when_a_decode_needs_a_block():
    # 6 blocks of 4 tokens: two requests of 8-token prompts hold 3 blocks each after a few decodes.
    s = make_scheduler(num_blocks=6, max_num_seqs=2)
    a, b = make_request(0, prompt=8, output=12), make_request(1, prompt=8, output=12)
    s.add_request(a)
    s.add_request(b)
    for t in range(6):
        run_step(s, float(t))
    # Both at the lowest levels by now; a (ahead in the order) needs a 4th block first: b is the victim.
    assert a.num_preemptions == 0 and b.num_preemptions == 1
    done = run_until_done(s, [a, b], arrivals={0: None, 1: None}, start=6)
    assert set(done) == {0, 1} and s.block_manager.num_free_blocks == 6


def test_admission_swaps_out_a_lower_level_and_swaps_it_back():
    # 6 blocks of 4 tokens, all held by a long request at a low level; a new request at level 0
    # needs 2: with swap space the long one moves to CPU memory, and comes back when they free up.
    s = make_scheduler(num_blocks=6, max_num_seqs=2, swap_blocks=8, fastserve_num_levels=3)
    long = make_request(0, prompt=16, output=8)
    s.add_request(long)
    for t in range(6):
        run_step(s, float(t))
    assert s.level_of(long) == 2 and s.block_manager.num_blocks_held(long) == 6
    short = make_request(1, prompt=6, output=2)
    s.add_request(short)
    batch, _ = run_step(s, 6.0)
    assert ids(batch.requests) == [1] and long.status == RequestStatus.SWAPPED and batch.num_swapped_blocks == 6
    done = run_until_done(s, [long, short], arrivals={0: None, 1: None}, start=7)
    assert done[1] < done[0] and long.num_swaps == 1 and long.num_preemptions == 1
    assert s.num_free_cpu_blocks == 8 and s.block_manager.num_free_blocks == 6


def test_admission_by_recompute_never_evicts():
    # Without swap, recomputing a request's KV to admit another wastes its work: the newcomer waits.
    s = make_scheduler(num_blocks=6, max_num_seqs=2, fastserve_num_levels=3)
    long = make_request(0, prompt=16, output=8)
    s.add_request(long)
    for t in range(6):
        run_step(s, float(t))
    s.add_request(make_request(1, prompt=6, output=2))
    batch, _ = run_step(s, 6.0)
    assert ids(batch.requests) == [0] and long.num_preemptions == 0


def test_starved_request_promoted_to_the_top():
    # One seat; a stream of short requests at level 0 keeps the long one (lowest level) waiting
    # until the starvation limit, 5 s, promotes it.
    s = make_scheduler(max_num_seqs=1, fastserve_num_levels=3, fastserve_starve_limit_s=5.0)
    long = make_request(0, prompt=8, output=40)
    s.add_request(long)
    for t in range(3):
        run_step(s, float(t))
    assert s.level_of(long) == 2
    served = []
    for t in range(3, 12):
        s.add_request(make_request(t, prompt=4, output=2))
        batch, _ = run_step(s, float(t))
        served.append(batch.requests[0].request_id)
    # Last served in the iteration ending at 3.0; promoted at t=8 to the tail of level 0, behind
    # the request that arrived then, it runs next.
    assert served[:7] == [3, 4, 5, 6, 7, 8, 0] and list(long.token_times)[-1] == 10.0
    # Demoted again, it starves again and is promoted again, so it keeps progressing under a
    # stream of short requests that overloads the seat (later gaps grow: the shorts starve too,
    # and the promoted are served in the order they starved).
    for t in range(12, 60):
        s.add_request(make_request(t, prompt=4, output=2))
        run_step(s, float(t))
    assert list(long.token_times)[3:] == [10.0, 24.0, 46.0]


def test_invariants_with_preemption_by_swap(azure_conv):
    # fastserve swaps (its scheduler class supports it); on the pressured trace most preemptions swap.
    sim, result = run_to_completion(pressured(azure_conv, "fastserve", extra=("scheduler.preemption_mode=swap",)))
    check_invariants(sim, result)
    check_preemptions_counted(result)
    assert result.summary["num_swaps"] > 0.5 * result.summary["num_preemptions"]


@pytest.mark.parametrize("field, value", [("fastserve_num_levels", 0), ("fastserve_quantum_ratio", 0), ("fastserve_starve_limit_s", -1)])
def test_bad_knob_is_a_scenario_error(field, value):
    with pytest.raises(ScenarioError, match=f"scheduler.{field}"):
        load_scenario(None, ["scheduler.name=fastserve", f"scheduler.{field}={value}"])
