"""vLLM v0, Sarathi-Serve and Orca on a prefill-heavy synthetic load (Llama-3-8B, one H100-SXM).

Prompts uniform in 3,000-6,000 tokens, outputs uniform in 50-150, Poisson arrivals at 6 req/s,
400 requests. Prints P99 TBT, P50 TTFT and mean batch size per scheduler.

    python benchmarks/prefill_heavy_schedulers.py
"""

from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate

BASE = [
    "workload.num_requests=400", "workload.arrival.rate=6",
    "workload.prompt_tokens={distribution: uniform, min: 3000, max: 6000}",
    "workload.output_tokens={distribution: uniform, min: 50, max: 150}",
]

if __name__ == "__main__":
    for name in ("vllm", "sarathi", "orca"):
        s = simulate(load_scenario(None, BASE + [f"scheduler.name={name}"])).summary
        print(f"{name:8s} P99 TBT {s['tbt_s']['p99'] * 1e3:7.1f} ms   P50 TTFT {s['ttft_s']['p50'] * 1e3:7.0f} ms   mean batch {s['mean_batch_size']:5.1f}")
