"""One timer for every measurement: median and spread of a callable's run time.

On CUDA it is Triton's ``do_bench`` (``triton.testing``): it flushes the L2 cache before every
call (so weights are read from HBM, as in a real step where other layers evict them), warms up
for ``warmup_ms`` and repeats for ``rep_ms``, timing each call with CUDA events; we ask it for
every sample (``return_mode="all"``) so the row records the median, the 20th and 80th
percentiles and the number of samples. Kernels shorter than ``graph_below_s`` are timed with
``do_bench_cudagraph`` instead: the calls are captured into one CUDA graph and replayed, which
removes the host launch gap that would otherwise dominate a few-microsecond kernel (serving
engines run decode steps under CUDA graphs too, e.g. vLLM). On the CPU it is
``time.perf_counter`` around each call after a warm-up, repeated until both ``min_repeats``
calls and ``min_time_s`` seconds are reached (the profiler's CPU builders make each call find
its inputs out of cache, see ``profiler.ops.Builder``). With torch on one thread (the CPU
profile's default) the clock is the thread's CPU time instead (``time.thread_time``, ns
resolution on Linux): on a shared host other processes' time slices land inside wall-clock
samples (on the two-core development machine, with a load average of 5-8, medians of one
operator moved by 2x from one minute to the next) but not in the thread's CPU time.

Host allocations are made steady first (``steady_host_allocator``): with glibc's defaults, an
operator's large temporaries are fresh ``mmap`` pages that fault in on every call, or not,
depending on which larger shapes ran before it.

torch and triton are imported inside the CUDA functions only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class Timing:
    """Summary of one measurement (seconds).

    Attributes:
        median_s: median run time.
        p20_s, p80_s: 20th and 80th percentiles (the spread).
        min_s: the fastest sample (on a shared host, the least disturbed one).
        mean_s: the mean (what adds up: a step's mean time is the sum of its operators' means).
        num_samples: timed calls behind the statistics.
        timer: which timer produced it: ``cpu_perf_counter``, ``cpu_thread_time``,
            ``cuda_do_bench``, ``cuda_graph`` (or the all-reduce's ``nccl_events``...).
    """

    median_s: float
    p20_s: float
    p80_s: float
    min_s: float
    mean_s: float
    num_samples: int
    timer: str


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h> mallopt parameters
TRIM_THRESHOLD_BYTES = 1 << 30


def steady_host_allocator() -> dict[str, int] | None:
    """Serve every host allocation of this process from the heap and keep freed memory; the settings, or None off glibc.

    By default glibc hands blocks above an adaptive threshold (at most 32 MiB on 64-bit hosts)
    to fresh ``mmap`` pages and returns them to the system on free (mallopt(3),
    "M_MMAP_THRESHOLD"), so such a temporary faults its pages in (kernel time, counted in the
    thread's CPU time) on every call, and whether it does depends on the largest block freed so
    far. Measured on the CPU (``benchmarks/cpu_timing_effects.py --only allocator``, two runs):
    decode attention over 64 requests x 768 tokens of the small Llama (50 MB of gathered K and
    V) took 73-96 ms per call against 28 ms with its temporaries reused. ``M_MMAP_MAX = 0`` serves every block from the heap (glibc still
    falls back to ``mmap`` when the heap cannot grow) and a 1 GiB trim threshold keeps freed
    memory for the next call: the steady state of a long-running serving process, which reuses
    its memory (CPU serving stacks preload tcmalloc or jemalloc for the same reason).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return None
    if mallopt is None:
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        return None
    return {"mmap_max": 0, "trim_threshold_bytes": TRIM_THRESHOLD_BYTES}


def summarize(samples_s: list[float], timer: str) -> Timing:
    """Median, 20th and 80th percentiles (linear interpolation), minimum and mean of ``samples_s``.

    Raises:
        ValueError: ``samples_s`` is empty.
    """
    if not samples_s:
        raise ValueError("no samples to summarize")
    xs = sorted(samples_s)
    if len(xs) == 1:
        return Timing(xs[0], xs[0], xs[0], xs[0], xs[0], 1, timer)
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return Timing(statistics.median(xs), q[1], q[7], xs[0], statistics.fmean(xs), len(xs), timer)


def time_cpu(
    fn: Callable[[], Any],
    min_repeats: int = 5,
    min_time_s: float = 0.05,
    max_repeats: int = 10_000,
    warmup_s: float = 0.01,
    sync: Callable[[], Any] | None = None,
    clock: str = "wall",
) -> Timing:
    """Time ``fn`` on the host with ``time.perf_counter`` (``clock="wall"``) or ``time.thread_time``.

    Args:
        fn: the work; called at least ``min_repeats + 2`` times.
        min_repeats: fewest timed calls.
        min_time_s: keep timing until the timed calls add up to this much.
        max_repeats: most timed calls.
        warmup_s: untimed calls first (at least two), until this much time has passed.
        sync: called after each call outside the timed span (e.g. a device synchronize when only
            the host's share of ``fn`` is to be timed).
        clock: ``wall`` (``perf_counter``) or ``thread``: the calling thread's CPU time, which
            leaves out the time other processes hold the core. Only for work that runs entirely
            on the calling thread (torch with one intra-op thread).
    """
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock must be 'wall' or 'thread', got {clock!r}")
    start = time.perf_counter()
    for i in range(1_000_000):
        fn()
        if sync is not None:
            sync()
        if i >= 1 and time.perf_counter() - start >= warmup_s:
            break
    samples: list[float] = []
    total = 0.0
    now = time.perf_counter if clock == "wall" else time.thread_time
    while len(samples) < max_repeats and (len(samples) < min_repeats or total < min_time_s):
        t0 = now()
        fn()
        dt = now() - t0
        if sync is not None:
            sync()
        samples.append(dt)
        total += dt
    return summarize(samples, "cpu_perf_counter" if clock == "wall" else "cpu_thread_time")


def time_cuda(fn: Callable[[], Any], warmup_ms: float = 10, rep_ms: float = 50, graph_below_s: float = 20e-6) -> Timing:
    """Time ``fn`` on the current CUDA device with ``triton.testing.do_bench`` (see the module docstring).

    A quick ``do_bench`` first estimates the time; below ``graph_below_s`` the final numbers come
    from ``do_bench_cudagraph`` (ten replays of a graph of many calls; each sample is the mean
    of one replay). If graph capture fails (an operator that synchronizes), ``do_bench`` stands.
    """
    import torch
    from triton.testing import do_bench, do_bench_cudagraph

    samples_ms = do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")
    timing = summarize([t * 1e-3 for t in samples_ms], "cuda_do_bench")
    if timing.median_s < graph_below_s:
        try:
            graph_ms = do_bench_cudagraph(fn, rep=rep_ms / 5, return_mode="all")  # it replays the graph 10 times
        except RuntimeError:  # capture is not allowed for this operator
            torch.cuda.synchronize()
        else:
            timing = summarize([t * 1e-3 for t in graph_ms], "cuda_graph")
    return timing
