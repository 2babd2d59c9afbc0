"""The hot loop's shortcuts change no result: each is checked against the plain computation.

vLLM v0 finds the requests crossing a KV block boundary from an index keyed by decode
iteration instead of scanning every running request; under memory pressure (preemption by
recompute and by swap), several replicas and prefix caching, the run must equal the scan's.
"""

from __future__ import annotations

import pytest

from simulator.engine.simulation import Simulation
from simulator.scenario import load_scenario

SQUEEZE = ["workload.num_requests=300", "workload.arrival.rate=30", "scheduler.gpu_memory_utilization=0.25", "scheduler.block_size=8"]
CASES = {
    "recompute": SQUEEZE,
    "swap": [*SQUEEZE, "scheduler.preemption_mode=swap", "scheduler.swap_space_gib=0.5"],
    "replicas": [*SQUEEZE, "cluster.num_replicas=3", "cluster.router=least_outstanding", "seed=3"],
    "few seqs": [*SQUEEZE, "scheduler.max_num_seqs=7", "seed=5"],
    "closed loop": [*SQUEEZE, "workload.concurrency=40", "seed=2"],
}


def run(overrides: list[str], scan: bool):
    sim = Simulation(load_scenario(None, ["scheduler.name=vllm", *overrides]))
    for replica in sim.replicas:
        assert replica.scheduler._boundaries is not None, "vLLM v0 indexes block boundaries"
        if scan:
            replica.scheduler._boundaries = None
    return sim.run()


@pytest.mark.parametrize("case", CASES)
def test_vllm_block_boundary_index_equals_the_scan(case):
    indexed, scanned = run(CASES[case], scan=False), run(CASES[case], scan=True)
    assert indexed.summary["num_preemptions"] > 0 or case == "closed loop"
    assert indexed.requests.equals(scanned.requests)
    assert indexed.iterations.equals(scanned.iterations)
    assert (indexed.tbt_s == scanned.tbt_s).all()
