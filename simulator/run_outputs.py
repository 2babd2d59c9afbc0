"""Results folders that cannot be lost or mixed: who wrote a folder, and what it holds.

Every command that writes a results folder (``servesim run``, ``compare``, ``plan``) first
``claim``s it, before any simulation runs, and ends with ``OutputClaim.finish``:

* A folder holding another run's results is refused unless ``--overwrite`` is given: for ``run``
  any earlier results (a run is never resumed); for ``compare`` and ``plan`` the results of a
  different study (another command, or another sweep or plan file, by name and path). The same
  study may write again without ``--overwrite``: that is how an interrupted or edited sweep
  resumes from its run cache.
* ``finish`` records what this run wrote in ``MANIFEST`` and removes the files an earlier run
  wrote that this one did not (``--no-report`` removes an old ``report.html``; a sweep without
  capacity removes an old ``capacity.csv``), so a folder never shows one run's files beside
  another's. Only files servesim writes are removed (the manifest's list and the names in
  ``RESULT_FILES``); other files and the run cache (``cache/``: entries keyed by each run's
  full configuration, so a hit is exactly what that run would produce) stay.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import ScenarioError

MANIFEST = "servesim-outputs.json"
# The result files each command writes (besides MANIFEST and the run cache).
RESULT_FILES: dict[str, tuple[str, ...]] = {
    "run": ("scenario.yaml", "summary.json", "requests.parquet", "iterations.parquet", "report.html"),
    "compare": ("results.csv", "results.parquet", "capacity.csv", "compare.html"),
    "plan": ("plan.csv", "plan.parquet", "sensitivity.csv", "base_scenario.yaml", "plan.html"),
}
_KNOWN = tuple(dict.fromkeys(name for names in RESULT_FILES.values() for name in names))


@dataclass
class OutputClaim:
    """A results folder this command may write, and what earlier runs left in it.

    Attributes:
        out: the folder (may not exist yet).
        command: ``run``, ``compare`` or ``plan``.
        study: what identifies the study (``compare NAME (FILE)``); equal studies may resume.
        previous: file names an earlier run wrote there (its manifest's list and any
            ``RESULT_FILES`` name present).
    """

    out: Path
    command: str
    study: str
    previous: list[str] = field(default_factory=list)

    def finish(self, written: list[str]) -> list[str]:
        """Record ``written`` (file names in ``out``) in the manifest; remove what earlier runs
        wrote and this one did not. Returns the names removed.

        Raises:
            OSError: the manifest cannot be written or an old file cannot be removed.
        """
        removed = []
        for name in self.previous:
            if name not in written and name != MANIFEST:
                path = self.out / name
                if path.is_file() or path.is_symlink():
                    path.unlink()
                    removed.append(name)
        manifest = {"command": self.command, "study": self.study, "files": list(written)}
        tmp = self.out / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, self.out / MANIFEST)
        return removed


def read_manifest(out: Path) -> dict | None:
    """The folder's manifest (``command``, ``study``, ``files``), None when absent or unreadable."""
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data


def claim(out: Path, command: str, study: str, overwrite: bool, source: str = "--out", field_name: str = "") -> OutputClaim:
    """Claim ``out`` for one ``command`` run of ``study`` (module docstring); creates nothing.

    Args:
        out: the results folder.
        command: a key of ``RESULT_FILES``.
        study: for ``compare`` and ``plan``, what a resumed run must match (name and file);
            ignored for ``run``, which never resumes.
        overwrite: replace another run's results instead of refusing.
        source, field_name: where the folder was named (``--out``, or the scenario file and
            ``output.dir``), for the error.

    Raises:
        ScenarioError: ``out`` holds another run's results and ``overwrite`` is False; the
            message names the folder, what it holds and ``--overwrite``.
    """
    assert command in RESULT_FILES, command
    manifest = read_manifest(out) if out.is_dir() else None
    present = [name for name in _KNOWN if (out / name).is_file()]
    listed = [str(n) for n in (manifest or {}).get("files", []) if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")]
    previous = list(dict.fromkeys(listed + present))
    held = [name for name in previous if (out / name).is_file()]
    if held and not overwrite:
        same = command != "run" and manifest is not None and manifest.get("command") == command and manifest.get("study") == study
        if not same:
            owner = str(manifest.get("study") or manifest.get("command")) if manifest and command != "run" else "another run"
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise ScenarioError(source, field_name, str(out), f"already holds the results of {owner} ({shown})",
                                "pass --overwrite to replace them, or choose another --out folder")
    return OutputClaim(out, command, study, previous)


def study_id(command: str, name: str, path: Path) -> str:
    """What identifies a sweep or plan study: its command, name and file (resolved path)."""
    return f"{command} {name} ({Path(path).resolve()})"
