"""Shortest predicted job first on small hand-checked stories."""

import math
import statistics

import pytest

from simulator.engine.kv_cache import BlockManager
from simulator.errors import ScenarioError
from simulator.scenario import SchedulerConfig, load_scenario
from simulator.schedulers.sjf import SJFScheduler
from tests.conftest import check_invariants, ids, make_request
from tests.test_conformance import check_preemptions_counted, pressured, run_to_completion


def make_scheduler(max_num_seqs=1, num_blocks=200, block_size=4, **knobs):
    config = SchedulerConfig(name="sjf", max_num_seqs=max_num_seqs, block_size=block_size, watermark=0.0, **knobs)
    return SJFScheduler(config, BlockManager(num_blocks, block_size, 0.0), 64, max_model_len=64)


def run(s, arrivals, until=1000):
    """Step 1 s per iteration; ``arrivals`` maps a step to the requests added then. Finished, in order."""
    finished = []
    for t in range(until):
        for r in arrivals.get(t, ()):
            s.add_request(r)
        batch = s.schedule(float(t))
        if batch is not None:
            finished += s.on_step_end(batch, t + 1.0)
        if not (s.waiting or s.running or any(k > t for k in arrivals)):
            break
    return finished


def test_oracle_serves_in_true_length_order():
    # sigma 0: the predictor is the truth, so one seat serves the requests shortest first.
    outputs = [9, 3, 14, 1, 6, 3]
    requests = [make_request(i, prompt=4, output=n, arrival=0.0) for i, n in enumerate(outputs)]
    s = make_scheduler(sjf_predictor_sigma=0.0)
    finished = run(s, {0: requests})
    assert ids(finished) == [3, 1, 5, 4, 0, 2]  # by length, ties by arrival (id)
    assert [s.predicted_output_tokens(r) for r in requests] == outputs


def test_predictions_are_seeded_lognormal_noise():
    requests = [make_request(i, prompt=4, output=100) for i in range(4000)]
    a, b = make_scheduler(sjf_predictor_sigma=0.5), make_scheduler(sjf_predictor_sigma=0.5)
    c = make_scheduler(sjf_predictor_sigma=0.5, sjf_predictor_seed=1)
    pa = [a.predicted_output_tokens(r) for r in requests]
    assert pa == [b.predicted_output_tokens(r) for r in requests]  # same seed, same predictions
    assert pa != [c.predicted_output_tokens(r) for r in requests]
    logs = [math.log(p / 100) for p in pa]
    assert abs(statistics.fmean(logs)) < 0.03 and abs(statistics.stdev(logs) - 0.5) < 0.03


def test_noisy_predictor_misorders_some():
    outputs = list(range(1, 41))
    requests = [make_request(i, prompt=4, output=n, arrival=0.0) for i, n in enumerate(outputs)]
    finished = run(make_scheduler(sjf_predictor_sigma=1.0), {0: requests})
    order = [r.num_output_tokens for r in finished]
    assert sorted(order) == outputs and order != outputs


def stream(limit_s):
    # One seat. A long request and a short one arrive at t=0, then a short one every 2 steps
    # (each takes 2 steps: prefill, then its last token).
    s = make_scheduler(sjf_predictor_sigma=0.0, sjf_starve_limit_s=limit_s)
    long = make_request(0, prompt=4, output=20, arrival=0.0)
    arrivals = {0: [long, make_request(1, prompt=4, output=2, arrival=0.0)]}
    for k in range(1, 30):
        arrivals[2 * k] = [make_request(k + 1, prompt=4, output=2, arrival=2.0 * k)]
    run(s, arrivals, until=60)
    return long


def test_starvation_guard_bounds_the_wait():
    # Without the guard the shorts keep the long request waiting for the whole stream; with a
    # 5 s limit it goes first at the first free seat after 5 s: t = 6.
    assert stream(limit_s=1000.0).first_scheduled_time is None  # not in 60 steps
    assert stream(limit_s=5.0).first_scheduled_time == 6.0


def test_requests_preempted_by_recompute_go_ahead_of_the_queue():
    # 6 blocks of 4 tokens, two seats: the two running requests grow until the newer one is
    # preempted; it waits ahead of a shorter request that arrived before.
    s = make_scheduler(max_num_seqs=2, num_blocks=6, sjf_predictor_sigma=0.0)
    a, b = make_request(0, prompt=8, output=8, arrival=0.0), make_request(1, prompt=8, output=8, arrival=0.0)
    s.add_request(a)
    s.add_request(b)
    t = 0
    while not b.num_preemptions:
        if t == 2:
            s.add_request(make_request(2, prompt=4, output=1, arrival=2.0))
        s.on_step_end(s.schedule(float(t)), t + 1.0)
        t += 1
    assert ids(s.waiting) == [1, 2] and a.num_preemptions == 0


def test_invariants_with_preemption_by_swap(azure_conv):
    sim, result = run_to_completion(pressured(azure_conv, "sjf", extra=("scheduler.preemption_mode=swap",)))
    check_invariants(sim, result)
    check_preemptions_counted(result)
    assert result.summary["num_swaps"] == result.summary["num_preemptions"] > 0


@pytest.mark.parametrize("field, value", [("sjf_predictor_sigma", -0.5), ("sjf_starve_limit_s", 0), ("sjf_predictor_seed", -1)])
def test_bad_knob_is_a_scenario_error(field, value):
    with pytest.raises(ScenarioError, match=f"scheduler.{field}"):
        load_scenario(None, ["scheduler.name=sjf", f"scheduler.{field}={value}"])
