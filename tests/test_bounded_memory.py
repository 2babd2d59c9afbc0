"""Bounded-memory outputs: token gaps in a histogram, iteration records sampled or not kept.

Each story runs the same small scenario with the default outputs and with the bounded ones and
checks that every request-level result is the same and that the summary's approximations stay
within their documented bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.engine.simulation import simulate
from simulator.engine.token_gaps import QUANTILE_RELATIVE_ERROR, TokenGapHistogram
from simulator.scenario import load_scenario

BASE = ["workload.num_requests=150", "workload.arrival.rate=8"]
SCHEDULERS = ["vllm", "vllm_v1", "sarathi", "orca", "static", "distserve"]


def run(*overrides: str):
    return simulate(load_scenario(None, [*BASE, *overrides]))


def test_histogram_quantiles_are_within_the_bound_of_numpy():
    rng = np.random.default_rng(0)
    gaps = np.concatenate([rng.lognormal(np.log(0.02), 1.0, 50_000), np.zeros(30), [5e-10, 3.0]])
    histogram = TokenGapHistogram()
    histogram.add(gaps[:20_000])
    histogram.buffer.extend(gaps[20_000:])  # buffered gaps count once flushed
    for q in (0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = np.percentile(gaps, 100 * q)
        assert histogram.quantile(q) == pytest.approx(exact, rel=QUANTILE_RELATIVE_ERROR, abs=1e-9), q
    assert histogram.count == gaps.size and histogram.max_s == gaps.max() and histogram.min_s == 0.0
    assert histogram.mean() == pytest.approx(gaps.mean(), rel=1e-12)


def test_histograms_merge_exactly():
    rng = np.random.default_rng(1)
    gaps = rng.exponential(0.01, 10_000)
    whole, left, right = TokenGapHistogram(), TokenGapHistogram(), TokenGapHistogram()
    whole.add(gaps)
    left.add(gaps[:3000])
    right.add(gaps[3000:])
    left.merge(right)
    assert np.array_equal(left.counts, whole.counts) and left.count == whole.count
    assert left.stats(("p50", "p99", "max")) == whole.stats(("p50", "p99", "max"))


def test_an_empty_histogram_reports_none():
    assert TokenGapHistogram().stats(("p50", "p99", "mean", "max")) == {"p50": None, "p99": None, "mean": None, "max": None}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_bounded_outputs_keep_every_request_result(scheduler):
    exact = run(f"scheduler.name={scheduler}")
    bounded = run(f"scheduler.name={scheduler}", "output.token_gaps=histogram", "output.iterations=none", "output.keep_requests=false")
    assert exact.requests.equals(bounded.requests)
    assert bounded.tbt_s.size == 0 and len(bounded.iterations) == 0 and not bounded.workload.requests
    s, b = exact.summary, bounded.summary
    for key in ("ttft_s", "tpot_s", "e2e_s", "num_completed", "duration_s", "num_iterations", "mean_batch_size", "num_preemptions"):
        assert b[key] == s[key], key
    assert b["mean_kv_usage"] == pytest.approx(s["mean_kv_usage"], rel=1e-12)
    for key in ("p50", "p99"):
        assert b["tbt_s"][key] == pytest.approx(s["tbt_s"][key], rel=QUANTILE_RELATIVE_ERROR)
    gaps = b["token_gaps"]
    assert gaps["count"] == exact.tbt_s.size and gaps["max_s"] == exact.tbt_s.max()
    assert gaps["mean_s"] == pytest.approx(exact.tbt_s.mean(), rel=1e-12)


def test_sampled_iterations_keep_every_kth_of_each_replica():
    full = run("cluster.num_replicas=2", "output.iterations=full")
    sampled = run("cluster.num_replicas=2", "output.iterations=sampled", "output.iteration_sample_every=7")
    kept = full.iterations[full.iterations["iteration"] % 7 == 0].reset_index(drop=True)
    assert kept.equals(sampled.iterations)
    for key in ("num_iterations", "mean_batch_size", "num_resume_cached_tokens"):
        assert sampled.summary[key] == full.summary[key], key
    assert full.summary == {**sampled.summary, "wall_time_s": full.summary["wall_time_s"],
                            "mean_kv_usage": full.summary["mean_kv_usage"]}


def test_preemptions_and_prefix_cache_counters_survive_without_iterations():
    squeeze = ["workload.arrival.rate=40", "scheduler.gpu_memory_utilization=0.3", "scheduler.name=vllm_v1"]
    full = run(*squeeze)
    bounded = run(*squeeze, "output.iterations=none", "output.token_gaps=histogram")
    assert full.summary["num_preemptions"] > 0
    assert bounded.summary["num_resume_cached_tokens"] == full.summary["num_resume_cached_tokens"]
    assert bounded.requests.equals(full.requests)


def test_gaps_kept_per_request_or_in_a_histogram_are_the_same_gaps():
    kept = run("output.token_gaps=histogram")
    assert all(len(r.token_times) == 0 for r in kept.workload.requests)
    assert kept.token_gap_histogram.count == run().tbt_s.size


@pytest.mark.parametrize("extra", [[], ["workload.concurrency=8"], ["scheduler.name=distserve"], ["cluster.num_replicas=3", "cluster.router=least_outstanding"]])
def test_dropping_request_objects_changes_no_result(extra):
    kept = run(*extra)
    dropped = run(*extra, "output.keep_requests=false")
    assert kept.requests.equals(dropped.requests)
    assert np.array_equal(np.sort(kept.tbt_s), np.sort(dropped.tbt_s))
    assert kept.iterations.equals(dropped.iterations)
    drop = ("wall_time_s",)
    assert {k: v for k, v in kept.summary.items() if k not in drop} == {k: v for k, v in dropped.summary.items() if k not in drop}
