"""Prefix-cache hit rate on the Mooncake conversation trace: the simulator against the trace.

The trace's ``hash_ids`` say which 512-token prompt blocks repeat. A plain replay (a set of every
id seen so far; a request's hit is its leading ids already in the set, 512 tokens each, its
partial last block counted to the prompt's end) gives the share of prompt tokens an unbounded
prefix cache could serve. The simulator runs the same trace on the vLLM v1 scheduler with
prefix caching and a KV cache larger than the whole trace (``num_gpu_blocks_override``), then
with the KV cache the deployment really has, where blocks are evicted.

    python benchmarks/prefix_caching_mooncake.py [--trace PATH] [--max-requests N] [--tp 4]

Llama-3-8B on TP=4 H100-SXM (so one replica keeps up with the trace's 3.4 req/s of 12k-token
prompts), ``model.max_model_len`` raised to 131,072 so that no prompt is skipped (the longest is
126,195 tokens). Needs ../shared/traces/mooncake/conversation_trace.jsonl (or --trace).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate
from profiler.device import cpu_model

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO.parent / "shared" / "traces" / "mooncake" / "conversation_trace.jsonl"
HASH_BLOCK_TOKENS = 512  # Mooncake hash_ids granularity (trace README)


def replay_hit_tokens(trace: Path, max_requests: int | None) -> tuple[int, int, int]:
    """(prompt tokens an unbounded cache serves, all prompt tokens, requests) by a set replay."""
    seen: set[int] = set()
    hit = total = n = 0
    with trace.open() as f:
        for line in f:
            if max_requests is not None and n == max_requests:
                break
            row = json.loads(line)
            ids, prompt = row["hash_ids"], row["input_length"]
            k = 0
            while k < len(ids) and ids[k] in seen:
                k += 1
            hit += min(k * HASH_BLOCK_TOKENS, prompt)
            total += prompt
            seen.update(ids)
            n += 1
    return hit, total, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--max-requests", type=int)
    parser.add_argument("--tp", type=int, default=4)
    args = parser.parse_args()

    hit, total, n = replay_hit_tokens(args.trace, args.max_requests)
    print(f"date: {datetime.date.today()}  machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"trace: {args.trace.name}, {n:,} requests, {total:,} prompt tokens")
    print(f"replay of hash_ids, unbounded cache: {hit / total:.4%} of prompt tokens ({hit:,} tokens)")

    base = [f"workload.trace={args.trace}", "model.max_model_len=131072", f"cluster.tensor_parallel_size={args.tp}", "scheduler.name=vllm_v1"]
    if args.max_requests:
        base.append(f"workload.max_requests={args.max_requests}")
    for label, extra in (("KV cache larger than the trace", ["scheduler.num_gpu_blocks_override=20000000"]), ("the deployment's KV cache", [])):
        start = time.perf_counter()
        result = simulate(load_scenario(None, base + extra))
        wall = time.perf_counter() - start
        s, df = result.summary, result.requests
        whole = int((df["num_cached_tokens"] >= df["num_prompt_tokens"] - 16).sum())
        print(f"simulator, {label} ({result.deployment.num_kv_blocks:,} blocks): {s['prefix_cache_hit_rate']:.4%} "
              f"({int(df['num_cached_tokens'].sum()):,} tokens; {whole:,} prompts found whole), "
              f"TTFT P50 {s['ttft_s']['p50']:.2f} s P99 {s['ttft_s']['p99']:.2f} s, {s['num_preemptions']:,} preemptions, "
              f"{s['num_iterations']:,} iterations, wall {wall:.1f} s")


if __name__ == "__main__":
    main()
