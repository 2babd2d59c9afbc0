"""Prediction tables of a profiled runtime model: measured times on a grid, the roofline beyond it.

``Table1D`` interpolates along one axis (token counts), ``Table2D`` over two (batch size and
context, chunk length and prefix), ``LinkModel`` is a roofline formula alone. Outside the
measured range a table holds the efficiency measured at the nearest edge and scales the
roofline's time (DESIGN.md: extrapolate by the roofline, never flat). Used by
``simulator/cost_models/profiled.py``.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Callable

import numpy as np


class Table1D:
    """Times on an integer axis (sorted); linear between points, roofline-scaled past the ends.

    Args:
        axis: grid points (e.g. token counts 1..M).
        values: seconds at each point.
        roof: the roofline time of the same operator at any point (s).
    """

    def __init__(self, axis: np.ndarray, values: np.ndarray, roof: Callable[[float], float]) -> None:
        self.axis, self.values, self.roof = np.asarray(axis, dtype=np.float64), np.asarray(values, dtype=np.float64), roof
        self.low, self.high = float(self.axis[0]), float(self.axis[-1])

    def many(self, xs: np.ndarray) -> np.ndarray:
        """Seconds at each of ``xs``."""
        xs = np.asarray(xs, dtype=np.float64)
        out = np.interp(xs, self.axis, self.values)
        for i in np.flatnonzero((xs > self.high) | (xs < self.low)):
            x = float(xs[i])
            edge = self.high if x > self.high else self.low
            roof_edge = self.roof(edge)
            if roof_edge > 0:  # (a roofline of 0, e.g. zero CPU overheads configured, holds the edge value)
                out[i] *= self.roof(x) / roof_edge
        return out

    def __call__(self, x: float) -> float:
        return float(self.many(np.array([x]))[0])


class LinkModel:
    """An operator priced by a roofline formula alone (the TP all-reduce when the bundle could not measure it)."""

    def __init__(self, roof: Callable[[float], float]) -> None:
        self.roof = roof

    def many(self, xs: np.ndarray) -> np.ndarray:
        return np.array([self.roof(float(x)) for x in np.asarray(xs, dtype=np.float64)])

    def __call__(self, x: float) -> float:
        return self.roof(x)


class Table2D:
    """Times on a grid of two axes; bilinear inside, roofline-scaled from the nearest edge point outside.

    Args:
        axis0, axis1: sorted grid coordinates.
        values: seconds, [len(axis0), len(axis1)].
        roof: the roofline time at any (x0, x1) (s).
    """

    def __init__(self, axis0: np.ndarray, axis1: np.ndarray, values: np.ndarray, roof: Callable[[float, float], float]) -> None:
        self.a0, self.a1 = [float(x) for x in axis0], [float(x) for x in axis1]
        self.v = np.asarray(values, dtype=np.float64).tolist()
        self.roof = roof
        # Batch sizes and chunk lengths are integers: on a dense 1..N axis a row is found by index.
        self.dense0 = self.a0 == [float(i) for i in range(1, len(self.a0) + 1)]
        self.lo0, self.hi0, self.lo1, self.hi1 = self.a0[0], self.a0[-1], self.a1[0], self.a1[-1]

    def _row(self, i: int, x1: float) -> float:
        """Row ``i`` interpolated at ``x1`` (within the second axis)."""
        a1, row = self.a1, self.v[i]
        if len(a1) == 1:
            return row[0]
        j = bisect_right(a1, x1)
        if j >= len(a1):
            return row[-1]
        lo = a1[j - 1]
        return row[j - 1] + (row[j] - row[j - 1]) * (x1 - lo) / (a1[j] - lo)

    def inside(self, x0: float, x1: float) -> float:
        """Bilinear value at a point within the grid."""
        a0 = self.a0
        if self.dense0:
            i = int(x0) - 1
            f = x0 - 1 - i
        else:
            i = min(max(bisect_right(a0, x0), 1), len(a0) - 1) - 1
            f = (x0 - a0[i]) / (a0[i + 1] - a0[i]) if len(a0) > 1 else 0.0
        top = self._row(i, x1)
        if f == 0.0 or i + 1 >= len(a0):
            return top
        return top + (self._row(i + 1, x1) - top) * f

    def __call__(self, x0: float, x1: float) -> float:
        if self.lo0 <= x0 <= self.hi0 and self.lo1 <= x1 <= self.hi1:
            return self.inside(x0, x1)
        e0 = min(max(x0, self.lo0), self.hi0)
        e1 = min(max(x1, self.lo1), self.hi1)
        return self.inside(e0, e1) * self.roof(x0, x1) / self.roof(e0, e1)
