"""The profile bundle on disk: what ``servesim profile`` writes and ``servesim fit`` reads.

    PROFILE_DIR/
      profile.json          what was profiled: model dimensions, TP degrees, device kind, dtype,
                            quantizations, the sweep
      device.json           the machine: GPU (or CPU), clocks and power at start and end,
                            driver, CUDA, torch and triton versions, host, date, per-run timings
      gemm.csv ...          one tidy CSV per operator kind (catalogue.KINDS), one row per
                            measurement: operator, implementation, dtype, tp, the kind's shape
                            columns, flops, nbytes, median_s, p20_s, p80_s, min_s,
                            mean_s, num_samples, timer, repeat, measured_at
      failures.csv          measurements that raised (out of memory, ...), skipped on resume
      runtime_model.json    written by ``servesim fit``: what the simulator loads (with
      runtime_model.npz     its prediction tables), fit_report.json and fit_report.html

Rows are appended and flushed one at a time, so a killed run loses at most the row in flight; a
torn last line is cut off when the bundle is opened again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from profiler.catalogue import KEY_COLUMNS, KINDS, SHAPE_COLUMNS, TIMING_COLUMNS, Measurement, row_key
from profiler.timer import Timing
from simulator.specs.model import ModelSpec

MANIFEST = "profile.json"
DEVICE = "device.json"
FAILURES = "failures.csv"
FORMAT_VERSION = 1
# Model fields a bundle must agree on with a scenario's model (layers may differ: they are per layer).
MODEL_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size")


def fingerprint(root: Path) -> str:
    """SHA-256 of the bundle's measurement CSVs (a runtime model is stale once they change)."""
    h = hashlib.sha256()
    for kind in KINDS:
        path = csv_path(root, kind)
        if path.is_file():
            h.update(kind.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def csv_path(root: Path, kind: str) -> Path:
    return root / f"{kind}.csv"


def columns(kind: str) -> list[str]:
    """The CSV header of ``kind``."""
    return [*KEY_COLUMNS, *SHAPE_COLUMNS[kind], *TIMING_COLUMNS]


def repair(path: Path) -> None:
    """Cut a torn last line (a run killed mid-write) off ``path``."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def measured_keys(root: Path) -> set[tuple[str, ...]]:
    """Keys of every measurement already in the bundle (rows and recorded failures)."""
    keys: set[tuple[str, ...]] = set()
    for kind in KINDS:
        path = csv_path(root, kind)
        repair(path)
        if path.is_file():
            with open(path, newline="") as f:
                keys.update(row_key(kind, row) for row in csv.DictReader(f))
    failures = root / FAILURES
    repair(failures)
    if failures.is_file():
        with open(failures, newline="") as f:
            keys.update(tuple(row["key"].split("|")) for row in csv.DictReader(f))
    return keys


class RowWriter:
    """Appends measurement rows to the bundle's CSVs, flushing each one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, Any] = {}
        self._writers: dict[str, csv.writer] = {}

    def _writer(self, name: str, header: list[str]) -> csv.writer:
        if name not in self._writers:
            path = self.root / name
            repair(path)
            new = not path.is_file() or path.stat().st_size == 0
            f = open(path, "a", newline="")
            self._files[name], self._writers[name] = f, csv.writer(f)
            if new:
                self._writers[name].writerow(header)
        return self._writers[name]

    def write(self, m: Measurement, t: Timing, measured_at: str) -> None:
        """Append the row of ``m`` timed as ``t``."""
        w = self._writer(f"{m.kind}.csv", columns(m.kind))
        w.writerow([m.operator, m.implementation, m.dtype, m.tp, *m.shape, f"{m.flops:.6g}", f"{m.nbytes:.6g}",
                    f"{t.median_s:.6g}", f"{t.p20_s:.6g}", f"{t.p80_s:.6g}", f"{t.min_s:.6g}", f"{t.mean_s:.6g}", t.num_samples, t.timer, m.repeat, measured_at])
        self._files[f"{m.kind}.csv"].flush()

    def fail(self, m: Measurement, error: str, measured_at: str) -> None:
        """Record that ``m`` raised ``error`` (skipped on resume; delete failures.csv to retry)."""
        w = self._writer(FAILURES, ["key", "kind", "error", "measured_at"])
        w.writerow(["|".join(m.key), m.kind, error.replace("\n", " ")[:300], measured_at])
        self._files[FAILURES].flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._writers.clear()


def model_fields(model: ModelSpec) -> dict[str, Any]:
    """The model description stored in profile.json."""
    return {
        "name": model.name, "num_layers": model.num_layers, "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size, "num_attention_heads": model.num_attention_heads,
        "num_kv_heads": model.num_kv_heads, "head_dim": model.head_dim, "vocab_size": model.vocab_size,
        "max_position_embeddings": model.max_position_embeddings,
    }


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when the file does not exist."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a temporary file renamed over ``path``)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per writer: parallel fits never share it
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_tables(root: Path):
    """The bundle's measurements: ``{kind: DataFrame}`` for every kind with a CSV.

    Torn last lines are cut first. Needs pandas (no torch).
    """
    import pandas as pd

    tables = {}
    for kind in KINDS:
        path = csv_path(root, kind)
        repair(path)
        if path.is_file() and path.stat().st_size:
            tables[kind] = pd.read_csv(path)
    return tables
