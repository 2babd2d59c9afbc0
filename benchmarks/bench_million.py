"""Wall time and peak memory of one long run: up to a million requests on one core.

The configuration: Llama-2-7B on one H100-SXM, roofline cost model, vLLM v0 scheduler
(``vllm``), prompt and output lengths drawn from the Azure 2023 conversation trace
(``ContextTokens`` / ``GeneratedTokens``; prompts clipped to 4,000 tokens so prompt plus output
fit Llama-2's 4,096-token context, outputs cut to fit), Poisson arrivals at 8 req/s, seed 0.

Each configuration runs in a fresh process pinned to CPU 0 (``taskset -c 0``), so the wall time
is one core's and the peak RSS is that process's alone (its own ``ru_maxrss``, read at its end).
Configurations (``-step``: decode fast-forward off, one SimPy step per iteration; without:
on, ``simulator.schedulers.fast_forward``, the default):

* ``full``, ``full-step``: every output token's time and every iteration's record kept (the
  default outputs);
* ``bounded``, ``bounded-step``: ``output.token_gaps: histogram``, ``output.iterations: none`` and
  ``output.keep_requests: false`` (token gaps in a log histogram, iterations aggregated online,
  requests made at arrival and their results kept in numpy columns), the bounded-memory outputs.

    python benchmarks/bench_million.py [--requests 100000] [--configs full-step,bounded] [--trace PATH]

Prints one line per configuration (whole-process wall s; in-process wall and CPU s, the CPU time
being the steadier figure on a shared machine; peak RSS MiB; simulated requests/s) and a check
that the configurations agree on every request-level metric.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO.parent / "shared" / "traces" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
BOUNDED = ["output.token_gaps=histogram", "output.iterations=none", "output.keep_requests=false"]
# name -> (scenario overrides, decode fast-forward on)
CONFIGS = {
    "full-step": ([], False),
    "full": ([], True),
    "bounded-step": (BOUNDED, False),
    "bounded": (BOUNDED, True),
}

# The child: build the scenario, simulate, print the summary as JSON; no files written.
CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate
scenario = load_scenario(sys.argv[2], sys.argv[3:])
result = simulate(scenario, fast_forward=sys.argv[1] == "on")
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024, "summary": result.summary}, default=str))
"""


def scenario_yaml(num_requests: int, trace: Path) -> str:
    """The benchmark scenario as YAML text (see the module docstring)."""
    return f"""
name: bench-million
seed: 0
model: {{name: llama-2-7b}}
hardware: h100-sxm
cluster: {{num_replicas: 1}}
scheduler: {{name: vllm}}
workload:
  num_requests: {num_requests}
  arrival: {{process: poisson, rate: 8.0}}
  prompt_tokens: {{distribution: empirical, file: {trace}, column: ContextTokens, max: 4000}}
  output_tokens: {{distribution: empirical, file: {trace}, column: GeneratedTokens}}
"""


def run_config(yaml_text: str, overrides: list[str], fast_forward: bool) -> dict:
    """One fresh pinned process: its wall time (s, measured around the whole process), its own
    in-process wall (s), its peak RSS (MiB) and the run summary."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml_text)
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        cmd = [*pin, sys.executable, "-c", CHILD, "on" if fast_forward else "off", str(path), *overrides]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        process_wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = process_wall
    return out


def _request_metrics(summary: dict) -> dict:
    keys = ("num_completed", "duration_s", "ttft_s", "tpot_s", "e2e_s", "scheduling_delay_s", "num_preemptions", "num_iterations", "mean_batch_size")
    return {k: summary.get(k) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--trace", type=Path, default=TRACE, help="path to AzureLLMInferenceTrace_conv.csv")
    args = parser.parse_args()
    from profiler.device import cpu_model

    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; use {', '.join(CONFIGS)}")
    yaml_text = scenario_yaml(args.requests, args.trace.resolve())
    print(f"date: {datetime.date.today()}  machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.requests:,} requests, llama-2-7b on 1 x h100-sxm, roofline, vllm, Azure conv lengths, Poisson 8 req/s, taskset -c 0")
    results = {}
    for name in names:
        r = results[name] = run_config(yaml_text, *CONFIGS[name])
        s = r["summary"]
        print(f"{name:12s} wall {r['process_wall_s']:7.1f} s (in-process {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s)  peak RSS {r['peak_rss_mib']:7.0f} MiB  "
              f"{args.requests / r['process_wall_s']:9,.0f} req/s  tbt p50/p99 {s['tbt_s']['p50'] * 1e3:.2f}/{s['tbt_s']['p99'] * 1e3:.2f} ms", flush=True)
    if len(results) > 1:
        first, *rest = results.values()
        same = all(_request_metrics(r["summary"]) == _request_metrics(first["summary"]) for r in rest)
        print(f"request metrics, iteration counts and batch sizes identical across configs: {same}")


if __name__ == "__main__":
    main()
