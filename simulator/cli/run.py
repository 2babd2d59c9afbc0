"""``servesim run``, ``list``, ``schema`` and ``check``: one scenario, and what servesim knows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import yaml
from rich.markup import escape
from rich.table import Table

from simulator.cli.errors import check_out as _check_out
from simulator.cli.errors import fail as _fail
from simulator.cli.errors import os_error as _os_error
from simulator.cli.errors import warn as _warn
from simulator.errors import ScenarioError
from simulator.listing import KINDS as LIST_KINDS
from simulator.reports.tables import FORMATS, emit, print_table
from simulator.reports.tables import console as _console
from simulator.scenario import Scenario, load_scenario, scenario_to_dict


def _ms(stat: dict, key: str, interval: list[float] | None = None) -> str:
    value = stat.get(key)
    text = "-" if value is None else f"{value * 1e3:,.1f}"
    return text if interval is None else f"{text} [{interval[0] * 1e3:,.1f}, {interval[1] * 1e3:,.1f}]"


def _with(text: str, intervals: dict, name: str, fmt: str, scale: float = 1.0) -> str:
    """``text`` followed by the figure's interval ``[lo, hi]`` when the summary has one."""
    lo_hi = intervals.get(name)
    return text if lo_hi is None else f"{text} [{format(lo_hi[0] * scale, fmt)}, {format(lo_hi[1] * scale, fmt)}]"


def summary_table(summary: dict, title: str) -> Table:
    """The console summary: what ran (``simulator.reports.run_header``), counts, throughput, latency
    percentiles (ms), SLO attainment; each figure followed by ``[lo, hi]`` when the summary has
    ``intervals`` (``simulator.studies.intervals``)."""
    from simulator.reports.run_header import header_rows

    intervals = summary.get("intervals") or {}
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    for col in ("mean", "P50", "P90", "P99"):
        table.add_column(col, justify="right")
    for key, label in (("ttft_s", "TTFT (ms)"), ("tpot_s", "TPOT (ms)"), ("tbt_s", "TBT (ms)"), ("e2e_s", "E2E (ms)")):
        stat = summary[key]
        table.add_row(label, *(_ms(stat, s, intervals.get(f"{key}.{s}")) for s in ("mean", "p50", "p90", "p99")))
    slo = summary.get("slo", {})
    slo_text = ", ".join(f"{k.removesuffix('_s').upper()} <= {v:g} s" for k, v in slo.items() if v is not None) or "none set"
    rows = [
        ("requests", f"{summary['num_completed']:,} of {summary['num_requests']:,} completed"),
        ("duration", f"{summary['duration_s']:,.1f} s simulated in {summary['wall_time_s']:.2f} s"),
        ("throughput", f"{_with(format(summary['request_throughput_rps'], '.2f'), intervals, 'request_throughput_rps', '.2f')} req/s, "
                       f"{_with(format(summary['output_throughput_tps'], ',.0f'), intervals, 'output_throughput_tps', ',.0f')} output tok/s, "
                       f"{_with(format(summary['total_throughput_tps'], ',.0f'), intervals, 'total_throughput_tps', ',.0f')} total tok/s"),
        ("SLO", slo_text),
        ("SLO attainment", _with(f"{summary['slo_attainment']:.1%}", intervals, "slo_attainment", ".1%")),
        ("goodput", _with(f"{summary['goodput_rps']:.2f}", intervals, "goodput_rps", ".2f") + " req/s"),
        ("preemptions", f"{summary['num_preemptions']:,}"),
    ]
    if "uncertainty" in summary:
        u = summary["uncertainty"]
        rows.append(("intervals", escape(f"figure [lo, hi]: {u['nominal_coverage']:.0%} prediction intervals over {u['replicates']} replicates "
                                         f"(workload {u['workload']}, step-time error {u['step_time_relative_error']:.1%})")))
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


@click.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a scenario field, e.g. --set cluster.num_replicas=2 (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder (default: output.dir, else reports/runs/<name>).")
@click.option("--no-report", is_flag=True, help="Skip the HTML report (an old one in the folder is removed).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run's results in the folder (refused without it).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="The summary as a table, as JSON (summary.json) or as one CSV row (the compare results' columns).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--replicates", type=click.IntRange(min=1, max=10_000), help="Perturbed runs behind each figure's interval (overrides uncertainty.replicates; 1 = a plain run).")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run the replicates in local processes or on a Ray cluster.")
@click.option("--address", help="Ray cluster to join (with --executor ray; default: start a local instance).")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes for the replicates (default: CPU count; 1 = in this process) or Ray tasks in flight.")
def run(scenario_file: Path | None, overrides: tuple[str, ...], out_dir: Path | None, no_report: bool, overwrite: bool, fmt: str, quiet: bool,
        replicates: int | None, executor_kind: str, address: str | None, workers: int | None) -> None:
    """Simulate SCENARIO_FILE (default: the built-in quickstart) and write its results folder.

    The folder holds scenario.yaml (the resolved scenario), summary.json, requests.parquet,
    iterations.parquet and report.html. A folder holding an earlier run's results is refused
    unless --overwrite is given; then nothing of the earlier run is left beside the new files.

    With --replicates N (or uncertainty.replicates) above 1, N - 1 perturbed replicates run
    after it (``simulator.studies.intervals``) and summary.json gains ``intervals``
    ({figure: [lo, hi]}) and ``uncertainty`` (what was varied and by how much).
    """
    from simulator.run_outputs import claim
    from simulator.scenario_warnings import scenario_warnings
    from simulator.engine.simulation import describe_pools, simulate, unused_fields  # keeps `servesim --help` fast

    try:
        scenario = load_scenario(scenario_file, overrides)
        if replicates is not None:
            scenario = dataclasses.replace(scenario, uncertainty=dataclasses.replace(scenario.uncertainty, replicates=replicates))
        source = str(scenario_file) if scenario_file else "<defaults>"
        out = out_dir or Path(scenario.output.dir or Path("reports") / "runs" / scenario.name)
        _check_out(out, "--out" if out_dir else source, "" if out_dir else "output.dir")
        folder = claim(out, "run", scenario.name, overwrite, "--out" if out_dir else source, "" if out_dir else "output.dir")
        if not quiet:
            _warn_unused(scenario, source, unused_fields(scenario, source))
            for warning in scenario_warnings(scenario, source):
                _warn(f"{source}: {warning}")
        result = simulate(scenario, source, progress=not quiet and fmt == "table")
        if scenario.uncertainty.replicates > 1:
            _add_intervals(result, source, executor_kind, address, workers, quiet)
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


def _add_intervals(result, source: str, executor_kind: str, address: str | None, workers: int | None, quiet: bool) -> None:
    """Run the scenario's perturbed replicates and add ``intervals`` and ``uncertainty`` to its summary."""
    from simulator.studies.executors import make_executor
    from simulator.studies.intervals import compute_intervals, coverage_note

    cfg = result.scenario.uncertainty
    note = coverage_note(cfg.replicates, cfg.level)
    if note and not quiet:
        _warn(f"{source}: {note}")
    executor = make_executor(executor_kind, max_workers=workers, address=address, progress=not quiet)  # type: ignore[arg-type]
    result.summary.update(compute_intervals(result.scenario, source, result.summary, executor))


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


@click.command(name="list")
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


@click.command(name="schema")
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


@click.command()
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
