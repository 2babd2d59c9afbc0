"""Capacity plans over mixture-of-experts candidates: data-parallel attention and expert parallelism axes."""

from __future__ import annotations

from simulator.studies.plan import enumerate_candidates, load_plan
from tests.conftest import REPO


def test_moe_axes_enumerate_ep_and_dp_for_moe_models_only(tmp_path):
    text = f"""
name: moe-axes
base: {REPO / "scenarios" / "quickstart.yaml"}
target_rate_rps: 1.0
slo: {{percentiles: {{ttft_s: {{p90: 2.0}}}}}}
search:
  gpus: [h100-sxm]
  models: [mixtral-8x7b, llama-3-8b]
  tensor_parallel_size: [1, 2]
  data_parallel_size: [1, 2]
  expert_parallel: [false, true]
  schedulers: [{{name: vllm_v1}}]
"""
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    candidates = enumerate_candidates(load_plan(path))
    moe = [(c.tensor_parallel_size, c.data_parallel_size, c.expert_parallel) for c in candidates if c.model == "mixtral-8x7b"]
    dense = [(c.tensor_parallel_size, c.data_parallel_size, c.expert_parallel) for c in candidates if c.model == "llama-3-8b"]
    # 2 TP x 2 DP x 2 EP, less TP1 DP1 with EP (one GPU: experts whole either way).
    assert sorted(moe) == sorted([(1, 1, False), (1, 2, False), (1, 2, True), (2, 1, False), (2, 1, True), (2, 2, False), (2, 2, True)])
    assert sorted(dense) == [(1, 1, False), (2, 1, False)]
    by_shape = {(c.model, c.tensor_parallel_size, c.data_parallel_size, c.expert_parallel): c for c in candidates}
    wide = by_shape["mixtral-8x7b", 2, 2, True]
    assert wide.gpus_per_replica == 4 and "DP2 EP4" in wide.label and wide.reason == ""
    # Mixtral's 93 GB of bf16 weights do not fit one 80 GB H100: a reason, not a crash.
    assert "weights" in by_shape["mixtral-8x7b", 1, 1, False].reason
    assert wide.scenario.cluster.data_parallel_size == 2 and wide.scenario.cluster.enable_expert_parallel
