"""What ``servesim check`` says about a scenario's workload before anything is simulated.

The workload is built exactly as a run builds it (``simulator.workload.load_workload``), so every
check a run makes happens here too: the trace is opened and parsed, each row is validated (token
counts present, whole and >= 1, arrival times readable), and prompts are held against
``max_model_len``. A bad row fails under ``on_invalid: error`` (one line naming the trace, the row
and the fix) and is counted under ``skip``. Then the facts a user checks a deployment against:
rows read, requests kept, prompt and output lengths, outputs cut to fit, and the offered rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulator.reports.run_header import draws_arrivals, offered_rate_rps
from simulator.scenario import Scenario
from simulator.workload import _read_trace, load_workload


def workload_lines(scenario: Scenario, max_model_len: int, source: str = "<scenario>") -> list[str]:
    """Lines describing the scenario's workload as a run would build it.

    Args:
        scenario: the scenario.
        max_model_len: the deployment's context length (tokens; ``Deployment.max_model_len``).
        source: the scenario file, for errors.

    Returns:
        ``trace``/``synthetic`` (rows read, bad rows skipped, requests kept), ``lengths``
        (prompt and output tokens: min, mean, max; the longest prompt + output against
        ``max_model_len``; outputs cut to fit) and ``offered rate`` lines (req/s: (N - 1) /
        arrival span, ``run_header.offered_rate_rps``; closed loop: the clients instead).

    Raises:
        ScenarioError: the trace is missing or unreadable, a row is bad under
            ``on_invalid: error``, or no valid request is left.
    """
    cfg = scenario.workload
    workload = load_workload(cfg, scenario.seed, max_model_len, source)
    requests = workload.requests
    prompts = np.array([r.num_prompt_tokens for r in requests], dtype=np.int64)
    outputs = np.array([r.num_output_tokens for r in requests], dtype=np.int64)
    lines = []
    if cfg.trace is not None:
        fmt, table = _read_trace(Path(cfg.trace), source, "workload.trace")
        cut = len(table) - workload.num_skipped - len(requests)
        lines.append(f"trace {cfg.trace}: {fmt.name} format, {len(table):,} rows, {workload.num_skipped:,} bad rows skipped (on_invalid: {cfg.on_invalid}), "
                     f"{len(requests):,} requests kept" + (f" ({cut:,} beyond max_requests / max_duration_s)" if cut else ""))
    else:
        lines.append(f"synthetic workload: {len(requests):,} requests" + (f", {workload.num_skipped:,} sampled prompts too long skipped" if workload.num_skipped else ""))
    longest = int((prompts + outputs).max())
    lines.append(f"lengths: prompt tokens {prompts.min():,}..{prompts.max():,} (mean {prompts.mean():,.0f}), output tokens {outputs.min():,}..{outputs.max():,} "
                 f"(mean {outputs.mean():,.0f}); longest prompt + output {longest:,} of max_model_len {max_model_len:,}; "
                 f"{workload.num_truncated_outputs:,} outputs cut to fit")
    if cfg.concurrency is not None:
        lines.append(f"offered rate: closed loop, {cfg.concurrency} clients" + (f" with {cfg.think_time_s:g} s think time" if cfg.think_time_s else "")
                     + " (each sends its next request when its last one finished; the rate follows the replies)")
    else:
        rate = offered_rate_rps([r.arrival_time for r in requests])
        span = requests[-1].arrival_time - requests[0].arrival_time
        scaled = f" x time_scale {cfg.time_scale:g}" if cfg.time_scale != 1 else ""
        origin = f"arrival process {cfg.arrival.process} at {cfg.arrival.rate:g} req/s{scaled}" if draws_arrivals(scenario, source) else f"trace timestamps{scaled}"
        lines.append(f"offered rate: {'-' if rate is None else f'{rate:.3g} req/s'} over {span:,.1f} s ({origin})")
    return lines
