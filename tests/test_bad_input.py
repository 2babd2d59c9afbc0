"""Every user mistake is one line: exit code 2, ``servesim: error: ...`` naming the file, the field,
the value and the fix, never a traceback; a scenario that runs but may mislead is one
``servesim: warning: ...`` line and exit code 0.

One table of mistakes across the commands. Each case writes its bad input into a fresh folder and
runs the command line in-process (click's runner, exceptions not caught, so a traceback fails the
case); the cases marked ``subprocess`` run ``python -m simulator.cli`` where the interpreter's own
start and exit matter (decoding errors, the exit code of a real process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from profiler import TINY_MODEL_CONFIG
from simulator.cli import main
from tests.conftest import REPO, one_line_error, servesim
from tests.test_profiler_fit import synthetic_bundle

QUICKSTART = str(REPO / "scenarios" / "quickstart.yaml")
SWEEP = str(REPO / "scenarios" / "compare-azure-conv.yaml")
PLAN = str(REPO / "scenarios" / "plan-llama3-8b-azure-conv.yaml")
GPU_FILE = str(REPO / "scenarios" / "gpus" / "example-gpu.yaml")
TINY_RUN = "workload: {num_requests: 5, prompt_tokens: {distribution: fixed, value: 20}, output_tokens: {distribution: fixed, value: 3}}\n"
SMALL_SWEEP = "base_overrides: {workload.num_requests: 20}\ncapacity: {enabled: false}\n"
SMALL_PLAN = "workload: {num_requests: 20}\ntarget_rate_rps: 5\nslo: {percentiles: {ttft_s: {p90: 1.0}}}\nsearch: {gpus: [h100-sxm]}\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
VIDUR_HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens\n"


class Case:
    """The folder a case writes into, and its files."""

    def __init__(self, tmp: Path, bundle: Callable[[], Path]) -> None:
        self.tmp, self._bundle = tmp, bundle

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def folder(self, name: str) -> str:
        (self.tmp / name).mkdir(parents=True, exist_ok=True)
        return str(self.tmp / name)

    def bundle(self) -> str:
        """A copy of a fitted CPU profile bundle of the tiny model (TP 1)."""
        target = self.tmp / "bundle"
        shutil.copytree(self._bundle(), target)
        return str(target)

    def tiny_on_bundle(self, bundle: str) -> str:
        return self.file("s.yaml", f"model: {{config: {TINY_MODEL_CONFIG}}}\nhardware: {{profile: {bundle}}}\n{TINY_RUN}")


@dataclasses.dataclass(frozen=True)
class Mistake:
    args: Callable[[Case], list[str]]
    expect: tuple[str, ...]  # fragments of the one stderr line
    warning: bool = False  # a warning (exit 0) rather than an error (exit 2)
    subprocess: bool = False


def check(*sets: str) -> Callable[[Case], list[str]]:
    """``servesim check QUICKSTART --set ...``."""
    return lambda c: ["check", QUICKSTART, *(x for s in sets for x in ("--set", s))]


def check_file(name: str, content: str | bytes) -> Callable[[Case], list[str]]:
    return lambda c: ["check", c.file(name, content)]


def run_trace(name: str, content: str | bytes, *sets: str) -> Callable[[Case], list[str]]:
    """``servesim run`` of the defaults replaying trace file ``name``."""
    return lambda c: ["run", "-q", "--no-report", "--out", str(c.tmp / "out"), "--set", f"workload.trace={c.file(name, content)}", *(x for s in sets for x in ("--set", s))]


def compare(content: str) -> Callable[[Case], list[str]]:
    return lambda c: ["compare", c.file("sweep.yaml", content), "--out", str(c.tmp / "out")]


def plan(content: str) -> Callable[[Case], list[str]]:
    return lambda c: ["plan", c.file("plan.yaml", content), "--out", str(c.tmp / "out")]


def gpu_file(content: str | bytes) -> Callable[[Case], list[str]]:
    return lambda c: ["check", c.file("s.yaml", f"hardware: {{gpu: {c.file('gpu.yaml', content)}}}\n")]


def example_gpu(**changes) -> str:
    text = Path(GPU_FILE).read_text()
    for key, value in changes.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines()) + "\n"
    return text


def under_a_file(c: Case) -> str:
    """A folder path below a regular file: it can never be created."""
    return str(Path(c.file("plain-file", "x")) / "out")


def on_bundle(change: Callable[[Path], None], command: str = "run") -> Callable[[Case], list[str]]:
    """``servesim run`` (or ``fit``) of the tiny model on a bundle that ``change`` broke."""
    def args(c: Case) -> list[str]:
        bundle = c.bundle()
        change(Path(bundle))
        if command == "fit":
            return ["fit", bundle, "--no-html", "-q"]
        return ["run", "-q", "--no-report", c.tiny_on_bundle(bundle), "--out", str(c.tmp / "out")]
    return args


def needs_aiconfigurator(args: list[str]) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        pytest.importorskip("aiconfigurator_core")
        return args
    return build


def read_only_out(c: Case) -> list[str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = Path(c.folder("locked"))
    folder.chmod(0o500)
    return ["run", "-q", "--no-report", QUICKSTART, "--set", "workload.num_requests=5", "--out", str(folder / "out")]


MISTAKES: dict[str, Mistake] = {
    # -- scenario fields (servesim check, --set) ---------------------------------------------------
    "unknown model": Mistake(check("model.name=llama-9000"), ("model.name", "'llama-9000'", "unknown model", "llama-3-8b")),
    "unknown GPU": Mistake(check("hardware.gpu=h900"), ("hardware.gpu", "'h900'", "unknown GPU", "h100-sxm")),
    "unknown scheduler": Mistake(check("scheduler.name=fifo"), ("scheduler.name", "'fifo'", "unknown scheduler", "sarathi")),
    "dtype not offered": Mistake(check("model.dtype=int4"), ("model.dtype", "'int4'", "bfloat16")),
    "memory utilization above 1": Mistake(check("scheduler.gpu_memory_utilization=1.5"), ("scheduler.gpu_memory_utilization", "1.5", "range")),
    "infinite arrival rate": Mistake(check("workload.arrival.rate=.inf"), ("workload.arrival.rate", "inf", "finite")),
    "infinite time scale": Mistake(check("workload.time_scale=.inf"), ("workload.time_scale", "inf", "finite")),
    "zero time scale": Mistake(check("workload.time_scale=0"), ("workload.time_scale", "= 0", "greater than 0")),
    "NaN SLO": Mistake(check("slo.ttft_s=.nan"), ("slo.ttft_s", "nan", "finite")),
    "10^12 synthetic requests": Mistake(check("workload.num_requests=1000000000000"), ("workload.num_requests", "1000000000000", "10,000,000", "GB")),
    "context beyond the model's": Mistake(check("model.max_model_len=1000000"), ("model.max_model_len", "1000000", "8,192-token context", "llama-3-8b")),
    "context beyond the model's and the budget": Mistake(check("model.max_model_len=100000", "scheduler.max_num_batched_tokens=4096"), ("model.max_model_len", "100000", "context", "max_num_batched_tokens")),
    "swap with orca (never preempts)": Mistake(check("scheduler.name=orca", "scheduler.preemption_mode=swap"), ("scheduler.preemption_mode", "'swap'", "orca", "never preempts", "recompute")),
    "swap with static batching": Mistake(check("scheduler.name=static", "scheduler.preemption_mode=swap"), ("scheduler.preemption_mode", "static", "never preempts")),
    "swap with vllm_v1 (check too)": Mistake(check("scheduler.name=vllm_v1", "scheduler.preemption_mode=swap"), ("scheduler.preemption_mode", "vllm_v1", "recompute only")),
    "swap without swap space": Mistake(check("scheduler.preemption_mode=swap", "scheduler.swap_space_gib=0"), ("scheduler.swap_space_gib", "0.0", "no KV block", "recompute")),
    "TP across nodes": Mistake(check("model=llama-3-70b", "cluster.tensor_parallel_size=16"), ("cluster.tensor_parallel_size", "16", "node", "pipeline_parallel_size")),
    "decode pool TP across nodes": Mistake(check("model=llama-3-70b", "scheduler.name=distserve", "cluster.tensor_parallel_size=8", "cluster.decode={tensor_parallel_size: 16}"), ("cluster.decode.tensor_parallel_size", "16", "node")),
    "10^12 sequences per step": Mistake(check("scheduler.max_num_seqs=1000000000000"), ("scheduler.max_num_seqs", "1000000000000", "activation reserve")),
    "KV block larger than memory": Mistake(check("scheduler.block_size=1000000000"), ("scheduler.block_size", "1000000000", "one KV block")),
    "sarathi chunk larger than memory": Mistake(check("scheduler.name=sarathi", "scheduler.chunk_size=100000000"), ("scheduler.chunk_size", "100000000", "activation reserve")),
    "--set into a number": Mistake(check("seed.x=1"), ("--set", "seed", "is not a section")),
    "--set without a field": Mistake(check("=3"), ("--set", "'=3'", "FIELD=VALUE")),
    "section given a number": Mistake(check_file("s.yaml", "workload: 5\n"), ("s.yaml", "workload = 5", "dictionary")),
    # -- scenario files --------------------------------------------------------------------------
    "duplicate key": Mistake(check_file("s.yaml", "workload:\n  num_requests: 10\n  arrival: {rate: 2}\n  num_requests: 20\n"), ("s.yaml", "workload.num_requests", "duplicate key at line 4", "line 2")),
    "duplicate section": Mistake(check_file("s.yaml", "seed: 1\nworkload: {num_requests: 5}\nseed: 2\n"), ("s.yaml", "seed", "duplicate key at line 3")),
    "empty scenario file": Mistake(check_file("s.yaml", ""), ("s.yaml", "scenario file is empty", "servesim run")),
    "comments-only scenario file": Mistake(check_file("s.yaml", "# to do\n"), ("s.yaml", "empty")),
    "scenario is a list": Mistake(check_file("s.yaml", "- model\n"), ("s.yaml", "not a mapping")),
    "tab-indented YAML": Mistake(check_file("s.yaml", "model:\n\tname: llama-3-8b\n"), ("s.yaml", "malformed YAML at line 2")),
    "UTF-16 scenario": Mistake(lambda c: ["check", c.file("s.yaml", "name: x\n".encode("utf-16"))], ("s.yaml", "UTF-16", "UTF-8"), subprocess=True),
    "Latin-1 scenario": Mistake(check_file("s.yaml", "name: caf\xe9\n".encode("latin-1")), ("s.yaml", "not UTF-8", "0xe9")),
    "sweep given to run": Mistake(lambda c: ["run", SWEEP], ("compare-azure-conv.yaml", "is a sweep file", "servesim compare")),
    "plan given to check": Mistake(lambda c: ["check", PLAN], ("plan-llama3-8b-azure-conv.yaml", "is a plan file", "servesim plan")),
    "GPU spec given to run": Mistake(lambda c: ["run", GPU_FILE], ("example-gpu.yaml", "is a GPU spec file", "hardware.gpu")),
    "trace given as a scenario": Mistake(lambda c: ["check", c.file("t.csv", VIDUR_HEADER + "0,10,3\n")], ("t.csv", "request trace", "workload.trace")),
    "scenario file missing": Mistake(lambda c: ["check", str(c.tmp / "nope.yaml")], ("nope.yaml", "not found")),
    "scenario is a folder": Mistake(lambda c: ["check", c.folder("d")], ("servesim check", "is a directory")),
    # -- servesim run ----------------------------------------------------------------------------
    "unknown router": Mistake(lambda c: ["run", "-q", "--set", "cluster.router=random_walk", "--out", str(c.tmp / "out")], ("cluster.router", "'random_walk'", "round_robin")),
    "--out below a file": Mistake(lambda c: ["run", "-q", QUICKSTART, "--set", "workload.num_requests=5", "--out", under_a_file(c)], ("--out", "plain-file", "cannot be created", "is a file"), subprocess=True),
    "output.dir below a file": Mistake(lambda c: ["run", "-q", QUICKSTART, "--set", "workload.num_requests=5", "--set", f"output.dir={under_a_file(c)}"], ("quickstart.yaml", "output.dir", "cannot be created")),
    "--out read-only": Mistake(read_only_out, ("--out", "not writable")),
    # -- traces -------------------------------------------------------------------------------------
    "hash_ids not a list": Mistake(run_trace("t.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 3, "hash_ids": "abc"}\n'), ("t.jsonl", "row 1", "'abc'", "hash_ids", "integer block ids")),
    "trace is a folder": Mistake(lambda c: ["run", "-q", "--set", f"workload.trace={c.folder('traces')}", "--out", str(c.tmp / "out")], ("workload.trace", "traces", "is a directory")),
    "trace missing": Mistake(lambda c: ["run", "-q", "--set", f"workload.trace={c.tmp / 'none.csv'}", "--out", str(c.tmp / "out")], ("workload.trace", "none.csv", "not found")),
    "UTF-16 CSV trace": Mistake(run_trace("t.csv", (VIDUR_HEADER + "0,10,3\n").encode("utf-16")), ("t.csv", "UTF-16"), subprocess=True),
    "Latin-1 JSONL trace": Mistake(run_trace("t.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 3, "note": "caf\xe9"}\n'.encode("latin-1")), ("t.jsonl", "not UTF-8", "0xe9")),
    "JSONL row not JSON": Mistake(run_trace("t.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 3}\n{"timestamp": 1,\n'), ("t.jsonl", "row 2", "not valid JSON")),
    "JSONL row not an object": Mistake(run_trace("t.jsonl", "[1, 2, 3]\n"), ("t.jsonl", "row 1", "not a JSON object")),
    "unrecognized CSV columns": Mistake(run_trace("t.csv", "time,prompt,output\n0,10,3\n"), ("t.csv", "unrecognized CSV trace columns", "arrived_at")),
    "CSV with a header only": Mistake(run_trace("t.csv", VIDUR_HEADER), ("t.csv", "no rows")),
    "empty CSV": Mistake(run_trace("t.csv", ""), ("t.csv", "unreadable CSV")),
    "fractional token count": Mistake(run_trace("t.csv", VIDUR_HEADER + "0,10.5,3\n"), ("t.csv", "row 1", "10.5", "not an integer")),
    "unreadable timestamp": Mistake(run_trace("t.csv", AZURE_HEADER + "yesterday,10,3\n"), ("t.csv", "row 1", "'yesterday'", "TIMESTAMP")),
    "empirical column missing": Mistake(lambda c: ["run", "-q", "--out", str(c.tmp / "out"), "--set", "workload.prompt_tokens.distribution=empirical", "--set", f"workload.prompt_tokens.file={c.file('t.csv', VIDUR_HEADER + '0,10,3' + chr(10))}", "--set", "workload.prompt_tokens.column=nope"], ("workload.prompt_tokens.column", "'nope'", "num_prefill_tokens")),
    "empirical file missing": Mistake(lambda c: ["run", "-q", "--out", str(c.tmp / "out"), "--set", "workload.prompt_tokens.distribution=empirical", "--set", f"workload.prompt_tokens.file={c.tmp / 'none.csv'}"], ("workload.prompt_tokens.file", "none.csv", "not found")),
    # -- sweep files (servesim compare) -----------------------------------------------------------
    "scenario given to compare": Mistake(lambda c: ["compare", QUICKSTART], ("quickstart.yaml", "is a scenario file", "servesim run")),
    "plan given to compare": Mistake(lambda c: ["compare", PLAN], ("is a plan file", "servesim plan")),
    "sweep field misspelt": Mistake(compare(SMALL_SWEEP + "axis: {scheduler.name: [vllm]}\n"), ("sweep.yaml", "axis", "unknown field", "axes")),
    "sweep base missing": Mistake(compare("base: nope.yaml\n" + SMALL_SWEEP), ("sweep.yaml", "base", "'nope.yaml'", "not found")),
    "axis without values": Mistake(compare(SMALL_SWEEP + "axes: {scheduler.name: []}\n"), ("axes.scheduler.name", "no values")),
    "axis repeats a value": Mistake(compare(SMALL_SWEEP + "axes: {scheduler.name: [vllm, vllm]}\n"), ("axes.scheduler.name", "repeats a value")),
    "two load axes": Mistake(compare(SMALL_SWEEP + "axes: {rate: [1], rate_scale: [1]}\n"), ("axes", "more than one load axis")),
    "negative rate": Mistake(compare(SMALL_SWEEP + "axes: {rate: [1, -2]}\n"), ("axes.rate", "-2", "positive")),
    "series not an axis": Mistake(compare(SMALL_SWEEP + "axes: {scheduler.name: [vllm, sarathi]}\nseries: [scheduler.chunk_size]\n"), ("series", "'scheduler.chunk_size'", "scheduler.name")),
    "capacity bracket reversed": Mistake(compare("base_overrides: {workload.num_requests: 20}\naxes: {scheduler.name: [vllm]}\ncapacity: {rate_lo: 5, rate_hi: 2}\n"), ("capacity.rate_lo", "5", "rate_hi")),
    "axis names an unknown scheduler": Mistake(compare(SMALL_SWEEP + "axes: {scheduler.name: [vllm, nope]}\n"), ("sweep.yaml", "'nope'", "unknown scheduler")),
    "duplicate key in a sweep": Mistake(compare(SMALL_SWEEP + "axes: {scheduler.name: [vllm]}\naxes: {rate: [1]}\n"), ("sweep.yaml", "axes", "duplicate key")),
    "empty sweep file": Mistake(compare(""), ("sweep.yaml", "sweep file is empty")),
    "compare --out below a file": Mistake(lambda c: ["compare", c.file("sweep.yaml", SMALL_SWEEP), "--out", under_a_file(c)], ("--out", "cannot be created")),
    # -- plan files (servesim plan) ----------------------------------------------------------------
    "scenario given to plan": Mistake(lambda c: ["plan", QUICKSTART], ("is a scenario file", "servesim run")),
    "plan without a search": Mistake(plan("workload: {num_requests: 20}\ntarget_rate_rps: 5\nslo: {percentiles: {ttft_s: {p90: 1.0}}}\n"), ("plan.yaml", "search", "required")),
    "plan with both target rates": Mistake(plan(SMALL_PLAN + "target_rate_scale: 2\n"), ("plan.yaml", "exactly one of target_rate_rps and target_rate_scale")),
    "plan with an infinite target rate": Mistake(plan(SMALL_PLAN.replace("target_rate_rps: 5", "target_rate_rps: .inf")), ("plan.yaml", "target_rate_rps", "inf", "finite")),
    "plan searches an unknown GPU": Mistake(plan(SMALL_PLAN.replace("[h100-sxm]", "[h900]")), ("plan.yaml", "search.gpus.0", "'h900'", "unknown GPU")),
    "plan searches an unknown scheduler": Mistake(plan(SMALL_PLAN.replace("search: {gpus: [h100-sxm]}", "search: {gpus: [h100-sxm], schedulers: [{name: fifo}]}")), ("search.schedulers.0.name", "'fifo'", "unknown scheduler")),
    "plan GPU spec file missing": Mistake(plan(SMALL_PLAN.replace("[h100-sxm]", "[gpus/mine.yaml]")), ("plan.yaml", "search.gpus.0", "not found")),
    "plan --out below a file": Mistake(lambda c: ["plan", c.file("plan.yaml", SMALL_PLAN), "--out", under_a_file(c)], ("--out", "cannot be created")),
    "plan --cache-dir is a file": Mistake(lambda c: ["plan", c.file("plan.yaml", SMALL_PLAN), "--out", str(c.tmp / "out"), "--cache-dir", c.file("cache", "x")], ("servesim plan", "--cache-dir", "is a file")),
    # -- GPU spec files (hardware.gpu) ---------------------------------------------------------------
    "scenario given as hardware.gpu": Mistake(lambda c: ["check", c.file("s.yaml", f"hardware: {{gpu: {QUICKSTART}}}\n")], ("quickstart.yaml", "is a scenario file, not a GPU spec file")),
    "GPU file with a duplicate key": Mistake(gpu_file(example_gpu() + "memory_gb: 96\n"), ("gpu.yaml", "memory_gb", "duplicate key")),
    "empty GPU file": Mistake(gpu_file(""), ("gpu.yaml", "GPU spec file is empty")),
    "GPU file with an infinite figure": Mistake(gpu_file(example_gpu(memory_gb=".inf")), ("gpu.yaml", "memory_gb", "finite")),
    "UTF-16 GPU file": Mistake(gpu_file(example_gpu().encode("utf-16")), ("gpu.yaml", "UTF-16")),
    # -- servesim profile ------------------------------------------------------------------------
    "profile --out below a file": Mistake(lambda c: ["profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cpu", "--out", under_a_file(c)], ("--out", "cannot be created")),
    "profile --out is a file": Mistake(lambda c: ["profile", "--model", str(TINY_MODEL_CONFIG), "--device", "cpu", "--out", c.file("b", "x")], ("--out", "is a file")),
    "profile without --out": Mistake(lambda c: ["profile", "--model", "llama-3-8b"], ("servesim profile", "Missing option '--out'")),
    "profile on an unknown device": Mistake(lambda c: ["profile", "--model", "llama-3-8b", "--device", "tpu", "--out", "b"], ("servesim profile", "--device", "'tpu'")),
    "profile --tp 0": Mistake(lambda c: ["profile", "--model", "llama-3-8b", "--tp", "0", "--device", "cpu", "--out", "b"], ("--tp", "= 0", "not a TP degree")),
    "profile --max-tokens 0": Mistake(lambda c: ["profile", "--model", "llama-3-8b", "--max-tokens", "0", "--device", "cpu", "--out", "b"], ("servesim profile", "--max-tokens")),
    # -- servesim profile import -------------------------------------------------------------------
    "import from an unknown kind of source": Mistake(lambda c: ["profile", "import", "foo:bar", "--model", "llama-3-8b", "--out", str(c.tmp / "b")], ("SOURCE", "'foo:bar'", "aiconfigurator:")),
    "import an unknown aiconfigurator system": Mistake(needs_aiconfigurator(["profile", "import", "aiconfigurator:nosuch/vllm/0.1", "--model", "llama-3-8b", "--out", "b"]), ("SOURCE", "nosuch", "unknown system")),
    "import a Vidur folder that is missing": Mistake(lambda c: ["profile", "import", f"vidur:{c.tmp / 'none'}", "--model", "llama-3-8b", "--out", str(c.tmp / "b")], ("SOURCE", "none", "not found")),
    "import --out below a file": Mistake(lambda c: ["profile", "import", f"vidur:{c.tmp}", "--model", "llama-3-8b", "--out", under_a_file(c)], ("--out", "cannot be created")),
    "import without --model": Mistake(lambda c: ["profile", "import", "vidur:x", "--out", "b"], ("servesim profile import", "Missing option '--model'")),
    # -- servesim fit ------------------------------------------------------------------------------
    "scenario given to fit": Mistake(lambda c: ["fit", QUICKSTART], ("quickstart.yaml", "is a scenario file", "servesim run", "servesim profile")),
    "fit a folder that is no bundle": Mistake(lambda c: ["fit", c.folder("empty")], ("empty", "not a profile bundle")),
    "fit a bundle with a corrupt profile.json": Mistake(on_bundle(lambda b: (b / "profile.json").write_text("{broken"), "fit"), ("profile.json", "not valid JSON", "line 1")),
    "fit a bundle whose profile.json is a list": Mistake(on_bundle(lambda b: (b / "profile.json").write_text("[1, 2]"), "fit"), ("profile.json", "not a profile manifest")),
    "run on a bundle with a corrupt profile.json": Mistake(on_bundle(lambda b: (b / "profile.json").write_text("{broken")), ("hardware.profile", "unreadable profile.json", "JSONDecodeError")),
    "run on a bundle whose profile.json is a list": Mistake(on_bundle(lambda b: (b / "profile.json").write_text("[1, 2]")), ("hardware.profile", "without its model section")),
    "watermark leaves too few blocks for the longest request": Mistake(check("model.max_model_len=2048", "scheduler.num_gpu_blocks_override=128"), ("scheduler.watermark", "127 of 128", "wait forever")),
    "10^9 replicas": Mistake(check("cluster.num_replicas=1000000000"), ("cluster.num_replicas", "1000000000", "100000")),
    "fit --folds 1": Mistake(lambda c: ["fit", "x", "--folds", "1"], ("servesim fit", "--folds", "1")),
    # -- profile bundles (hardware.profile) --------------------------------------------------------
    "bundle folder missing": Mistake(lambda c: ["run", "-q", "--set", f"hardware.profile={c.tmp / 'none'}", "--out", str(c.tmp / "out")], ("hardware.profile", "none", "not found")),
    "folder without profile.json as a bundle": Mistake(lambda c: ["run", "-q", "--set", f"hardware.profile={c.folder('empty')}", "--out", str(c.tmp / "out")], ("hardware.profile", "no profile.json")),
    "bundle of another model": Mistake(lambda c: ["run", "-q", "--set", f"hardware.profile={c.bundle()}", "--set", "workload.num_requests=5", "--out", str(c.tmp / "out")], ("hardware.profile", "was profiled for", "llama-3-8b")),
    "bundle without the TP degree": Mistake(lambda c: ["run", "-q", c.tiny_on_bundle(c.bundle()), "--set", "cluster.tensor_parallel_size=2", "--out", str(c.tmp / "out")], ("hardware.profile", "TP 2")),
    # -- servesim list and the command line itself ---------------------------------------------------
    "list given an unknown kind": Mistake(lambda c: ["list", "gpu"], ("servesim list", "'gpu' is not one of", "gpus")),
    "list csv of every table": Mistake(lambda c: ["list", "--format", "csv"], ("--format", "csv", "prints one table", "servesim list {models,gpus")),
    "run into a folder holding another run's results": Mistake(
        lambda c: [c.file("old/summary.json", "{}"), "run", "-q", c.file("s.yaml", TINY_RUN), "--out", str(c.tmp / "old")][1:],
        ("--out", "old", "already holds the results of another run", "summary.json", "--overwrite")),
    "run into output.dir holding results": Mistake(
        lambda c: [c.file("old/report.html", "<html>"), "run", "-q", c.file("s.yaml", TINY_RUN + f"output: {{dir: {c.tmp / 'old'}}}\n")][1:],
        ("s.yaml", "output.dir", "already holds", "report.html", "--overwrite")),
    "compare into another study's folder": Mistake(
        lambda c: [c.file("out/results.csv", "series\n"), c.file("out/servesim-outputs.json", json.dumps({"command": "compare", "study": "compare other (/x.yaml)", "files": ["results.csv"]})),
                   "compare", "-q", c.file("sw.yaml", SMALL_SWEEP), "--out", str(c.tmp / "out")][2:],
        ("--out", "already holds the results of compare other", "results.csv", "--overwrite")),
    "plan into a run's folder": Mistake(
        lambda c: [c.file("p/summary.json", "{}"), "plan", "-q", c.file("p.yaml", SMALL_PLAN), "--out", str(c.tmp / "p")][1:],
        ("--out", "already holds the results of another run", "summary.json", "--overwrite")),
    "schema of an unknown kind": Mistake(lambda c: ["schema", "scenarios"], ("servesim schema", "'scenarios' is not one of", "scenario")),
    "list given an unknown option": Mistake(lambda c: ["list", "--bogus"], ("servesim list", "--bogus")),
    "unknown command": Mistake(lambda c: ["simulate"], ("servesim", "No such command", "simulate"), subprocess=True),
    "check without a file": Mistake(lambda c: ["check"], ("servesim check", "Missing argument", "SCENARIO_FILE")),
    # -- warnings: the run goes on -----------------------------------------------------------------
    "prefix caching on a synthetic workload": Mistake(check("scheduler.enable_prefix_caching=true"), ("quickstart.yaml", "scheduler.enable_prefix_caching", "synthetic", "no KV block is ever reused"), warning=True),
    "prefix caching on a trace without hash_ids": Mistake(lambda c: ["run", "--no-report", "--out", str(c.tmp / "out"), "--set", "scheduler.enable_prefix_caching=true", "--set", "workload.trace=" + c.file("t.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 3}\n{"timestamp": 500, "input_length": 20, "output_length": 2}\n')], ("enable_prefix_caching", "trace without hash_ids"), warning=True),
    "CPU-measured bundle pricing a GPU": Mistake(lambda c: ["check", c.tiny_on_bundle(c.bundle())], ("hardware.profile", "measured on the CPU", "h100-sxm"), warning=True),
    "DistServe pool on a colocated scheduler": Mistake(check("cluster.prefill={num_replicas: 2}"), ("cluster.prefill", "ignored with scheduler vllm"), warning=True),
}


@pytest.fixture(scope="module")
def fitted_bundle(tmp_path_factory) -> Callable[[], Path]:
    """A fitted synthetic CPU bundle of the tiny model, made on first use."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            from profiler.fit import fit_bundle

            root = synthetic_bundle(tmp_path_factory.mktemp("bad-input") / "bundle")
            fit_bundle(root, html=False)
            made.append(root)
        return made[0]
    return get


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_is_one_line(name, tmp_path, monkeypatch, fitted_bundle):
    mistake = MISTAKES[name]
    monkeypatch.chdir(tmp_path)  # default results folders land here
    args = mistake.args(Case(tmp_path, fitted_bundle))
    if mistake.subprocess:
        proc = servesim(*args, cwd=tmp_path)
        code, stderr = proc.returncode, proc.stderr
    else:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        code, stderr = result.exit_code, result.stderr
    if mistake.warning:
        assert code == 0, stderr
        one_line_error(stderr, *mistake.expect, prefix="servesim: warning:")
    else:
        assert code == 2, stderr
        one_line_error(stderr, *mistake.expect)


def test_a_broken_cached_runtime_model_is_refitted(tmp_path, fitted_bundle):
    # runtime_model.json/.npz are a cache of the fit: corrupt or truncated, the next run refits and rewrites them.
    case = Case(tmp_path, fitted_bundle)
    bundle = Path(case.bundle())
    scenario = case.tiny_on_bundle(str(bundle))
    tables = bundle / "runtime_model.npz"
    for broken in ("json", "npz"):
        if broken == "json":
            (bundle / "runtime_model.json").write_text('{"format": 1, "tabl')
        else:
            tables.write_bytes(tables.read_bytes()[: tables.stat().st_size // 2])
        result = CliRunner().invoke(main, ["run", "-q", "--no-report", "--overwrite", scenario, "--out", str(tmp_path / "out")], catch_exceptions=False)
        assert result.exit_code == 0 and result.stderr == "", result.stderr
        assert json.loads((bundle / "runtime_model.json").read_text())["format"] == 1
        assert json.loads((tmp_path / "out" / "summary.json").read_text())["num_completed"] == 5


def test_the_tables_behind_the_errors_match_the_code():
    # File kinds are told apart by their top-level fields, and swap is allowed by scheduler name:
    # both tables must follow the schemas and the registry.
    from simulator.engine.deployment import NO_SWAP_SCHEDULERS, SWAP_SCHEDULERS
    from simulator.studies.plan import PlanConfig
    from simulator.scenario import Scenario
    from simulator.schedulers import SCHEDULERS
    from simulator.specs.gpu_file import GPUFileFields
    from simulator.studies.sweep import SweepFile
    from simulator.studies.validate.run_format import MeasuredRun
    from simulator.yaml_files import KIND_FIELDS

    fields = {
        "scenario": {f.name for f in dataclasses.fields(Scenario)},
        "sweep": set(SweepFile.model_fields),
        "plan": {f.name for f in dataclasses.fields(PlanConfig)},
        "GPU spec": {f.name for f in dataclasses.fields(GPUFileFields)},
        "measured run": {f.name for f in dataclasses.fields(MeasuredRun)} - {"path"},  # path is set on load
    }
    assert {kind: set(names) for kind, names in KIND_FIELDS.items()} == fields
    assert set(SCHEDULERS) == SWAP_SCHEDULERS | set(NO_SWAP_SCHEDULERS) and not SWAP_SCHEDULERS & set(NO_SWAP_SCHEDULERS)
    assert all(SCHEDULERS[name].supports_swap for name in SWAP_SCHEDULERS)
