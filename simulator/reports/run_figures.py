"""The figures of a run's report: latency CDFs with the SLOs, latency against arrival time, and
the per-iteration state of every replica binned in time. Point counts are capped (``MAX_*``) so
the page stays small however long the run."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
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
REPLICA_COLORS = qualitative.Plotly


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
