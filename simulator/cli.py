"""The ``servesim`` command line.

Every user mistake prints one line to stderr, ``servesim: error: ...``, and exits with code 2, no
traceback: a ``ScenarioError`` (the file, the field, the value and the fix), a usage error
(click's message on one line, with the command's ``--help``), or a results folder that cannot
be written (checked before any simulation runs). Warnings are one ``servesim: warning: ...``
line each and the command goes on (``simulator.scenario_warnings`` says which is which).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from simulator.cli_errors import ServesimGroup
from simulator.cli_errors import check_out as _check_out
from simulator.cli_errors import fail as _fail
from simulator.cli_errors import os_error as _os_error
from simulator.cli_errors import warn as _warn
from simulator.errors import ScenarioError
from simulator.scenario import Scenario, load_scenario, scenario_to_dict
from simulator.reports.tables import FORMATS, emit, print_table
from simulator.reports.tables import console as _console

from simulator.listing import KINDS as LIST_KINDS

_ERR = Console(stderr=True)


def _ms(stat: dict, key: str) -> str:
    value = stat.get(key)
    return "-" if value is None else f"{value * 1e3:,.1f}"


def summary_table(summary: dict, title: str) -> Table:
    """The console summary: what ran (``simulator.reports.run_header``), counts, throughput, latency
    percentiles (ms), SLO attainment."""
    from simulator.reports.run_header import header_rows

    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    for col in ("mean", "P50", "P90", "P99"):
        table.add_column(col, justify="right")
    for key, label in (("ttft_s", "TTFT (ms)"), ("tpot_s", "TPOT (ms)"), ("tbt_s", "TBT (ms)"), ("e2e_s", "E2E (ms)")):
        stat = summary[key]
        table.add_row(label, _ms(stat, "mean"), _ms(stat, "p50"), _ms(stat, "p90"), _ms(stat, "p99"))
    slo = summary.get("slo", {})
    slo_text = ", ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in slo.items() if v is not None) or "none set"
    rows = [
        ("requests", f"{summary['num_completed']:,} of {summary['num_requests']:,} completed"),
        ("duration", f"{summary['duration_s']:,.1f} s simulated in {summary['wall_time_s']:.2f} s"),
        ("throughput", f"{summary['request_throughput_rps']:.2f} req/s, {summary['output_throughput_tps']:,.0f} output tok/s, {summary['total_throughput_tps']:,.0f} total tok/s"),
        ("SLO", slo_text),
        ("SLO attainment", f"{summary['slo_attainment']:.1%}"),
        ("goodput", f"{summary['goodput_rps']:.2f} req/s"),
        ("preemptions", f"{summary['num_preemptions']:,}"),
    ]
    info = Table(show_header=False, box=None)
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    for row in [*header_rows(summary.get("run") or {}, short=True), *rows]:
        info.add_row(*row)
    outer = Table.grid()
    outer.add_row(f"[bold]{title}[/bold]")
    outer.add_row(info)
    outer.add_row(table)
    return outer


@click.group(cls=ServesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="servesim")
def main() -> None:
    """servesim: simulate LLM serving deployments on real request traces."""


@main.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a scenario field, e.g. --set cluster.num_replicas=2 (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder (default: output.dir, else reports/runs/<name>).")
@click.option("--no-report", is_flag=True, help="Skip the HTML report (an old one in the folder is removed).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run's results in the folder (refused without it).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="The summary as a table, as JSON (summary.json) or as one CSV row (the compare results' columns).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def run(scenario_file: Path | None, overrides: tuple[str, ...], out_dir: Path | None, no_report: bool, overwrite: bool, fmt: str, quiet: bool) -> None:
    """Simulate SCENARIO_FILE (default: the built-in quickstart) and write its results folder.

    The folder holds scenario.yaml (the resolved scenario), summary.json, requests.parquet,
    iterations.parquet and report.html. A folder holding an earlier run's results is refused
    unless --overwrite is given; then nothing of the earlier run is left beside the new files.
    """
    from simulator.run_outputs import claim
    from simulator.scenario_warnings import scenario_warnings
    from simulator.engine.simulation import describe_pools, simulate, unused_fields  # keeps `servesim --help` fast

    try:
        scenario = load_scenario(scenario_file, overrides)
        source = str(scenario_file) if scenario_file else "<defaults>"
        out = out_dir or Path(scenario.output.dir or Path("reports") / "runs" / scenario.name)
        _check_out(out, "--out" if out_dir else source, "" if out_dir else "output.dir")
        folder = claim(out, "run", scenario.name, overwrite, "--out" if out_dir else source, "" if out_dir else "output.dir")
        if not quiet:
            _warn_unused(scenario, source, unused_fields(scenario, source))
            for warning in scenario_warnings(scenario, source):
                _warn(f"{source}: {warning}")
        result = simulate(scenario, source, progress=not quiet and fmt == "table")
    except ScenarioError as e:
        _fail(e)
    try:
        out.mkdir(parents=True, exist_ok=True)
        folder.finish(write_results(result, out, report=scenario.output.report and not no_report))
    except OSError as e:
        _fail(_os_error(e))
    if fmt != "table":
        _print_summary(result.summary, fmt)
    elif not quiet:
        title = f"{scenario.name}: {result.deployment.model.name}, {describe_pools(scenario, result.deployments)}, {scenario.scheduler.name}"
        print_table(summary_table(result.summary, title))
        _console().print(f"results: {out}")


def _print_summary(summary: dict, fmt: str) -> None:
    """The run's summary on stdout as JSON (``summary.json``'s content) or one CSV row: the
    ``run`` section's scalars and model and scheduler names (``run_*``), then the columns
    ``servesim compare`` writes per run (``flatten_summary``)."""
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    from simulator.studies.compare import flatten_summary
    from simulator.reports.tables import Column, TableData

    run = summary.get("run") or {}
    flat = {f"run_{k}": v for k, v in run.items() if not isinstance(v, dict)}
    flat |= {"run_model": (run.get("model") or {}).get("name"), "run_scheduler": (run.get("scheduler") or {}).get("name")}
    flat |= {k: v for k, v in flatten_summary(summary).items() if not isinstance(v, dict)}
    emit([TableData("summary", "summary", [Column(k) for k in flat], [list(flat.values())])], "csv")


def _warn_unused(scenario: Scenario, source: str, fields: list[tuple[str, str]]) -> None:
    """One line on stderr per field the scenario's scheduler ignores."""
    for field, why in fields:
        _warn(f"{source}: {field} is ignored with scheduler {scenario.scheduler.name}: {why}")


def write_results(result, out: Path, report: bool = True) -> list[str]:
    """Write scenario.yaml, summary.json, requests.parquet, iterations.parquet and report.html;
    returns the names written."""
    with open(out / "scenario.yaml", "w") as f:
        yaml.safe_dump(scenario_to_dict(result.scenario), f, sort_keys=False)
    with open(out / "summary.json", "w") as f:
        json.dump(result.summary, f, indent=2)
        f.write("\n")
    result.requests.to_parquet(out / "requests.parquet", index=False)
    result.iterations.to_parquet(out / "iterations.parquet", index=False)
    if report:
        from simulator.reports.run_report import write_report

        write_report(result.requests, result.iterations, result.summary, result.scenario.name, out / "report.html")
    return ["scenario.yaml", "summary.json", "requests.parquet", "iterations.parquet"] + (["report.html"] if report else [])


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(LIST_KINDS))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table (wrapped to the terminal; full rows when piped), json, or csv (one KIND).")
def list_specs(kind: str | None, fmt: str) -> None:
    """List the bundled models, GPUs, schedulers, routers and named profiles (or only KIND)."""
    from simulator.listing import list_tables

    tables, notes = list_tables(kind)
    if fmt == "csv" and len(tables) != 1:
        _fail(ScenarioError("--format", "", "csv", "prints one table", f"name the one to print: servesim list {{{','.join(LIST_KINDS)}}} --format csv"))
    emit(tables, fmt, notes=notes if fmt == "table" else ())


@main.command(name="schema")
@click.argument("kind", type=click.Choice(["scenario", "sweep", "plan"]))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the schema to this file instead of stdout.")
def schema_command(kind: str, out: Path | None) -> None:
    """Print the JSON Schema of a scenario, sweep or plan file, for editors' YAML completion.

    Start a YAML file with `# yaml-language-server: $schema=FILE` to use it.
    """
    from simulator.schema import write_schema

    try:
        text = write_schema(kind, out)
    except OSError as e:
        _fail(_os_error(e))
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {out}; first line of a {kind} YAML: # yaml-language-server: $schema={out}")


@main.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a scenario field.")
def check(scenario_file: Path, overrides: tuple[str, ...]) -> None:
    """Validate SCENARIO_FILE and its trace; print the memory plan, the workload and its offered rate, without simulating."""
    from simulator.scenario_warnings import scenario_warnings
    from simulator.engine.simulation import describe_kv_transfer, resolve_deployments, unused_fields
    from simulator.workload_check import workload_lines

    try:
        scenario: Scenario = load_scenario(scenario_file, overrides)
        deployments = resolve_deployments(scenario, str(scenario_file))
        _warn_unused(scenario, str(scenario_file), unused_fields(scenario, str(scenario_file)))
        for warning in scenario_warnings(scenario, str(scenario_file)):
            _warn(f"{scenario_file}: {warning}")
        workload = workload_lines(scenario, next(iter(deployments.values())).max_model_len, str(scenario_file))
    except ScenarioError as e:
        _fail(e)
    gib = 1024**3
    for role, d in deployments.items():
        pool = "" if role == "colocated" else f"{role} pool: "
        click.echo(
            f"{scenario_file}: ok: {pool}{d.model.name} on {d.gpu.name}, TP {d.tensor_parallel_size} x PP {d.pipeline_parallel_size}"
            + (f" x DP {d.data_parallel_size}" if d.data_parallel_size > 1 else "")
            + (f", experts placed whole (EP {d.parallelism.expert_parallel_size})" if d.expert_parallel else "")
            + f" = {d.num_gpus} GPU(s); "
            f"per GPU {d.weight_bytes_per_gpu / gib:.1f} GiB weights, {d.activation_reserve_bytes / gib:.1f} GiB activations, "
            f"{d.kv_cache_bytes_per_gpu / gib:.1f} GiB KV cache = {d.num_kv_blocks:,} blocks ({d.num_kv_blocks * scenario.scheduler.block_size:,} tokens)"
        )
    if "prefill" in deployments:
        click.echo(f"{scenario_file}: ok: {describe_kv_transfer(scenario, deployments)}")
    for line in workload:
        click.echo(f"{scenario_file}: ok: {line}")


@main.command(name="plan")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder (default: reports/plan/<plan name>).")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run the simulations in local processes or on a Ray cluster.")
@click.option("--address", help="Ray cluster to join (with --executor ray; default: start a local instance).")
@click.option("--workers", type=int, help="Local worker processes (default: CPU count; 1 = in this process) or Ray tasks in flight.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Run cache folder (default: <out>/cache).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the run cache.")
@click.option("--overwrite", is_flag=True, help="Replace another study's results in the folder (refused without it; the same plan resumes).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def plan_command(plan_file: Path, out_dir: Path | None, executor_kind: str, address: str | None, workers: int | None, cache_dir: Path | None, no_cache: bool, overwrite: bool, quiet: bool) -> None:
    """Find the cheapest deployment serving PLAN_FILE's workload at its target rate within its SLOs.

    Writes plan.csv and plan.parquet (every candidate: capacity, replicas, GPUs, USD per hour and
    per million output tokens, or why it is infeasible), sensitivity.csv and plan.html. Runs are
    cached, so an interrupted plan resumes and an edited one re-runs only what changed.
    """
    from simulator.studies.executors import make_executor
    from simulator.studies.plan import load_plan, run_plan
    from simulator.studies.plan import write_results as write_plan_results
    from simulator.reports.plan_report import console_summary, write_plan_report
    from simulator.run_outputs import claim, study_id

    try:
        loaded = load_plan(plan_file)
        out = out_dir or Path("reports") / "plan" / loaded.name
        _check_out(out, "--out")
        folder = claim(out, "plan", study_id("plan", loaded.name, plan_file), overwrite)
        if cache_dir is not None and not no_cache:
            _check_out(cache_dir, "--cache-dir")
        executor = make_executor(executor_kind, max_workers=workers, address=address, progress=not quiet)  # type: ignore[arg-type]
        result = run_plan(loaded, executor, None if no_cache else cache_dir or out / "cache")
    except ScenarioError as e:
        _fail(e)
    except OSError as e:
        _fail(_os_error(e))
    try:
        write_plan_results(result, out)
        write_plan_report(result, out / "plan.html")
        folder.finish(["plan.csv", "plan.parquet", "sensitivity.csv", "base_scenario.yaml", "plan.html"])
    except OSError as e:
        _fail(_os_error(e))
    if not quiet:
        print_table(console_summary(result))
        click.echo(f"results: {out}")


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None, help="Where runs go: local processes or a Ray cluster (default: the file's executor, else local).")
@click.option("--address", default=None, help="Ray cluster address, e.g. auto or ray://HOST:10001 (default: start a local Ray instance).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Local worker processes or Ray tasks in flight (default: every CPU).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder (default: reports/compare/<sweep name>).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the run cache (<out>/cache).")
@click.option("--overwrite", is_flag=True, help="Replace another study's results in the folder (refused without it; the same sweep resumes).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def compare(sweep_file: Path, executor: str | None, address: str | None, workers: int | None, out_dir: Path | None, no_cache: bool, overwrite: bool, quiet: bool) -> None:
    """Run the sweep in SWEEP_FILE: every configuration at every rate, and each one's capacity.

    Writes results.csv / results.parquet (one row per run), capacity.csv and compare.html to
    the results folder. Runs are cached there, so an interrupted sweep resumes.
    """
    from simulator.studies.compare import capacity_console_table, run_compare
    from simulator.run_outputs import claim, study_id
    from simulator.studies.sweep import load_sweep

    try:
        sweep = load_sweep(sweep_file)  # its name gives the default folder and the study
        out = out_dir if out_dir is not None else Path("reports") / "compare" / sweep.name
        _check_out(out, "--out")
        folder = claim(out, "compare", study_id("compare", sweep.name, sweep_file), overwrite)
        result = run_compare(sweep_file, executor=executor, address=address, workers=workers, out=out, use_cache=not no_cache, progress=not quiet)
        folder.finish(["results.csv", "results.parquet"] + (["capacity.csv"] if result.sweep.criterion is not None else []) + ["compare.html"])
    except ScenarioError as e:
        _fail(e)
    except OSError as e:
        _fail(_os_error(e))
    if not quiet:
        console = _console()
        if len(result.capacity):
            print_table(capacity_console_table(result), console)
        num_cached = int(result.results["cached"].sum()) if len(result.results) else 0
        console.print(f"{len(result.results)} runs ({num_cached} from the cache) in {result.wall_time_s:.1f} s; results: {result.out}")


@main.group(name="profile", invoke_without_command=True)
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
    click.echo(f"{summary.out}: {summary.num_measured} measured now, {summary.num_done_before} before, {summary.num_failed} failed, "
               f"{left} left ({summary.stopped}); next: servesim {'profile ... (same options) to continue' if left else f'fit {summary.out}'}")


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
    _console().print(f"use it: --set hardware.profile={result['out']}" + ("" if result["fit"] else f" (after servesim fit {result['out']})"))


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


@main.command(name="validate")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/validate"), show_default=True, help="Results folder.")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run the simulations in local processes or on a Ray cluster.")
@click.option("--address", help="Ray cluster to join (with --executor ray).")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes or Ray tasks in flight (default: every CPU).")
@click.option("--waves", type=click.IntRange(min=1), default=4, show_default=True, help="Requests per client for closed-loop sets (aiconfigurator:silicon_sample).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the run cache (<out>/cache).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def validate_command(runs: tuple[str, ...], out_dir: Path, executor_kind: str, address: str | None, workers: int | None, waves: int, no_cache: bool, quiet: bool) -> None:
    """Simulate measured runs of real engines and report servesim's error on each.

    RUNS are measured-run .yaml files, folders of them, aiconfigurator:silicon_sample (the
    measured vLLM runs inside aiconfigurator-core that servesim can simulate), or
    distserve:FOLDER (the DistServe authors' OPT-13B .exp files, FOLDER the runs/ folder or its parent).
    """
    from simulator.studies.validate import load_sets
    from simulator.studies.validate.engine import validate
    from simulator.reports.validate_report import write_validation

    _check_out(out_dir, "--out")
    try:
        loaded = load_sets(list(runs), waves)
        result = validate(loaded, None if no_cache else out_dir / "cache", executor_kind, workers, address, progress=not quiet)
        page = write_validation(result, out_dir)
    except ScenarioError as e:
        _fail(e)
    if quiet:
        return
    table = Table(title=f"servesim validate: {len(loaded)} runs")
    for col in ("run", "verdict", "worst error", "engine"):
        table.add_column(col, overflow="fold")
    for r in result.verdicts.itertuples():
        table.add_row(r.run, r.verdict, r.worst, r.engine)
    console = _console()
    print_table(table, console)
    lat = result.errors[result.errors["error"].notna()]
    for (metric, stat), g in lat.groupby(["metric", "stat"]):
        console.print(f"{metric} {stat}: median |error| {g['error'].abs().median():.1f} {g['unit'].iloc[0]} (median signed {g['error'].median():+.1f}) over {len(g)} runs")
    console.print(f"wrote {page}, errors.csv, verdicts.csv")


@main.command(name="fit")
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


if __name__ == "__main__":
    main()
