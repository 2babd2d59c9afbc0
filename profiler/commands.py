"""What ``servesim profile`` and ``servesim fit`` do with their options (the click layer stays thin).

Every bad option raises ``ScenarioError`` naming the option, the value and the fix; the command
line prints it on one line and exits with code 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from profiler.catalogue import QUANTIZATIONS, check_tp
from profiler.sweeps import SweepConfig
from simulator.errors import ScenarioError
from simulator.specs.model import ModelSpec, bundled_model_names, bundled_model_spec, model_spec_from_hf_config
from simulator.yaml_files import TAKEN_BY, yaml_file_kind

_BUNDLE_FIX = "give the --out folder of `servesim profile` (or of `servesim profile import`)"


def resolve_model(value: str) -> ModelSpec:
    """A bundled model name or a path to a Hugging Face config.json.

    Raises:
        ScenarioError: neither a bundled name nor a readable config.json.
    """
    spec = bundled_model_spec(value)
    if spec is not None:
        return spec
    path = Path(value).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file():
        return model_spec_from_hf_config(path, name=path.parent.name if path.name == "config.json" else path.stem)
    raise ScenarioError("--model", "", value, "unknown model and no such config.json",
                        f"use one of {', '.join(bundled_model_names())} or a path to a Hugging Face config.json")


def parse_tps(value: str, model: ModelSpec) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), each a TP degree ``model`` can be sharded over.

    Raises:
        ScenarioError: not a comma-separated list of positive integers, or a degree that does
            not divide the model's heads or MLP width.
    """
    try:
        tps = tuple(sorted({int(x) for x in value.split(",") if x.strip()}))
    except ValueError:
        raise ScenarioError("--tp", "", value, "not a comma-separated list of integers", "write e.g. --tp 1,2,4,8") from None
    if not tps:
        raise ScenarioError("--tp", "", value, "lists no TP degree", "write e.g. --tp 1,2,4,8")
    if tps[0] < 1:
        raise ScenarioError("--tp", "", tps[0], "is not a TP degree (a positive integer)", "write e.g. --tp 1,2,4,8")
    for tp in tps:
        problem = check_tp(model, tp)
        if problem:
            ok = [n for n in (1, 2, 4, 8, 16) if check_tp(model, n) is None]
            raise ScenarioError("--tp", "", tp, f"{problem} of {model.name}", f"use TP degrees among {', '.join(map(str, ok))}")
    return tps


def parse_quantizations(value: str, device: str) -> tuple[str, ...]:
    """``auto`` (every quantization on CUDA, none on the CPU), ``none``, or a comma-separated list.

    Raises:
        ScenarioError: an unknown quantization name.
    """
    value = value.strip().lower()
    if value == "auto":
        return QUANTIZATIONS if device == "cuda" else ()
    if value in ("none", ""):
        return ()
    names = tuple(x.strip() for x in value.split(",") if x.strip())
    for name in names:
        if name not in QUANTIZATIONS:
            raise ScenarioError("--quantization", "", name, "unknown quantization", f"use auto, none, or some of {', '.join(QUANTIZATIONS)}")
    return names


def run_profile(
    model: str, tp: str, device: str, out: Path, dtype: str | None, quantization: str, budget_minutes: float | None,
    operators: str | None, max_tokens: int | None, points_per_octave: int | None, max_num_seqs: int | None,
    max_context: int | None, repeats: int | None, threads: int | None, min_time_ms: float, progress: bool,
) -> Any:
    """Resolve the options and run (or resume) the profile; returns ``profiler.run.RunSummary``.

    Raises:
        ScenarioError: a bad option, torch missing, no GPU for ``--device cuda``, or an ``--out``
            folder holding a profile of something else.
    """
    from profiler.catalogue import OPERATORS

    spec = resolve_model(model)
    tps = parse_tps(tp, spec)
    quants = parse_quantizations(quantization, device)
    wanted = None
    if operators:
        wanted = frozenset(x.strip() for x in operators.split(",") if x.strip())
        unknown = sorted(wanted - set(OPERATORS))
        if unknown:
            raise ScenarioError("--operators", "", unknown[0], "unknown operator", f"use some of {', '.join(OPERATORS)}")
    if out.exists() and not out.is_dir():
        raise ScenarioError("--out", "", str(out), "is a file", "give a folder for the profile bundle")
    sweep = SweepConfig.for_device(device).replace(max_tokens=max_tokens, points_per_octave=points_per_octave, max_num_seqs=max_num_seqs, max_context=max_context, repeats=repeats)
    try:  # after the cheap checks: importing torch takes seconds
        import torch  # noqa: F401
    except ImportError:
        raise ScenarioError("servesim profile", "", ..., "needs torch, which is not installed", 'install it with pip install -e ".[profile]"') from None
    from profiler.run import ProfileOptions, profile

    if device == "cpu" and threads is None:
        threads = 1  # one intra-op thread: steadier numbers on a shared host
    opts = ProfileOptions(
        model=spec, tps=tps, device=device, out=out, sweep=sweep, dtype=dtype or ("bfloat16" if device == "cuda" else "float32"),
        quantizations=quants, budget_s=None if budget_minutes is None else budget_minutes * 60, operators=wanted,
        threads=threads if device == "cpu" else None, min_time_s=min_time_ms / 1e3, progress=progress,
    )
    return profile(opts)


def run_fit(profile_dir: Path, folds: int, target: str, html: bool, progress: bool) -> dict[str, Any]:
    """Fit the bundle at ``profile_dir``; returns the fit report.

    Raises:
        ScenarioError: not a folder (a scenario, sweep, plan or GPU spec file is named as such,
            with the command that takes it), not a bundle, a profile.json that is not a
            manifest, a bundle without measurements, or a bundle this user cannot write the fit into.
    """
    from profiler.fit import fit_bundle

    if profile_dir.is_file():
        kind = yaml_file_kind(profile_dir)
        if kind is not None:
            raise ScenarioError(str(profile_dir), "", ..., f"is a {kind} file, not a profile bundle folder", f"give it to {TAKEN_BY[kind]}; `servesim fit` takes a bundle: {_BUNDLE_FIX}")
        raise ScenarioError(str(profile_dir), "", ..., "is a file, not a profile bundle folder", _BUNDLE_FIX)
    if not profile_dir.is_dir():
        raise ScenarioError(str(profile_dir), "", ..., "profile folder not found", "give the --out folder of `servesim profile`")
    _check_manifest(profile_dir / "profile.json")
    if not os.access(profile_dir, os.W_OK | os.X_OK):
        raise ScenarioError(str(profile_dir), "", ..., "this user cannot write the fit (runtime_model.json, fit_report.json) into the bundle", "make the folder writable, or fit a copy of it")
    try:
        return fit_bundle(profile_dir, folds=folds, html=html, progress=progress, target=target)
    except OSError as e:
        raise ScenarioError(str(e.filename or profile_dir), "", ..., f"cannot read or write it while fitting ({e.strerror or type(e).__name__})", "check the bundle's permissions and free space") from None


def _check_manifest(path: Path) -> None:
    """Fail unless ``path`` (a bundle's profile.json), when present, is a JSON object naming the model and TP degrees.

    Raises:
        ScenarioError: not UTF-8, not JSON, or not such an object.
    """
    if not path.is_file():
        return  # the fit says "not a profile bundle"
    fix = "restore profile.json from a copy of the bundle, or profile again into a new --out folder"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", ..., "is not UTF-8 text", fix) from None
    except json.JSONDecodeError as e:
        raise ScenarioError(str(path), "", ..., f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", fix) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict) or not isinstance(manifest.get("tensor_parallel_sizes"), list):
        raise ScenarioError(str(path), "", ..., "is not a profile manifest (a JSON object with model and tensor_parallel_sizes)", fix)


def run_import(source_spec: str, model: str, tp: str, out: Path, fit: bool) -> dict[str, Any]:
    """``servesim profile import``: write the bundle of ``source_spec`` for ``model`` at ``tp`` into ``out`` (and fit it).

    Returns:
        ``{"out", "provenance", "fit"}``: the folder, provenance.json and the fit report (None
        with ``fit=False``).

    Raises:
        ScenarioError: a bad option, an unknown source, a missing package or file, a table that
            cannot be read.
    """
    from profiler.imports import import_profile
    from profiler.imports.bundle_writer import read_provenance

    spec = resolve_model(model)
    tps = parse_tps(tp, spec)
    root = import_profile(source_spec, spec, tps, out, source="servesim profile import", field="SOURCE")
    if spec.moe is not None:  # routed experts: the measured table is the runtime model (no fit)
        from profiler.imports.aiconfigurator_moe import moe_provenance

        return {"out": root, "provenance": moe_provenance(root), "fit": None}
    report = None
    if fit:
        from profiler.fit import fit_bundle

        report = fit_bundle(root, html=True)
    return {"out": root, "provenance": read_provenance(root), "fit": report}
