"""A cache of run results, keyed by a hash of each run's full configuration.

Sweeps (``compare``, ``plan``) run many simulations; an interrupted or repeated sweep should not
run them again. ``run_key`` hashes everything a run's result depends on: the resolved scenario,
the servesim version, the content of every file the scenario references (trace, empirical length
files, Hugging Face config, profile bundle) and whatever ``extra`` the caller adds (e.g. what it
keeps of the run). ``RunCache`` stores one small JSON file per key.

Simulations are deterministic (same scenario and seed, same results), so a hit is exactly what
the run would produce again; wall-clock times in a cached result are those of the original run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import simulator
from simulator.scenario import _PATH_FIELDS, GPU_FILE_SUFFIXES, PROFILE_SOURCE_KINDS, Scenario, scenario_to_dict

__all__ = ["RunCache", "file_fingerprint", "run_key"]

# (path, mtime_ns, size) -> sha256 of the content; a file is hashed again when it changes.
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's content, or of a folder's files (relative names and contents).

    A file's is memoized per (path, modification time, size), so a trace is read once per
    process however many runs use it, and read again after it is edited (a folder is walked
    every time; its files are memoized). A missing path gives ``"missing"``
    (the run itself then fails with the usual error).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    if path.is_dir():  # never memoized as a whole: editing a file inside leaves the folder's stat alone
        h = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(child.relative_to(path)).encode() + b"\0" + file_fingerprint(child).encode())
        return h.hexdigest()
    memo = (str(path), stat.st_mtime_ns, stat.st_size)
    digest = _FINGERPRINTS.get(memo)
    if digest is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _FINGERPRINTS[memo] = h.hexdigest()
    return digest


def _canonical(value: Any) -> Any:
    """JSON-ready data with a fixed form: floats that are whole stay floats, NaN as a string."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


@functools.cache
def engine_fingerprint() -> str:
    """sha256 of the simulator's own source and data files, so results of changed engine code or calibration never hit.

    Read once per process (about 50 files, a few milliseconds).
    """
    digest = hashlib.sha256()
    root = Path(simulator.__file__).parent
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.json")]):  # data too: GPU calibration, bundled models
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _profiler_fingerprint() -> str:
    """sha256 of ``profiler/``'s source (the importers and the fit), read once per process."""
    digest = hashlib.sha256()
    root = Path(simulator.__file__).parent.parent / "profiler"
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def named_profile_fingerprint(kind: str, what: str) -> str:
    """What a named profile's prices depend on: the importers' and the fit's source, and the data.

    The data is the source folder's content (``llmservingsim:``, ``vidur:``) or the installed
    aiconfigurator-core version (``aiconfigurator:``; ``$AICONFIGURATOR_SYSTEMS`` folds in its
    folder's content).
    """
    import importlib.metadata
    import os

    digest = hashlib.sha256(f"{kind}:{what}".encode())
    digest.update(_profiler_fingerprint().encode())
    if kind == "aiconfigurator":
        override = os.environ.get("AICONFIGURATOR_SYSTEMS")
        if override:
            digest.update(file_fingerprint(override).encode())
        else:
            try:
                digest.update(importlib.metadata.version("aiconfigurator-core").encode())
            except importlib.metadata.PackageNotFoundError:
                digest.update(b"not installed")
    else:
        digest.update(file_fingerprint(what).encode())
    return digest.hexdigest()


def run_key(scenario: Scenario, extra: dict | None = None) -> str:
    """The cache key of one run: sha256 (hex, 64 characters) of its full configuration.

    Hashes the canonical JSON (sorted keys) of ``scenario_to_dict(scenario)``, the servesim
    version and ``engine_fingerprint()`` (the simulator's source), ``extra`` (what the caller does with the run: a criterion, an early stop, the data
    kept) and the content fingerprint of every file the scenario references (``_PATH_FIELDS`` of
    ``simulator.scenario``), so an edited trace or profile gives a new key.

    Raises:
        TypeError: ``extra`` holds values JSON cannot encode.
    """
    data = scenario_to_dict(scenario)
    files = {}
    for field in (*_PATH_FIELDS, "hardware.gpu"):
        node: Any = data
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, str):
            continue
        kind, _, what = node.partition(":")
        if field == "hardware.gpu" and not node.lower().endswith(GPU_FILE_SUFFIXES):
            continue  # a bundled GPU: its numbers are engine source
        if field == "hardware.profile" and kind in PROFILE_SOURCE_KINDS:
            files[field] = named_profile_fingerprint(kind, what)
        else:
            files[field] = file_fingerprint(node)
    payload = {"scenario": data, "version": simulator.__version__, "engine": engine_fingerprint(), "files": files, "extra": extra or {}}
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RunCache:
    """A folder of small JSON files, ``<key>.json``, one per run.

    Safe against concurrent writers (processes of one sweep, or two sweeps sharing a folder):
    each value is written to a temporary file in the folder and moved into place with
    ``os.replace``, which is atomic, so a reader sees a whole file or none. A file that cannot be
    read or parsed counts as a miss.

    Args:
        folder: where the files go (created on first ``put``); None disables caching: ``get``
            always misses and ``put`` does nothing.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        assert key and all(c in "0123456789abcdef" for c in key), f"cache keys are hex digests, got {key!r}"
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The value stored under ``key``, or None when absent, unreadable or caching is off."""
        if self.folder is None:
            return None
        try:
            with self._path(key).open() as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` (JSON-encodable; NaN allowed) under ``key``, replacing any old one."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f, separators=(",", ":"))
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
