"""Profile bundles from public kernel databases: ``servesim profile import`` and named profiles.

A source is named ``KIND:WHAT``:

    aiconfigurator:SYSTEM/FRAMEWORK/VERSION   NVIDIA's aiconfigurator-core tables (installed package),
                                              e.g. aiconfigurator:h100_sxm/vllm/0.24.0
    llmservingsim:FOLDER                      LLMServingSim's layer-wise vLLM profiles of one model
                                              (the folder holding meta.yaml and tp1/, tp2/, ...)
    vidur:FOLDER                              Vidur's profiles of one model (mlp.csv, attention.csv)

``import_profile`` writes the bundle where the user says; ``named_profile`` imports and fits it
once into a cache keyed by the source, the model's dimensions and the TP degree, so that a
scenario's ``hardware.profile: aiconfigurator:h100_sxm/vllm/0.24.0`` needs no manual step. The
cache is ``$SERVESIM_CACHE_DIR/profiles`` (default ``~/.cache/servesim/profiles``); a bundle is
built in a temporary folder and renamed into place, so parallel simulations never read half of
one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from profiler.imports.bundle_writer import ImportedBundle
from simulator.errors import ScenarioError
from simulator.specs.model import ModelSpec

KINDS = ("aiconfigurator", "llmservingsim", "vidur")
IMPORT_FORMAT = 2  # bump when an importer's mapping changes: cached bundles are rebuilt


def split(value: str) -> tuple[str, str] | None:
    """``"aiconfigurator:h100_sxm/vllm/0.24.0"`` -> ``("aiconfigurator", "h100_sxm/vllm/0.24.0")``; None for a plain folder."""
    kind, sep, rest = value.partition(":")
    if sep and kind in KINDS:
        return kind, rest
    return None


def _importer(kind: str) -> Callable[..., ImportedBundle]:
    if kind == "aiconfigurator":
        from profiler.imports.aiconfigurator import import_aiconfigurator

        return import_aiconfigurator
    if kind == "llmservingsim":
        from profiler.imports.llmservingsim import import_llmservingsim

        return import_llmservingsim
    from profiler.imports.vidur import import_vidur

    return import_vidur


def build(value: str, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source", field: str = "",
          base: Path | None = None) -> ImportedBundle:
    """The filled, not yet written bundle of source ``value`` for ``model`` at ``tps``.

    Args:
        value: ``KIND:WHAT`` (module docstring).
        base: folder that relative source folders are relative to (the scenario's); default the
            working directory.

    Raises:
        ScenarioError: an unknown kind, or whatever the importer rejects.
    """
    parsed = split(value)
    if parsed is None:
        raise ScenarioError(source, field, value, "is not a profile source", "write aiconfigurator:SYSTEM/FRAMEWORK/VERSION, llmservingsim:FOLDER or vidur:FOLDER")
    kind, rest = parsed
    if model.moe is not None:
        raise ScenarioError(source, field, value, f"{model.name} is a mixture-of-experts model: importing its expert kernels is not available yet",
                            "import a dense model (`servesim list` shows the bundled ones)")
    what: str | Path = rest
    if kind != "aiconfigurator":
        folder = Path(rest).expanduser()
        what = folder if folder.is_absolute() or base is None else base / folder
    bundle = _importer(kind)(what, model, tuple(sorted(tps)), out, source=source, field=field)
    bundle.fill_missing()
    return bundle


def import_profile(value: str, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source", field: str = "") -> Path:
    """``servesim profile import``: write the bundle of ``value`` into ``out``; returns ``out``.

    Raises:
        ScenarioError: see ``build`` (and, for a mixture-of-experts model from aiconfigurator,
            ``aiconfigurator_moe.import_moe``); ``out`` is a file or holds a bundle ``servesim profile`` measured.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ScenarioError("--out", "", str(out), "is a file", "give a folder for the profile bundle")
    if (out / "profile.json").is_file() and not (out / "provenance.json").is_file():
        raise ScenarioError("--out", "", str(out), "holds a measured profile bundle", "import into another folder (an import never overwrites measurements)")
    parsed = split(value)
    if model.moe is not None and parsed is not None and parsed[0] == "aiconfigurator":
        from profiler.imports.aiconfigurator_moe import import_moe  # the routed experts (moe.csv, moe_profile.json)

        return import_moe(parsed[1], model, tuple(sorted(tps)), out, source, field)
    return build(value, model, tps, out, source, field).write()


def cache_root() -> Path:
    """Where named profiles are kept: ``$SERVESIM_CACHE_DIR/profiles`` or ``~/.cache/servesim/profiles``."""
    base = os.environ.get("SERVESIM_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "servesim") / "profiles"


def _key(value: str, model: ModelSpec, tp: int, base: Path | None) -> str:
    from profiler import bundle as bundle_io

    parsed = split(value)
    ident: dict = {"value": value, "model": {k: getattr(model, k) for k in bundle_io.MODEL_FIELDS}, "tp": tp, "format": IMPORT_FORMAT}
    if parsed and parsed[0] == "aiconfigurator":
        from profiler.imports.aiconfigurator import package_version

        ident["package_version"] = package_version()
    elif parsed:
        folder = Path(parsed[1]).expanduser()
        folder = folder if folder.is_absolute() or base is None else base / folder
        folder = folder.resolve()
        stamps = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        ident.update(folder=str(folder), files=stamps)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def named_profile(value: str, model: ModelSpec, tp: int, source: str = "<scenario>", field: str = "hardware.profile", base: Path | None = None) -> Path:
    """The cached, fitted bundle of source ``value`` for ``model`` at TP ``tp``, imported and fitted on first use.

    Raises:
        ScenarioError: see ``build``; the cache folder cannot be written.
    """
    parsed = split(value)
    assert parsed is not None, value
    def slug(text: str) -> str:
        return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)[-48:].strip("-.")

    final = cache_root() / f"{parsed[0]}-{slug(parsed[1])}-{slug(Path(model.name).stem)}-tp{tp}-{_key(value, model, tp, base)}"

    def make(tmp: Path) -> None:
        from profiler.fit import fit_bundle

        build(value, model, (tp,), tmp, source, field, base).write()
        fit_bundle(tmp, html=False)

    return cached_bundle(final, "runtime_model.json", make, value, source, field)


def cached_bundle(final: Path, marker: str, make: Callable[[Path], None], value: str, source: str = "<scenario>", field: str = "hardware.profile") -> Path:
    """``final``, a bundle folder in the profile cache, made by ``make(folder)`` unless it holds ``marker`` already.

    ``make`` writes into a temporary folder beside ``final``, which is then renamed into place in
    one step, so an interrupted import leaves nothing half-written and two processes importing
    the same source at once both end with one whole bundle (the second uses the first's).

    Raises:
        ScenarioError: the cache folder cannot be written (naming ``value`` and ``field``); or
            whatever ``make`` raises.
    """
    if (final / marker).is_file():
        return final
    root = final.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    except OSError as e:
        raise ScenarioError(source, field, value, f"cannot write the profile cache {root} ({e.strerror})", "set SERVESIM_CACHE_DIR to a writable folder") from None
    try:
        make(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first: use its bundle
            if not (final / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
