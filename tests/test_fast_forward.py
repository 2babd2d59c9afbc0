"""Decode fast-forward changes no result: every scheduler, both cost models, on against off.

With ``fast_forward=False`` every iteration is one SimPy step; with it on (the default), vLLM v0
takes unchanged decode iterations in one go (``simulator.schedulers.fast_forward``) and the
other schedulers step as before. Requests, iterations, token gaps and the summary must be equal
(the token-gap histogram's mean to float summation order).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from simulator.engine.simulation import Simulation
from simulator.scenario import load_scenario
from simulator.schedulers import SCHEDULERS
from tests.test_profiled_cost_model import bundle_dir, scenario_yaml  # noqa: F401  (the fixture)

BASE = ["workload.num_requests=200", "workload.arrival.rate=12"]
SQUEEZE = ["workload.arrival.rate=30", "scheduler.gpu_memory_utilization=0.25", "scheduler.block_size=8"]


def run(overrides: list[str], fast_forward: bool, path=None):
    sim = Simulation(load_scenario(path, overrides), fast_forward=fast_forward)
    return sim.run()


def assert_same(on, off) -> None:
    assert on.requests.equals(off.requests)
    assert on.iterations.equals(off.iterations)
    assert np.array_equal(on.tbt_s, off.tbt_s)
    a, b = dict(on.summary), dict(off.summary)
    for s in (a, b):
        s.pop("wall_time_s")
        if "token_gaps" in s:
            s["token_gaps"] = dict(s["token_gaps"])
            mean = s["token_gaps"].pop("mean_s")
            s["token_gaps"]["mean_ms"] = round(mean * 1e3, 9)
    assert a == b


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("load", ["light", "squeezed"])
def test_fast_forward_equals_stepping_for_every_scheduler(scheduler, load):
    overrides = [*BASE, f"scheduler.name={scheduler}", *(SQUEEZE if load == "squeezed" else [])]
    assert_same(run(overrides, True), run(overrides, False))


@pytest.mark.parametrize("outputs", [["output.token_gaps=histogram", "output.keep_requests=false"], ["output.iterations=sampled", "output.iteration_sample_every=3"]])
@pytest.mark.parametrize("extra", [[], ["cluster.num_replicas=3", "cluster.router=least_outstanding"], ["workload.concurrency=24"], SQUEEZE])
def test_fast_forward_equals_stepping_with_bounded_outputs(outputs, extra):
    overrides = [*BASE, "scheduler.name=vllm", *extra, *outputs]
    assert_same(run(overrides, True), run(overrides, False))


def test_fast_forward_takes_iterations_in_one_go():
    """The switch is not idle: on a plain vLLM v0 run most decode iterations are fast-forwarded."""
    sim = Simulation(load_scenario(None, [*BASE, "scheduler.name=vllm"]))
    taken = []
    scheduler = sim.replicas[0].scheduler
    original = scheduler.fast_forward

    def counting(*args):
        steps, finished = original(*args)
        taken.append(len(steps))
        return steps, finished

    scheduler.fast_forward = counting
    result = sim.run()
    assert sum(taken) > 0.3 * result.summary["num_iterations"]


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_fast_forward_equals_stepping_on_the_profiled_cost_model(bundle_dir, tmp_path, scheduler):  # noqa: F811
    shutil.copytree(bundle_dir, tmp_path / "bundle")
    path = scenario_yaml(tmp_path, "bundle")
    overrides = [f"scheduler.name={scheduler}"]
    assert_same(run(overrides, True, path), run(overrides, False, path))
