"""The capacity plan as one self-contained HTML page, and its console summary.

The page reads top to bottom: the recommended deployment and why; the cost-versus-capacity
Pareto frontier of the candidate replica configurations; cost per million output tokens by GPU
type and parallelism; the winner's latency distributions at the target rate (from its check
run); how each of the cheapest candidates' capacity and cost move when every SLO bound is
scaled; every candidate with its reason when infeasible. plotly.js is embedded once, as in
``simulator.reports.run_report``.

Costs are list prices per GPU-hour times GPUs (``simulator.specs.prices``); USD per million
output tokens = (USD per hour) / (R x mean output tokens per request x 3600 s) x 1e6.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from rich.table import Table

from simulator.studies.plan import PlanResult, describe_slo
from simulator.studies.plan.intervals import INTERVAL_TOP, interval_note
from simulator.reports.run_report import latency_cdf_figure, slo_thresholds, write_page
from simulator.specs.prices import GPU_PRICES
from simulator.reports.axes import LOG_TICKS, fit_title

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down", "pentagon", "hexagon")
TOP_ROWS = 15  # feasible candidates listed in the ranking table
COST_NOTE = (
    "Cost = replicas x GPUs per replica x list price per GPU-hour. USD per million output tokens = "
    "(USD per hour) / (R x mean output tokens per request x 3600 s) x 1e6. Capacity = the highest "
    "arrival rate one replica sustains within the SLOs, found by bisection on the rate; the sized "
    "deployment is then run at R with the plan's router and grown while it misses the SLOs."
)


def write_plan_report(result: PlanResult, path: Path) -> Path:
    """Write the plan's report as one HTML file that works offline; return its path.

    Args:
        result: from ``simulator.studies.plan.run_plan``.
        path: where to write; missing parent folders are created.
    """
    plan, table = result.plan, result.table
    title = f"Capacity plan: {plan.name}"
    sections = [
        ("Recommendation", recommendation_html(result)),
        ("Cost versus capacity", _figure_html(pareto_figure(table))),
        ("Cost per million output tokens by GPU and parallelism", _figure_html(cost_by_gpu_figure(table))),
        ("The winner's latency at the target rate", _winner_html(result)),
        ("Sensitivity to the SLOs", _sensitivity_html(result)),
        ("Ranking", _table_html(table[table["feasible"]].head(TOP_ROWS), ranked=True)),
        ("Infeasible candidates", _table_html(table[~table["feasible"]], ranked=False)),
        ("Prices", _prices_html(result)),
    ]
    desc = f"<p>{html.escape(plan.config.description)}</p>" if plan.config.description else ""
    return write_page(path, title, sections, f'{desc}<p class="note">{html.escape(COST_NOTE)}</p>')


def _workload_text(result: PlanResult) -> str:
    w = result.plan.base.workload
    if w.trace is not None:
        cut = []
        if w.max_requests is not None:
            cut.append(f"first {w.max_requests:,} requests per replica")
        if w.max_duration_s is not None:
            cut.append(f"arrivals in the first {w.max_duration_s:g} s")
        return f"trace {Path(w.trace).name}" + (f" ({', '.join(cut)})" if cut else "")
    return f"synthetic, {w.num_requests:,} requests per run, {w.arrival.process} arrivals"


def recommendation_html(result: PlanResult) -> str:
    """The winner, the numbers behind it, the runners-up and a count of the rest, as HTML."""
    plan, table = result.plan, result.table
    cap = plan.config.capacity
    rate = plan.target_rate_rps
    facts = (
        f"<p>Workload: {html.escape(_workload_text(result))}; target rate R = <b>{rate:.3g} req/s</b>; "
        f"SLOs: {html.escape(describe_slo(plan))}. {len(table)} candidates: {int(table['feasible'].sum())} feasible. "
        f"Capacities to a relative tolerance of {cap.rel_tol:.0%} (at most {cap.max_runs} runs each).</p>"
    )
    winner = result.winner
    if winner is None:
        counts = table["stage"].value_counts()
        why = ", ".join(f"{n} at {stage}" for stage, n in counts.items())
        return facts + f"<p><b>No candidate meets the SLOs at R within the limits</b> ({html.escape(why)}). See the reasons below.</p>"
    ok = table[table["feasible"]]
    text = (
        f"<p><b>Deploy {int(winner['num_replicas'])} x {html.escape(winner['deployment'])}</b>: "
        f"{int(winner['num_gpus'])} GPUs, <b>${winner['usd_per_hour']:,.2f} per hour</b>, "
        f"<b>${winner['usd_per_million_output_tokens']:,.3f} per million output tokens</b> "
        f"(mean {winner['mean_output_tokens']:.0f} output tokens per request).</p>"
        f"<p>Why: one replica sustains {winner['capacity_rps']:.3g} req/s within the SLOs, so "
        f"ceil(R / capacity) = {int(winner['replicas_estimate'])} replica(s); the deployment of "
        f"{int(winner['num_replicas'])} run at R with the {html.escape(plan.base.cluster.router)} router met the SLOs "
        f"({_check_text(winner)}). It is the cheapest per hour of the {len(ok)} feasible candidates"
    )
    if len(ok) > 1:
        second = ok.iloc[1]
        extra = second["usd_per_hour"] / winner["usd_per_hour"] - 1
        text += f"; the runner-up, {int(second['num_replicas'])} x {html.escape(second['deployment'])}, costs {extra:+.0%} (${second['usd_per_hour']:,.2f}/h)"
    text += ".</p>"
    other = ok[ok["gpu"] != winner["gpu"]]
    if len(other):
        alt = other.iloc[0]
        break_even = alt["usd_per_hour"] / winner["num_gpus"]
        text += (
            f"<p>Prices decide between GPU types: this choice holds while {html.escape(winner['gpu'])} costs less than "
            f"${break_even:,.2f} per GPU-hour (list price used: ${winner['usd_per_gpu_hour']:,.2f}); above that, "
            f"{int(alt['num_replicas'])} x {html.escape(alt['deployment'])} at ${alt['usd_per_hour']:,.2f}/h is cheaper.</p>"
        )
    best_per_gpu = ok.groupby("gpu", sort=False).head(1)
    items = "".join(
        f"<li>{html.escape(r['gpu'])}: {int(r['num_replicas'])} x {html.escape(r['deployment'])}, ${r['usd_per_hour']:,.2f}/h, "
        f"${r['usd_per_million_output_tokens']:,.3f}/M tokens</li>"
        for _, r in best_per_gpu.iterrows()
    )
    text += f"<p>Cheapest per GPU type:</p><ul>{items}</ul>"
    note = interval_note(result.table)
    if note is not None:
        u = plan.base.uncertainty
        text += (f"<p><b>{html.escape(note)}</b> Capacity intervals: {u.level:.0%} prediction intervals over {u.replicates} perturbed "
                 f"replicates of the cheapest {INTERVAL_TOP} candidates (capacity_lo/hi, replicas_lo/hi, usd_per_hour_lo/hi in plan.csv).</p>")
    return facts + text


def _check_text(row: pd.Series) -> str:
    parts = []
    if pd.notna(row.get("verify_slo_attainment")):
        parts.append(f"SLO attainment {row['verify_slo_attainment']:.1%}")
    for col, label in (("verify_ttft_p90_s", "P90 TTFT"), ("verify_tbt_p99_s", "P99 TBT"), ("verify_tpot_p90_s", "P90 TPOT")):
        if pd.notna(row.get(col)):
            parts.append(f"{label} {row[col] * 1e3:,.0f} ms")
    return ", ".join(parts)


def pareto_figure(table: pd.DataFrame) -> go.Figure:
    """USD per replica-hour against one replica's capacity (req/s), every candidate with one.

    Colour: GPU type; symbol: scheduler. The Pareto frontier (no other candidate has as much
    capacity or more for as little or less) is a line; the winner is ringed.
    """
    fig = go.Figure()
    shown = table[table["capacity_rps"].notna()]
    schedulers = list(dict.fromkeys(table["scheduler"]))
    for gi, (gpu, group) in enumerate(shown.groupby("gpu", sort=False)):
        color = qualitative.Plotly[gi % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(
            x=group["capacity_rps"], y=group["usd_per_replica_hour"], mode="markers", name=gpu,
            marker={"color": color, "size": 10, "symbol": [SYMBOLS[schedulers.index(s) % len(SYMBOLS)] for s in group["scheduler"]],
                    "line": {"width": 1, "color": "white"}},
            text=group["deployment"] + np.where(group["feasible"], "", " (infeasible: " + group["reason"].astype(str) + ")"),
            hovertemplate="%{text}<br>capacity %{x:.3g} req/s<br>$%{y:.2f} per replica-hour<extra></extra>",
        ))
    frontier = shown[shown["pareto"]].sort_values("capacity_rps")
    if len(frontier):
        fig.add_trace(go.Scatter(
            x=frontier["capacity_rps"], y=frontier["usd_per_replica_hour"], mode="lines", name="Pareto frontier",
            line={"color": "black", "dash": "dot", "shape": "vh"}, hoverinfo="skip",
        ))
    ok = table[table["feasible"]]
    if len(ok):
        w = ok.iloc[0]
        fig.add_trace(go.Scatter(
            x=[w["capacity_rps"]], y=[w["usd_per_replica_hour"]], mode="markers", name="winner",
            marker={"size": 22, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "firebrick"}}, hoverinfo="skip",
        ))
    legend = ", ".join(f"{SYMBOLS[i % len(SYMBOLS)]}: {s}" for i, s in enumerate(schedulers))
    fig.update_layout(
        title=fit_title(f"One replica: cost per hour against capacity (symbols: {legend})"), template="plotly_white", height=520,
        xaxis_title="capacity of one replica (req/s)", yaxis_title="USD per replica-hour",
    )
    fig.update_xaxes(type="log", tickformat=LOG_TICKS)
    fig.update_yaxes(type="log", tickformat=LOG_TICKS)
    return fig


def cost_by_gpu_figure(table: pd.DataFrame) -> go.Figure:
    """USD per million output tokens at R of each GPU type and parallelism (best scheduler).

    One bar group per parallelism (``TP2``, ``TP4 PP2``, DistServe pools), one bar per GPU type;
    each bar is the cheapest feasible scheduler there, named in its text. Missing bars: nothing
    feasible at that GPU and parallelism.
    """
    ok = table[table["feasible"]].copy()
    fig = go.Figure()
    if ok.empty:
        fig.add_annotation(text="no feasible candidate", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return fig
    ok["shape"] = np.where(
        ok["pools"].astype(str) != "", ok["pools"].astype(str),
        "TP" + ok["tensor_parallel_size"].astype(str) + np.where(ok["pipeline_parallel_size"] > 1, " PP" + ok["pipeline_parallel_size"].astype(str), ""),
    )
    if "data_parallel_size" in ok:  # mixture-of-experts candidates: attention ranks and expert parallelism
        dp, ep = ok["data_parallel_size"].fillna(1).astype(int), ok["expert_parallel"].fillna(False).astype(bool)
        ok["shape"] = ok["shape"] + np.where(dp > 1, " DP" + dp.astype(str), "") + np.where(ep, " EP" + (ok["tensor_parallel_size"] * dp).astype(str), "")
    best = ok.sort_values("usd_per_million_output_tokens").groupby(["gpu", "shape"], sort=False).head(1)
    shapes = sorted(best["shape"].unique(), key=lambda s: (len(s), s))
    for gi, gpu in enumerate(dict.fromkeys(table["gpu"])):
        group = best[best["gpu"] == gpu].set_index("shape").reindex(shapes)
        fig.add_trace(go.Bar(
            x=shapes, y=group["usd_per_million_output_tokens"], name=gpu, marker_color=qualitative.Plotly[gi % len(qualitative.Plotly)],
            text=group["scheduler"].fillna(""), textposition="inside", insidetextanchor="start",
            customdata=np.stack([group["num_replicas"].astype("float").to_numpy(), group["usd_per_hour"].to_numpy(float)], axis=-1),
            hovertemplate="%{x}: $%{y:.3f} per M output tokens<br>%{customdata[0]:.0f} replicas, $%{customdata[1]:.2f}/h<br>%{text}<extra>" + gpu + "</extra>",
        ))
    fig.update_layout(
        barmode="group", template="plotly_white", height=480, title="USD per million output tokens at R (cheapest scheduler per bar)",
        xaxis_title="parallelism of one replica", yaxis_title="USD per million output tokens",
    )
    return fig


def _winner_html(result: PlanResult) -> str:
    if result.winner_summary is None:
        return "<p>No winner.</p>"
    summary = result.winner_summary
    winner = result.winner
    rows = []
    bounds = {(m, s): b for m, s, b in result.plan.criterion.percentile_bounds}
    for metric, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("tbt_s", "TBT"), ("e2e_s", "E2E")):
        stats = summary.get(metric) or {}
        cells = []
        for key in ("p50", "p90", "p99"):
            value = stats.get(key)
            bound = bounds.get((metric, key))
            text = "—" if value is None else f"{value * 1e3:,.1f}"
            if bound is not None and value is not None:
                mark = "&#10003;" if value <= bound else "&#10007;"
                text += f" (&le; {bound * 1e3:,.0f} {mark})"
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><td>{label} (ms)</td>{''.join(cells)}</tr>")
    table = f"<table><tr><th>latency</th><th>P50</th><th>P90</th><th>P99</th></tr>{''.join(rows)}</table>"
    target = result.plan.criterion.attainment_target
    info = (
        f"<p>{int(winner['num_replicas'])} x {html.escape(winner['deployment'])} at R = {result.plan.target_rate_rps:.3g} req/s: "
        f"{summary['num_completed']:,} requests, SLO attainment {summary['slo_attainment']:.1%}"
        + (f" (target {target:.0%})" if target is not None else "")
        + f", throughput {summary['request_throughput_rps']:.3g} req/s, {summary['output_throughput_tps']:,.0f} output tokens/s."
        + (" Bounds of the plan's percentile SLOs in brackets." if bounds else "")
        + "</p>"
    )
    figure = ""
    if result.winner_requests is not None:
        figure = _figure_html(latency_cdf_figure(result.winner_requests, slo_thresholds(summary)))
    return info + table + figure


def sensitivity_figure(result: PlanResult) -> go.Figure:
    """Capacity of one replica (left) and estimated USD per hour at R (right) against SLO scale."""
    from plotly.subplots import make_subplots

    frame = result.sensitivity
    fig = make_subplots(rows=1, cols=2, subplot_titles=("capacity of one replica (req/s)", "USD per hour at R (ceil(R / capacity) replicas)"))
    for i, (candidate, group) in enumerate(frame.groupby("candidate", sort=False)):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        name = group["deployment"].iloc[0]
        fig.add_trace(go.Scatter(x=group["slo_factor"], y=group["capacity_rps"], mode="lines+markers", name=name, legendgroup=name, line={"color": color}), row=1, col=1)
        fig.add_trace(go.Scatter(x=group["slo_factor"], y=group["usd_per_hour_estimate"], mode="lines+markers", name=name, legendgroup=name, showlegend=False, line={"color": color, "shape": "hv"}), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(title_text="every SLO bound x factor", type="log", tickformat=LOG_TICKS, row=1, col=col)
    fig.update_layout(template="plotly_white", height=460, title="How the cheapest candidates move as the SLOs tighten (< 1) or loosen (> 1)")
    return fig


def _sensitivity_html(result: PlanResult) -> str:
    frame = result.sensitivity
    if frame.empty:
        return "<p>No feasible candidate to vary.</p>"
    rows = []
    for factor, group in frame.groupby("slo_factor"):
        ok = group.dropna(subset=["usd_per_hour_estimate"])
        if ok.empty:
            rows.append(f"<tr><td>{factor:g}x</td><td>none of these meets the SLOs</td><td>—</td></tr>")
            continue
        best = ok.sort_values(["usd_per_hour_estimate", "rank"], kind="stable").iloc[0]  # ties: the plan's rank
        rows.append(f"<tr><td>{factor:g}x</td><td>{html.escape(best['deployment'])}</td><td>${best['usd_per_hour_estimate']:,.2f}</td></tr>")
    note = (
        "<p class=\"note\">The cheapest candidates at the plan's SLOs, searched again with every SLO bound "
        "(percentile bounds and per-request thresholds) multiplied by each factor. Costs here are "
        "estimates, ceil(R / capacity) replicas, not checked at R.</p>"
    )
    table = f"<table><tr><th>SLO factor</th><th>cheapest of these</th><th>USD/h (estimate)</th></tr>{''.join(rows)}</table>"
    return note + table + _figure_html(sensitivity_figure(result))


def _fmt(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if kind == "usd":
        return f"${value:,.2f}"
    if kind == "usd3":
        return f"${value:,.3f}"
    if kind == "rate":
        return f"{value:.3g}"
    if kind == "int":
        return f"{int(value):,}"
    return html.escape(str(value))


def _table_html(frame: pd.DataFrame, ranked: bool) -> str:
    if frame.empty:
        return "<p>None.</p>"
    if ranked:
        cols = [("rank", "rank", "int"), ("deployment", "replica configuration", "str"), ("capacity_rps", "capacity / replica (req/s)", "rate"),
                ("num_replicas", "replicas", "int"), ("num_gpus", "GPUs", "int"), ("usd_per_hour", "USD/h", "usd"),
                ("usd_per_million_output_tokens", "USD/M output tokens", "usd3")]
        if "capacity_lo" in frame.columns:  # prediction intervals (simulator.studies.plan.intervals)
            cols[3:3] = [("capacity_lo", "capacity lo", "rate"), ("capacity_hi", "capacity hi", "rate")]
            cols[6:6] = [("replicas_lo", "replicas lo", "int"), ("replicas_hi", "replicas hi", "int")]
            cols += [("usd_per_hour_lo", "USD/h lo", "usd"), ("usd_per_hour_hi", "USD/h hi", "usd")]
    else:
        cols = [("deployment", "replica configuration", "str"), ("stage", "stage", "str"), ("capacity_rps", "capacity / replica (req/s)", "rate"),
                ("reason", "reason", "str")]
    header = "".join(f"<th>{label}</th>" for _, label, _ in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row[col], kind)}</td>" for col, _, kind in cols) + "</tr>" for _, row in frame.iterrows()
    )
    more = ""
    if ranked:
        more = "<p class=\"note\">Every candidate, with the check run's latencies, is in plan.csv beside this page.</p>"
    return f"<table>{'<tr>' + header + '</tr>'}{body}</table>{more}"


def _prices_html(result: PlanResult) -> str:
    given = {k.lower() for k in result.plan.config.prices}
    rows = []
    for gpu, price in result.plan.prices.items():
        if gpu in given:
            source = "the plan file"
        else:
            p = GPU_PRICES[gpu]
            source = f"{html.escape(p.vendor)}, {html.escape(p.source)}, list price as of {p.as_of}"
        rows.append(f"<tr><td>{html.escape(gpu)}</td><td>${price:,.2f}</td><td>{source}</td></tr>")
    return (
        "<p class=\"note\">Public on-demand list prices at the dates stated, not quotes; reserved and negotiated prices are lower "
        "and vendors differ by several times for the same GPU. Override them under <code>prices</code> in the plan file.</p>"
        f"<table><tr><th>GPU</th><th>USD per GPU-hour</th><th>source</th></tr>{''.join(rows)}</table>"
    )


def _figure_html(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def console_summary(result: PlanResult, num_rows: int = 5) -> Table:
    """The console summary: the winner and the runners-up, then counts of infeasible candidates."""
    plan, table = result.plan, result.table
    out = Table(title=f"{plan.name}: R = {plan.target_rate_rps:.3g} req/s; {describe_slo(plan)}", show_header=True, header_style="bold")
    for col, justify in (("#", "right"), ("deployment", "left"), ("capacity/replica", "right"), ("replicas", "right"), ("GPUs", "right"),
                         ("USD/h", "right"), ("USD/M out tok", "right")):
        out.add_column(col, justify=justify)
    ok = table[table["feasible"]].head(num_rows)
    for _, r in ok.iterrows():
        style = "bold green" if r["rank"] == 1 else None
        out.add_row(str(int(r["rank"])), r["deployment"], f"{r['capacity_rps']:.3g} req/s", str(int(r["num_replicas"])), str(int(r["num_gpus"])),
                    f"${r['usd_per_hour']:,.2f}", f"${r['usd_per_million_output_tokens']:,.3f}", style=style)
    bad = table[~table["feasible"]]
    if len(bad):
        counts = ", ".join(f"{n} at {stage}" for stage, n in bad["stage"].value_counts().items())
        out.caption = f"{len(table)} candidates, {len(table) - len(bad)} feasible; infeasible: {counts} (reasons in plan.csv)"
    if ok.empty:
        out.caption = (out.caption or "") + "; no candidate meets the SLOs at R within the limits"
    note = interval_note(table)
    if note is not None:
        out.caption = f"{out.caption}\n{note}" if out.caption else note
    return out
