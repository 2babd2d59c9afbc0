"""The CPU effects that shape how `servesim profile --device cpu` measures, each timed directly.

Four experiments, all with one torch thread and the thread's CPU time (as the profiler times):

1. allocator: decode attention over 64 requests x 768 tokens of the small Llama (50 MB of
   gathered K and V per call), with glibc's default allocator and with
   ``profiler.timer.steady_host_allocator`` (each in a fresh process: the setting cannot be
   undone);
2. blocks: the same decode attention (64 x 600, tiny and small Llama; 16 x 256, small) with each
   request's KV blocks contiguous, shuffled among just the blocks read, and scattered over a
   pool four times larger;
3. rows: the small Llama's gate/up GEMM (2 x 2048 x 512) and the tiny Llama's down GEMM
   (256 x 768) at 1-8 and 63-65 rows, weights cycled cold over 64 MiB of copies;
4. context: add+RMSNorm of 16 tokens (small Llama width) hot and isolated, right after a down
   projection, after gate/up + SiLU*mul + down, then again on the same inputs, and after a
   64 MB cache flush.

    python benchmarks/cpu_timing_effects.py            # all four, about a minute
    python benchmarks/cpu_timing_effects.py --only rows

Prints microseconds (medians of many calls) with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler import TINY_MODEL_CONFIG  # noqa: E402
from profiler.device import cpu_model  # noqa: E402

SMALL_MODEL_CONFIG = REPO / "profiler" / "data" / "small-llama.json"


def median_us(fn, before=None, calls: int = 60, warmup: int = 10) -> float:
    """Median thread time of ``fn`` (us); ``before`` runs untimed ahead of every call."""
    samples = []
    for i in range(warmup + calls):
        if before is not None:
            before()
        t0 = time.thread_time()
        fn()
        if i >= warmup:
            samples.append(time.thread_time() - t0)
    return statistics.median(samples) * 1e6


def decode_case(model_config: Path, num_seqs: int, context: int, layout: str):
    """A decode-attention call over KV blocks laid out as ``layout``: contiguous, shuffled or pool4x."""
    import torch

    from profiler import ops
    from simulator.specs.model import model_spec_from_hf_config

    m = model_spec_from_hf_config(model_config)
    block_size, gen = 16, torch.Generator().manual_seed(0)
    per = math.ceil(context / block_size)
    needed = num_seqs * per
    pool = 4 * needed if layout == "pool4x" else needed
    k = torch.randn(pool, block_size, m.num_kv_heads, m.head_dim, generator=gen)
    v = torch.randn(pool, block_size, m.num_kv_heads, m.head_dim, generator=gen)
    order = torch.arange(needed) if layout == "contiguous" else torch.randperm(pool, generator=gen)[:needed]
    tables = order.view(num_seqs, per).to(torch.int32)
    q = torch.randn(num_seqs, m.num_attention_heads, m.head_dim, generator=gen)
    lens = torch.full((num_seqs,), context, dtype=torch.int32)
    return lambda: ops.decode_attention(q, k, v, tables, lens, m.head_dim**-0.5)


def allocator_child(steady: bool) -> None:
    import torch

    from profiler.timer import steady_host_allocator

    torch.set_num_threads(1)
    if steady:
        steady_host_allocator()
    fn = decode_case(SMALL_MODEL_CONFIG, 64, 768, "shuffled")
    print(f"{median_us(fn, calls=15, warmup=3):.0f}")


def allocator() -> None:
    print("1. allocator: decode attention, small Llama, 64 requests x 768 tokens (us per call)")
    for steady in (False, True):
        out = subprocess.run([sys.executable, __file__, "--allocator-child", "steady" if steady else "default"],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(f"   {'steady_host_allocator' if steady else 'glibc default':24s} {out:>8s}")


def blocks() -> None:
    print("2. KV blocks: decode attention (us per call)")
    cases = [("tiny", TINY_MODEL_CONFIG, 64, 600), ("small", SMALL_MODEL_CONFIG, 64, 600), ("small", SMALL_MODEL_CONFIG, 16, 256)]
    print(f"   {'model':6s} {'requests x context':>18s} {'contiguous':>11s} {'shuffled':>9s} {'pool 4x':>8s}")
    for name, config, b, ctx in cases:
        t = [median_us(decode_case(config, b, ctx, layout), calls=20, warmup=3) for layout in ("contiguous", "shuffled", "pool4x")]
        print(f"   {name:6s} {f'{b} x {ctx}':>18s} {t[0]:11.0f} {t[1]:9.0f} {t[2]:8.0f}")


def rows() -> None:
    import torch
    import torch.nn.functional as F

    print("3. GEMM rows (us per call, weights cycled cold over 64 MiB)")
    for name, n, k in (("small gate/up 4096 x 512", 4096, 512), ("tiny down 256 x 768", 256, 768)):
        copies = max(1, math.ceil((64 << 20) / (n * k * 4)))
        weights = itertools.cycle([torch.randn(n, k) for _ in range(copies)])
        counts = (1, 2, 3, 4, 5, 6, 7, 8, 63, 64, 65)
        times = [median_us(lambda a=torch.randn(m, k): F.linear(a, next(weights)), calls=200) for m in counts]
        print(f"   {name}: " + "  ".join(f"{m}:{t:.0f}" for m, t in zip(counts, times)))


def context() -> None:
    import torch
    import torch.nn.functional as F

    from profiler import ops

    print("4. add+RMSNorm of 16 tokens, hidden 512, by what ran before it (us per call)")
    h, inter, tokens = 512, 2048, 16
    gen = torch.Generator().manual_seed(0)
    down = [torch.randn(h, inter, generator=gen) * 0.02 for _ in range(8)]
    gate_up = [torch.randn(2 * inter, h, generator=gen) * 0.02 for _ in range(8)]
    x, residual, weight = torch.randn(tokens, h), torch.randn(tokens, h), torch.randn(h)
    act, flush = torch.randn(tokens, inter), torch.empty(64 << 20, dtype=torch.uint8)
    layer = itertools.count()
    state: dict = {}

    def after_down() -> None:
        state["y"] = F.linear(act, down[next(layer) % 8])

    def after_mlp() -> None:
        i = next(layer) % 8
        state["y"] = F.linear(ops.silu_mul(F.linear(x, gate_up[i])), down[i])

    first, again = [], []
    for i in range(70):
        after_mlp()
        t0 = time.thread_time()
        ops.add_rmsnorm(state["y"], residual, weight)
        t1 = time.thread_time()
        ops.add_rmsnorm(state["y"], residual, weight)
        t2 = time.thread_time()
        if i >= 10:
            first.append(t1 - t0)
            again.append(t2 - t1)
    rows_ = [
        ("hot, isolated", median_us(lambda: ops.add_rmsnorm(x, residual, weight), calls=500)),
        ("right after a down projection", median_us(lambda: ops.add_rmsnorm(state["y"], residual, weight), before=after_down)),
        ("after gate/up, SiLU*mul, down", statistics.median(first) * 1e6),
        ("  the same call again", statistics.median(again) * 1e6),
        ("after a 64 MB cache flush", median_us(lambda: ops.add_rmsnorm(x, residual, weight), before=lambda: flush.add_(1))),
    ]
    for label, t in rows_:
        print(f"   {label:32s} {t:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["allocator", "blocks", "rows", "context"], help="run one experiment")
    parser.add_argument("--allocator-child", choices=["default", "steady"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allocator_child:
        allocator_child(args.allocator_child == "steady")
        return
    import torch

    from profiler.timer import steady_host_allocator

    print(f"{cpu_model()}, torch {torch.__version__}, 1 thread, {datetime.date.today().isoformat()}")
    torch.set_num_threads(1)
    experiments = {"allocator": allocator, "blocks": blocks, "rows": rows, "context": context}
    if args.only in (None, "allocator"):
        allocator()
    steady_host_allocator()  # the rest measure as the profiler does
    for name in ("blocks", "rows", "context"):
        if args.only in (None, name):
            experiments[name]()


if __name__ == "__main__":
    main()
