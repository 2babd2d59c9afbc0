"""Capacity by bisection against closed-form answers; arrival rates; the run cache."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import simulator.engine.simulation
from simulator.studies import capacity, probe
from simulator.studies.capacity import CapacityCriterion, evaluate, find_capacity, native_rate_rps, with_rate
from simulator.studies.executors import LocalExecutor
from simulator.studies.run_cache import RunCache, run_key
from simulator.scenario import load_scenario
from simulator.workload import load_workload

STEP_S = 0.01  # every iteration takes exactly this long: a server of 1 / STEP_S = 100 req/s
NUM_REQUESTS = 200


class ConstantStepCost:
    """A cost model in which every iteration takes ``STEP_S``, whatever it holds."""

    def step_time(self, batch) -> float:
        return STEP_S


@pytest.fixture
def constant_cost(monkeypatch):
    monkeypatch.setattr(simulator.engine.simulation, "build_cost_model", lambda scenario, deployment, source="<scenario>": ConstantStepCost())


def evenly_spaced_trace(tmp_path: Path, n: int = NUM_REQUESTS, gap_s: float = 1.0, prompt: int = 16, output: int = 1) -> Path:
    """A Vidur-format trace: request i arrives at i * gap_s with fixed prompt and output lengths."""
    path = tmp_path / "even.csv"
    rows = "".join(f"{i * gap_s},{prompt},{output}\n" for i in range(n))
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows)
    return path


def one_at_a_time(trace: Path, *extra: str):
    """Each request is one iteration (a 16-token prompt, one output token) and runs alone."""
    return load_scenario(None, [f"workload.trace={trace}", "scheduler.max_num_seqs=1", *extra])


# --- closed form ------------------------------------------------------------------------------
# Requests arrive every g = 1 / r seconds and each takes one step of T = STEP_S alone (D/D/1).
# For r <= 1 / T no request waits: TTFT = T. For r > 1 / T request i waits i (T - g):
# TTFT_i = T + i (T - g), increasing in i.


def p99_capacity() -> float:
    """Highest rate with P99 TTFT <= 1.5 T: numpy's P99 of N increasing values is the one at
    position h = 0.99 (N - 1), so T + h (T - g) <= 1.5 T  <=>  g >= T (1 - 0.5 / h)."""
    h = 0.99 * (NUM_REQUESTS - 1)
    return 1.0 / (STEP_S * (1.0 - 0.5 / h))


def attainment_capacity() -> float:
    """Highest rate with >= 90 % of requests at TTFT <= 1.5 T: requests i <= 0.5 T / (T - g)
    meet it, so 0.9 N of them need 0.5 T / (T - g) >= 0.9 N - 1."""
    return 1.0 / (STEP_S * (1.0 - 0.5 / (0.9 * NUM_REQUESTS - 1)))


@pytest.mark.parametrize("bracket", [(None, None), (10.0, 20.0), (300.0, 1000.0)], ids=["estimate", "from-below", "from-above"])
def test_percentile_capacity_matches_closed_form(tmp_path, constant_cost, bracket):
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    criterion = CapacityCriterion(attainment_target=None, percentile_bounds=(("ttft_s", "p99", 1.5 * STEP_S),))
    result = find_capacity(scenario, criterion, rate_lo=bracket[0], rate_hi=bracket[1], rel_tol=0.05, max_runs=16)
    expected = p99_capacity()  # 100.25 req/s
    assert result.reason == ""
    assert expected / 1.05 <= result.capacity_rps <= expected
    # The answer is bracketed by a run that met at it and one that missed within 5 % above it.
    missed_above = [rate for rate, met, _ in result.points if not met and rate > result.capacity_rps]
    assert min(missed_above) <= 1.05 * result.capacity_rps + 1e-9
    assert all(met == (rate <= expected) for rate, met, _ in result.points)


def test_attainment_capacity_matches_closed_form(tmp_path, constant_cost):
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path), f"slo.ttft_s={1.5 * STEP_S}", "slo.tpot_s=null")
    result = find_capacity(scenario, CapacityCriterion(attainment_target=0.9), rel_tol=0.02)
    expected = attainment_capacity()  # 100.28 req/s
    assert expected / 1.02 <= result.capacity_rps <= expected


def test_capacity_on_a_synthetic_workload_is_below_saturation(tmp_path, constant_cost):
    # Nearly deterministic gamma arrivals (cv 0.01) at a synthetic rate: the same answer, about.
    scenario = load_scenario(None, [
        "workload.num_requests=200", "workload.arrival={process: gamma, rate: 1.0, cv: 0.01}",
        "workload.prompt_tokens={distribution: fixed, value: 16}", "workload.output_tokens={distribution: fixed, value: 1}",
        "scheduler.max_num_seqs=1",
    ])
    criterion = CapacityCriterion(None, (("ttft_s", "p99", 1.5 * STEP_S),))
    result = find_capacity(scenario, criterion, rel_tol=0.05)
    assert 0.9 / STEP_S <= result.capacity_rps <= p99_capacity()


def test_no_rate_meets_an_impossible_criterion(tmp_path, constant_cost):
    # Every TTFT is at least one step, so a median below half a step never holds.
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    result = find_capacity(scenario, CapacityCriterion(None, (("ttft_s", "p50", 0.5 * STEP_S),)), max_runs=5)
    assert result.capacity_rps is None and result.num_runs == 5
    assert "missed the criterion at every rate" in result.reason


def test_a_search_stepping_down_stops_at_the_rate_floor(tmp_path, constant_cost):
    # Without a floor the step-down factors grow (g^4, g^8, ...) toward absurd rates.
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    criterion = CapacityCriterion(None, (("ttft_s", "p50", 0.5 * STEP_S),))
    result = find_capacity(scenario, criterion, rate_lo=50.0, rate_floor=10.0, max_runs=12)
    assert result.capacity_rps is None and "the floor" in result.reason
    rates = [rate for rate, _, _ in result.points]
    assert min(rates) == 10.0 and result.num_runs < 12


def test_a_criterion_met_at_every_rate_reports_a_lower_bound(tmp_path, constant_cost):
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    result = find_capacity(scenario, CapacityCriterion(None, (("e2e_s", "p99", 1e6),)), max_runs=3)
    assert result.capacity_rps == max(rate for rate, _, _ in result.points)
    assert "at least" in result.reason


def test_search_ends_when_the_workload_arrives_as_a_burst(tmp_path, constant_cost):
    # 200 one-step requests take 2 s however fast they arrive; once they all arrive within 1 %
    # of that, no higher rate can be told apart, so the search stops and says why.
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    result = find_capacity(scenario, CapacityCriterion(None, (("e2e_s", "p99", 1e6),)), max_runs=12)
    assert result.num_runs < 12 and "burst" in result.reason and "max_requests" in result.reason
    assert NUM_REQUESTS / result.capacity_rps < 0.01 * NUM_REQUESTS * STEP_S * 1.01


@pytest.mark.parametrize("rate", [50.0, 100.0, 101.0, 150.0, 400.0])
def test_early_stop_agrees_with_full_runs(tmp_path, constant_cost, rate):
    scenario = with_rate(one_at_a_time(evenly_spaced_trace(tmp_path)), rate)
    for criterion in (CapacityCriterion(None, (("ttft_s", "p99", 1.5 * STEP_S),)), CapacityCriterion(None, (("ttft_s", "p90", 3 * STEP_S),))):
        met_full, full = evaluate(scenario, criterion, early_stop=False)
        met_early, early = evaluate(scenario, criterion, early_stop=True)
        assert met_full == met_early == criterion.met(full)
        assert not full["stopped_early"]
        if early["stopped_early"]:
            assert not met_early and early["num_completed"] < NUM_REQUESTS == early["num_requests"]
    # Far above capacity the run stops long before the queue drains.
    if rate == 400.0:
        assert early["stopped_early"] and early["num_completed"] < NUM_REQUESTS / 2


def test_early_stop_on_attainment_agrees_with_full_runs(tmp_path, constant_cost):
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path), f"slo.ttft_s={1.5 * STEP_S}", "slo.tpot_s=null")
    criterion = CapacityCriterion(0.9)
    for rate in (99.0, 100.3, 101.0, 200.0):
        met_full, full = evaluate(with_rate(scenario, rate), criterion, early_stop=False)
        met_early, _ = evaluate(with_rate(scenario, rate), criterion, early_stop=True)
        assert met_full == met_early == (rate <= attainment_capacity())


def test_criterion_met_reads_the_summary():
    summary = {"num_requests": 10, "num_completed": 10, "slo_attainment": 0.9, "ttft_s": {"p90": 1.9}, "tbt_s": {"p99": None}}
    assert CapacityCriterion(0.9).met(summary)
    assert not CapacityCriterion(0.95).met(summary)
    assert not CapacityCriterion(0.5).met(summary | {"slo_attainment": math.nan})
    assert CapacityCriterion(None, (("ttft_s", "p90", 2.0), ("tbt_s", "p99", 0.2))).met(summary)  # no TBT data: no violation
    assert not CapacityCriterion(None, (("ttft_s", "p90", 1.5),)).met(summary)
    assert not CapacityCriterion(0.5).met(summary | {"num_completed": 9})


@pytest.mark.parametrize("bad", [
    {"attainment_target": None}, {"attainment_target": 1.5},
    {"percentile_bounds": (("ttft", "p90", 2.0),)}, {"percentile_bounds": (("tbt_s", "p90", 0.2),)},
    {"percentile_bounds": (("ttft_s", "p90", 0.0),)},
])
def test_criterion_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        CapacityCriterion(**({"attainment_target": None} | bad) if "percentile_bounds" in bad else bad)


def test_estimate_is_the_saturation_rate_of_a_constant_step(tmp_path, constant_cost):
    # One step per request (prefill; one output token): 1 / T requests per second.
    assert capacity.estimate_max_rate(one_at_a_time(evenly_spaced_trace(tmp_path))) == pytest.approx(1 / STEP_S)


# --- with_rate --------------------------------------------------------------------------------


def test_with_rate_on_a_synthetic_workload_sets_the_arrival_rate():
    base = load_scenario(None, ["workload.num_requests=4000", "workload.time_scale=3"])
    fast = with_rate(base, 11.0)
    assert fast.workload.arrival.rate == 11.0 and fast.workload.time_scale == 1.0
    arrivals = np.array([r.arrival_time for r in load_workload(fast.workload, fast.seed, 8192).requests])
    assert (len(arrivals) - 1) / arrivals[-1] == pytest.approx(11.0, rel=0.05)  # Poisson, 4,000 gaps
    # Same seed: the same exponential draws, scaled by 1 / rate.
    slow = np.array([r.arrival_time for r in load_workload(with_rate(base, 5.5).workload, base.seed, 8192).requests])
    np.testing.assert_allclose(slow / 2, arrivals, rtol=1e-12)


def test_with_rate_on_a_trace_scales_time(tmp_path):
    trace = evenly_spaced_trace(tmp_path, n=101, gap_s=0.5)  # 2 req/s
    base = load_scenario(None, [f"workload.trace={trace}"])
    assert native_rate_rps(base) == pytest.approx(2.0)
    fast = with_rate(base, 8.0)
    assert fast.workload.time_scale == pytest.approx(4.0)
    arrivals = [r.arrival_time for r in load_workload(fast.workload, 0, 8192).requests]
    assert arrivals[-1] == pytest.approx(50.0 / 4)


def test_with_rate_keeps_the_same_requests_under_max_requests(azure_conv):
    base = load_scenario(None, [f"workload.trace={azure_conv}", "workload.max_requests=500", "model.max_model_len=16384"])
    for rate in (3.0, 12.0):
        requests = load_workload(with_rate(base, rate).workload, 0, 16384).requests
        assert len(requests) == 500
        assert (len(requests) - 1) / requests[-1].arrival_time == pytest.approx(rate, rel=1e-9)


def test_native_rate_of_the_azure_conversation_trace(azure_conv):
    # The traces README: 19,366 requests over 58 minutes, 5.5 req/s.
    base = load_scenario(None, [f"workload.trace={azure_conv}", "model.max_model_len=16384"])
    assert native_rate_rps(base) == pytest.approx(5.5, rel=0.03)


def test_with_rate_on_a_length_only_trace_sets_the_arrival_process(tmp_path):
    trace = tmp_path / "lengths.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n" + "100,10\n" * 50)
    base = load_scenario(None, [f"workload.trace={trace}"])
    scenario = with_rate(base, 7.5)
    assert scenario.workload.arrival.rate == 7.5 and scenario.workload.time_scale == 1.0
    assert native_rate_rps(base) == base.workload.arrival.rate


def test_with_rate_rejects_a_nonpositive_rate():
    from simulator.errors import ScenarioError

    with pytest.raises(ScenarioError, match="positive"):
        with_rate(load_scenario(None), 0.0)


# --- run cache --------------------------------------------------------------------------------


def test_run_key_changes_with_any_field_and_with_the_trace_file(tmp_path):
    trace = evenly_spaced_trace(tmp_path, n=10)
    base = load_scenario(None, [f"workload.trace={trace}"])
    key = run_key(base)
    assert run_key(load_scenario(None, [f"workload.trace={trace}"])) == key  # same configuration
    assert run_key(dataclasses.replace(base, seed=1)) != key
    assert run_key(load_scenario(None, [f"workload.trace={trace}", "scheduler.chunk_size=256"])) != key
    assert run_key(base, {"early_stop": True}) != key
    trace.write_text(trace.read_text() + "10.0,16,2\n")  # an edited trace: same path, new content
    assert run_key(base) != key


def test_run_cache_hits_on_the_same_configuration(tmp_path):
    cache = RunCache(tmp_path / "cache")
    key = run_key(load_scenario(None))
    assert cache.get(key) is None
    cache.put(key, {"summary": {"slo_attainment": math.nan, "ttft_s": {"p99": 1.5}}})
    hit = cache.get(key)
    assert hit["summary"]["ttft_s"]["p99"] == 1.5 and math.isnan(hit["summary"]["slo_attainment"])
    assert RunCache(tmp_path / "cache").get(run_key(load_scenario(None, ["seed=3"]))) is None
    off = RunCache(None)
    off.put(key, {"x": 1})
    assert off.get(key) is None


def write_one(args: tuple[str, str, int]) -> int:
    folder, key, value = args
    cache = RunCache(Path(folder))
    for _ in range(50):
        cache.put(key, {"value": value, "padding": "x" * 20_000})
    return value


def test_concurrent_writers_leave_a_whole_file(tmp_path):
    key = "ab" * 32
    list(LocalExecutor(2, progress=False).map(write_one, [(str(tmp_path), key, v) for v in range(4)]))
    value = json.loads((tmp_path / f"{key}.json").read_text())
    assert value["value"] in range(4) and len(value["padding"]) == 20_000
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.json"]  # no temporary files left


def test_find_capacity_resumes_from_the_cache(tmp_path, constant_cost, monkeypatch):
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    criterion = CapacityCriterion(None, (("ttft_s", "p99", 1.5 * STEP_S),))
    cache = RunCache(tmp_path / "cache")
    first = find_capacity(scenario, criterion, cache=cache)

    def no_simulation(*args, **kwargs):
        raise AssertionError("a cached probe was simulated again")

    monkeypatch.setattr(probe, "_WatchedSimulation", no_simulation)
    second = find_capacity(scenario, criterion, cache=cache)
    assert second.capacity_rps == first.capacity_rps
    assert [(r, m) for r, m, _ in second.points] == [(r, m) for r, m, _ in first.points]


def test_a_step_time_factor_scales_the_capacity_and_keys_the_cache(tmp_path, constant_cost):
    # Steps 1.2x as long (T' = 12 ms): by the closed form above with T' for T, request h meets
    # TTFT <= 1.5 T while g >= T' - (1.5 T - T') / h. The cache keeps the two searches apart.
    scenario = one_at_a_time(evenly_spaced_trace(tmp_path))
    criterion = CapacityCriterion(None, (("ttft_s", "p99", 1.5 * STEP_S),))
    cache = RunCache(tmp_path / "cache")
    plain = find_capacity(scenario, criterion, cache=cache, rel_tol=0.02)
    slow = find_capacity(scenario, criterion, cache=cache, rel_tol=0.02, step_time_factor=1.2)
    h, t = 0.99 * (NUM_REQUESTS - 1), 1.2 * STEP_S
    expected = 1.0 / (t - (1.5 * STEP_S - t) / h)  # 83.4 req/s
    assert expected / 1.02 <= slow.capacity_rps <= expected and plain.capacity_rps > 1.15 * slow.capacity_rps
    assert find_capacity(scenario, criterion, cache=cache, rel_tol=0.02).capacity_rps == plain.capacity_rps
