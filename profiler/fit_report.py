"""``fit_report.html``: held-out predicted vs measured time per operator, one self-contained page.

Each panel plots, for one operator (implementation, dtype), every measured row against the
prediction of the model fitted without that row's shape (the cross-validation folds), on log
axes with the y = x line; the title gives the held-out median and P95 absolute percentage error.
A table above lists every operator's candidates and scores. plotly.js is inlined, so the page
opens offline.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.reports.axes import LOG_TICKS


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _candidates(scores: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{name}: {_fmt(v['median_ape_pct'])} / {_fmt(v['p95_ape_pct'])}" for name, v in scores.items())


def write_fit_html(report: dict[str, Any], points: pd.DataFrame | None, path: Path) -> None:
    """Write the report page for ``report`` (``fit_bundle``'s) with its out-of-fold ``points``."""
    ops = report["operators"]
    rows = "".join(
        f"<tr><td>{html.escape(e['operator'])}</td><td>{html.escape(e['implementation'])}</td><td>{html.escape(e['dtype'])}</td>"
        f"<td>{e['num_shapes']}</td><td>{html.escape(e['model'])}</td><td>{_fmt(e['median_ape_pct'])}</td><td>{_fmt(e['p95_ape_pct'])}</td>"
        f"<td>{_fmt(e['max_ape_pct'])}</td><td>{_candidates(e['candidates'])}</td></tr>"
        for e in ops
    )
    figure_html = "<p>Too few shapes to cross-validate.</p>"
    if points is not None and len(points):
        keys = list(points.groupby(["operator", "implementation", "dtype"], sort=True).groups)
        cols = 3
        nrows = math.ceil(len(keys) / cols)
        by_key = {(e["operator"], e["implementation"], e["dtype"]): e for e in ops}
        titles = [f"{o} [{i}, {d}]: {_fmt(by_key[o, i, d]['median_ape_pct'])} % / {_fmt(by_key[o, i, d]['p95_ape_pct'])} %" for o, i, d in keys]
        fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=min(0.08, 0.5 / max(nrows, 1)))
        for n, key in enumerate(keys):
            sub = points[(points["operator"] == key[0]) & (points["implementation"] == key[1]) & (points["dtype"] == key[2])]
            r, c = n // cols + 1, n % cols + 1
            us_m, us_p = sub["measured_s"] * 1e6, sub["predicted_s"] * 1e6
            lo, hi = float(min(us_m.min(), us_p.min())), float(max(us_m.max(), us_p.max()))
            fig.add_trace(go.Scatter(x=us_m, y=us_p, mode="markers", marker={"size": 5, "color": sub["tp"], "colorscale": "Viridis"},
                                     text=sub["shape"], hovertemplate="%{text}<br>measured %{x:.1f} us<br>predicted %{y:.1f} us<extra></extra>",
                                     showlegend=False), row=r, col=c)
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "grey", "dash": "dot"}, showlegend=False, hoverinfo="skip"), row=r, col=c)
            fig.update_xaxes(type="log", tickformat=LOG_TICKS, title_text="measured (us)", row=r, col=c)
            fig.update_yaxes(type="log", tickformat=LOG_TICKS, title_text="predicted (us)", row=r, col=c)
        fig.update_annotations(font_size=11)
        fig.update_layout(height=320 * nrows, margin={"l": 40, "r": 20, "t": 40, "b": 40})
        figure_html = fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    s = report["summary"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>fit report: {html.escape(str(report['model']))}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}</style>
</head><body>
<h1>Runtime-model fit: {html.escape(str(report['model']))} on {html.escape(str(report['device']))}</h1>
<p>Held-out absolute percentage error (%), {report['folds']}-fold cross-validation grouped by shape.
Pooled over all operators: median {_fmt(s['pooled_median_ape_pct'])} %, P95 {_fmt(s['pooled_p95_ape_pct'])} %.
Worst operator: median {_fmt(s['worst_median_ape_pct'])} %, P95 {_fmt(s['worst_p95_ape_pct'])} %. Fit took {report['fit_s']:.1f} s.</p>
<table><tr><th>operator</th><th>implementation</th><th>dtype</th><th>shapes</th><th>model</th><th>median %</th><th>P95 %</th><th>max %</th><th>candidates (median / P95 %)</th></tr>{rows}</table>
{figure_html}
</body></html>
"""
    path.write_text(page)
