"""Capacity planning: plan files are validated, every candidate is kept with its reason, and the
plan path finds capacities, replica counts and costs that are known in closed form."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulator.cost_models
import simulator.engine.simulation
from simulator.errors import ScenarioError
from simulator.studies.executors import make_executor
from simulator.studies.plan import enumerate_candidates, load_plan, pareto_frontier, replicas_needed, run_plan, scale_replicas, usd_per_million_output_tokens
from tests.conftest import REPO, log_axes_without_tick_format

TINY = REPO / "tests" / "data" / "plan-tiny.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- closed form, end to end -------------------------------------------------------------------

# Every iteration takes a fixed time on each GPU, whatever the batch; with max_num_seqs = 1 a
# replica serves one request at a time: one prefill step, then O - 1 decode steps, so a request
# holds it for O x T seconds. Arrivals are nearly periodic (gamma, cv 0.01), so below rate
# 1 / (O x T) no request waits (TTFT = T) and above it the queue grows by O x T - 1 / rate per
# request: P90 TTFT crosses the bound just above 1 / (O x T).
STEP_S = {"h100-sxm": 0.01, "a100-80gb-sxm": 0.02, "l40s": 0.1}
NUM_OUTPUT = 10
TARGET_RPS = 23.0
PRICES = {"h100-sxm": 3.0, "a100-80gb-sxm": 1.5, "l40s": 0.5}

CLOSED_FORM_PLAN = f"""
name: closed-form
workload:
  num_requests: 200
  arrival: {{process: gamma, rate: 1.0, cv: 0.01}}
  prompt_tokens: {{distribution: fixed, value: 100}}
  output_tokens: {{distribution: fixed, value: {NUM_OUTPUT}}}
overrides:
  model.max_model_len: 4096
target_rate_rps: {TARGET_RPS}
slo:
  percentiles:
    ttft_s: {{p90: 0.05}}
    tbt_s: {{p99: 0.05}}
prices: {PRICES}
search:
  gpus: [h100-sxm, a100-80gb-sxm, l40s]
  models: [llama-3-8b, llama-3-70b]
  tensor_parallel_size: [1, 2, 3]
  schedulers:
    - {{name: vllm, max_num_seqs: 1}}
limits:
  max_replicas: 16
  gpus_available: {{h100-sxm: 4}}
capacity:
  rel_tol: 0.02
  max_runs: 12
  sensitivity_factors: [1.0]
  sensitivity_top: 1
"""


class ConstantStep:
    def __init__(self, step_s: float) -> None:
        self.step_s = step_s

    def step_time(self, batch) -> float:
        return self.step_s


def test_plan_finds_closed_form_capacity_replicas_and_cost(tmp_path, monkeypatch):
    def constant(scenario, deployment, source="<scenario>"):
        return ConstantStep(STEP_S[deployment.gpu.name])

    # Monkeypatching stays in this process: the executor below runs in-process (max_workers=1).
    monkeypatch.setattr(simulator.cost_models, "build_cost_model", constant)
    monkeypatch.setattr(simulator.engine.simulation, "build_cost_model", constant)
    plan = load_plan(write(tmp_path / "plan.yaml", CLOSED_FORM_PLAN))
    result = run_plan(plan, make_executor("local", max_workers=1, progress=False), cache_dir=None)
    table = result.table.set_index("deployment")

    def row(gpu: str, model: str = "llama-3-8b", tp: int = 1):
        return table.loc[f"{gpu} {model} TP{tp} vllm max_num_seqs=1"]

    tol = plan.config.capacity.rel_tol
    for gpu in ("h100-sxm", "a100-80gb-sxm"):
        service_rate = 1.0 / (NUM_OUTPUT * STEP_S[gpu])
        found = row(gpu)["capacity_rps"]
        # The true capacity is within 0.3 % above the service rate (queueing at P90 of 200
        # requests); the bisection stops within rel_tol below it.
        assert service_rate * (1 - tol - 0.01) <= found <= service_rate * 1.01, (gpu, found)

    # Sizes and costs: ceil(23 / 10) = 3 H100s at $3 = $9/h; ceil(23 / 5) = 5 A100s at $1.5 = $7.5/h.
    winner = result.winner
    assert winner["deployment"] == "a100-80gb-sxm llama-3-8b TP1 vllm max_num_seqs=1"
    assert winner["num_replicas"] == 5 and winner["num_gpus"] == 5
    assert winner["usd_per_hour"] == pytest.approx(7.5)
    assert winner["mean_output_tokens"] == pytest.approx(NUM_OUTPUT)
    assert winner["usd_per_million_output_tokens"] == pytest.approx(7.5 / (TARGET_RPS * NUM_OUTPUT * 3600) * 1e6)
    h100 = row("h100-sxm")
    assert h100["feasible"] and h100["num_replicas"] == 3 and h100["usd_per_hour"] == pytest.approx(9.0) and h100["rank"] == 2
    # TP2 doubles the GPUs for no gain; on H100 its 6 GPUs exceed the 4 available.
    assert row("a100-80gb-sxm", tp=2)["usd_per_hour"] == pytest.approx(15.0)
    h100_tp2 = row("h100-sxm", tp=2)
    assert not h100_tp2["feasible"] and h100_tp2["stage"] == "limits" and "4 available" in h100_tp2["reason"]

    # Every infeasible candidate stays in the table with its reason.
    assert len(result.table) == 3 * 2 * 3
    # On the L40S every TTFT is at least one 0.1 s step, above the 0.05 s bound at any rate.
    l40s = row("l40s")
    assert not l40s["feasible"]
    if l40s["stage"] == "capacity":
        assert "no rate meets the SLOs" in l40s["reason"]
    else:  # the search went down to a rate no deployment within the limits could use
        assert l40s["stage"] == "limits" and l40s["capacity_rps"] < TARGET_RPS / 16
    assert "attention heads" in row("h100-sxm", tp=3)["reason"]
    assert "GiB" in row("a100-80gb-sxm", "llama-3-70b")["reason"]  # does not fit
    assert (result.table["reason"] != "").sum() == (~result.table["feasible"]).sum()


# --- the tiny plan: reasons, report ------------------------------------------------------------


def test_tiny_plan_reports_infeasible_tp_and_writes_report(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "plan", str(TINY), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--workers", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "plan-tiny" in proc.stdout and "USD/h" in proc.stdout
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "plan.csv")
    assert len(table) == 2 * 3 * 2  # 2 GPUs x TP 1, 2, 3 x 2 schedulers
    tp3 = table[table["tensor_parallel_size"] == 3]
    assert (tp3["stage"] == "deployment").all() and tp3["reason"].str.contains("attention heads").all()
    assert table["feasible"].any()
    assert pd.read_parquet(tmp_path / "out" / "plan.parquet").shape == table.shape
    page = (tmp_path / "out" / "plan.html").read_text()
    assert "Recommendation" in page and "Pareto" in page and "plotly" in page.lower()
    log_axes, bare = log_axes_without_tick_format(page)
    assert log_axes > 0 and not bare, bare
    # A second run reads every simulation from the cache and gives the same table.
    again = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "plan", str(TINY), "--out", str(tmp_path / "again"), "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "-q"],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "plan.csv"), table)


# --- cost arithmetic -------------------------------------------------------------------------


def test_replicas_needed_rounds_up_and_keeps_one():
    assert replicas_needed(23.0, 10.0) == 3
    assert replicas_needed(20.0, 10.0) == 2  # exactly enough
    assert replicas_needed(0.5, 10.0) == 1


def test_cost_per_million_output_tokens():
    # $36/h serving 10 req/s of 100 output tokens: 3.6 M tokens per hour -> $10 per M.
    assert usd_per_million_output_tokens(36.0, 10.0, 100.0) == pytest.approx(10.0)


def test_pareto_frontier_keeps_undominated_points():
    capacity = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 0.5])
    cost = np.array([1.0, 1.5, 2.0, 4.0, 0.1, 1.0])
    # 2.0 at 2.0 is dominated by 2.0 at 1.5; 0.5 at 1.0 by 1.0 at 1.0; NaN is never on it.
    assert pareto_frontier(capacity, cost).tolist() == [True, True, False, True, False, False]


# --- plan-file validation ----------------------------------------------------------------------

GOOD = """
name: p
target_rate_rps: 5
slo:
  percentiles: {ttft_s: {p90: 2.0}}
search:
  gpus: [h100-sxm]
"""

BAD_PLANS = {
    "unknown gpu": (GOOD.replace("[h100-sxm]", "[h100-sxm, tpu-v5]"), ["search.gpus.1", "tpu-v5", "unknown GPU"]),
    "bad price": (GOOD + "prices: {h100-sxm: -2}\n", ["prices.h100-sxm", "greater than 0"]),
    "price of unknown gpu": (GOOD + "prices: {h100: 2}\n", ["prices.h100", "unknown GPU"]),
    "no price": (GOOD.replace("[h100-sxm]", "[rtx-4090]"), ["prices.rtx-4090", "no bundled price"]),
    "unknown field": (GOOD + "limits: {max_replica: 3}\n", ["limits.max_replica", "unknown field"]),
    "unknown top field": (GOOD + "target_rate: 3\n", ["target_rate", "unknown field"]),
    "both rates": (GOOD + "target_rate_scale: 2\n", ["exactly one of target_rate_rps and target_rate_scale"]),
    "no slo": (GOOD.replace("  percentiles: {ttft_s: {p90: 2.0}}\n", "  percentiles: {}\n"), ["slo", "percentiles"]),
    "bad percentile": (GOOD.replace("p90", "p95"), ["slo.percentiles.ttft_s.p95", "p99"]),
    "unknown scheduler": (GOOD + "  schedulers: [{name: fifo}]\n", ["search.schedulers.0.name", "fifo", "unknown scheduler"]),
    "unknown scheduler knob": (GOOD + "  schedulers: [{name: sarathi, chunk: 256}]\n", ["search.schedulers.0.chunk", "unknown field"]),
    "bad scheduler knob": (GOOD + "  schedulers: [{name: sarathi, chunk_size: 0}]\n", ["search.schedulers.0.chunk_size"]),
    "unknown model": (GOOD + "  models: [llama-9]\n", ["search.models.0", "llama-9"]),
    "bad override": (GOOD + "overrides: {cluster.tensor_parallel: 2}\n", ["tensor_parallel", "unknown field"]),
    "missing base": (GOOD + "base: nope.yaml\n", ["base", "nope.yaml", "not found"]),
    "malformed": ("search: [\n", ["malformed YAML"]),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_bad_plan_is_one_scenario_error_naming_file_and_field(tmp_path, case):
    text, expected = BAD_PLANS[case]
    path = write(tmp_path / "bad-plan.yaml", text)
    with pytest.raises(ScenarioError) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert "bad-plan.yaml" in message


@pytest.mark.parametrize("case", ["unknown gpu", "bad price", "unknown field"])
def test_bad_plan_cli_prints_one_line_and_exits_2(tmp_path, case):
    text, expected = BAD_PLANS[case]
    path = write(tmp_path / "bad-plan.yaml", text)
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "plan", str(path), "--no-cache"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "bad-plan.yaml" in lines[0] and expected[0] in lines[0]


def test_target_rate_scale_multiplies_the_traces_native_rate(tmp_path, azure_conv):
    text = GOOD.replace("target_rate_rps: 5", "target_rate_scale: 2") + f"workload:\n  trace: {azure_conv}\n  max_requests: 1001\noverrides:\n  model.max_model_len: 16384\n"
    plan = load_plan(write(tmp_path / "plan.yaml", text))
    import pandas as pd

    times = pd.to_datetime(pd.read_csv(azure_conv, nrows=1001)["TIMESTAMP"], format="ISO8601")
    native = 1000 / (times.max() - times.min()).total_seconds()  # 1,000 gaps over the span
    assert math.isclose(plan.target_rate_rps, 2 * native, rel_tol=1e-9)


def test_distserve_pools_are_enumerated_sized_and_checked_per_pool(tmp_path):
    text = GOOD.replace("[h100-sxm]", "[h100-sxm, l40s]") + (
        "  models: [llama-3-70b]\n"
        "  tensor_parallel_size: [2, 4]\n"
        "  schedulers:\n"
        "    - {name: vllm}\n"
        "    - {name: distserve, prefill: {num_replicas: 2}, decode: {num_replicas: 1, tensor_parallel_size: 8}}\n"
        "    - {name: distserve, label: fixed, prefill: {num_replicas: 1, tensor_parallel_size: 4}, decode: {num_replicas: 1, tensor_parallel_size: 4}}\n"
    )
    candidates = enumerate_candidates(load_plan(write(tmp_path / "plan.yaml", text)))
    labels = [c.label for c in candidates]
    # Per GPU: vllm at TP2 and TP4, the axis-following DistServe entry at TP2 and TP4, the fixed one once.
    assert len(candidates) == 2 * (2 + 2 + 1)
    assert sum("fixed" in label for label in labels) == 2
    h100 = {c.label: c for c in candidates if c.gpu == "h100-sxm"}
    unit = h100["h100-sxm llama-3-70b 2xTP4 prefill + 1xTP8 decode distserve"]
    assert unit.gpus_per_replica == 2 * 4 + 8 and unit.reason == ""
    assert unit.scenario.cluster.prefill.num_replicas == 2 and unit.scenario.cluster.decode.tensor_parallel_size == 8
    # 70B in bf16 does not fit 2-way on 80 GB GPUs, nor its prefill pool on 48 GB L40S at TP2.
    assert h100["h100-sxm llama-3-70b TP2 vllm"].reason != ""
    l40s_tp2 = next(c for c in candidates if c.gpu == "l40s" and c.pools.startswith("2xTP2"))
    assert l40s_tp2.scenario is None and l40s_tp2.reason.startswith("cluster.prefill.")
    # Scaling a unit scales both pools (and the workload with them).
    scaled = scale_replicas(unit.scenario, 3)
    assert (scaled.cluster.prefill.num_replicas, scaled.cluster.decode.num_replicas) == (6, 3)
