"""The tensor-parallel all-reduce, measured with torch.distributed over ``tp`` local processes.

One process per rank (``torch.multiprocessing.spawn``), NCCL on GPUs (``gloo`` on the CPU, used
by tests to exercise the path). Every rank must call the collective the same number of times,
so this timer uses a fixed count (``NUM_WARMUP`` + ``NUM_REPEATS``) instead of ``do_bench``'s
time-based count; each call is timed with CUDA events (or ``perf_counter``) on rank 0, and a
barrier separates calls so a late rank does not inflate the next sample.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from profiler.timer import Timing, summarize

NUM_WARMUP = 5
NUM_REPEATS = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, backend: str, shapes: list[tuple[int, int]], dtype: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from profiler.ops import TORCH_DTYPES

    cuda = backend == "nccl"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(minutes=3))
    results = []
    try:
        for num_tokens, width in shapes:
            x = torch.randn(num_tokens, width, device=device).to(TORCH_DTYPES[dtype])
            samples = []
            for i in range(NUM_WARMUP + NUM_REPEATS):
                dist.barrier()
                if cuda:
                    torch.cuda.synchronize()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    dist.all_reduce(x)
                    end.record()
                    end.synchronize()
                    elapsed = start.elapsed_time(end) * 1e-3
                else:
                    t0 = time.perf_counter()
                    dist.all_reduce(x)
                    elapsed = time.perf_counter() - t0
                if i >= NUM_WARMUP:
                    samples.append(elapsed)
            t = summarize(samples, f"{backend}_events" if cuda else f"{backend}_perf_counter")
            results.append([t.median_s, t.p20_s, t.p80_s, t.min_s, t.mean_s, t.num_samples, t.timer])
        if rank == 0:
            Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def measure_all_reduce(tp: int, shapes: list[tuple[int, int]], dtype: str, backend: str) -> list[Timing]:
    """Time an in-place all-reduce of a [num_tokens, width] tensor over ``tp`` ranks, per shape.

    Args:
        tp: ranks (GPUs 0..tp-1 with ``nccl``).
        shapes: (num_tokens, width) pairs.
        dtype: the tensor's dtype name (``bfloat16``, ``float32``...).
        backend: ``nccl`` or ``gloo``.

    Raises:
        RuntimeError: a rank failed (its traceback is chained).
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "all_reduce.json")
        mp.spawn(_worker, args=(tp, _free_port(), backend, shapes, dtype, out), nprocs=tp, join=True)
        rows = json.loads(Path(out).read_text())
    return [Timing(float(a), float(b), float(c), float(d), float(e), int(n), str(timer)) for a, b, c, d, e, n, timer in rows]
