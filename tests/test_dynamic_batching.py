"""Dynamic batching of the static scheduler: a batch waits for its preferred size or the delay.

Stories with a constant step time (every iteration 10 ms) so every TTFT is computed by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.engine.simulation import simulate, unused_fields
from simulator.scenario import load_scenario
from tests.conftest import make_request
from tests.test_capacity import constant_cost  # noqa: F401  (the fixture: every iteration STEP_S = 10 ms)
from tests.test_static_scheduler import make_scheduler


def trace(tmp_path: Path, arrivals: list[float], output: int = 2) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "".join(f"{t},16,{output}\n" for t in arrivals))
    return path


def run(tmp_path: Path, arrivals: list[float], *extra: str):
    scenario = load_scenario(None, [f"workload.trace={trace(tmp_path, arrivals)}", "scheduler.name=static", *extra])
    return simulate(scenario).requests.sort_values("request_id")


def test_an_idle_replica_holds_requests_until_the_delay_ends(tmp_path, constant_cost):
    # Three requests at 0, 1 and 2 ms; preferred batch 4, delay 10 ms: nothing runs until the
    # oldest has waited 10 ms, then one batch of three prefills at t = 10 ms, first tokens at 20 ms.
    df = run(tmp_path, [0.0, 0.001, 0.002], "scheduler.static_max_queue_delay_ms=10", "scheduler.static_preferred_batch_size=4")
    assert df["first_token_time"].tolist() == pytest.approx([0.02, 0.02, 0.02])
    assert df["ttft_s"].tolist() == pytest.approx([0.02, 0.019, 0.018])
    # Without the delay the first request runs alone at once and the other two wait for it.
    plain = run(tmp_path, [0.0, 0.001, 0.002])
    assert plain["first_token_time"].tolist() == pytest.approx([0.01, 0.03, 0.03])


def test_the_batch_forms_as_soon_as_the_preferred_size_has_queued(tmp_path, constant_cost):
    df = run(tmp_path, [0.0, 0.001, 0.002, 0.003], "scheduler.static_max_queue_delay_ms=10", "scheduler.static_preferred_batch_size=4")
    assert df["first_token_time"].tolist() == pytest.approx([0.013] * 4)  # the 4th arrival at 3 ms starts it


def test_a_zero_delay_or_no_knob_is_plain_static_batching(tmp_path, constant_cost):
    arrivals = [0.0, 0.004, 0.005, 0.03, 0.031]
    plain = run(tmp_path, arrivals)
    zero = run(tmp_path, arrivals, "scheduler.static_max_queue_delay_ms=0", "scheduler.static_preferred_batch_size=4")
    assert zero["first_token_time"].tolist() == plain["first_token_time"].tolist()


def test_hold_and_wake_time_on_the_scheduler():
    s = make_scheduler(max_num_seqs=8)
    s.max_queue_delay_s, s.preferred_batch_size = 0.01, 3
    assert s.wake_time(0.0) is None and s.schedule(0.0) is None  # nothing waits: nothing to hold
    s.add_request(make_request(0, prompt=4, output=2, arrival=0.0))
    assert s.schedule(0.005) is None and s.wake_time(0.005) == pytest.approx(0.01)
    assert s.schedule(0.01) is not None and s.wake_time(0.01) is None  # the delay is over: it runs
    # The preferred size is capped at max_num_seqs.
    assert make_scheduler(max_num_seqs=2).preferred_batch_size == 2


def test_static_knobs_under_another_scheduler_are_named_as_unused():
    scenario = load_scenario(None, ["scheduler.name=vllm", "scheduler.static_max_queue_delay_ms=5", "scheduler.fastserve_num_levels=3"])
    unused = dict(unused_fields(scenario))
    assert unused["scheduler.static_max_queue_delay_ms"] == "read by the static scheduler only"
    assert unused["scheduler.fastserve_num_levels"] == "read by the fastserve scheduler only"
    assert not any(field.startswith("scheduler.") for field, _ in unused_fields(load_scenario(None, ["scheduler.name=static", "scheduler.static_max_queue_delay_ms=5"])))
