"""``servesim profile compare A B``: two profile bundles of one model, operator by operator.

Both bundles are fitted first where they are not (``profiler.fit``). Each runtime-model table
(``operator|dtype|tpN``, see ``profiler/fit.py``) present in both is evaluated at the points of
A's grid that lie inside B's (1-D tables linearly, 2-D tables bilinearly), and the ratio B / A of
the predicted times summarizes how the two measurements differ: median, 10th and 90th
percentile per operator, and per operator class (GEMM, attention, elementwise, all-reduce,
host). Where a bundle was imported, the operators it filled from the roofline are flagged: a
ratio against a filled operator compares a measurement with a model, not with a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from profiler.catalogue import OPERATORS
from simulator.errors import ScenarioError

CLASSES = {"gemm": "GEMM", "attention_prefill": "attention", "attention_decode": "attention", "elementwise": "elementwise",
           "all_reduce": "all-reduce", "cpu_overhead": "host"}


@dataclass(frozen=True)
class TableRatio:
    """B / A over the shared grid of one table.

    Attributes:
        table: the table's name (``operator|dtype|tpN``).
        operator, dtype, tp, klass: what it prices and its class.
        num_points: grid points compared.
        median, p10, p90: percentiles of the ratio B / A.
        filled: which side (``A``, ``B``, ``A+B``) filled this operator from the roofline, else ``""``.
    """

    table: str
    operator: str
    dtype: str
    tp: int
    klass: str
    num_points: int
    median: float
    p10: float
    p90: float
    filled: str


def _load(root: Path, field: str) -> tuple[dict, dict[str, np.ndarray], set[str]]:
    import json

    from profiler import bundle
    from profiler.fit import RUNTIME_MODEL, RUNTIME_TABLES, fit_bundle
    from profiler.imports.bundle_writer import read_provenance

    if not (root / bundle.MANIFEST).is_file():
        raise ScenarioError(field, "", str(root), "is not a profile bundle (no profile.json)", "give a folder written by `servesim profile` or `servesim profile import`")
    meta = bundle.read_json(root / RUNTIME_MODEL)
    if meta is None or meta.get("fingerprint") != bundle.fingerprint(root) or not (root / RUNTIME_TABLES).is_file():
        fit_bundle(root, html=False)
        with open(root / RUNTIME_MODEL) as f:
            meta = json.load(f)
    with np.load(root / RUNTIME_TABLES, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    prov = read_provenance(root) or {}
    return meta, arrays, set(prov.get("filled", {}))


def _evaluate(arrays: dict[str, np.ndarray], name: str, points: list[np.ndarray]) -> np.ndarray:
    from scipy.interpolate import RegularGridInterpolator

    values = arrays[f"{name}/values"]
    axes = [arrays[f"{name}/axis{i}"].astype(np.float64) for i in range(values.ndim)]
    if values.ndim == 1:
        return np.interp(points[0], axes[0], values)
    keep = [i for i, a in enumerate(axes) if len(a) > 1]  # a one-point axis (e.g. prefix 0 only) is fixed
    grid = RegularGridInterpolator([axes[i] for i in keep], values.reshape([len(axes[i]) for i in keep]), method="linear")
    return grid(np.column_stack([points[i] for i in keep]))


def _shared_points(a: dict[str, np.ndarray], b: dict[str, np.ndarray], name: str) -> list[np.ndarray] | None:
    """A's grid points inside B's grid (flattened coordinates per axis), or None when they do not overlap."""
    ndim = a[f"{name}/values"].ndim
    axes = []
    for i in range(ndim):
        ax, bx = a[f"{name}/axis{i}"].astype(np.float64), b[f"{name}/axis{i}"].astype(np.float64)
        inside = ax[(ax >= bx.min()) & (ax <= bx.max())]
        if not len(inside):
            return None
        axes.append(inside)
    mesh = np.meshgrid(*axes, indexing="ij")
    return [m.ravel() for m in mesh]


def compare_bundles(a_root: Path, b_root: Path) -> list[TableRatio]:
    """Per shared table, the ratio B / A of the two bundles' fitted times (module docstring).

    Raises:
        ScenarioError: a folder is not a bundle, or the two share no table (another model, TP
            degrees or dtype).
    """
    a_meta, a, a_filled = _load(Path(a_root), "A")
    b_meta, b, b_filled = _load(Path(b_root), "B")
    out: list[TableRatio] = []
    for name in sorted(set(a_meta["tables"]) & set(b_meta["tables"])):
        points = _shared_points(a, b, name)
        if points is None:
            continue
        ratio = _evaluate(b, name, points) / _evaluate(a, name, points)
        ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
        if not len(ratio):
            continue
        info = a_meta["tables"][name]
        op = info["operator"]
        filled = "+".join(side for side, names in (("A", a_filled), ("B", b_filled)) if op in names)
        spec = OPERATORS.get(op)
        out.append(TableRatio(name, op, info["dtype"], int(info["tp"]), CLASSES.get(spec.kind if spec else info["kind"], "other"), len(ratio),
                              float(np.median(ratio)), float(np.percentile(ratio, 10)), float(np.percentile(ratio, 90)), filled))
    if not out:
        raise ScenarioError("B", "", str(b_root), f"shares no operator table with {a_root}", "compare bundles of the same model, dtype and TP degrees")
    return out


def class_summary(ratios: list[TableRatio], include_filled: bool = False) -> dict[str, tuple[float, float, int]]:
    """Per operator class: (median of the tables' median ratios, P90 of them, tables), filled ones left out unless asked."""
    by: dict[str, list[float]] = {}
    for r in ratios:
        if r.filled and not include_filled:
            continue
        by.setdefault(r.klass, []).append(r.median)
    return {k: (float(np.median(v)), float(np.percentile(v, 90)), len(v)) for k, v in by.items()}
