"""The HTML report: self-contained, has its figures, and stays small however long the run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.reports.run_report import MAX_ITERATION_POINTS, bin_iterations, summary_html, write_report

FIGURE_TITLES = [
    "CDF of TTFT, TPOT and E2E over requests",
    "TTFT and TPOT over time",
    "Iterations over time",
    "Batch size (mean per iteration)",
    "Prefill tokens/s",
    "Decode tokens/s",
    "KV-cache usage (mean)",
    "Waiting requests (mean)",
    "Running requests (mean)",
]


def make_requests(num_requests: int = 50, num_replicas: int = 2, seed: int = 0) -> pd.DataFrame:
    """Random but consistent request records: arrival <= scheduled <= first token <= finish."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0.0, 60.0, num_requests))
    scheduled = arrival + rng.exponential(0.05, num_requests)
    first_token = scheduled + rng.uniform(0.02, 0.5, num_requests)
    num_output = rng.integers(1, 300, num_requests)
    finish = first_token + (num_output - 1) * rng.uniform(0.01, 0.05, num_requests)
    ttft = first_token - arrival
    e2e = finish - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(num_output > 1, (finish - first_token) / (num_output - 1), np.nan)
    return pd.DataFrame(
        {
            "request_id": np.arange(num_requests),
            "replica_id": np.arange(num_requests) % num_replicas,
            "arrival_time": arrival,
            "first_scheduled_time": scheduled,
            "first_token_time": first_token,
            "finish_time": finish,
            "num_prompt_tokens": rng.integers(16, 2048, num_requests),
            "num_output_tokens": num_output,
            "num_preemptions": rng.integers(0, 2, num_requests),
            "ttft_s": ttft,
            "tpot_s": tpot,
            "e2e_s": e2e,
            "normalized_e2e_s": e2e / num_output,
            "scheduling_delay_s": scheduled - arrival,
            "meets_slo": (ttft <= 0.3) & ~(tpot > 0.04),
        }
    )


def make_iterations(
    num_iterations: int = 300, num_replicas: int = 2, seed: int = 0
) -> pd.DataFrame:
    """Back-to-back iterations of 10-50 ms on each replica, random batch contents."""
    rng = np.random.default_rng(seed)
    replica_id = np.arange(num_iterations) % num_replicas
    duration = rng.uniform(0.01, 0.05, num_iterations)
    end = np.zeros(num_iterations)
    for replica in range(num_replicas):
        mine = replica_id == replica
        end[mine] = np.cumsum(duration[mine])
    batch_size = rng.integers(1, 64, num_iterations)
    return pd.DataFrame(
        {
            "replica_id": replica_id,
            "iteration": np.arange(num_iterations) // num_replicas,
            "start_time": end - duration,
            "end_time": end,
            "batch_size": batch_size,
            "num_prefill_tokens": rng.integers(0, 2048, num_iterations),
            "num_decode_tokens": batch_size,
            "num_kv_blocks_used": rng.integers(0, 1000, num_iterations),
            "kv_usage": rng.uniform(0.0, 1.0, num_iterations),
            "num_waiting": rng.integers(0, 20, num_iterations),
            "num_running": batch_size,
            "num_preemptions": rng.integers(0, 2, num_iterations),
        }
    )


def make_summary() -> dict:
    latency = {"mean": 0.21, "p50": 0.2, "p90": 0.35, "p99": 0.48}
    return {
        "num_requests": 50,
        "num_completed": 50,
        "duration_s": 61.5,
        "request_throughput_rps": 0.81,
        "output_throughput_tps": 120.4,
        "total_throughput_tps": 950.2,
        "ttft_s": latency,
        "tpot_s": {"mean": 0.03, "p50": 0.03, "p90": 0.045, "p99": 0.049},
        "e2e_s": {"mean": 4.1, "p50": 3.9, "p90": 7.5, "p99": 9.8},
        "tbt_s": {"p50": 0.03, "p99": 0.05},
        "slo_attainment": 0.62,
        "goodput_rps": 0.5,
        "num_preemptions": 3,
        "wall_time_s": 0.42,
        "slo": {"ttft_s": 0.3, "tpot_s": 0.04, "e2e_s": None},
        "scenario": {"name": "toy <vllm>", "scheduler": "vllm"},
    }


def test_report_is_one_self_contained_file_with_every_figure(tmp_path: Path) -> None:
    path = write_report(
        make_requests(), make_iterations(), make_summary(), "toy run", tmp_path / "out" / "r.html"
    )

    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "out" / "r.html"
    assert "plotly.js v" in text  # the bundle's banner: plotly.js is embedded
    assert text.count("Plotly.newPlot") == 3
    assert not re.search(r"<script[^>]*\bsrc=", text), "no external scripts"
    # plotly escapes "/", "<" and ">" inside the figures' JSON.
    unescaped = text.replace("\\u002f", "/").replace("\\u003c", "<").replace("\\u003e", ">")
    for title in FIGURE_TITLES:
        assert title in unescaped, title
    assert "TPOT = (finish time − first-token time) / (output tokens − 1)" in text
    assert "SLO 300 ms" not in text and "SLO 0.3 s" in text and "SLO 40 ms" in text


def test_summary_table_formats_latencies_in_ms_and_escapes_text() -> None:
    table = summary_html(make_summary())

    assert "ttft (ms)" in table and "<td>200.0</td>" in table  # p50 TTFT 0.2 s
    assert "62.0%" in table  # slo_attainment
    assert "slo.ttft_s" in table and "scenario.name" in table
    assert "toy &lt;vllm&gt;" in table


def test_downsampling_bounds_the_file_size_of_a_long_run(tmp_path: Path) -> None:
    iterations = make_iterations(num_iterations=200_000, num_replicas=4)
    bins = bin_iterations(iterations)
    assert len(bins) <= MAX_ITERATION_POINTS
    # Binning keeps the totals: tokens/s times bin width sums back to every token.
    total = (bins["prefill_tokens_per_s"] * bins.attrs["bin_width_s"]).sum()
    assert np.isclose(total, iterations["num_prefill_tokens"].sum())

    requests = make_requests(2_000, num_replicas=4)
    path = write_report(requests, iterations, make_summary(), "long", tmp_path / "r.html")
    plotly_js_size = 5_000_000
    assert path.stat().st_size < plotly_js_size + 1_000_000


def test_edge_cases_zero_iterations_nan_tpot_one_replica(tmp_path: Path) -> None:
    requests = make_requests(num_requests=5, num_replicas=1)
    requests["tpot_s"] = np.nan
    requests["num_output_tokens"] = 1
    summary = {"num_requests": 5, "ttft_s": {"mean": float("nan"), "p50": None}}

    iterations = make_iterations(0, num_replicas=1)
    path = write_report(requests, iterations, summary, "empty", tmp_path / "r.html")

    text = path.read_text(encoding="utf-8")
    assert "No iterations recorded." in text
    assert "no data" in text  # TPOT CDF and TPOT-over-time subplots
    assert text.count("Plotly.newPlot") == 2


def test_one_replica_with_a_single_iteration(tmp_path: Path) -> None:
    iterations = make_iterations(1, num_replicas=1)
    path = write_report(make_requests(3, 1), iterations, {}, "tiny", tmp_path / "r.html")

    assert "Iterations over time" in path.read_text(encoding="utf-8")
    assert len(bin_iterations(iterations)) == 1


def test_no_requests_and_no_iterations_still_give_a_page(tmp_path: Path) -> None:
    path = write_report(pd.DataFrame(), pd.DataFrame(), {}, "nothing", tmp_path / "r.html")

    text = path.read_text(encoding="utf-8")
    assert "Empty summary." in text and "No iterations recorded." in text


def test_long_figure_titles_are_broken_into_lines_that_fit() -> None:
    from simulator.reports.axes import fit_title

    long = "One replica: cost per hour against capacity (symbols: " + ", ".join(f"s{i}: vllm_v1 chunk_size={256 * i}" for i in range(8)) + ")"
    lines = fit_title(long).split("<br>")
    assert len(lines) > 1 and all(len(line) <= 90 for line in lines) and " ".join(lines) == long
    assert fit_title("short") == "short"
