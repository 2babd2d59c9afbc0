"""The preemptive and length-aware orders against FCFS on the heavy-tailed sweep of scenarios/."""

import dataclasses

from simulator.engine.simulation import simulate
from simulator.studies.capacity import with_rate
from simulator.studies.sweep import load_sweep
from tests.conftest import REPO


def test_the_sweep_compares_fastserve_and_sjf_with_vllm_and_their_mean_jct_is_lower():
    sweep = load_sweep(REPO / "scenarios" / "compare-heavy-tailed.yaml")
    assert [c.label for c in sweep.configurations] == ["vllm", "fastserve", "sjf"]
    # 400 of the sweep's requests at 12 req/s, where a queue forms behind the 32 seats.
    e2e = {}
    for config in sweep.configurations:
        scenario = with_rate(config.scenario, 12.0)
        scenario = dataclasses.replace(scenario, workload=dataclasses.replace(scenario.workload, num_requests=400))
        summary = simulate(scenario).summary
        assert summary["num_completed"] == 400
        e2e[config.label] = summary["e2e_s"]["mean"]
    # FastServe's claim (arXiv 2305.05920, Sec. 6): lower average job completion time than vLLM;
    # shortest-predicted-first's (Fu et al., NeurIPS'24, Sec. 5): lower mean latency than FCFS.
    assert e2e["fastserve"] < 0.9 * e2e["vllm"] and e2e["sjf"] < 0.9 * e2e["vllm"], e2e
