"""One self-contained HTML report of a simulation run: summary table and plotly figures.

The page reads top to bottom: the summary (``metrics`` output) as tables, the CDFs of TTFT, TPOT
and E2E with the scenario's SLOs, TTFT and TPOT of each request against its arrival time, and the
per-iteration state of every replica (batch size, prefill and decode tokens/s, KV usage, queue).

Metric definitions are those of DESIGN.md (Metrics), stated on the page as well:

- TTFT = first-token time - arrival time.
- TPOT = (finish time - first-token time) / (output tokens - 1), for requests with > 1 output token.
- E2E = finish time - arrival time.

The file stays small and quick to write however long the run: plotly.js is embedded once, numeric
traces are float32 arrays (plotly serializes numpy arrays as base64), per-iteration records are
averaged over at most ``MAX_TIME_BINS`` time bins per replica, and at most ``MAX_REQUEST_POINTS``
requests are drawn as points. 20,000 requests and 500,000 iterations give about 6 MB, of
which plotly.js is 4.8 MB.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.reports.page import DEFINITIONS, _figure_html, write_page
from simulator.reports.run_figures import (
    MAX_ITERATION_POINTS,
    bin_iterations,
    iteration_figure,
    latency_cdf_figure,
    latency_over_time_figure,
)

# The page shell and the figures live in ``page`` and ``run_figures``; the other reports import
# them from here as well.
__all__ = [
    "DEFINITIONS", "MAX_ITERATION_POINTS", "STAT_KEYS", "bin_iterations", "iteration_figure", "latency_cdf_figure",
    "latency_over_time_figure", "report_title", "run_html", "slo_thresholds", "summary_html", "write_page", "write_report",
]

STAT_KEYS = ("mean", "min", "p50", "p90", "p95", "p99", "p999", "max", "std")


def write_report(
    requests: pd.DataFrame, iterations: pd.DataFrame, summary: dict, title: str, path: Path
) -> Path:
    """Write the run's report as one HTML file that works offline, and return its path.

    Args:
        requests: one row per request (``request_id``, ``replica_id``, ``arrival_time``,
            ``ttft_s``, ``tpot_s``, ``e2e_s``, ``meets_slo``, ...; latencies in seconds, NaN
            where undefined, e.g. TPOT of a one-token request or any latency of an unfinished one).
        iterations: one row per iteration of every replica (``replica_id``, ``start_time``,
            ``end_time``, ``batch_size``, ``num_prefill_tokens``, ``num_decode_tokens``,
            ``kv_usage`` as a fraction, ``num_waiting``, ``num_running``, optionally ``role``:
            replicas of a DistServe pool are labelled with it); may be empty.
        summary: the metrics summary; scalars and nested dicts are rendered generically, an
            optional ``"run"`` dict (``simulator.reports.run_header``) becomes the "What ran" table and
            the title's description, an optional ``"slo"`` dict (``{"ttft_s": 2.0, "tpot_s": 0.1, "e2e_s": None}``) adds
            threshold lines to the latency plots.
        title: the scenario name, the start of the page heading and ``<title>`` (``report_title``).
        path: where to write; missing parent folders are created.

    Returns:
        ``path``.
    """
    slo = slo_thresholds(summary)
    run = summary.get("run") if isinstance(summary.get("run"), Mapping) else None
    metrics = {k: v for k, v in summary.items() if k != "run"}
    sections = [("What ran", run_html(run))] if run else []
    sections += [
        ("Summary", summary_html(metrics)),
        ("Latency distributions", _figure_html(latency_cdf_figure(requests, slo))),
        ("Latency over time", _figure_html(latency_over_time_figure(requests, slo))),
    ]
    # output.iterations: sampled keeps one iteration in k; the token rates are scaled back up by k.
    num_iterations = summary.get("num_iterations", len(iterations))
    sample_factor = num_iterations / len(iterations) if len(iterations) and num_iterations > len(iterations) else 1.0
    iteration_fig = iteration_figure(iterations, sample_factor)
    note = f"<p>About one iteration in {sample_factor:.0f} kept (output.iterations: sampled); token rates scaled up to match.</p>" if sample_factor > 1 else ""
    sections.append(
        (
            "Iterations over time",
            note + _figure_html(iteration_fig) if iteration_fig is not None
            else "<p>No iterations recorded.</p>",
        )
    )
    return write_page(path, report_title(title, run), sections, f'<p class="note">{html.escape(DEFINITIONS)}</p>')


def report_title(name: str, run: Mapping[str, Any] | None) -> str:
    """The page title: the scenario name and, from the ``run`` section, what it ran as
    (``quickstart: llama-3-8b on 2x h100-sxm (TP1 PP1), vllm``), so a run changed with ``--set``
    is not titled as the file it started from."""
    if not run:
        return name
    model = (run.get("model") or {}).get("name")
    pools = run.get("pools") or {}
    from simulator.reports.run_header import parallel_text

    shape = "; ".join(f"{'' if role == 'colocated' else role + ' '}{p.get('num_replicas')}x {parallel_text(p)}" for role, p in pools.items())
    sched = (run.get("scheduler") or {}).get("name")
    what = f"{model} on {run.get('gpu')}" + (f" ({shape})" if shape else "") + (f", {sched}" if sched else "")
    return f"{run.get('scenario') or name}: {what}"


def run_html(run: Mapping[str, Any]) -> str:
    """The ``run`` section (``simulator.reports.run_header``) as a two-column table of short lines."""
    from simulator.reports.run_header import header_rows

    rows = "".join(f"<tr><td>{html.escape(label)}</td><td style=\"text-align: left\">{html.escape(text)}</td></tr>" for label, text in header_rows(run))
    return f"<table>{rows}</table>" if rows else "<p>No run description.</p>"


def slo_thresholds(summary: Mapping[str, Any]) -> dict[str, float]:
    """The SLOs set in ``summary["slo"]``, by latency column (``ttft_s`` ...), in seconds."""
    slo = summary.get("slo")
    if not isinstance(slo, Mapping):
        return {}
    return {
        name: float(value)
        for name, value in slo.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def summary_html(summary: Mapping[str, Any]) -> str:
    """The summary as HTML tables: one of latency statistics, one of every other value.

    A nested dict whose keys are statistics (``mean``, ``p50``, ``p99``, ...) becomes a row of
    the latency table, in ms when its name ends in ``_s``; other nested dicts are flattened to
    dotted names (``slo.ttft_s``). Durations (names ending in ``_s``) are shown in s or ms,
    fractions named ``*attainment`` as percentages.
    """
    stats: dict[str, Mapping[str, Any]] = {}
    scalars: list[tuple[str, Any]] = []
    for name, value in summary.items():
        if isinstance(value, Mapping) and value and all(key in STAT_KEYS for key in value):
            stats[name] = value
        else:
            scalars.extend(_flatten(name, value))

    parts = []
    if stats:
        columns = [key for key in STAT_KEYS if any(key in row for row in stats.values())]
        header = "".join(f"<th>{key}</th>" for key in columns)
        rows = []
        for name, row in stats.items():
            in_ms = name.endswith("_s")
            label = f"{name.removesuffix('_s')} (ms)" if in_ms else name
            cells = "".join(
                f"<td>{_format_stat(row.get(key), in_ms)}</td>" for key in columns
            )
            rows.append(f"<tr><td><code>{html.escape(label)}</code></td>{cells}</tr>")
        parts.append(f"<table><tr><th>latency</th>{header}</tr>{''.join(rows)}</table>")
    if scalars:
        rows = [
            f"<tr><td><code>{html.escape(name)}</code></td>"
            f"<td>{_format_value(name, value)}</td></tr>"
            for name, value in scalars
        ]
        parts.append(f"<table><tr><th>metric</th><th>value</th></tr>{''.join(rows)}</table>")
    return "\n".join(parts) or "<p>Empty summary.</p>"


def _flatten(name: str, value: Any) -> list[tuple[str, Any]]:
    """``(dotted name, leaf)`` pairs of a nested summary value; an empty dict is one ``None``."""
    if isinstance(value, Mapping) and value:
        return [pair for key, sub in value.items() for pair in _flatten(f"{name}.{key}", sub)]
    return [(name, None if isinstance(value, Mapping) else value)]


def _format_stat(value: Any, in_ms: bool) -> str:
    """One statistic of the latency table, ms (1 decimal) when ``in_ms``."""
    if not _is_number(value) or not math.isfinite(value):
        return "—"
    return f"{value * 1e3:,.1f}" if in_ms else f"{value:,.4g}"


def _format_value(name: str, value: Any) -> str:
    """One summary value as escaped HTML text, with a unit where the name carries one."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if _is_number(value):
        value = float(value)
        if not math.isfinite(value):
            return "—"
        if name.endswith("_s"):
            return f"{value:,.2f} s" if abs(value) >= 1 else f"{value * 1e3:,.1f} ms"
        if name.endswith("attainment"):
            return f"{value:.1%}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    return html.escape(str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
