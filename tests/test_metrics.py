"""Metric definitions against hand-computed values (DESIGN.md, Metrics)."""

import math
from array import array

import numpy as np
import pytest

from simulator.engine import metrics
from simulator.scenario import SLOConfig
from tests.conftest import make_request


def finished(request_id, arrival, scheduled, token_times, prompt=100):
    r = make_request(request_id, prompt=prompt, output=len(token_times), arrival=arrival)
    r.replica_id = 0
    r.first_scheduled_time = scheduled
    r.token_times = array("d", token_times)
    r.first_token_time = token_times[0]
    r.finish_time = token_times[-1]
    return r


@pytest.fixture
def two_requests():
    # A: arrives 0, scheduled 0.5, tokens at 1.0, 1.2, 1.6 -> TTFT 1.0, TPOT 0.3, E2E 1.6, gaps 0.2 and 0.4.
    # B: arrives 1, scheduled 1.0, one token at 4.0 -> TTFT 3.0, TPOT undefined, E2E 3.0.
    return [finished(0, 0.0, 0.5, [1.0, 1.2, 1.6]), finished(1, 1.0, 1.0, [4.0], prompt=50)]


def test_request_latencies(two_requests):
    df = metrics.request_table(two_requests, SLOConfig(ttft_s=2.0, tpot_s=0.5))
    a, b = df.iloc[0], df.iloc[1]
    assert a.ttft_s == pytest.approx(1.0) and a.tpot_s == pytest.approx(0.3) and a.e2e_s == pytest.approx(1.6)
    assert a.normalized_e2e_s == pytest.approx(1.6 / 3) and a.scheduling_delay_s == pytest.approx(0.5)
    assert b.ttft_s == pytest.approx(3.0) and math.isnan(b.tpot_s) and b.e2e_s == pytest.approx(3.0)
    assert list(df.meets_slo) == [True, False]  # B misses TTFT <= 2 s


def test_undefined_tpot_meets_tpot_slo(two_requests):
    df = metrics.request_table(two_requests, SLOConfig(ttft_s=None, tpot_s=0.1))
    assert list(df.meets_slo) == [False, True]  # A's TPOT 0.3 > 0.1; B has no TPOT


def test_token_gaps_are_every_gap(two_requests):
    assert np.allclose(np.sort(metrics.token_gaps(two_requests)), [0.2, 0.4])


def test_summary_throughput_goodput_and_percentiles(two_requests):
    slo = SLOConfig(ttft_s=2.0, tpot_s=None)
    df = metrics.request_table(two_requests, slo)
    iters = metrics.iteration_table([])
    s = metrics.summarize(df, iters, metrics.token_gaps(two_requests), slo)
    # Duration: first arrival 0 to last finish 4.0.
    assert s["duration_s"] == pytest.approx(4.0)
    assert s["request_throughput_rps"] == pytest.approx(2 / 4.0)
    assert s["output_throughput_tps"] == pytest.approx(4 / 4.0)
    assert s["total_throughput_tps"] == pytest.approx((4 + 150) / 4.0)
    assert s["ttft_s"]["mean"] == pytest.approx(2.0) and s["ttft_s"]["p50"] == pytest.approx(2.0)
    assert s["ttft_s"]["p90"] == pytest.approx(1.0 + 0.9 * 2.0)  # linear interpolation
    assert s["tpot_s"]["mean"] == pytest.approx(0.3)  # NaN TPOT left out
    assert s["tbt_s"]["p50"] == pytest.approx(0.3)
    assert s["slo_attainment"] == pytest.approx(0.5) and s["goodput_rps"] == pytest.approx(1 / 4.0)
