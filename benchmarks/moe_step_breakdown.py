"""Where a mixture-of-experts step's time goes, and what a run of the Azure conversation trace predicts.

For DeepSeek-V3 (FP8) on 8 x H200 with data-parallel attention 8 and expert parallelism 8, and
Mixtral-8x7B on 2 x H100-SXM at TP 2 (``scenarios/azure-conv-deepseek-v3-h200-ep8.yaml``,
``scenarios/azure-conv-mixtral-8x7b-h100-tp2.yaml``), prints the roofline's step breakdown
(``MoERooflineCostModel.step_breakdown``: attention, attention projections, dense MLP, router,
routed experts, shared experts, all-to-all, all-reduce, ...) for decode batches of 1 and 64
requests at a 1,024-token context and for one 1,024-token prefill; the roofline sanity check that a
batch-1 decode's experts read about the active experts' weights only (bytes implied by the expert
time at the GEMM bandwidth against k experts' weights per MoE layer); then replays the Azure 2023
conversation trace through each and prints TTFT / TPOT.

    python benchmarks/moe_step_breakdown.py [--trace-requests N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from simulator.engine.batch import Batch
from simulator.cost_models import build_cost_model
from simulator.engine.deployment import resolve_deployment
from simulator.engine.memory_plan import experts_per_gpu
from simulator.engine.request import Request
from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("azure-conv-deepseek-v3-h200-ep8.yaml", "azure-conv-mixtral-8x7b-h100-tp2.yaml")


def decode_batch(n: int, context: int) -> Batch:
    batch = Batch()
    for i in range(n):
        request = Request(i, 0.0, context, 100)
        request.num_computed_tokens = context
        batch.add(request, 1)
    return batch


def prefill_batch(n: int) -> Batch:
    batch = Batch()
    batch.add(Request(0, 0.0, n, 10), n)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-requests", type=int, default=None, help="replay only the first N requests of the trace")
    args = parser.parse_args()
    for name in SCENARIOS:
        path = REPO / "scenarios" / name
        scenario = load_scenario(path)
        d = resolve_deployment(scenario, str(path))
        cost = build_cost_model(scenario, d, str(path))
        m = d.model
        print(f"\n== {name}: {m.name} on {d.num_gpus} x {d.gpu.name}, TP{d.tensor_parallel_size} DP{d.data_parallel_size} "
              f"{'EP' + str(d.parallelism.expert_parallel_size) if d.expert_parallel else 'experts split over TP'}, {d.quantization}")
        print(f"   weights {d.weight_bytes_per_gpu / 2**30:.1f} GiB/GPU, KV cache {d.kv_cache_bytes_per_gpu / 2**30:.1f} GiB/GPU, "
              f"{d.num_kv_blocks:,} blocks of {scenario.scheduler.block_size} in all")
        if d.expert_parallel:
            print(f"   {experts_per_gpu(m.moe.num_experts, d.parallelism.expert_parallel_size)} routed experts per GPU")
        for label, batch in (("decode x1", decode_batch(1, 1024)), ("decode x64", decode_batch(64, 1024)), ("prefill 1024", prefill_batch(1024))):
            parts = cost.step_breakdown(batch)
            total = cost.step_time(batch)
            shown = ", ".join(f"{k} {v * 1e3:.3f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v > 0)
            print(f"   {label:<13} {total * 1e3:8.3f} ms = {shown}")
        layer = cost.moe_layer
        k, width = m.moe.num_experts_per_token, layer.width
        # By hand: the token's k experts, spread evenly over the expert-parallel GPUs, or each split over the TP GPUs.
        share = k / d.parallelism.expert_parallel_size if d.expert_parallel else k
        active = share * 3 * m.hidden_size * width * cost.weight_bytes
        # The bandwidth-bound part of the expert time (less the fixed per-call and per-expert cost and the
        # elementwise passes), converted back to bytes at the grouped GEMMs' bandwidth.
        terms = layer.expert_terms(1, 0 if d.expert_parallel else None)
        fixed = layer.experts_fixed_s(terms["experts"]) + terms["elementwise_s"]
        implied = (layer.experts_time(1) - fixed) * layer.expert_bandwidth
        print(f"   batch-1 decode, one MoE layer, per GPU: the expert time implies {implied / 2**20:.1f} MiB moved (weights and the "
              f"pairs' activations); the token's {k} experts' weights there by hand ({share:g} experts): {active / 2**20:.1f} MiB")
        if args.trace_requests:
            scenario = load_scenario(path, [f"workload.max_requests={args.trace_requests}"])
        start = time.perf_counter()
        result = simulate(scenario, str(path))
        s = result.summary
        print(f"   Azure conversation trace: {s['num_completed']:,} requests in {time.perf_counter() - start:.1f} s wall; "
              f"TTFT P50 {s['ttft_s']['p50'] * 1e3:.0f} ms P90 {s['ttft_s']['p90'] * 1e3:.0f} ms; "
              f"TPOT P50 {s['tpot_s']['p50'] * 1e3:.1f} ms P90 {s['tpot_s']['p90'] * 1e3:.1f} ms; {s['output_throughput_tps']:,.0f} output tok/s")


if __name__ == "__main__":
    main()
