"""Reading the CSV tables of imported profiles: one reader, one set of mistakes, each a one-line error."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from simulator.errors import ScenarioError


def fail(path: Path | str, field: str, value: Any, problem: str, fix: str) -> NoReturn:
    """Raise the ``ScenarioError`` of a bad source file."""
    raise ScenarioError(str(path), field, value, problem, fix)


def read_csv(path: Path, columns: tuple[str, ...] | list[str], fix: str) -> pd.DataFrame:
    """The rows of ``path`` with at least ``columns`` (not yet converted).

    Raises:
        ScenarioError: missing, empty, not a CSV (a row longer than the header included: pandas
            would otherwise shift the index silently), a column missing (the file's are listed),
            or no rows.
    """
    if not path.is_file():
        fail(path, "", ..., "file not found", fix)
    try:
        with warnings.catch_warnings():  # a row longer than the header is an error, not a shifted index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, index_col=False)
    except pd.errors.EmptyDataError:
        fail(path, "", ..., "empty file", fix)
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, ValueError) as e:
        fail(path, "", ..., f"not a readable CSV ({type(e).__name__})", fix)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        fail(path, missing[0], ..., f"column missing (the file has {', '.join(map(str, frame.columns))})", fix)
    if frame.empty:
        fail(path, "", ..., "no rows", fix)
    return frame


def numbers(frame: pd.DataFrame, column: str, path: Path, fix: str) -> pd.Series:
    """``frame[column]`` as finite floats.

    Raises:
        ScenarioError: a value that is not a finite number (its CSV row is named, header = row 1).
    """
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(values.to_numpy(np.float64)))
    if len(bad):
        fail(path, f"row {int(bad[0]) + 2}", frame[column].iloc[bad[0]], f"column {column} is not a number", fix)
    return values
