"""The runtime-model candidates fitted per operator (scikit-learn regressors on the physics features).

All three predict seconds from a DataFrame of one operator's rows (shape columns, ``flops``,
``nbytes``) and share one physics prior:

- ``PhysicsLinear``: a "sum roofline", ``t = c . basis(x)`` with ``c >= 0`` (FLOPs, bytes, waves,
  a constant), fitted by least squares on relative error (weights 1/t^2). Extrapolates linearly
  in the work, as the roofline does.
- ``PhysicsBoosted``: the prior times ``exp(g(x))``, g a gradient-boosted tree ensemble on the
  log features fitted to ``log(t / prior)``. Past the data the trees hold their edge value, so
  the prediction follows the prior scaled by the nearest measured efficiency, never a flat line.
- ``PhysicsInterpolated``: the prior times the measured efficiency ``t / prior`` interpolated
  linearly in log space along the sweep's axes (1-D: ``np.interp``; 2-D: along the first axis
  on every measured line of the second, then across those lines), within each curve of fixed
  ``group_columns``; outside the measured range it falls back to ``PhysicsBoosted``.

``servesim fit`` scores each by K-fold over shapes and keeps the one that generalizes best.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor

from profiler import features


class PhysicsLinear(BaseEstimator, RegressorMixin):
    """Non-negative combination of ``features.basis`` terms, least squares on relative error."""

    def __init__(self, kind: str = "gemm", num_units: int = 1) -> None:
        self.kind, self.num_units = kind, num_units

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsLinear:
        B = features.basis(X, self.kind, self.num_units)
        scale = np.maximum(B.max(axis=0), 1e-30)
        w = 1.0 / np.asarray(y, dtype=np.float64)
        coef, _ = nnls((B / scale) * w[:, None], np.ones_like(w))  # min sum ((pred - y) / y)^2
        self.coef_ = coef / scale
        if not np.any(self.coef_ > 0):  # degenerate data: a constant
            self.coef_ = np.zeros(B.shape[1])
            self.coef_[0] = float(np.median(y))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        t = features.basis(X, self.kind, self.num_units) @ self.coef_
        return np.maximum(t, 1e-12)


class PhysicsBoosted(BaseEstimator, RegressorMixin):
    """``PhysicsLinear`` times exp(gradient-boosted correction on the log features)."""

    def __init__(self, kind: str = "gemm", num_units: int = 1, n_estimators: int = 50, max_depth: int = 3, learning_rate: float = 0.2) -> None:
        self.kind, self.num_units = kind, num_units
        self.n_estimators, self.max_depth, self.learning_rate = n_estimators, max_depth, learning_rate

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsBoosted:
        y = np.asarray(y, dtype=np.float64)
        self.prior_ = PhysicsLinear(self.kind, self.num_units).fit(X, y)
        residual = np.log(y / self.prior_.predict(X))
        self.trees_ = GradientBoostingRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            min_samples_leaf=2, random_state=0,
        ).fit(features.log_features(X, self.kind, self.num_units), residual)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.prior_.predict(X) * np.exp(self.trees_.predict(features.log_features(X, self.kind, self.num_units)))


class PhysicsInterpolated(BaseEstimator, RegressorMixin):
    """The prior times the measured efficiency interpolated in log space along the sweep axes."""

    def __init__(self, kind: str = "gemm", num_units: int = 1) -> None:
        self.kind, self.num_units = kind, num_units

    def _points(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.log1p(np.asarray(X[a], dtype=np.float64)) for a in features.axes(self.kind)])

    def _groups(self, X: pd.DataFrame) -> list[tuple]:
        cols = features.group_columns(self.kind)
        return list(map(tuple, np.asarray(X[cols], dtype=np.float64))) if cols else [()] * len(X)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> PhysicsInterpolated:
        y = np.asarray(y, dtype=np.float64)
        self.fallback_ = PhysicsBoosted(self.kind, self.num_units).fit(X, y)
        prior = self.fallback_.prior_
        residual = np.log(y / prior.predict(X))
        points, groups = self._points(X), self._groups(X)
        self.curves_ = {}
        for g in set(groups):
            mask = np.array([row == g for row in groups])
            p, r = points[mask], residual[mask]
            # One value per shape (the fit passes one row per shape; raw rows get their median).
            uniq, inverse = np.unique(p, axis=0, return_inverse=True)
            inverse = inverse.ravel()
            r = np.array([np.median(r[inverse == i]) for i in range(len(uniq))])
            if uniq.shape[1] == 1:
                self.curves_[g] = ("1d", uniq[:, 0], r)
            else:
                lines = {}
                for y in np.unique(uniq[:, 1]):
                    on = uniq[:, 1] == y
                    order = np.argsort(uniq[on, 0])
                    lines[float(y)] = (uniq[on, 0][order], r[on][order])
                self.curves_[g] = ("2d", lines, None)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        out = self.fallback_.predict(X)
        prior = self.fallback_.prior_.predict(X)
        points, groups = self._points(X), self._groups(X)
        rows_of: dict[tuple, list[int]] = {}
        for i, g in enumerate(groups):
            rows_of.setdefault(g, []).append(i)
        for g, rows in rows_of.items():
            curve = self.curves_.get(g)
            if curve is None:
                continue
            idx = np.asarray(rows)
            if curve[0] == "1d":
                xs, rs = curve[1], curve[2]
                if len(xs) < 2:
                    continue
                x = points[idx, 0]
                inside = (x >= xs[0]) & (x <= xs[-1])
                out[idx[inside]] = prior[idx[inside]] * np.exp(np.interp(x[inside], xs, rs))
            else:
                r = _interp_lines(curve[1], points[idx])
                ok = np.isfinite(r)
                out[idx[ok]] = prior[idx[ok]] * np.exp(r[ok])
        return out


def _interp_lines(lines: dict[float, tuple[np.ndarray, np.ndarray]], queries: np.ndarray) -> np.ndarray:
    """Piecewise-linear 2-D interpolation on lines of constant second coordinate; NaN outside.

    Each query (x, y) is interpolated along x on every line that spans x, then along y between
    the two nearest such lines around y (exact on a line).
    """
    ys = np.array(sorted(lines))
    along = np.full((len(queries), len(ys)), np.nan)
    for j, y in enumerate(ys):
        xs, rs = lines[float(y)]
        if len(xs) >= 2:
            inside = (queries[:, 0] >= xs[0]) & (queries[:, 0] <= xs[-1])
            along[inside, j] = np.interp(queries[inside, 0], xs, rs)
        elif len(xs) == 1:
            along[queries[:, 0] == xs[0], j] = rs[0]
    out = np.full(len(queries), np.nan)
    for i, (row, y) in enumerate(zip(along, queries[:, 1])):
        ok = np.isfinite(row)
        if ok.sum() == 0:
            continue
        ys_ok, vals = ys[ok], row[ok]
        if ys_ok[0] <= y <= ys_ok[-1]:
            out[i] = np.interp(y, ys_ok, vals)
    return out


CANDIDATES = {"physics_linear": PhysicsLinear, "physics_boosted": PhysicsBoosted, "physics_interpolated": PhysicsInterpolated}
