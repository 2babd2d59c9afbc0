"""Metrics, computed after the run from the records kept during it (DESIGN.md, Metrics).

Definitions (part of the interface):

* TTFT = first-token time - arrival time; the first token appears at the end of the iteration
  that finishes the prompt (under vLLM's async scheduling, after that iteration's GPU work and
  its own host work, which may be after the next iteration started: ``simulator.engine.replica``).
* TPOT = (finish time - first-token time) / (output tokens - 1), for requests with more than one
  output token (NaN otherwise).
* TBT = every gap between consecutive output tokens of a request; P50/P99 over all gaps.
* E2E = finish - arrival; normalized E2E = E2E / output tokens.
* Scheduling delay = first time scheduled - arrival.
* Duration = first arrival to last finish; throughputs are per second of duration.
* SLO attainment = fraction of requests meeting every SLO set (an undefined TPOT meets the TPOT
  SLO); goodput = such requests per second.
* Prefix cache hit rate = prompt tokens found in the prefix cache when each request was first
  scheduled (``num_cached_tokens``) / all prompt tokens.

Percentiles are numpy's linear interpolation between order statistics; with
``output.token_gaps: histogram`` TBT percentiles are read from a log histogram, within
``QUANTILE_RELATIVE_ERROR`` of that (``simulator.engine.token_gaps``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.engine.replica import ITERATION_COLUMNS
from simulator.engine.request import Request
from simulator.engine.token_gaps import QUANTILE_RELATIVE_ERROR, TokenGapHistogram
from simulator.scenario import SLOConfig


def request_table(requests: list[Request], slo: SLOConfig) -> pd.DataFrame:
    """One row per request: times (s on the simulation clock), token counts and latencies (s)."""
    return request_table_from_columns(
        {
            "request_id": np.array([r.request_id for r in requests], dtype=np.int64),
            "replica_id": np.array([r.replica_id for r in requests], dtype=np.int64),
            "arrival_time": np.array([r.arrival_time for r in requests], dtype=float),
            "first_scheduled_time": np.array([r.first_scheduled_time for r in requests], dtype=float),
            "first_token_time": np.array([r.first_token_time for r in requests], dtype=float),
            "finish_time": np.array([r.finish_time for r in requests], dtype=float),
            "num_prompt_tokens": np.array([r.num_prompt_tokens for r in requests], dtype=np.int64),
            "num_output_tokens": np.array([r.num_output_tokens for r in requests], dtype=np.int64),
            "num_preemptions": np.array([r.num_preemptions for r in requests], dtype=np.int64),
            "num_swaps": np.array([r.num_swaps for r in requests], dtype=np.int64),
            "num_cached_tokens": np.array([r.num_cached_tokens for r in requests], dtype=np.int64),
        },
        slo,
    )


def request_table_from_columns(columns: dict[str, np.ndarray], slo: SLOConfig) -> pd.DataFrame:
    """``request_table`` from its raw columns (each shape (N,): ids and counts int64, times
    float64 s, NaN when unset), as ``request_table`` or ``RequestColumns.columns`` give them."""
    df = pd.DataFrame(columns)
    df["ttft_s"] = df["first_token_time"] - df["arrival_time"]
    decode_tokens = (df["num_output_tokens"] - 1).where(df["num_output_tokens"] > 1)
    df["tpot_s"] = (df["finish_time"] - df["first_token_time"]) / decode_tokens
    df["e2e_s"] = df["finish_time"] - df["arrival_time"]
    df["normalized_e2e_s"] = df["e2e_s"] / df["num_output_tokens"]
    df["scheduling_delay_s"] = df["first_scheduled_time"] - df["arrival_time"]
    df["meets_slo"] = meets_slo(df, slo)
    return df


def meets_slo(df: pd.DataFrame, slo: SLOConfig) -> pd.Series:
    """Per request, whether it finished and met every SLO set (NaN TPOT meets the TPOT SLO)."""
    ok = df["finish_time"].notna()
    if slo.ttft_s is not None:
        ok &= df["ttft_s"] <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= df["tpot_s"].isna() | (df["tpot_s"] <= slo.tpot_s)
    if slo.e2e_s is not None:
        ok &= df["e2e_s"] <= slo.e2e_s
    return ok


_FLOAT_ITERATION_COLUMNS = ("start_time", "end_time", "kv_usage")


def iteration_table(records: list[tuple]) -> pd.DataFrame:
    """One row per iteration (columns: ``ITERATION_COLUMNS``), sorted by start time.

    Built through one float64 array (8 bytes a field; the counts are exact there, < 2**53), not
    pandas' per-object record parsing, so the table costs little beyond its own size.
    """
    if not records:
        return pd.DataFrame.from_records(records, columns=list(ITERATION_COLUMNS))
    values = np.array(records, dtype=np.float64)
    df = pd.DataFrame({name: values[:, i] if name in _FLOAT_ITERATION_COLUMNS else values[:, i].astype(np.int64)
                       for i, name in enumerate(ITERATION_COLUMNS)})
    del values
    return df.sort_values(["start_time", "replica_id"], kind="stable", ignore_index=True)


def token_gaps(requests: list[Request]) -> np.ndarray:
    """Every gap between consecutive output tokens of every request (s), concatenated in
    request order; written into one preallocated array."""
    out = np.empty(sum(max(len(r.token_times) - 1, 0) for r in requests))
    i = 0
    for r in requests:
        n = len(r.token_times)
        if n > 1:
            times = np.frombuffer(r.token_times, dtype=np.float64)
            np.subtract(times[1:], times[:-1], out=out[i:i + n - 1])
            i += n - 1
    return out


def _stats(values: pd.Series | np.ndarray, keys: tuple[str, ...] = ("mean", "p50", "p90", "p99")) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {k: None for k in keys}
    out: dict[str, float | None] = {}
    for k in keys:
        out[k] = float(arr.mean()) if k == "mean" else float(np.percentile(arr, float(k[1:])))
    return out


def iteration_totals(replicas: list) -> dict:
    """Exact iteration statistics from the replicas' online counters (``Replica.num_iterations``,
    ``total_batch_size``, ``total_kv_usage``, ``num_resume_cached_tokens``): the summary's
    ``num_iterations``, ``mean_batch_size``, ``mean_kv_usage`` and ``num_resume_cached_tokens``
    when not every iteration's record was kept."""
    n = sum(r.num_iterations for r in replicas)
    return {
        "num_resume_cached_tokens": sum(r.num_resume_cached_tokens for r in replicas),
        "num_iterations": n,
        "mean_batch_size": sum(r.total_batch_size for r in replicas) / n if n else 0.0,
        "mean_kv_usage": math.fsum(r.total_kv_usage for r in replicas) / n if n else 0.0,
    }


def summarize(requests: pd.DataFrame, iterations: pd.DataFrame, tbt_s: np.ndarray, slo: SLOConfig,
              token_gaps: TokenGapHistogram | None = None, totals: dict | None = None) -> dict:
    """The run's summary (the keys of ``summary.json``; times in s, rates per s).

    ``token_gaps``: the run's gap histogram (``output.token_gaps: histogram``): TBT percentiles
    are read from it (within its error bound) instead of ``tbt_s``, and a ``token_gaps`` entry
    gives the exact count, mean and max. ``totals``: iteration statistics from
    ``iteration_totals``, used instead of ``iterations`` (which then holds a sample or nothing).

    Raises nothing; a run with no finished request reports zero throughput and None latencies.
    """
    done = requests[requests["finish_time"].notna()]
    start = float(requests["arrival_time"].min()) if len(requests) else 0.0
    end = float(done["finish_time"].max()) if len(done) else start
    duration = end - start
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    num_output = int(done["num_output_tokens"].sum())
    num_total = num_output + int(done["num_prompt_tokens"].sum())
    num_good = int(requests["meets_slo"].sum())
    summary = {
        "num_requests": int(len(requests)),
        "num_completed": int(len(done)),
        "duration_s": duration,
        "request_throughput_rps": per_s(len(done)),
        "output_throughput_tps": per_s(num_output),
        "total_throughput_tps": per_s(num_total),
        "ttft_s": _stats(done["ttft_s"]),
        "tpot_s": _stats(done["tpot_s"]),
        "e2e_s": _stats(done["e2e_s"]),
        "tbt_s": _stats(tbt_s, ("p50", "p99")) if token_gaps is None else token_gaps.stats(("p50", "p99")),
        "normalized_e2e_s": _stats(done["normalized_e2e_s"]),
        "scheduling_delay_s": _stats(done["scheduling_delay_s"]),
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "e2e_s": slo.e2e_s},
        "slo_attainment": num_good / len(requests) if len(requests) else math.nan,
        "goodput_rps": per_s(num_good),
        "num_preemptions": int(requests["num_preemptions"].sum()),
        "num_swaps": int(requests["num_swaps"].sum()),
        # Fraction of prompt tokens served from the prefix cache at first scheduling (vLLM v1's
        # prefix cache hit rate counts the same tokens).
        "prefix_cache_hit_rate": float(requests["num_cached_tokens"].sum() / requests["num_prompt_tokens"].sum()) if len(requests) else 0.0,
        # Tokens found in the prefix cache by requests resumed after preemption by recompute (their
        # recompute skips them); vLLM v1 counts these apart too (PrefixCacheStats.preempted_hits).
        "num_resume_cached_tokens": int(iterations["num_resume_cached_tokens"].sum()) if "num_resume_cached_tokens" in iterations else 0,
        "num_iterations": int(len(iterations)),
        "mean_batch_size": float(iterations["batch_size"].mean()) if len(iterations) else 0.0,
        "mean_kv_usage": float(iterations["kv_usage"].mean()) if len(iterations) else 0.0,
    }
    if totals is not None:
        summary |= totals
    if token_gaps is not None:
        summary["token_gaps"] = {"kept": "histogram", "count": token_gaps.count, "mean_s": token_gaps.mean(),
                                 "max_s": token_gaps.max_s if token_gaps.count else None,
                                 "quantile_relative_error": QUANTILE_RELATIVE_ERROR}
    return summary
