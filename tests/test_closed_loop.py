"""Closed-loop load: N clients, each sending its next request when its last one finished (after a think time)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate

BASE = ["workload.num_requests=60", "workload.prompt_tokens={distribution: uniform, min: 50, max: 600}",
        "workload.output_tokens={distribution: uniform, min: 5, max: 80}", "scheduler.name=vllm_v1"]


def run(*overrides: str):
    return simulate(load_scenario(None, [*BASE, *overrides])).requests


def in_flight_at(t: float, arrival: np.ndarray, finish: np.ndarray) -> int:
    return int(((arrival <= t) & (finish > t)).sum())


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_never_more_requests_in_flight_than_clients_and_every_slot_refilled(concurrency):
    df = run(f"workload.concurrency={concurrency}")
    arrival, finish = df["arrival_time"].to_numpy(), df["finish_time"].to_numpy()
    assert len(df) == 60 and np.isfinite(finish).all()
    for t in np.unique(np.concatenate([arrival, finish])):
        assert in_flight_at(t, arrival, finish) <= concurrency
    # Without think time a slot is refilled the moment it frees: the k-th request after the first
    # N is sent exactly when the (k)-th finish happened (requests are sent in workload order).
    order = df.sort_values("request_id")
    sends = order["arrival_time"].to_numpy()
    assert (sends[:concurrency] == 0.0).all()
    finishes = np.sort(finish)
    assert np.allclose(sends[concurrency:], finishes[: len(sends) - concurrency])


def test_think_time_delays_each_next_request():
    think = 0.25
    df = run("workload.concurrency=2", f"workload.think_time_s={think}").sort_values("request_id")
    sends = df["arrival_time"].to_numpy()
    finishes = np.sort(df["finish_time"].to_numpy())
    assert np.allclose(sends[2:], finishes[: len(sends) - 2] + think)


def test_closed_loop_ignores_the_arrival_process_and_is_deterministic():
    a = run("workload.concurrency=8", "workload.arrival.rate=0.001")  # a rate that would take hours
    b = run("workload.concurrency=8", "workload.arrival.rate=50")
    assert a["finish_time"].max() < 600 and a.equals(b)
