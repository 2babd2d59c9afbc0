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
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

MAX_TIME_BINS = 2_000  # time bins per replica in the per-iteration figure
MAX_ITERATION_POINTS = 16_000  # bins over all replicas, so many replicas get fewer bins each
MIN_ITERATIONS_PER_BIN = 4  # on average; narrower bins would only show single iterations
MAX_REQUEST_POINTS = 50_000  # requests drawn as points; more are thinned evenly
MAX_CDF_POINTS = 1_000  # points per CDF curve
NUM_MEDIAN_BINS = 200  # arrival-time bins of the median line over the request points

# (column, label, scale from seconds, unit) of the latencies drawn as CDFs and over time.
LATENCIES: list[tuple[str, str, float, str]] = [
    ("ttft_s", "TTFT", 1.0, "s"),
    ("tpot_s", "TPOT", 1e3, "ms"),
    ("e2e_s", "E2E", 1.0, "s"),
]
STAT_KEYS = ("mean", "min", "p50", "p90", "p95", "p99", "p999", "max", "std")
REPLICA_COLORS = qualitative.Plotly
DEFINITIONS = (
    "TTFT = first-token time − arrival time (the first token appears at the end of the iteration "
    "that finishes the prompt). TPOT = (finish time − first-token time) / (output tokens − 1), "
    "over requests with more than one output token. E2E = finish time − arrival time. "
    "TBT = every gap between consecutive output tokens of a request. SLO attainment = fraction of "
    "requests meeting every SLO set in the scenario; goodput = such requests per second. "
    "Latency plots show completed requests only."
)
PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 1.5em 1em 0; display: inline-table;
        vertical-align: top; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


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


def write_page(path: str | Path, title: str, sections: list[tuple[str, str]], intro_html: str = "") -> Path:
    """Write a self-contained HTML page (plotly.js inline, works offline) and return its path.

    Args:
        path: the file to write; its folder is created.
        title: the page title and top heading (plain text).
        sections: (heading in plain text, body HTML) pairs, in order.
        intro_html: HTML placed under the title (notes, definitions).
    """
    body = "\n".join(f"<h2>{html.escape(name)}</h2>\n{content}" for name, content in sections)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{intro_html}\n{body}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


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


def latency_cdf_figure(requests: pd.DataFrame, slo: Mapping[str, float]) -> go.Figure:
    """Empirical CDFs of TTFT (s), TPOT (ms) and E2E (s) over requests, one subplot each.

    NaN latencies (unfinished requests, TPOT of one-token requests) are left out. SLO thresholds
    from ``slo`` (seconds, by column name) are drawn as dashed vertical lines. Curves with more
    than ``MAX_CDF_POINTS`` requests are drawn through evenly spaced points of the exact CDF.
    """
    fig = make_subplots(
        rows=1, cols=len(LATENCIES), subplot_titles=[label for _, label, _, _ in LATENCIES]
    )
    for col, (name, label, scale, unit) in enumerate(LATENCIES, start=1):
        values = _finite(requests, name) * scale
        if len(values):
            x, y = _ecdf(values, MAX_CDF_POINTS)
            fig.add_trace(
                go.Scatter(
                    x=_f32(x), y=_f32(y), mode="lines", line_shape="hv", name=label,
                    showlegend=False, hovertemplate=f"%{{x:.4g}} {unit}: %{{y:.1%}}<extra></extra>",
                ),
                row=1, col=col,
            )
        else:
            _add_no_data(fig, row=1, col=col)
        if name in slo:
            fig.add_vline(
                x=slo[name] * scale, line_dash="dash", line_color="firebrick",
                annotation_text=f"SLO {slo[name] * scale:g} {unit}", row=1, col=col,
            )
        fig.update_xaxes(title_text=f"{label} ({unit})", row=1, col=col)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    fig.update_layout(
        title="CDF of TTFT, TPOT and E2E over requests", height=420, template="plotly_white"
    )
    return fig


def latency_over_time_figure(requests: pd.DataFrame, slo: Mapping[str, float]) -> go.Figure:
    """TTFT (s) and TPOT (ms) of each request against its arrival time (s), two stacked subplots.

    Each request is a WebGL point, coloured by whether it meets every SLO when SLOs are set; a
    line shows the median per arrival-time bin (``NUM_MEDIAN_BINS`` bins over the run). Above
    ``MAX_REQUEST_POINTS`` requests, evenly spaced ones (in arrival order) are drawn; the medians
    use all. SLO thresholds are dashed horizontal lines.
    """
    shown = LATENCIES[:2]
    fig = make_subplots(
        rows=len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=[f"{label} by arrival time" for _, label, _, _ in shown],
    )
    requests = requests.sort_values("arrival_time") if len(requests) else requests
    step = max(1, math.ceil(len(requests) / MAX_REQUEST_POINTS))
    points = requests.iloc[::step]
    marker_size = 3 if len(points) > 2_000 else 5
    split = bool(slo) and "meets_slo" in requests.columns
    groups = (
        [("meets SLO", points["meets_slo"].to_numpy(bool), "#2ca02c"),
         ("misses SLO", ~points["meets_slo"].to_numpy(bool), "#d62728")]
        if split else [("request", np.ones(len(points), dtype=bool), "#1f77b4")]
    )
    for row, (name, label, scale, unit) in enumerate(shown, start=1):
        fig.update_yaxes(title_text=f"{label} ({unit})", row=row, col=1)
        if not _finite(requests, name).size:
            _add_no_data(fig, row=row, col=1)
            continue
        for group, mask, color in groups:
            selected = points[mask]
            fig.add_trace(
                go.Scattergl(
                    x=_f32(selected["arrival_time"]), y=_f32(selected[name] * scale),
                    customdata=selected["request_id"].to_numpy(np.int32), mode="markers",
                    marker={"size": marker_size, "color": color, "opacity": 0.5}, name=group,
                    legendgroup=group, showlegend=row == 1,
                    hovertemplate=(
                        f"request %{{customdata}}<br>arrival %{{x:.3f}} s<br>"
                        f"{label} %{{y:.4g}} {unit}<extra></extra>"
                    ),
                ),
                row=row, col=1,
            )
        centres, medians = _binned_median(requests["arrival_time"], requests[name] * scale)
        fig.add_trace(
            go.Scatter(
                x=_f32(centres), y=_f32(medians), mode="lines" if len(centres) > 1 else "markers",
                name="median per time bin",
                line={"color": "black", "width": 2}, marker={"color": "black"},
                legendgroup="median", showlegend=row == 1,
            ),
            row=row, col=1,
        )
        if name in slo:
            fig.add_hline(
                y=slo[name] * scale, line_dash="dash", line_color="firebrick",
                annotation_text=f"SLO {slo[name] * scale:g} {unit}", row=row, col=1,
            )
    thinned = f" (1 in {step} of {len(requests):,} requests drawn)" if step > 1 else ""
    fig.update_xaxes(title_text="arrival time (s)", row=len(shown), col=1)
    fig.update_layout(
        title=f"TTFT and TPOT over time{thinned}", height=650, template="plotly_white"
    )
    return fig


def iteration_figure(iterations: pd.DataFrame, sample_factor: float = 1.0) -> go.Figure | None:
    """Per-iteration state over simulation time (s), one line per replica, six stacked subplots.

    Iterations are grouped into equal time bins by their start time (see ``bin_iterations``):
    batch size (requests, mean per iteration in the bin), prefill and decode tokens/s (tokens of
    the bin's iterations / bin width), KV-cache usage (% of blocks, mean), waiting and running
    requests (mean). Empty bins (idle replica) show 0 tokens/s and gaps elsewhere. Returns
    ``None`` when there are no iterations. ``sample_factor``: iterations run per iteration kept
    (``output.iterations: sampled``); token rates are multiplied by it.
    """
    if iterations.empty:
        return None
    bins = bin_iterations(iterations)
    bins["prefill_tokens_per_s"] *= sample_factor
    bins["decode_tokens_per_s"] *= sample_factor
    width = float(bins.attrs["bin_width_s"])
    panels = [
        ("batch_size", "Batch size (mean per iteration)", "requests"),
        ("prefill_tokens_per_s", "Prefill tokens/s (sum per bin / bin width)", "tokens/s"),
        ("decode_tokens_per_s", "Decode tokens/s (sum per bin / bin width)", "tokens/s"),
        ("kv_usage_pct", "KV-cache usage (mean)", "% of blocks"),
        ("num_waiting", "Waiting requests (mean)", "requests"),
        ("num_running", "Running requests (mean)", "requests"),
    ]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.035,
        subplot_titles=[title for _, title, _ in panels],
    )
    roles = iterations.groupby("replica_id", observed=True)["role"].first().astype(str) if "role" in iterations else pd.Series(dtype=str)
    for index, (replica_id, replica) in enumerate(bins.groupby("replica_id", sort=True)):
        color = REPLICA_COLORS[index % len(REPLICA_COLORS)]
        role = roles.get(replica_id, "colocated")
        label = f"replica {replica_id}" + ("" if role == "colocated" else f" ({role})")  # DistServe pools
        for row, (column, _, unit) in enumerate(panels, start=1):
            fig.add_trace(
                go.Scatter(
                    x=_f32(replica["time"]), y=_f32(replica[column]), mode="lines",
                    line={"color": color, "width": 1.2}, name=label,
                    legendgroup=label, showlegend=row == 1,
                    hovertemplate=(
                        f"%{{x:.2f}} s: %{{y:.4g}} {unit}<extra>{label}</extra>"
                    ),
                ),
                row=row, col=1,
            )
    for row, (_, _, unit) in enumerate(panels, start=1):
        fig.update_yaxes(title_text=unit, row=row, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="simulation time (s)", row=len(panels), col=1)
    fig.update_layout(
        title=f"Iterations over time (bins of {width:.3g} s by iteration start, per replica)",
        height=1500, template="plotly_white", hovermode="x",
    )
    return fig


def bin_iterations(iterations: pd.DataFrame) -> pd.DataFrame:
    """Downsample per-iteration records to equal time bins per replica.

    The run (first start to last end, s) is cut into ``num_bins`` equal bins: at most
    ``MAX_TIME_BINS`` per replica, at most ``MAX_ITERATION_POINTS`` over all replicas, and about
    ``MIN_ITERATIONS_PER_BIN`` iterations per bin or more. An iteration counts in the bin where it
    starts.

    Returns:
        One row per (replica, bin): ``replica_id``, ``time`` (bin centre, s), ``num_iterations``,
        ``batch_size``, ``kv_usage_pct``, ``num_waiting``, ``num_running`` (means over the bin's
        iterations, NaN for empty bins), ``prefill_tokens_per_s``, ``decode_tokens_per_s`` (sums
        over the bin / bin width, 0 for empty bins). ``attrs["bin_width_s"]`` is the bin width.
    """
    start = iterations["start_time"].to_numpy(np.float64)
    t0 = float(start.min())
    t1 = max(float(iterations["end_time"].max()), t0)
    replica_ids, replica_index = np.unique(iterations["replica_id"].to_numpy(), return_inverse=True)
    num_replicas = len(replica_ids)
    num_bins = max(
        1,
        min(
            MAX_TIME_BINS,
            MAX_ITERATION_POINTS // num_replicas,
            len(iterations) // (MIN_ITERATIONS_PER_BIN * num_replicas),
        ),
    )
    width = (t1 - t0) / num_bins if t1 > t0 else 1.0
    bin_index = np.minimum(((start - t0) / width).astype(np.int64), num_bins - 1)
    key = replica_index * num_bins + bin_index
    size = num_replicas * num_bins

    def total(column: str) -> np.ndarray:
        return np.bincount(key, weights=iterations[column].to_numpy(np.float64), minlength=size)

    count = np.bincount(key, minlength=size).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_divisor = np.where(count > 0, count, np.nan)
        bins = pd.DataFrame(
            {
                "replica_id": np.repeat(replica_ids, num_bins),
                "time": np.tile(t0 + (np.arange(num_bins) + 0.5) * width, num_replicas),
                "num_iterations": count.astype(np.int64),
                "batch_size": total("batch_size") / mean_divisor,
                "prefill_tokens_per_s": total("num_prefill_tokens") / width,
                "decode_tokens_per_s": total("num_decode_tokens") / width,
                "kv_usage_pct": 100.0 * total("kv_usage") / mean_divisor,
                "num_waiting": total("num_waiting") / mean_divisor,
                "num_running": total("num_running") / mean_divisor,
            }
        )
    bins.attrs["bin_width_s"] = width
    return bins


def _figure_html(fig: go.Figure) -> str:
    """A figure as an HTML fragment that relies on the page's single plotly.js copy."""
    return fig.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )


def _finite(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The finite values of ``frame[column]`` as float64 (empty if the column is missing)."""
    if column not in frame.columns:
        return np.empty(0)
    values = frame[column].to_numpy(np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def _ecdf(values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF (i / n), thinned to ``max_points`` exact points."""
    x = np.sort(values)
    y = np.arange(1, len(x) + 1) / len(x)
    if len(x) > max_points:
        keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(np.int64))
        x, y = x[keep], y[keep]
    return x, y


def _binned_median(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Median of finite ``y`` per equal bin of ``x``: (bin centres, medians), empty bins dropped."""
    x_values = x.to_numpy(np.float64)
    y_values = y.to_numpy(np.float64, na_value=np.nan)
    ok = np.isfinite(x_values) & np.isfinite(y_values)
    x_values, y_values = x_values[ok], y_values[ok]
    if not len(x_values):
        return np.empty(0), np.empty(0)
    lo, hi = float(x_values.min()), float(x_values.max())
    num_bins = max(1, min(NUM_MEDIAN_BINS, len(x_values) // 20))
    width = (hi - lo) / num_bins if hi > lo else 1.0
    index = np.minimum(((x_values - lo) / width).astype(np.int64), num_bins - 1)
    medians = pd.Series(y_values).groupby(index).median()
    centres = lo + (medians.index.to_numpy() + 0.5) * width
    return centres, medians.to_numpy()


def _f32(values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as float32, which plotly writes as compact base64 (about 7 significant digits)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(np.float32, na_value=np.nan)
    return np.asarray(values, dtype=np.float32)


def _add_no_data(fig: go.Figure, row: int, col: int) -> None:
    """Mark an empty subplot with a centred "no data" note.

    plotly.js drops the axes of a subplot without traces (and with them the note), so an empty
    trace keeps them.
    """
    fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip"), row=row, col=col)
    fig.add_annotation(
        text="no data", showarrow=False, x=0.5, y=0.5, xref="x domain", yref="y domain",
        row=row, col=col,
    )


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
