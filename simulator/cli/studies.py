"""``servesim plan``, ``compare`` and ``validate``: the many-simulation studies."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from simulator.cli.errors import check_out as _check_out
from simulator.cli.errors import fail as _fail
from simulator.cli.errors import os_error as _os_error
from simulator.errors import ScenarioError
from simulator.reports.tables import FORMATS, emit, frame_table, print_table
from simulator.reports.tables import console as _console


@click.command(name="plan")
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


@click.command()
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
        folder.finish(["results.csv", "results.parquet"] + (["capacity.csv"] if result.sweep.criterion is not None else [])
                      + (["separation.csv"] if result.separation is not None else []) + ["compare.html"])
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
        if result.separation is not None and len(result.separation):
            sep = result.separation
            console.print(f"prediction intervals: {int(sep['separated'].sum())} of {len(sep)} pairwise differences "
                          f"({', '.join(sep['figure'].unique())}) separated; see separation.csv")


@click.command(name="validate")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/validate"), show_default=True, help="Results folder.")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="Run the simulations in local processes or on a Ray cluster.")
@click.option("--address", help="Ray cluster to join (with --executor ray).")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes or Ray tasks in flight (default: every CPU).")
@click.option("--waves", type=click.IntRange(min=1), default=4, show_default=True, help="Requests per client for closed-loop sets (aiconfigurator:silicon_sample).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the run cache (<out>/cache).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Print the verdicts and error summary as tables, both tables as JSON, or the signed errors (errors.csv's rows) as CSV.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def validate_command(runs: tuple[str, ...], out_dir: Path, executor_kind: str, address: str | None, workers: int | None, waves: int, no_cache: bool,
                     fmt: str, quiet: bool) -> None:
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
        result = validate(loaded, None if no_cache else out_dir / "cache", executor_kind, workers, address, progress=not quiet and fmt == "table")
        page = write_validation(result, out_dir)
    except ScenarioError as e:
        _fail(e)
    if fmt != "table":
        tables = [frame_table("verdicts", "verdicts", result.verdicts), frame_table("errors", "signed errors", result.errors)]
        emit(tables if fmt == "json" else tables[1:], fmt)
        return
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
