"""The arrival rate of a scenario: read from its trace or arrival process, set to a new value, and
estimated from one replica's step times.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.engine import simulation
from simulator.engine.batch import Batch
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.studies.run_cache import file_fingerprint
from simulator.scenario import Scenario
from simulator.workload import _detect, _is_jsonl, load_workload


# (trace, fingerprint, max_requests, on_invalid, max_model_len) -> requests per second at
# time_scale 1; each trace is loaded once per process however many rates are tried.
_NATIVE_RATES: dict[tuple, float] = {}


_HAS_ARRIVAL_TIMES: dict[tuple[str, str], bool] = {}


def _has_arrival_times(trace: str) -> bool:
    """Whether a trace file carries arrival times (a length-only CSV does not); memoized."""
    path = Path(trace)
    if _is_jsonl(path):
        return True
    memo = (trace, file_fingerprint(path))
    if memo not in _HAS_ARRIVAL_TIMES:
        try:
            columns = pd.read_csv(path, nrows=0).columns
        except (OSError, ValueError):
            return True  # unreadable: loading the workload reports it properly
        _HAS_ARRIVAL_TIMES[memo] = _detect(path, columns).time is not None
    return _HAS_ARRIVAL_TIMES[memo]


def native_rate_rps(scenario: Scenario, source: str = "<scenario>") -> float:
    """The scenario's arrival rate before time scaling (req/s).

    Synthetic workloads and length-only traces: ``workload.arrival.rate``. A trace with
    arrival times: (N - 1) / span of the arrival times of its first N requests, N the requests
    kept with ``time_scale`` 1 and without ``max_duration_s`` (``max_requests`` applies), i.e.
    one over the mean gap between arrivals. Measured once per trace and process.

    Raises:
        ScenarioError: the trace cannot be loaded, or all its requests arrive at once.
    """
    w = scenario.workload
    if w.trace is None or not _has_arrival_times(w.trace):
        return w.arrival.rate
    max_model_len = resolve_deployment(scenario, source).max_model_len
    memo = (w.trace, file_fingerprint(w.trace), w.max_requests, w.on_invalid, max_model_len)
    rate = _NATIVE_RATES.get(memo)
    if rate is None:
        cfg = dataclasses.replace(w, time_scale=1.0, max_duration_s=None)
        arrivals = [r.arrival_time for r in load_workload(cfg, scenario.seed, max_model_len, source).requests]
        span = arrivals[-1] - arrivals[0]
        if len(arrivals) < 2 or span <= 0:
            raise ScenarioError(source, "workload.trace", w.trace, "has no arrival-time span to scale", "use a trace whose requests arrive over time, or a synthetic workload")
        rate = _NATIVE_RATES[memo] = (len(arrivals) - 1) / span
    return rate


def with_rate(scenario: Scenario, rate_rps: float, source: str = "<scenario>") -> Scenario:
    """The scenario at arrival rate ``rate_rps`` (req/s, > 0).

    The rule:
      * synthetic workload, or a length-only trace (arrivals drawn from ``workload.arrival``):
        ``workload.arrival.rate = rate_rps`` and ``workload.time_scale = 1``. With the same seed
        the arrival draws are the same standard exponentials (or gammas) scaled by 1 / rate, so
        rates compare on the same requests.
      * a trace with arrival times: ``workload.time_scale = rate_rps / native_rate_rps(scenario)``,
        replaying the trace faster or slower. With ``max_requests`` the replayed requests are the
        same at every rate and their mean rate is exactly ``rate_rps``; with ``max_duration_s``
        (applied after scaling) the window holds more of the trace at higher rates, and its mean
        rate is ``rate_rps`` as far as the trace is stationary.

    Raises:
        ScenarioError: ``rate_rps`` <= 0, or the trace cannot be loaded.
    """
    if not rate_rps > 0 or not math.isfinite(rate_rps):
        raise ScenarioError(source, "rate", rate_rps, "the arrival rate must be a positive number of requests per second", "give a rate > 0")
    w = scenario.workload
    if w.trace is None or not _has_arrival_times(w.trace):
        workload = dataclasses.replace(w, arrival=dataclasses.replace(w.arrival, rate=float(rate_rps)), time_scale=1.0)
    else:
        workload = dataclasses.replace(w, time_scale=float(rate_rps) / native_rate_rps(scenario, source))
    return dataclasses.replace(scenario, workload=workload)


# (workload without its rate, seed, max_model_len, trace fingerprint) -> mean prompt and output
# tokens; many capacity searches in one process share a workload.
_MEAN_LENGTHS: dict[str, tuple[int, int]] = {}


def _mean_lengths(scenario: Scenario, max_model_len: int, source: str) -> tuple[int, int]:
    """Mean prompt and output tokens of the scenario's workload (rounded, >= 1), memoized."""
    w = scenario.workload
    unrated = dataclasses.replace(w, time_scale=1.0, arrival=dataclasses.replace(w.arrival, rate=1.0), max_duration_s=None)
    memo = json.dumps([dataclasses.asdict(unrated), scenario.seed, max_model_len, file_fingerprint(w.trace) if w.trace else None], sort_keys=True, default=str)
    lengths = _MEAN_LENGTHS.get(memo)
    if lengths is None:
        requests = load_workload(unrated, scenario.seed, max_model_len, source).requests
        lengths = _MEAN_LENGTHS[memo] = (
            max(1, round(float(np.mean([r.num_prompt_tokens for r in requests])))),
            max(1, round(float(np.mean([r.num_output_tokens for r in requests])))),
        )
    return lengths


def estimate_max_rate(scenario: Scenario, source: str = "<scenario>") -> float:
    """A rough saturation throughput of the deployment on its workload (req/s), from the cost model.

    Per replica, one request of the workload's mean prompt P and mean output O costs a prefill
    step of P tokens plus O decode steps shared by a full batch: B = min(max_num_seqs, KV-cache
    tokens / (P + O / 2)) requests at context P + O / 2 each. Rate = replicas / (prefill time +
    O * decode step time / B). It ignores SLOs and scheduling policy: it is the first guess of
    ``find_capacity``, whose bracketing corrects it, not an answer. The mean lengths are those of
    the workload's requests (``max_duration_s`` aside), memoized per workload and process. A
    disaggregated deployment (prefill and decode pools) gets the workload's own rate instead.

    Raises:
        ScenarioError: the scenario cannot be built.
    """
    if simulation.is_disaggregated(scenario, source):
        return native_rate_rps(scenario, source) * scenario.workload.time_scale
    deployment = resolve_deployment(scenario, source)
    prompt, output = _mean_lengths(scenario, deployment.max_model_len, source)
    cost_model = simulation.build_cost_model(scenario, deployment, source)  # the one a run uses
    prefill = Batch()
    prefill.add(Request(0, 0.0, prompt, output), prompt)
    context = prompt + output // 2
    kv_tokens = deployment.num_kv_blocks * scenario.scheduler.block_size
    batch_size = max(1, min(scenario.scheduler.max_num_seqs, kv_tokens // max(context, 1)))
    decodes = [Request(i, 0.0, prompt, output, num_computed_tokens=context) for i in range(batch_size)]
    per_request_s = cost_model.step_time(prefill)
    if output > 1:
        per_request_s += (output - 1) * cost_model.step_time(Batch.of_decodes(decodes)) / batch_size
    return scenario.cluster.num_replicas / per_request_s
