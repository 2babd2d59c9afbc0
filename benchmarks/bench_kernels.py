"""GPU benchmark of servesim's Triton kernels (kernels/) against the vendor libraries.

For each kernel and shape (Llama-3-8B layer shapes at tensor parallelism 1: hidden 4096, 32 query
and 8 KV heads of 128, intermediate 14336, KV cache block size 16) it measures the median time of
the Triton kernel and of a baseline, and reports:

- ``time_us``, ``tflops`` (useful FLOPs / time; int8 OPs for W8A8), ``tbps`` (minimum bytes to
  move / time, 1e12 bytes/s),
- ``frac_peak_flops`` and ``frac_peak_bw``: those as fractions of the --gpu datasheet peaks
  (simulator.specs.gpu.GPUS: bf16 for GEMM, attention and W4A16, int8 for W8A8, fp8 for FP8),
- ``frac_roofline``: roofline time max(FLOPs / peak, bytes / bandwidth) over measured time,
- ``baseline``, ``baseline_us`` and ``speedup`` (baseline time / kernel time, > 1 when the Triton
  kernel is faster): cuBLAS through ``torch.matmul`` in bf16 for GEMM, W8A8 and W4A16 (the dense
  GEMM that quantization replaces); ``torch._scaled_mm`` with fast accumulation for FP8 (Triton's
  default on sm_90, see kernels/fp8_gemm.py); ``scaled_dot_product_attention`` over contiguous
  K/V for attention (the same work without paging; lower-right causal mask for prefill with a
  cached prefix),
- ``max_rel_err``: max |kernel - reference| / max |reference| from the kernel's torch reference
  (skipped with --no-check).

Times are ``triton.testing.do_bench`` medians (CUDA events, L2 flushed before each run), so
memory-bound shapes are measured cold, as a layer's weights and KV cache are in a model step.
The first use of each GEMM shape bucket autotunes (a few seconds each).

    python benchmarks/bench_kernels.py --gpu h100-sxm [--kernels gemm,paged_decode] [--quick]
                                       [--out reports/runs/bench_kernels.csv] [--no-check]

Needs a CUDA GPU; on a machine without one it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing: kernels/ and simulator/

from simulator.specs.gpu import GPUS, GPUSpec  # noqa: E402

DEVICE = "cuda"
HIDDEN, INTERMEDIATE, NUM_Q_HEADS, NUM_KV_HEADS, HEAD_DIM, BLOCK_SIZE = 4096, 14336, 32, 8, 128, 16
# Llama-3-8B projection GEMMs as (name, N, K): fused QKV, attention output, fused gate/up, down.
LAYER_GEMMS = [("qkv", (NUM_Q_HEADS + 2 * NUM_KV_HEADS) * HEAD_DIM, HIDDEN), ("o", HIDDEN, HIDDEN),
               ("gate_up", 2 * INTERMEDIATE, HIDDEN), ("down", HIDDEN, INTERMEDIATE)]
TOKENS = [1, 16, 64, 256, 1024, 4096]
QUICK_TOKENS = [1, 256, 4096]
# Decode batches as (num_seqs, context_len); prefill batches as (num_seqs, prefix_len, new_tokens).
DECODE_BATCHES = [(1, 1024), (1, 32768), (16, 4096), (64, 2048), (128, 4096), (256, 1024)]
QUICK_DECODE_BATCHES = [(1, 32768), (64, 2048)]
PREFILL_BATCHES = [(1, 0, 512), (1, 0, 4096), (4, 0, 1024), (1, 4096, 512), (8, 2048, 256)]
QUICK_PREFILL_BATCHES = [(1, 0, 4096), (1, 4096, 512)]
KERNEL_NAMES = ["gemm", "w8a8_gemm", "w4a16_gemm", "fp8_gemm", "paged_decode", "paged_prefill"]
W4_GROUP_SIZE = 128

COLUMNS = ["kernel", "shape", "dtype", "time_us", "tflops", "tbps", "frac_peak_flops", "frac_peak_bw", "frac_roofline",
           "baseline", "baseline_us", "speedup", "max_rel_err", "gpu_spec", "device", "date"]


@dataclass
class Case:
    """One measurement: the kernel call, its baseline and reference, and its work."""

    kernel: str
    shape: str
    dtype: str
    run: Callable[[], object]
    reference: Callable[[], object]
    baseline_name: str
    baseline: Callable[[], object] | None
    flops: float  # useful FLOPs (int8 OPs for W8A8)
    num_bytes: float  # minimum bytes read and written
    peak_flops: float  # datasheet peak for this kernel's arithmetic


def gemm_cases(kernel: str, tokens: list[int], gpu: GPUSpec) -> list[Case]:
    import torch

    from kernels import fp8_gemm, gemm, w4a16_gemm, w8a8_gemm

    bf16 = torch.bfloat16
    cases = []
    for name, N, K in LAYER_GEMMS:
        weight = torch.randn(N, K, device=DEVICE, dtype=bf16) * K**-0.5  # nn.Linear layout [N, K]
        for M in tokens:
            a = torch.randn(M, K, device=DEVICE, dtype=bf16)
            shape = f"{name} M={M} N={N} K={K}"
            dense = lambda a=a, weight=weight: torch.matmul(a, weight.t())  # noqa: E731
            if kernel == "gemm":
                cases.append(Case(kernel, shape, "bf16", lambda a=a, w=weight: gemm.gemm(a, w.t()),
                                  lambda a=a, w=weight: gemm.gemm_reference(a, w.t()), "torch.matmul bf16", dense,
                                  2 * M * N * K, 2 * (M * K + K * N + M * N), gpu.bf16_flops))
            elif kernel == "w8a8_gemm":
                a_q, a_s = w8a8_gemm.quantize_per_token(a)
                w_q, w_s = w8a8_gemm.quantize_per_channel(weight.t())
                args = (a_q, a_s, w_q, w_s, bf16)
                cases.append(Case(kernel, shape, "int8", lambda args=args: w8a8_gemm.w8a8_gemm(*args),
                                  lambda args=args: w8a8_gemm.w8a8_gemm_reference(*args), "torch.matmul bf16", dense,
                                  2 * M * N * K, M * K + K * N + 2 * M * N + 4 * (M + N), gpu.int8_ops))
            elif kernel == "w4a16_gemm":
                w_packed, scales, zeros = w4a16_gemm.quantize_w4(weight.t(), W4_GROUP_SIZE)
                args = (a, w_packed, scales, zeros, W4_GROUP_SIZE)
                cases.append(Case(kernel, shape, "bf16 x int4", lambda args=args: w4a16_gemm.w4a16_gemm(*args),
                                  lambda args=args: w4a16_gemm.w4a16_gemm_reference(*args), "torch.matmul bf16", dense,
                                  2 * M * N * K, 2 * M * K + K * N / 2 + 4 * (K // W4_GROUP_SIZE) * N + 2 * M * N,
                                  gpu.bf16_flops))
            elif kernel == "fp8_gemm":
                if gpu.fp8_flops is None or (DEVICE == "cuda" and torch.cuda.get_device_capability() < (8, 9)):
                    continue
                a_q, a_s = fp8_gemm.quantize_fp8(a)
                w_q, w_s = fp8_gemm.quantize_fp8(weight)  # [N, K] row-major: B = w_q.t() is K-major
                args = (a_q, w_q.t(), a_s, w_s, bf16)

                def scaled_mm(a_q=a_q, w_q=w_q, a_s=a_s, w_s=w_s):
                    return torch._scaled_mm(a_q, w_q.t(), scale_a=a_s.reshape(()), scale_b=w_s.reshape(()),
                                            out_dtype=bf16, use_fast_accum=True)

                cases.append(Case(kernel, shape, "fp8e4m3", lambda args=args: fp8_gemm.fp8_gemm(*args),
                                  lambda args=args: fp8_gemm.fp8_gemm_reference(*args), "torch._scaled_mm fast-accum",
                                  scaled_mm, 2 * M * N * K, M * K + K * N + 2 * M * N, gpu.fp8_flops))
    return cases


def paged_cache(num_seqs: int, tokens_per_seq: int):
    """A bf16 paged KV cache holding ``tokens_per_seq`` tokens per sequence in shuffled blocks,
    its block table, and the same keys and values laid out contiguously for the baseline."""
    import torch

    blocks_per_seq = math.ceil(tokens_per_seq / BLOCK_SIZE)
    num_blocks = num_seqs * blocks_per_seq
    k_cache = torch.randn(num_blocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM, device=DEVICE, dtype=torch.bfloat16)
    v_cache = torch.randn_like(k_cache)
    block_tables = torch.randperm(num_blocks, device=DEVICE).to(torch.int32).reshape(num_seqs, blocks_per_seq)

    def dense(cache):  # [num_seqs, num_kv_heads, tokens, head_dim] for SDPA
        tokens = cache[block_tables.long()].reshape(num_seqs, -1, NUM_KV_HEADS, HEAD_DIM)[:, :tokens_per_seq]
        return tokens.transpose(1, 2).contiguous()

    return k_cache, v_cache, block_tables, dense(k_cache), dense(v_cache)


def sdpa_baseline(name: str, q, k, v, **kwargs) -> tuple[str, Callable[[], object]]:
    """``scaled_dot_product_attention`` over grouped KV heads (``enable_gqa``); where this torch
    or mask refuses that, over KV heads repeated to the query heads (outside the timed call)."""
    import torch

    attend = torch.nn.functional.scaled_dot_product_attention
    try:
        attend(q, k, v, enable_gqa=True, **kwargs)
        return name, lambda: attend(q, k, v, enable_gqa=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return f"{name}, KV heads repeated", lambda: attend(q, k, v, **kwargs)


def attention_cases(kernel: str, quick: bool, gpu: GPUSpec) -> list[Case]:
    import torch

    from kernels import paged_decode, paged_prefill

    scale = HEAD_DIM**-0.5
    kv_bytes_per_token = 2 * NUM_KV_HEADS * HEAD_DIM * 2  # K and V, bf16
    cases = []
    if kernel == "paged_decode":
        for num_seqs, context_len in QUICK_DECODE_BATCHES if quick else DECODE_BATCHES:
            k_cache, v_cache, block_tables, k, v = paged_cache(num_seqs, context_len)
            q = torch.randn(num_seqs, NUM_Q_HEADS, HEAD_DIM, device=DEVICE, dtype=torch.bfloat16)
            context_lens = torch.full((num_seqs,), context_len, device=DEVICE, dtype=torch.int32)
            args = (q, k_cache, v_cache, block_tables, context_lens, scale)
            baseline_name, baseline = sdpa_baseline("torch SDPA, contiguous KV", q[:, :, None, :], k, v, scale=scale)
            cases.append(Case(kernel, f"seqs={num_seqs} context={context_len}", "bf16",
                              lambda args=args, n=context_len: paged_decode.paged_decode(*args, max_context_len=n),
                              lambda args=args: paged_decode.paged_decode_reference(*args),
                              baseline_name, baseline,
                              4 * num_seqs * NUM_Q_HEADS * context_len * HEAD_DIM,
                              num_seqs * (context_len * kv_bytes_per_token + 2 * 2 * NUM_Q_HEADS * HEAD_DIM),
                              gpu.bf16_flops))
    else:
        from torch.nn.attention.bias import causal_lower_right

        for num_seqs, prefix_len, new_tokens in QUICK_PREFILL_BATCHES if quick else PREFILL_BATCHES:
            total = prefix_len + new_tokens
            k_cache, v_cache, block_tables, k, v = paged_cache(num_seqs, total)
            q = torch.randn(num_seqs * new_tokens, NUM_Q_HEADS, HEAD_DIM, device=DEVICE, dtype=torch.bfloat16)
            query_start_loc = torch.arange(0, num_seqs + 1, device=DEVICE, dtype=torch.int32) * new_tokens
            prefix_lens = torch.full((num_seqs,), prefix_len, device=DEVICE, dtype=torch.int32)
            args = (q, k_cache, v_cache, block_tables, query_start_loc, prefix_lens, scale)
            q_dense = q.reshape(num_seqs, new_tokens, NUM_Q_HEADS, HEAD_DIM).transpose(1, 2).contiguous()
            mask = {"is_causal": True} if prefix_len == 0 else {"attn_mask": causal_lower_right(new_tokens, total)}
            baseline_name, baseline = sdpa_baseline("torch SDPA causal, contiguous KV", q_dense, k, v, scale=scale, **mask)
            # Query i sees prefix + i + 1 keys.
            visible = num_seqs * (new_tokens * prefix_len + new_tokens * (new_tokens + 1) / 2)
            cases.append(Case(kernel, f"seqs={num_seqs} prefix={prefix_len} new={new_tokens}", "bf16",
                              lambda args=args, n=new_tokens: paged_prefill.paged_prefill(*args, max_query_len=n),
                              lambda args=args: paged_prefill.paged_prefill_reference(*args),
                              baseline_name, baseline,
                              4 * NUM_Q_HEADS * HEAD_DIM * visible,
                              num_seqs * (total * kv_bytes_per_token + 2 * 2 * new_tokens * NUM_Q_HEADS * HEAD_DIM),
                              gpu.bf16_flops))
    return cases


def measure(case: Case, gpu: GPUSpec, check: bool, device_name: str) -> dict[str, object]:
    import torch
    import triton

    row: dict[str, object] = {"kernel": case.kernel, "shape": case.shape, "dtype": case.dtype, "gpu_spec": gpu.name,
                              "device": device_name, "date": datetime.date.today().isoformat()}
    if check:
        out, ref = case.run().float(), case.reference().float()
        row["max_rel_err"] = f"{float((out - ref).abs().max() / ref.abs().max().clamp(min=1e-30)):.2e}"
    case.run()  # autotune (GEMMs) and compile outside the timed runs
    torch.cuda.synchronize()
    seconds = triton.testing.do_bench(case.run, warmup=25, rep=100, return_mode="median") * 1e-3
    roofline_s = max(case.flops / case.peak_flops, case.num_bytes / gpu.memory_bandwidth)
    row.update(time_us=f"{seconds * 1e6:.2f}", tflops=f"{case.flops / seconds / 1e12:.2f}",
               tbps=f"{case.num_bytes / seconds / 1e12:.3f}",
               frac_peak_flops=f"{case.flops / seconds / case.peak_flops:.3f}",
               frac_peak_bw=f"{case.num_bytes / seconds / gpu.memory_bandwidth:.3f}",
               frac_roofline=f"{roofline_s / seconds:.3f}", baseline=case.baseline_name)
    if case.baseline is not None:
        try:
            baseline_s = triton.testing.do_bench(case.baseline, warmup=25, rep=100, return_mode="median") * 1e-3
            row.update(baseline_us=f"{baseline_s * 1e6:.2f}", speedup=f"{baseline_s / seconds:.3f}")
        except (RuntimeError, TypeError, ValueError) as error:  # a baseline the library refuses
            row.update(baseline=f"{case.baseline_name} (failed: {str(error).splitlines()[0][:80]})")
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="h100-sxm", choices=sorted(GPUS), help="datasheet peaks to compare with")
    parser.add_argument("--kernels", default=",".join(KERNEL_NAMES), help=f"comma-separated subset of {','.join(KERNEL_NAMES)}")
    parser.add_argument("--quick", action="store_true", help="a few shapes per kernel")
    parser.add_argument("--no-check", action="store_true", help="skip comparing each kernel with its reference")
    parser.add_argument("--out", type=Path, help="CSV path (default reports/runs/bench_kernels_<gpu>.csv)")
    args = parser.parse_args()
    selected = [name.strip() for name in args.kernels.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(KERNEL_NAMES))
    if unknown:
        parser.error(f"unknown kernels {unknown}; known: {', '.join(KERNEL_NAMES)}")

    try:
        import torch
        import triton
    except ImportError as error:
        sys.exit(f"bench_kernels: needs torch and triton ({error}); pip install -e '.[profile]'")
    if not torch.cuda.is_available():
        sys.exit("bench_kernels: no CUDA GPU found; this benchmark times Triton kernels on a GPU "
                 "(the CPU interpreter's speed means nothing). Run it on a CUDA machine.")

    gpu = GPUS[args.gpu]
    device_name = torch.cuda.get_device_name()
    print(f"{device_name} (peaks from {gpu.name}: {gpu.bf16_flops / 1e12:.0f} TFLOPS bf16, "
          f"{gpu.memory_bandwidth / 1e12:.2f} TB/s), torch {torch.__version__}, triton {triton.__version__}", flush=True)
    torch.manual_seed(0)
    out_path = args.out or REPO / "reports" / "runs" / f"bench_kernels_{gpu.name}.csv"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        print(f"{'kernel':<14} {'shape':<34} {'us':>10} {'TFLOPS':>8} {'TB/s':>7} {'roofline':>8} "
              f"{'baseline us':>12} {'speedup':>8} {'rel err':>9}")
        for kernel in selected:
            if kernel.startswith("paged_"):
                cases = attention_cases(kernel, args.quick, gpu)
            else:
                cases = gemm_cases(kernel, QUICK_TOKENS if args.quick else TOKENS, gpu)
            for case in cases:
                row = measure(case, gpu, not args.no_check, device_name)
                writer.writerow(row)
                f.flush()
                print(f"{row['kernel']:<14} {row['shape']:<34} {row['time_us']:>10} {row['tflops']:>8} {row['tbps']:>7} "
                      f"{row['frac_roofline']:>8} {row.get('baseline_us', '-'):>12} {row.get('speedup', '-'):>8} "
                      f"{row.get('max_rel_err', '-'):>9}", flush=True)
            del cases
            torch.cuda.empty_cache()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
