"""vLLM releases under the vllm_v1 scheduler: host time, admission and resume, hand-checked."""

import json

import pytest
import simpy

from simulator.errors import ScenarioError
from simulator.engine.kv_cache import BlockManager
from simulator.engine.replica import ITERATION_COLUMNS, Replica
from simulator.scenario import SchedulerConfig, load_scenario
from simulator.schedulers.vllm_v1 import VLLMV1Scheduler
from simulator.engine.simulation import simulate
from tests.conftest import ids, make_request, run_step


def v1(version=None, num_blocks=100, block_size=4, budget=16, **config):
    cfg = SchedulerConfig(name="vllm_v1", max_num_batched_tokens=budget, block_size=block_size, engine_version=version, **config)
    return VLLMV1Scheduler(cfg, BlockManager(num_blocks, block_size, 0.0), budget, max_model_len=64)


class SplitCost:
    """Every step: ``gpu_s`` of GPU work plus ``host_s`` of host work, whatever it holds."""

    def __init__(self, gpu_s: float, host_s: float) -> None:
        self.gpu_s, self.host_s = gpu_s, host_s

    def step_time(self, batch) -> float:
        return self.gpu_s + self.host_s

    def host_time(self, batch) -> float:
        return self.host_s


def run_replica(scheduler, cost, requests):
    """Run one replica until every request finished; (iteration start times, requests)."""
    env = simpy.Environment()
    replica = Replica(env, 0, scheduler, cost, on_finish=lambda r: None)
    for r in requests:
        def arrive(r=r):
            yield env.timeout(r.arrival_time)
            replica.add_request(r)
        env.process(arrive())
    env.run(until=10.0)
    assert all(r.finish_time is not None for r in requests)
    start = ITERATION_COLUMNS.index("start_time")
    return [rec[start] for rec in replica.records]


# --- host time: async scheduling overlaps it with the GPU ------------------------------------

@pytest.mark.parametrize(("gpu_s", "host_s"), [(0.010, 0.004), (0.003, 0.005)])
def test_async_steps_are_max_of_gpu_and_host_apart_and_tokens_come_after_both(gpu_s, host_s):
    # One request, 4 output tokens: one prefill step and three decode steps, each priced gpu + host.
    sync, overlapped = make_request(0, prompt=4, output=4, arrival=0.0), make_request(0, prompt=4, output=4, arrival=0.0)
    sync_starts = run_replica(v1("0.11"), SplitCost(gpu_s, host_s), [sync])
    async_starts = run_replica(v1("0.19"), SplitCost(gpu_s, host_s), [overlapped])
    step, spacing = gpu_s + host_s, max(gpu_s, host_s)
    assert sync_starts == pytest.approx([0.0, step, 2 * step, 3 * step])
    assert list(sync.token_times) == pytest.approx([step, 2 * step, 3 * step, 4 * step])
    assert async_starts == pytest.approx([0.0, spacing, 2 * spacing, 3 * spacing])
    # Each step's token appears after its GPU work and its own output processing.
    assert list(overlapped.token_times) == pytest.approx([k * spacing + step for k in range(4)])
    assert overlapped.finish_time == pytest.approx(3 * spacing + step)


def test_a_request_arriving_mid_step_misses_the_step_already_scheduled():
    # GPU 10 ms, host 4 ms. A decodes from t=0; B (one output token) arrives at 25 ms.
    # 0.11 (in series): steps start 0, 14, 28 ms; B arrives during [14, 28) and prefills at 28:
    #   TTFT = 28 + 14 - 25 = 17 ms.
    # 0.19 (async): steps start 0, 10, 20, 30, 40 ms; the step at 30 was scheduled at 20, before
    #   B arrived, so B prefills at 40: TTFT = 40 + 14 - 25 = 29 ms.
    ttft = {}
    for version in ("0.11", "0.19"):
        a, b = make_request(0, prompt=4, output=20, arrival=0.0), make_request(1, prompt=4, output=1, arrival=0.025)
        run_replica(v1(version), SplitCost(0.010, 0.004), [a, b])
        ttft[version] = b.first_token_time - b.arrival_time
    assert ttft["0.11"] == pytest.approx(0.017)
    assert ttft["0.19"] == pytest.approx(0.029)


# --- admission: the whole current sequence must fit (0.19) ----------------------------------

def whole_sequence_story(version, waiting, **config):
    """4 blocks of 4 tokens, a budget of 5. A running request holds 2 blocks after its first
    decode, leaving 2 free and 4 tokens of budget for ``waiting``, whose first chunk (4 tokens,
    1 block) fits but whose whole sequence (12 tokens, 3 blocks) does not."""
    s = v1(version, num_blocks=4, block_size=4, budget=5, enable_prefix_caching=False, **config)
    s.add_request(make_request(0, prompt=4, output=10))
    run_step(s, 0.0)
    s.add_request(waiting)
    return s.schedule(1.0)


def resumed_request():
    """A request back from preemption by recompute: prompt 4 (1 block), 8 tokens generated."""
    r = make_request(1, prompt=4, output=20)
    r.num_generated_tokens, r.num_preemptions, r.first_scheduled_time = 8, 1, 0.0
    return r


@pytest.mark.parametrize("make_waiting", [lambda: make_request(1, prompt=12, output=2), resumed_request])
def test_a_request_whose_whole_sequence_does_not_fit_waits_from_0_19(make_waiting):
    waiting = make_waiting()
    batch = whole_sequence_story("0.19", waiting)
    assert ids(batch.requests) == [0] and waiting.num_computed_tokens == 0
    # Before 0.19 (and with the flag off) only the first chunk had to fit: admitted with 4 tokens.
    for version, config in (("0.18", {}), ("0.19", {"scheduler_reserve_full_isl": False})):
        batch = whole_sequence_story(version, make_waiting(), **config)
        assert ids(batch.requests) == [0, 1] and batch.num_new_tokens == [1, 4]


# --- prefix caching of generated tokens: resume after recompute from the cache ---------------

def preemption_story(version, enable_prefix_caching=True):
    """6 blocks of 4 tokens. ``old`` (prompt 8, 9 outputs) and ``new`` (prompt 4, 12 outputs) run
    together; at the 6th step old needs its 4th block, none is free, and new (the last running
    request) is preempted by recompute with 5 tokens generated: 9 tokens, its block 0 the prompt,
    its block 1 four generated tokens (published when its decode filled it), token 8 in a third.
    It re-enters when old finishes; (steps, new)."""
    s = v1(version, num_blocks=6, block_size=4, budget=16, enable_prefix_caching=enable_prefix_caching)
    old, new = make_request(0, prompt=8, output=9), make_request(1, prompt=4, output=12)
    s.add_request(old)
    s.add_request(new)
    steps = [run_step(s, float(t))[0] for t in range(20) if s.running or s.waiting]
    assert new.num_preemptions == 1 and steps[5].num_preemptions == 1
    return s, steps, new


@pytest.mark.parametrize("version", ["0.8", "0.11", "0.19"])
def test_a_preempted_request_resumes_from_its_cached_prompt_and_output_blocks(version):
    s, steps, new = preemption_story(version)
    back = next(b for b in steps[6:] if new in b.requests)
    k = back.requests.index(new)
    # Its two full blocks (8 tokens, 4 of them generated) are found: only token 8 is computed.
    assert back.num_new_tokens[k] == 1 and s.num_resume_cached_tokens == 8
    assert new.num_cached_tokens == 0  # the first-admission hit count is untouched
    s_off, steps_off, new_off = preemption_story(version, enable_prefix_caching=False)
    back_off = next(b for b in steps_off[6:] if new_off in b.requests)
    k = back_off.requests.index(new_off)
    assert back_off.num_new_tokens[k] == 9 and back_off.prefill_prefix_tokens == [0] and s_off.num_resume_cached_tokens == 0


def test_the_summary_counts_resume_hits():
    base = ["scheduler.name=vllm_v1", "workload.num_requests=150", "workload.arrival.rate=40", "scheduler.num_gpu_blocks_override=400",
            "workload.prompt_tokens={distribution: uniform, min: 200, max: 1500}",
            "workload.output_tokens={distribution: uniform, min: 50, max: 300}", "model.max_model_len=4096"]
    on = simulate(load_scenario(None, base))
    off = simulate(load_scenario(None, [*base, "scheduler.enable_prefix_caching=false"]))
    assert on.summary["num_preemptions"] > 0 and off.summary["num_preemptions"] > 0
    assert on.summary["num_resume_cached_tokens"] == on.iterations["num_resume_cached_tokens"].sum() > 0
    assert off.summary["num_resume_cached_tokens"] == 0


# --- the releases and their flags ------------------------------------------------------------

@pytest.mark.parametrize(("version", "async_on", "full"), [
    ("0.8", False, False), ("0.11", False, False), ("0.13.1", False, False), ("0.14", True, False),
    ("v0.19.1", True, True), (0.19, True, True), (None, True, True),
])
def test_each_release_brings_its_defaults(version, async_on, full):
    s = v1(version)
    assert (s.async_scheduling, s.reserve_full_sequence) == (async_on, full)


@pytest.mark.parametrize(("config", "field", "fragment"), [
    ({"engine_version": "0.6"}, "scheduler.engine_version", "scheduler.name: vllm"),
    ({"engine_version": 0.10}, "scheduler.engine_version", "0.1"),  # YAML's 0.10 is the number 0.1
    ({"engine_version": "0.25"}, "scheduler.engine_version", "0.19"),
    ({"engine_version": "latest"}, "scheduler.engine_version", "0.8"),
    ({"engine_version": "0.9", "async_scheduling": True}, "scheduler.async_scheduling", "0.10"),
    ({"engine_version": "0.18", "scheduler_reserve_full_isl": True}, "scheduler.scheduler_reserve_full_isl", "0.19"),
])
def test_unknown_releases_and_missing_flags_are_scenario_errors(config, field, fragment):
    config = dict(config)
    with pytest.raises(ScenarioError) as e:
        v1(config.pop("engine_version"), **config)
    assert e.value.field == field and fragment in f"{e.value.problem} {e.value.fix}"


def test_set_from_the_command_line_and_deterministic():
    overrides = ["scheduler.name=vllm_v1", "scheduler.engine_version=0.12", "scheduler.async_scheduling=true",
                 "workload.num_requests=120", "workload.arrival.rate=15"]
    a, b = simulate(load_scenario(None, overrides)).summary, simulate(load_scenario(None, overrides)).summary
    for s in (a, b):
        s.pop("wall_time_s")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    sync = simulate(load_scenario(None, overrides[:2] + overrides[3:])).summary
    assert sync["ttft_s"]["mean"] < a["ttft_s"]["mean"]  # the scheduling lag costs a step of TTFT
