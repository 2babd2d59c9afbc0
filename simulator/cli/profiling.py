"""``servesim profile`` (measure, ``import``, ``compare``) and ``servesim fit``: runtime models."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from simulator.cli.errors import check_out as _check_out
from simulator.cli.errors import fail as _fail
from simulator.errors import ScenarioError
from simulator.reports.tables import FORMATS, emit, print_table
from simulator.reports.tables import console as _console


@click.group(name="profile", invoke_without_command=True)
@click.option("--model", help="Bundled model name or a path to a Hugging Face config.json.")
@click.option("--tp", default="1", show_default=True, help="TP degrees to profile, comma-separated, e.g. 1,2,4,8.")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True, help="Measure on the GPU (PyTorch and Triton kernels) or the CPU (PyTorch).")
@click.option("--out", type=click.Path(path_type=Path), help="Profile bundle folder (created; an existing one is resumed).")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default=None, help="Dtype of unquantized operators (default: bfloat16 on cuda, float32 on cpu).")
@click.option("--quantization", default="auto", show_default=True, help="Quantized GEMMs to add: auto (all on cuda, none on cpu), none, or some of w8a8,w4a16,fp8.")
@click.option("--budget-minutes", type=click.FloatRange(min=0), default=None, help="Stop before this many minutes; rerun to continue.")
@click.option("--operators", default=None, help="Only these operators, comma-separated (default: all).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Largest tokens per step swept (default: 16384 cuda, 512 cpu).")
@click.option("--points-per-octave", type=click.IntRange(min=1), default=None, help="Token sweep density (default: 4).")
@click.option("--max-num-seqs", type=click.IntRange(min=1), default=None, help="Most requests per step swept: sampling, decode batches (default: 512 cuda, 64 cpu).")
@click.option("--max-context", type=click.IntRange(min=1), default=None, help="Most context tokens in the attention grids (default: the model's).")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Measure each shape this many times (default: 1).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU only: torch threads (default: 1).")
@click.option("--min-time-ms", type=click.FloatRange(min=0), default=50.0, show_default=True, help="CPU only: least timed milliseconds per measurement.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def profile_command(ctx: click.Context, model: str | None, tp: str, device: str, out: Path, dtype: str | None, quantization: str, budget_minutes: float | None,
                    operators: str | None, max_tokens: int | None, points_per_octave: int | None, max_num_seqs: int | None,
                    max_context: int | None, repeats: int | None, threads: int | None, min_time_ms: float, quiet: bool) -> None:
    """Measure every operator of MODEL over a shape sweep into a profile bundle (resumable).

    `servesim profile import SOURCE ...` imports one from a public kernel database instead.
    """
    from profiler.commands import run_profile

    if ctx.invoked_subcommand is not None:
        return
    for name, value in (("--model", model), ("--out", out)):
        if value is None:
            raise click.UsageError(f"Missing option '{name}'.")
    _check_out(out, "--out")
    try:
        summary = run_profile(model, tp, device, out, dtype, quantization, budget_minutes, operators, max_tokens,
                              points_per_octave, max_num_seqs, max_context, repeats, threads, min_time_ms, progress=not quiet)
    except ScenarioError as e:
        _fail(e)
    left = summary.num_planned - summary.num_done_before - summary.num_measured - summary.num_failed
    done = f"use it: --set hardware.profile={summary.out}" if _is_moe_bundle(summary.out) else f"servesim fit {summary.out}"
    click.echo(f"{summary.out}: {summary.num_measured} measured now, {summary.num_done_before} before, {summary.num_failed} failed, "
               f"{left} left ({summary.stopped}); next: {'servesim profile ... (same options) to continue' if left else done}")


def _is_moe_bundle(folder: Path | str) -> bool:
    """Whether ``folder`` is a mixture-of-experts profile (``moe_profile.json``), which prices
    steps from its tables as they are (``simulator.cost_models.profiled_moe``), with no fit."""
    return (Path(folder) / "moe_profile.json").is_file()


@profile_command.command(name="import")
@click.argument("source")
@click.option("--model", required=True, help="Bundled model name or a path to a Hugging Face config.json.")
@click.option("--tp", default="1", show_default=True, help="TP degrees to map the tables onto, comma-separated, e.g. 1,2,4,8.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Profile bundle folder (created; an earlier import there is replaced).")
@click.option("--no-fit", is_flag=True, help="Only write the bundle; `servesim fit` it later.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def profile_import_command(source: str, model: str, tp: str, out: Path, no_fit: bool, quiet: bool) -> None:
    """Turn a public kernel database into a profile bundle of MODEL.

    SOURCE is aiconfigurator:SYSTEM/FRAMEWORK/VERSION (the aiconfigurator-core package;
    `servesim list` shows what exists), llmservingsim:FOLDER or vidur:FOLDER.
    """
    from profiler.commands import run_import

    _check_out(out, "--out")
    try:
        result = run_import(source, model, tp, out, fit=not no_fit)
    except ScenarioError as e:
        _fail(e)
    if quiet:
        return
    prov = result["provenance"]
    table = Table(title=f"{prov['source']} ({prov['device_name']}) -> {result['out']}")
    for col in ("operator", "dtype", "TP", "rows", "median %", "P95 %"):
        table.add_column(col, justify="left" if col in ("operator", "dtype") else "right")
    fitted: dict[tuple[str, str], dict] = {}
    for e in (result["fit"] or {}).get("operators", []):
        fitted.setdefault((e["operator"], e["dtype"]), e)
    for key, entry in prov["operators"].items():
        op, dtype, tp_ = key.split("|")
        origins = "+".join(f"{n}{o[0]}" for o, n in entry["rows"].items())
        e = fitted.get((op, dtype), {})
        med, p95 = e.get("median_ape_pct"), e.get("p95_ape_pct")
        if not set(entry["rows"]) & {"measured", "interpolated"}:
            med = p95 = None  # a fit to the roofline's own rows says nothing
        table.add_row(op, dtype, tp_[2:], origins, "-" if med is None else f"{med:.1f}", "-" if p95 is None else f"{p95:.1f}")
    table.caption = "rows: m measured, i interpolated, f filled, a assumed; held-out error of the fit (K-fold over shapes), - for filled"
    print_table(table)
    filled = ", ".join(sorted(prov.get("filled", {}))) or "none"
    _console().print(f"filled from the roofline calibrated on the source's own kernels (or assumed): {filled}")
    needs_fit = not result["fit"] and not _is_moe_bundle(result["out"])
    _console().print(f"use it: --set hardware.profile={result['out']}" + (f" (after servesim fit {result['out']})" if needs_fit else ""))


@profile_command.command(name="compare")
@click.argument("bundle_a", type=click.Path(path_type=Path))
@click.argument("bundle_b", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Tables, JSON (both tables), or CSV (the per-operator ratios).")
def profile_compare_command(bundle_a: Path, bundle_b: Path, fmt: str) -> None:
    """Compare two profile bundles of one model operator by operator: the ratio B / A."""
    from profiler.compare import class_summary, compare_bundles
    from simulator.reports.tables import Column, TableData

    try:
        ratios = compare_bundles(bundle_a, bundle_b)
    except ScenarioError as e:
        _fail(e)
    ratio = lambda v: f"{v:.3f}"  # noqa: E731
    per_operator = TableData("operators", f"B / A: {bundle_b} over {bundle_a}", [
        Column("operator"), Column("dtype"), Column("TP", "tp", "right"), Column("points", "num_points", "right"),
        Column("median", "median", "right", ratio), Column("P10", "p10", "right", ratio), Column("P90", "p90", "right", ratio), Column("filled")],
        [[r.operator, r.dtype, r.tp, r.num_points, r.median, r.p10, r.p90, r.filled] for r in ratios])
    classes = TableData("classes", "per operator class (measured on both sides): the tables' median ratios", [
        Column("class"), Column("median", "median", "right", ratio), Column("P90", "p90", "right", ratio), Column("tables", "num_tables", "right")],
        [[klass, med, p90, n] for klass, (med, p90, n) in sorted(class_summary(ratios).items())])
    emit([per_operator] if fmt == "csv" else [per_operator, classes], fmt)


@click.command(name="fit")
@click.argument("profile_dir", type=click.Path(path_type=Path))
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="K of the K-fold cross-validation over shapes.")
@click.option("--target", type=click.Choice(["median_s", "mean_s", "p20_s", "min_s"]), default="median_s", show_default=True, help="Timing column to fit.")
@click.option("--no-html", is_flag=True, help="Skip fit_report.html.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def fit_command(profile_dir: Path, folds: int, target: str, no_html: bool, quiet: bool) -> None:
    """Fit one runtime model per operator of PROFILE_DIR and report its held-out error."""
    from profiler.commands import run_fit

    try:
        report = run_fit(profile_dir, folds, target, html=not no_html, progress=False)
    except ScenarioError as e:
        _fail(e)
    if not quiet:
        table = Table(title=f"{report['model']} on {report['device']}: held-out error ({folds}-fold over shapes)")
        for col in ("operator", "impl", "dtype", "shapes", "model", "median %", "P95 %"):
            table.add_column(col, justify="right" if col in ("shapes", "median %", "P95 %") else "left")
        for e in report["operators"]:
            med, p95 = e["median_ape_pct"], e["p95_ape_pct"]
            table.add_row(e["operator"], e["implementation"], e["dtype"], str(e["num_shapes"]), e["model"],
                          "-" if med is None else f"{med:.1f}", "-" if p95 is None else f"{p95:.1f}")
        print_table(table)
        _console().print(f"fit in {report['fit_s']:.1f} s; wrote runtime_model.json, fit_report.json{'' if no_html else ', fit_report.html'} in {profile_dir}")
