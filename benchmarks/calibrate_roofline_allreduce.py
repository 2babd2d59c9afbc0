"""All-reduce prices per GPU and TP degree: alpha-beta fits to aiconfigurator-core's tables.

Used by ``benchmarks/calibrate_roofline_gpus.py``. Per GPU and TP degree (2, 4, 8) one
alpha-beta model ``t = latency + bytes / bandwidth`` (Hockney 1994) is fitted per algorithm:

- vLLM's custom all-reduce, CUDA-graph backend (``comm/vllm/<version>/custom_allreduce_perf.parquet``,
  ``kernel_source`` vLLM_custom_graph: servesim models steps replayed in CUDA graphs), on messages
  below 8 MiB only. vLLM calls it only there: ``CustomAllreduce(max_size=8192 * 1024)`` and
  ``should_custom_ar`` returns ``inp_size < self.max_size``, and only for two GPUs or a fully
  NVLink-connected group (``world_size > 2 and not fully_connected`` disables it), in
  vllm/distributed/device_communicators/custom_all_reduce.py. Above 8 MiB the table's rows
  match NCCL's within a few per cent: they are not the custom kernel.
- NCCL (``comm/nccl/<version>/nccl_perf.parquet``, op all_reduce, dtype half), all sizes; the
  NCCL version is the one the system file names (``misc.nccl_version``), else the newest.

Each fit minimizes the mean |log(pred / measured)| over the message sizes (powers of two, so
each octave weighs the same), by coordinate descent over a latency grid (0.1 us steps) and a
log-spaced bandwidth grid (0.5 % steps). servesim then prices an all-reduce of n bytes as
min(custom, NCCL) where custom applies and n < 8 MiB, else NCCL (``AllReduceFit.time``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from calibrate_roofline import _abs_log_err, coordinate_descent, ring_joint_fits
from calibrate_roofline_tables import Table, find_table, system_yaml

from simulator.specs.calibration import AllReduceFit, AlphaBeta

CUSTOM_MAX_BYTES = 8192 * 1024  # CustomAllreduce's default max_size (vLLM custom_all_reduce.py)
TP_DEGREES = (2, 4, 8)
_LATENCY_GRID = np.arange(0.0, 200.01e-6, 0.1e-6)
_BANDWIDTH_GRID = np.exp(np.arange(np.log(0.1e9), np.log(4000e9), 0.005))


def nccl_table(system: str) -> Table | None:
    """The system's NCCL table: the version its system file names, else the newest."""
    wanted = str(system_yaml(system).get("misc", {}).get("nccl_version", ""))
    return find_table(system, "comm", "nccl", "nccl_perf.parquet", wanted or None)


def read_all_reduce(system: str, vllm_version: str | None) -> tuple[pd.DataFrame, list[Table]]:
    """All-reduce rows (algo ``nccl`` or ``custom``, tp, nbytes, measured_s) of ``system``."""
    frames, tables = [], []
    nccl = nccl_table(system)
    if nccl is not None:
        df = pd.read_parquet(nccl.path)
        df = df[(df.op_name == "all_reduce") & (df.nccl_dtype == "half")]
        frames.append(df.assign(algo="nccl"))
        tables.append(nccl)
    custom = find_table(system, "comm", "vllm", "custom_allreduce_perf.parquet", vllm_version)
    if custom is not None:
        df = pd.read_parquet(custom.path)
        frames.append(df[df.kernel_source == "vLLM_custom_graph"].assign(algo="custom"))
        tables.append(custom)
    if not frames:
        return pd.DataFrame(columns=["algo", "tp", "nbytes", "measured_s"]), tables
    df = pd.concat(frames, ignore_index=True)
    df = df[df.num_gpus.isin(TP_DEGREES)]
    g = df.groupby(["algo", "num_gpus", "message_size"]).latency.median().reset_index()  # repeats: median
    return pd.DataFrame({"algo": g.algo, "tp": g.num_gpus, "nbytes": g.message_size, "measured_s": g.latency * 1e-3}), tables


def fit_alpha_beta(nbytes: np.ndarray, y: np.ndarray) -> AlphaBeta:
    """The alpha-beta model minimizing mean |log(pred / y)| over the rows (y in s)."""
    nbytes, y = np.asarray(nbytes, float), np.asarray(y, float)

    def loss(latency_s, bandwidth):
        return _abs_log_err(latency_s + nbytes / bandwidth, y).mean(axis=-1)

    start = {"latency_s": float(y.min()), "bandwidth": float(nbytes.max() / y.max())}
    p = coordinate_descent(loss, start, {"latency_s": _LATENCY_GRID, "bandwidth": _BANDWIDTH_GRID})
    return AlphaBeta(p["latency_s"], p["bandwidth"])


def custom_applies(tp: int, link_kind: str) -> bool:
    """Whether vLLM uses its custom all-reduce for ``tp`` GPUs on this link (custom_all_reduce.py)."""
    return tp == 2 or link_kind == "nvlink"


def fit_all_reduce(rows: pd.DataFrame, link_kind: str) -> AllReduceFit | None:
    """Per TP degree: the NCCL fit, and the custom fit where vLLM would use it; None without NCCL rows."""
    nccl, custom = {}, {}
    for (algo, tp), d in rows.groupby(["algo", "tp"]):
        tp = int(tp)
        if algo == "nccl":
            nccl[tp] = fit_alpha_beta(d.nbytes, d.measured_s)
        elif custom_applies(tp, link_kind):
            d = d[d.nbytes < CUSTOM_MAX_BYTES]
            custom[tp] = fit_alpha_beta(d.nbytes, d.measured_s)
    if not nccl:
        return None
    return AllReduceFit(nccl, {tp: f for tp, f in custom.items() if tp in nccl}, CUSTOM_MAX_BYTES)


def vllm_measured(rows: pd.DataFrame, link_kind: str) -> pd.DataFrame:
    """Per (tp, nbytes): the measured time of the all-reduce vLLM would run (custom where it
    applies and below 8 MiB, else NCCL), over the sizes of the NCCL table."""
    nccl = rows[rows.algo == "nccl"].set_index(["tp", "nbytes"]).measured_s
    custom = rows[rows.algo == "custom"].set_index(["tp", "nbytes"]).measured_s
    out = nccl.rename("measured_s").reset_index()
    use = [custom_applies(int(tp), link_kind) and n < CUSTOM_MAX_BYTES and (tp, n) in custom.index
           for tp, n in zip(out.tp, out.nbytes)]
    out["measured_s"] = np.where(use, [custom.get((tp, n), np.nan) for tp, n in zip(out.tp, out.nbytes)], out.measured_s)
    out["algo"] = np.where(use, "custom", "nccl")
    return out


def ring_efficiency(rows: pd.DataFrame, gpu_name: str) -> float:
    """The ring formula's link efficiency fitted to the NCCL rows, jointly over their TP degrees
    and sizes: ``calibrate_roofline.ring_joint_fits``, the estimator of the H100 default."""
    d = rows[rows.algo == "nccl"]
    ar = pd.DataFrame({"num_workers": d.tp, "size": d.nbytes, "measured_s": d.measured_s, "gpu": gpu_name, "matches_spec": True})
    return ring_joint_fits(ar)[gpu_name][0]
