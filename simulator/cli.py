"""The ``servesim`` command line.

Every user mistake (a ``ScenarioError``) prints one line to stderr and exits with code 2, no
traceback; usage errors are click's, also exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from simulator.errors import ScenarioError
from simulator.scenario import Scenario, load_scenario, scenario_to_dict

_ERR = Console(stderr=True)


def _fail(error: ScenarioError) -> None:
    click.echo(f"servesim: error: {error}", err=True)
    sys.exit(2)


def _ms(stat: dict, key: str) -> str:
    value = stat.get(key)
    return "-" if value is None else f"{value * 1e3:,.1f}"


def summary_table(summary: dict, title: str) -> Table:
    """The console summary: counts, throughput, latency percentiles (ms), SLO attainment."""
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
    info.add_column(style="bold")
    info.add_column()
    for row in rows:
        info.add_row(*row)
    outer = Table.grid()
    outer.add_row(f"[bold]{title}[/bold]")
    outer.add_row(info)
    outer.add_row(table)
    return outer


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="servesim")
def main() -> None:
    """servesim: simulate LLM serving deployments on real request traces."""


@main.command()
@click.argument("scenario_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a scenario field, e.g. --set cluster.num_replicas=2 (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Results folder (default: output.dir, else reports/runs/<name>).")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def run(scenario_file: Path | None, overrides: tuple[str, ...], out_dir: Path | None, no_report: bool, quiet: bool) -> None:
    """Simulate SCENARIO_FILE (default: the built-in quickstart) and write its results folder.

    The folder holds scenario.yaml (the resolved scenario), summary.json, requests.parquet,
    iterations.parquet and report.html.
    """
    from simulator.simulation import simulate  # keeps `servesim --help` fast

    try:
        scenario = load_scenario(scenario_file, overrides)
        source = str(scenario_file) if scenario_file else "<defaults>"
        result = simulate(scenario, source, progress=not quiet)
    except ScenarioError as e:
        _fail(e)
    out = out_dir or Path(scenario.output.dir or Path("reports") / "runs" / scenario.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(ScenarioError("--out" if out_dir else source, "" if out_dir else "output.dir", str(out), f"cannot create the results folder ({e.strerror})", "choose a writable folder"))
    write_results(result, out, report=scenario.output.report and not no_report)
    if not quiet:
        c = scenario.cluster
        title = f"{scenario.name}: {result.deployment.model.name}, {c.num_replicas} replica(s) of TP{c.tensor_parallel_size} PP{c.pipeline_parallel_size} {result.deployment.gpu.name}, {scenario.scheduler.name}"
        Console().print(summary_table(result.summary, title))
        Console().print(f"results: {out}")


def write_results(result, out: Path, report: bool = True) -> None:
    """Write scenario.yaml, summary.json, requests.parquet, iterations.parquet and report.html."""
    with open(out / "scenario.yaml", "w") as f:
        yaml.safe_dump(scenario_to_dict(result.scenario), f, sort_keys=False)
    with open(out / "summary.json", "w") as f:
        json.dump(result.summary, f, indent=2)
        f.write("\n")
    result.requests.to_parquet(out / "requests.parquet", index=False)
    result.iterations.to_parquet(out / "iterations.parquet", index=False)
    if report:
        from simulator.report import write_report

        write_report(result.requests, result.iterations, result.summary, result.scenario.name, out / "report.html")


@main.command(name="list")
def list_specs() -> None:
    """List the bundled models, GPUs, schedulers and routers."""
    from simulator.router import ROUTERS
    from simulator.schedulers import SCHEDULERS
    from simulator.specs.gpu import GPUS
    from simulator.specs.model import bundled_model_names, bundled_model_spec

    console = Console()
    models = Table(title="models")
    for col in ("name", "layers", "hidden", "heads / KV heads", "params (B)", "max context"):
        models.add_column(col)
    for name in bundled_model_names():
        m = bundled_model_spec(name)
        models.add_row(name, str(m.num_layers), str(m.hidden_size), f"{m.num_attention_heads} / {m.num_kv_heads}", f"{m.num_params / 1e9:.2f}", f"{m.max_position_embeddings:,}")
    console.print(models)
    gpus = Table(title="GPUs (dense peaks)")
    for col in ("name", "BF16 TFLOPS", "FP8 TFLOPS", "INT8 TOPS", "memory GB", "HBM TB/s", "link GB/s/dir"):
        gpus.add_column(col)
    for g in GPUS.values():
        gpus.add_row(g.name, f"{g.bf16_flops / 1e12:g}", "-" if g.fp8_flops is None else f"{g.fp8_flops / 1e12:g}", f"{g.int8_ops / 1e12:g}", f"{g.memory_bytes / 1e9:g}", f"{g.memory_bandwidth / 1e12:g}", f"{g.link_bandwidth / 1e9:g}")
    console.print(gpus)
    console.print("schedulers: " + ", ".join(SCHEDULERS))
    console.print("routers: " + ", ".join(ROUTERS))


@main.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="Override a scenario field.")
def check(scenario_file: Path, overrides: tuple[str, ...]) -> None:
    """Validate SCENARIO_FILE and print its memory plan without simulating."""
    from simulator.deployment import resolve_deployment

    try:
        scenario: Scenario = load_scenario(scenario_file, overrides)
        d = resolve_deployment(scenario, str(scenario_file))
    except ScenarioError as e:
        _fail(e)
    gib = 1024**3
    click.echo(
        f"{scenario_file}: ok: {d.model.name} on {d.gpu.name}, TP {d.tensor_parallel_size} x PP {d.pipeline_parallel_size}; "
        f"per GPU {d.weight_bytes_per_gpu / gib:.1f} GiB weights, {d.activation_reserve_bytes / gib:.1f} GiB activations, "
        f"{d.kv_cache_bytes_per_gpu / gib:.1f} GiB KV cache = {d.num_kv_blocks:,} blocks ({d.num_kv_blocks * scenario.scheduler.block_size:,} tokens)"
    )


if __name__ == "__main__":
    main()
