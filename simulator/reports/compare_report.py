"""The compare report: one self-contained plotly HTML page for a sweep (``compare.html``).

Top to bottom: the sweep (base scenario, axes, capacity criterion); the capacity of each series
(bar chart, and the rate of each bisection run, met or missed); P50 and P99 TTFT, TPOT, TBT and
E2E against the arrival rate, one line per series; the criterion's percentile bounds against
the rate; goodput, SLO attainment and throughput against the rate; latency CDFs (TTFT, TPOT,
TBT, E2E) of each series at one rate.

Metric definitions are DESIGN.md's (stated on the page, as in the run report). plotly.js is
embedded once (about 4.8 MB); the data are a few hundred points per series (CDFs are drawn
through each run's quantiles at ``simulator.studies.compare.CDF_LEVELS``), so the page stays near that
size whatever the number of requests.
"""

from __future__ import annotations

import dataclasses
import html
import os
from pathlib import Path
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from simulator.studies.capacity import CapacityResult
from simulator.reports.run_report import DEFINITIONS, write_page
from simulator.studies.sweep import Sweep
from simulator.reports.axes import LOG_TICKS, fit_title

# CDF levels at which each run's latency quantiles are kept (``simulator.studies.compare`` computes
# them in the workers): every 1 %, finer in the tail.
CDF_LEVELS = np.unique(np.round(np.concatenate([np.linspace(0, 1, 101), np.linspace(0.9, 1, 51), np.linspace(0.99, 1, 21)]), 6))

SERIES_COLORS = qualitative.Plotly
# (metric key, label, scale from seconds, unit) of the latencies plotted against the rate.
RATE_LATENCIES = [("ttft", "TTFT", 1.0, "s"), ("tpot", "TPOT", 1e3, "ms"), ("tbt", "TBT", 1e3, "ms"), ("e2e", "E2E", 1.0, "s")]
CDF_PANELS = [("ttft_s", "TTFT", 1.0, "s"), ("tpot_s", "TPOT", 1e3, "ms"), ("tbt_s", "TBT", 1e3, "ms"), ("e2e_s", "E2E", 1.0, "s")]


@dataclasses.dataclass(frozen=True)
class CompareData:
    """What the report shows (``simulator.studies.compare.run_compare`` fills it).

    Attributes:
        sweep: the expanded sweep.
        results: one row per grid run (``series``, ``rate_rps``, flattened summary columns).
        capacity: one row per configuration (``series``, ``capacity_rps``, ``num_runs``, ...).
        capacity_results: per configuration index, its capacity search.
        cdfs: per grid-run index (row of ``results``), latency quantiles at ``CDF_LEVELS`` by
            metric (``ttft_s``, ``tpot_s``, ``tbt_s``, ``e2e_s``; seconds; None when empty).
        wall_time_s: the sweep's wall time (0 when unknown).
    """

    sweep: Sweep
    results: pd.DataFrame
    capacity: pd.DataFrame
    capacity_results: dict[int, CapacityResult]
    cdfs: dict[int, dict]
    wall_time_s: float = 0.0


def write_compare_report(result: CompareData, path: Path) -> Path:
    """Write the sweep's report as one offline HTML file and return its path.

    Args:
        result: the sweep's results, capacities and CDF quantiles.
        path: where to write; parent folders are created.
    """
    sweep = result.sweep
    colors = {c.label: SERIES_COLORS[i % len(SERIES_COLORS)] for i, c in enumerate(sweep.configurations)}
    sections = [("Sweep", _sweep_html(result))]
    if result.capacity_results:
        sections.append(("Capacity", _table_html(result.capacity) + _figure_html(capacity_figure(result, colors))))
    if len(result.results):
        sections.append(("Latency against arrival rate", _figure_html(latency_rate_figure(result, colors))))
        criterion = criterion_figure(result, colors)
        if criterion is not None:
            sections.append(("Capacity criterion against arrival rate", _figure_html(criterion)))
        sections.append(("Goodput, SLO attainment and throughput against arrival rate", _figure_html(goodput_figure(result, colors))))
        cdf = cdf_figure(result, colors)
        if cdf is not None:
            sections.append(("Latency CDFs", _figure_html(cdf)))
        if any(c.endswith("_lo") for c in result.results.columns):
            from simulator.studies.compare_intervals import separation_table

            note = ('<p class="note">Error bars are prediction intervals over each point\'s perturbed replicates '
                    '(uncertainty section). "separated": the two intervals are disjoint, so the difference exceeds the '
                    'spread of either; otherwise the order of the two may change with another seed or cost-model error.</p>')
            sections.append(("Which differences the intervals separate", note + separation_table(result.results).to_html(index=False, float_format="{:.4g}".format)))
    title = f"servesim compare: {sweep.name}"
    return write_page(path, title, sections, f'<p class="note">{html.escape(DEFINITIONS)}</p>')


def _sweep_html(result: CompareData) -> str:
    sweep = result.sweep
    base = sweep.configurations[0].scenario if sweep.configurations else None
    items = [("sweep file", sweep.source), ("description", sweep.description or "—")]
    if base is not None:
        c = base.cluster
        items += [
            ("base scenario", sweep.file.base or "(defaults)"),
            ("deployment", f"{base.model.name} on {c.num_replicas} x TP{c.tensor_parallel_size} PP{c.pipeline_parallel_size} {base.hardware.gpu}"),
            ("workload", _shown_path(base.workload.trace) if base.workload.trace else "synthetic"),
            ("workload size", f"max_requests = {base.workload.max_requests}, max_duration_s = {base.workload.max_duration_s}"),
        ]
    items += [(f"axis {name}", ", ".join(map(str, values))) for name, values in sweep.axes.items()]
    if sweep.load_axis is not None:
        items.append((f"load axis {sweep.load_axis}", ", ".join(f"{v:g}" for v in sweep.file.axes[sweep.load_axis])))
    if sweep.criterion is not None and base is not None:
        cap = sweep.capacity
        items.append(("capacity criterion", sweep.criterion.describe(dataclasses.asdict(base.slo))))
        items.append(("bisection", f"relative tolerance {cap.rel_tol:g}, at most {cap.max_runs} runs, early stop {'on' if cap.early_stop else 'off'}"))
    runs = result.results
    num_cached = int(runs["cached"].sum()) if "cached" in runs.columns else 0
    num_capacity_runs = sum(r.num_runs for r in result.capacity_results.values())
    run_s = float(runs["wall_time_s"].sum()) + sum(s.get("wall_time_s", 0.0) for r in result.capacity_results.values() for _, _, s in r.points)
    items.append(("runs", f"{len(runs)} grid runs ({num_cached} from the cache) and {num_capacity_runs} capacity runs, "
                          f"{run_s:.1f} s of simulation (as first run)"))
    items.append(("wall time", f"{result.wall_time_s:.1f} s" if result.wall_time_s else "—"))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def _shown_path(path: str) -> str:
    """A path relative to the working directory (as the user would type it), else as given."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path


def _table_html(frame: pd.DataFrame) -> str:
    columns = ["series", "capacity_rps", "num_runs", "num_stopped_early", "rates_tried", "reason"]
    columns = [c for c in columns if c in frame.columns]
    header = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            v = row[c]
            text = "—" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.3g}" if isinstance(v, float) else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def capacity_figure(result: CompareData, colors: dict[str, str]) -> go.Figure:
    """Capacity per series (bars, req/s) and the bisection: the rate of each run, in order.

    In the bisection panel each series is a line through its runs (x: run number, y: rate on a
    log axis); a circle met the criterion, a cross missed it. The capacity is the last circle
    below the lowest cross.
    """
    sweep = result.sweep
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.1,
                        subplot_titles=["Capacity (req/s)", "Bisection: arrival rate of each run (circle met, cross missed)"])
    for index, config in enumerate(sweep.configurations):
        res = result.capacity_results.get(index)
        if res is None:
            continue
        label, value = config.label, res.capacity_rps
        fig.add_trace(go.Bar(
            x=[label], y=[value if value is not None else 0.0], marker_color=colors[label], showlegend=False,
            text=[f"{value:.3g}" if value is not None else "none"], textposition="outside",
            hovertemplate=f"{html.escape(label)}: %{{y:.4g}} req/s<br>{html.escape(res.reason)}<extra></extra>",
        ), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=list(range(1, res.num_runs + 1)), y=[rate for rate, _, _ in res.points], mode="lines+markers", name=label,
            line={"color": colors[label], "width": 1}, showlegend=True, legendgroup=label,
            marker={"symbol": ["circle" if met else "x" for _, met, _ in res.points], "size": 9, "color": colors[label]},
            customdata=["met" if met else "missed" for _, met, _ in res.points],
            hovertemplate="run %{x}: %{y:.4g} req/s %{customdata}<extra>" + html.escape(label) + "</extra>",
        ), row=1, col=2)
    fig.update_yaxes(title_text="req/s", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="arrival rate (req/s)", type="log", tickformat=LOG_TICKS, row=1, col=2)
    fig.update_xaxes(title_text="run", dtick=1, row=1, col=2)
    fig.update_layout(height=450, template="plotly_white")
    return fig


def _series_frames(result: CompareData):
    for index, config in enumerate(result.sweep.configurations):
        frame = result.results[result.results["series"] == config.label].sort_values("rate_rps")
        if len(frame):
            yield index, config.label, frame


def error_bars(frame: pd.DataFrame, column: str, scale: float) -> dict | None:
    """plotly ``error_y`` drawing ``<column>_lo`` .. ``<column>_hi`` (the prediction interval), or None without them."""
    lo, hi = f"{column}_lo", f"{column}_hi"
    if lo not in frame.columns or hi not in frame.columns:
        return None
    y = frame[column].astype(float)
    return {"type": "data", "symmetric": False, "array": ((frame[hi].astype(float) - y).clip(lower=0) * scale).tolist(),
            "arrayminus": ((y - frame[lo].astype(float)).clip(lower=0) * scale).tolist(), "thickness": 1, "width": 3}


def latency_rate_figure(result: CompareData, colors: dict[str, str]) -> go.Figure:
    """P50 and P99 of TTFT (s), TPOT (ms), TBT (ms) and E2E (s) against arrival rate (req/s).

    One line per series, on log y axes; dashed lines mark the scenario's SLOs (TTFT, TPOT, E2E)
    and dotted ones the capacity criterion's bounds on the percentile they constrain.
    """
    fig = make_subplots(rows=len(RATE_LATENCIES), cols=2, shared_xaxes=True, vertical_spacing=0.06, horizontal_spacing=0.08,
                        subplot_titles=[f"{p} {label} ({unit})" for _, label, _, unit in RATE_LATENCIES for p in ("P50", "P99")])
    for _, label, frame in _series_frames(result):
        for row, (key, name, scale, unit) in enumerate(RATE_LATENCIES, start=1):
            for col, pct in enumerate(("p50", "p99"), start=1):
                column = f"{key}_{pct}_s"
                if column not in frame.columns:
                    continue
                fig.add_trace(go.Scatter(
                    x=frame["rate_rps"], y=frame[column].astype(float) * scale, mode="lines+markers", name=label,
                    legendgroup=label, showlegend=row == 1 and col == 1, line={"color": colors[label]}, error_y=error_bars(frame, column, scale),
                    hovertemplate=f"%{{x:.3g}} req/s: %{{y:.4g}} {unit}<extra>{html.escape(label)}</extra>",
                ), row=row, col=col)
    base = result.sweep.configurations[0].scenario if result.sweep.configurations else None
    slo = dataclasses.asdict(base.slo) if base is not None else {}
    rates = result.results["rate_rps"]
    span = [float(rates.min()), float(rates.max())]

    def threshold(y: float, text: str, dash: str, color: str, row: int, col: int) -> None:
        # A trace, not add_hline: plotly places hline annotations wrongly on log axes.
        fig.add_trace(go.Scatter(x=span, y=[y, y], mode="lines+text", text=["", text], textposition="top left",
                                 line={"dash": dash, "color": color, "width": 1}, textfont={"color": color, "size": 10},
                                 showlegend=False, hoverinfo="skip"), row=row, col=col)

    criterion = result.sweep.criterion
    for row, (key, name, scale, unit) in enumerate(RATE_LATENCIES, start=1):
        value = slo.get(f"{key}_s")
        if value is not None:
            for col in (1, 2):
                threshold(value * scale, f"SLO {value * scale:g} {unit}", "dash", "firebrick", row, col)
        for metric, pct, bound in (criterion.percentile_bounds if criterion is not None else ()):
            if metric == f"{key}_s" and pct in ("p50", "p99"):
                threshold(bound * scale, f"{pct.upper()} bound {bound * scale:g} {unit}", "dot", "black", row, 1 if pct == "p50" else 2)
    fig.update_xaxes(title_text="arrival rate (req/s)", row=len(RATE_LATENCIES))
    fig.update_yaxes(type="log", tickformat=LOG_TICKS)  # overloaded series are orders of magnitude above the rest
    fig.update_layout(height=260 * len(RATE_LATENCIES), template="plotly_white", hovermode="closest")
    return fig


def _metric_label(metric: str) -> str:
    """``tbt_s`` -> ``TBT``, ``scheduling_delay_s`` -> ``scheduling delay``."""
    name = metric.removesuffix("_s")
    return name.upper() if name in ("ttft", "tpot", "tbt", "e2e") else name.replace("_", " ")


def criterion_figure(result: CompareData, colors: dict[str, str]) -> go.Figure | None:
    """Each percentile bound of the capacity criterion against arrival rate, one panel per bound.

    The statistic (ms, log axis) of every series, with the bound as a dotted line; None when the
    criterion has no percentile bound.
    """
    criterion = result.sweep.criterion
    bounds = criterion.percentile_bounds if criterion is not None else ()
    if not bounds:
        return None
    columns = [f"{metric.removesuffix('_s')}_{pct}_s" for metric, pct, _ in bounds]
    fig = make_subplots(rows=1, cols=len(bounds), horizontal_spacing=0.08,
                        subplot_titles=[f"{pct.upper()} {_metric_label(metric)} (ms)" for metric, pct, _ in bounds])
    for _, label, frame in _series_frames(result):
        for col, column in enumerate(columns, start=1):
            if column in frame.columns:
                fig.add_trace(go.Scatter(
                    x=frame["rate_rps"], y=frame[column].astype(float) * 1e3, mode="lines+markers", name=label,
                    legendgroup=label, showlegend=col == 1, line={"color": colors[label]},
                    hovertemplate=f"%{{x:.3g}} req/s: %{{y:.4g}} ms<extra>{html.escape(label)}</extra>",
                ), row=1, col=col)
    span = [float(result.results["rate_rps"].min()), float(result.results["rate_rps"].max())]
    for col, (_, _, bound) in enumerate(bounds, start=1):
        fig.add_trace(go.Scatter(x=span, y=[bound * 1e3] * 2, mode="lines+text", text=["", f"bound {bound * 1e3:g} ms"], textposition="top left",
                                 line={"dash": "dot", "color": "black", "width": 1}, showlegend=False, hoverinfo="skip"), row=1, col=col)
    fig.update_xaxes(title_text="arrival rate (req/s)")
    fig.update_yaxes(type="log", tickformat=LOG_TICKS)
    fig.update_layout(height=420, template="plotly_white")
    return fig


def goodput_figure(result: CompareData, colors: dict[str, str]) -> go.Figure:
    """Goodput (req/s), SLO attainment (%) and request throughput (req/s) against arrival rate."""
    panels = [("goodput_rps", "Goodput (req/s)", 1.0), ("slo_attainment", "SLO attainment (%)", 100.0), ("request_throughput_rps", "Throughput (req/s)", 1.0)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title, _ in panels], horizontal_spacing=0.07)
    max_rate = float(result.results["rate_rps"].max())
    for _, label, frame in _series_frames(result):
        for col, (column, title, scale) in enumerate(panels, start=1):
            fig.add_trace(go.Scatter(
                x=frame["rate_rps"], y=frame[column].astype(float) * scale, mode="lines+markers", name=label,
                legendgroup=label, showlegend=col == 1, line={"color": colors[label]}, error_y=error_bars(frame, column, scale),
                hovertemplate=f"%{{x:.3g}} req/s: %{{y:.4g}}<extra>{html.escape(label)}</extra>",
            ), row=1, col=col)
    for col in (1, 3):  # the offered load: what a system keeping up would serve
        fig.add_trace(go.Scatter(x=[0, max_rate], y=[0, max_rate], mode="lines", line={"dash": "dot", "color": "grey"},
                                 name="arrival rate", showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
    criterion = result.sweep.criterion
    if criterion is not None and criterion.attainment_target is not None:
        fig.add_hline(y=criterion.attainment_target * 100, line_dash="dash", line_color="firebrick",
                      annotation_text=f"target {criterion.attainment_target:.0%}", row=1, col=2)
    fig.update_xaxes(title_text="arrival rate (req/s)")
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(height=420, template="plotly_white")
    return fig


def cdf_figure(result: CompareData, colors: dict[str, str]) -> go.Figure | None:
    """CDFs of TTFT (s), TPOT (ms), TBT (ms) and E2E (s) of each series at one arrival rate.

    Each series shows its grid run nearest to the sweep's ``latency_cdf_rate`` (default: the
    median rate of the load axis), drawn through the run's quantiles, on log x axes. None
    without runs.
    """
    target = result.sweep.latency_cdf_rate
    if target is None:
        target = float(np.median(sorted(result.results["rate_rps"].unique())))
    fig = make_subplots(rows=1, cols=len(CDF_PANELS), subplot_titles=[label for _, label, _, _ in CDF_PANELS], horizontal_spacing=0.06)
    shown = []
    for _, label, frame in _series_frames(result):
        nearest = (frame["rate_rps"] - target).abs().idxmin()
        quantiles = result.cdfs.get(int(nearest))
        if quantiles is None:
            continue
        rate = float(frame.loc[nearest, "rate_rps"])
        shown.append(f"{label} at {rate:.3g}")
        for col, (key, name, scale, unit) in enumerate(CDF_PANELS, start=1):
            q = quantiles.get(key)
            if q is None:
                continue
            fig.add_trace(go.Scatter(
                x=np.asarray(q, dtype=np.float32) * scale, y=CDF_LEVELS.astype(np.float32), mode="lines", name=label,
                legendgroup=label, showlegend=col == 1, line={"color": colors[label]},
                hovertemplate=f"%{{x:.4g}} {unit}: %{{y:.1%}}<extra>{html.escape(label)} at {rate:.3g} req/s</extra>",
            ), row=1, col=col)
    if not shown:
        return None
    for col, (_, name, _, unit) in enumerate(CDF_PANELS, start=1):
        fig.update_xaxes(title_text=f"{name} ({unit}, log)", type="log", tickformat=LOG_TICKS, row=1, col=col)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="fraction (requests; TBT: token gaps)", row=1, col=1)
    fig.update_layout(title=fit_title(f"at about {target:.3g} req/s ({'; '.join(shown)} req/s)"), height=420, template="plotly_white")
    return fig


def _figure_html(fig: go.Figure) -> str:
    """A figure as an HTML fragment using the page's single plotly.js copy."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
