"""The validation report: ``validate.html`` (verdicts, errors, predicted-against-measured plots) and CSVs.

Three parts, on one self-contained page (``simulator.reports.run_report.write_page``):

- verdicts: one line per run (ok, or the worst error), and the signed errors of every measured
  statistic;
- predicted against measured: per metric and statistic, one point per run on log axes with the
  line of equality and a band of the runs' tolerance;
- per run (up to ``max_cdf_runs``): servesim's predicted CDF of each measured metric, with the
  measured per-request CDF where the run has a ``requests`` table, else its measured percentiles
  as points.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.reports.compare_report import CDF_LEVELS
from simulator.reports.run_report import _figure_html, write_page
from simulator.studies.validate.engine import ValidationResult, _column
from simulator.studies.validate.run_format import LATENCIES
from simulator.reports.axes import LOG_TICKS, fit_title

_LEVEL = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
_LABEL = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL", "e2e_s": "E2E"}


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda x: f"{x:.4g}", classes="summary", escape=True)


def scatter_figure(errors: pd.DataFrame) -> go.Figure | None:
    """Predicted against measured (ms, log-log), one trace per metric and statistic."""
    lat = errors[errors["metric"].isin(LATENCIES) & errors["predicted"].notna()]
    if lat.empty:
        return None
    fig = go.Figure()
    for (metric, stat), g in lat.groupby(["metric", "stat"]):
        fig.add_trace(go.Scatter(x=g["measured"] * 1e3, y=g["predicted"] * 1e3, mode="markers", name=f"{_LABEL[metric]} {stat}",
                                 text=g["run"], hovertemplate="%{text}<br>measured %{x:.4g} ms<br>servesim %{y:.4g} ms<extra></extra>"))
    low = float(min(lat["measured"].min(), lat["predicted"].min()) * 1e3 * 0.8)
    high = float(max(lat["measured"].max(), lat["predicted"].max()) * 1e3 * 1.25)
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="equal", line={"color": "black", "dash": "dot"}))
    fig.update_xaxes(type="log", tickformat=LOG_TICKS, title="measured (ms)", exponentformat="none", minor={"showgrid": True})
    fig.update_yaxes(type="log", tickformat=LOG_TICKS, title="servesim (ms)", exponentformat="none", minor={"showgrid": True})
    fig.update_layout(height=560, title="servesim against the measurements, one point per run and statistic", legend={"orientation": "h"})
    return fig


def cdf_figure(result: ValidationResult, name: str) -> go.Figure | None:
    """servesim's CDFs of one run's measured metrics, with the measurement's."""
    run = next(r for r in result.runs if r.name == name)
    metrics = [m for m in LATENCIES if getattr(run.measured, m)] or ["ttft_s", "tpot_s"]
    measured_rows = None
    if run.requests is not None and run.path is not None:
        path = Path(run.path).parent / run.requests
        measured_rows = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_LABEL[m] for m in metrics])
    for i, metric in enumerate(metrics, start=1):
        q = result.predicted[name]["cdf"].get(_column(run, metric))
        if q is not None:
            fig.add_trace(go.Scatter(x=np.asarray(q) * 1e3, y=CDF_LEVELS, mode="lines", name="servesim", line={"color": "#1f77b4"},
                                     showlegend=i == 1), row=1, col=i)
        if measured_rows is not None and metric in measured_rows:
            v = np.sort(measured_rows[metric].dropna().to_numpy(np.float64))
            fig.add_trace(go.Scatter(x=v * 1e3, y=np.arange(1, len(v) + 1) / len(v), mode="lines", name="measured",
                                     line={"color": "#d62728"}, showlegend=i == 1), row=1, col=i)
        points = {s: v for s, v in getattr(run.measured, metric).items() if s in _LEVEL}
        if points:
            fig.add_trace(go.Scatter(x=[v * 1e3 for v in points.values()], y=[_LEVEL[s] for s in points], mode="markers",
                                     marker={"color": "#d62728", "size": 10, "symbol": "x"}, name="measured percentiles",
                                     showlegend=i == 1), row=1, col=i)
        fig.update_xaxes(title_text="ms", row=1, col=i)
    fig.update_yaxes(title_text="fraction of requests", range=[0, 1.02], row=1, col=1)
    fig.update_layout(height=340, title=fit_title(f"{name}: predicted and measured distributions"), legend={"orientation": "h"})
    return fig


def write_validation(result: ValidationResult, out: Path, max_cdf_runs: int = 20) -> Path:
    """Write ``errors.csv``, ``verdicts.csv`` and ``validate.html`` into ``out``; returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    result.errors.to_csv(out / "errors.csv", index=False)
    result.verdicts.to_csv(out / "verdicts.csv", index=False)
    num_ok = int((result.verdicts["verdict"] == "ok").sum())
    intro = (f"<p>{len(result.runs)} measured runs, {num_ok} within their tolerance. Signed error = servesim / measured - 1 "
             "(SLO attainment: servesim - measured, in points). Metric definitions: TTFT from the client's send (arrival) to "
             "the first token; TPOT as each run declares it (excluding the first token: (finish - first token) / (output - 1); "
             "including it: E2E / output tokens); ITL: every gap between consecutive tokens.</p>")
    sections = [("Verdicts", _table_html(result.verdicts)), ("Errors", _table_html(result.errors))]
    fig = scatter_figure(result.errors)
    if fig is not None:
        sections.append(("Predicted against measured", _figure_html(fig)))
    for run in result.runs[:max_cdf_runs]:
        fig = cdf_figure(result, run.name)
        if fig is not None:
            sections.append((f"Distributions: {run.name}", _figure_html(fig)))
    if len(result.runs) > max_cdf_runs:
        sections.append(("More runs", f"<p>{html.escape(str(len(result.runs) - max_cdf_runs))} more runs: see errors.csv.</p>"))
    return write_page(out / "validate.html", "servesim validate", sections, intro)
