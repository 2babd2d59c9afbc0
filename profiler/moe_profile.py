"""Measure a mixture-of-experts model's MoE operators with PyTorch reference kernels (CPU or GPU).

The operators of ``profiler/catalogue_moe.py``, each timed with the project's timer
(``profiler.timer``; on the CPU thread CPU time with one torch thread, else wall time):

- ``router_gemm``: ``x @ gate.T`` ([m, h] x [h, E]; the top-k softmax after it is priced by the roofline);
- ``moe_experts``: a grouped implementation of vLLM's ``fused_experts`` in plain PyTorch: for each
  of the GPU's experts, gather its tokens, gate/up GEMM, SiLU * mul, down GEMM, scale by the
  routing weight and ``index_add_`` into the output (which sums each token's k outputs, moe_sum
  included, as the fused kernel's timing includes it);
- ``moe_sum``: k expert outputs per token summed on their own ([m, k, h] -> [m, h]).

Routing is balanced exactly as aiconfigurator's collector's ``balanced_logits``: token i takes
experts (i k + j) mod E, j < k, so every expert gets the same share of the pairs and the
distinct experts touched are min(E, m k) (the ``moe_experts`` rows record the catalogue's
expected value under random balanced routing, ``catalogue_moe.expert_counts``).

Writes ``moe.csv`` and ``moe_profile.json`` in the layout of an imported MoE bundle
(``profiler/imports/aiconfigurator_moe.py``), so ``hardware.profile`` reads either the same way. A
rerun measures again and replaces both files (the sweep is small).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from profiler.catalogue_moe import expert_shape, moe_plan
from profiler.imports.aiconfigurator_moe import MOE_COLUMNS, MOE_FORMAT, model_fields
from simulator.specs.model import ModelSpec

TORCH_DTYPES = ("float32", "bfloat16", "float16")


def balanced_topk(num_tokens: int, num_experts: int, top_k: int, device):
    """(ids [m, k] int64, weights [m, k] float32): token i's experts (i k + j) mod E, weights 1 / k."""
    import torch

    ids = (torch.arange(num_tokens, device=device)[:, None] * top_k + torch.arange(top_k, device=device)[None, :]) % num_experts
    return ids, torch.full((num_tokens, top_k), 1.0 / top_k, device=device)


def grouped_experts(x, ids, weights, w13, w2, first_expert: int = 0):
    """Routed experts by a loop over this GPU's experts: [m, h] -> [m, h] (pairs on other GPUs' experts skipped).

    Args:
        x: [m, h] tokens. ids, weights: [m, k] chosen experts and their routing weights.
        w13: [local, 2w, h] gate and up weights; w2: [local, h, w] down weights.
        first_expert: the global index of this GPU's first expert.
    """
    import torch

    out = torch.zeros_like(x)
    width = w2.shape[2]
    for local in range(w13.shape[0]):
        token, slot = torch.nonzero(ids == first_expert + local, as_tuple=True)
        if token.numel() == 0:
            continue
        gate_up = x[token] @ w13[local].T
        act = torch.nn.functional.silu(gate_up[:, :width]) * gate_up[:, width:]
        y = (act @ w2[local].T) * weights[token, slot, None].to(x.dtype)
        out.index_add_(0, token, y)
    return out


def profile_moe(model: ModelSpec, tps: tuple[int, ...], token_counts: list[int], device: str, out: Path, dtype: str = "float32",
                threads: int | None = 1, min_time_s: float = 0.05) -> int:
    """Measure ``model``'s MoE operators at TP degrees ``tps`` (experts TP-sliced) over ``token_counts``; returns rows written.

    Raises:
        ScenarioError: ``model`` is dense, or a TP degree does not divide the expert width
            (``catalogue_moe.expert_shape``).
    """
    import torch

    from profiler.device import describe
    from profiler.timer import time_cpu, time_cuda

    dev = torch.device("cuda" if device == "cuda" else "cpu")
    if dev.type == "cpu" and threads:
        torch.set_num_threads(threads)
    tdtype = getattr(torch, dtype)
    clock = "thread" if dev.type == "cpu" and threads == 1 else "wall"
    torch.manual_seed(0)

    def timed(fn) -> float:
        if dev.type == "cuda":
            return time_cuda(fn).median_s
        return time_cpu(fn, min_time_s=min_time_s, clock=clock).median_s

    started = time.perf_counter()
    rows = []
    h = model.hidden_size
    for operator, kind, tp, shape, flops, nbytes in moe_plan(model, sorted(tps), token_counts, dtype):
        es = expert_shape(model, tp)
        m = shape[0]
        x = torch.randn(m, h, device=dev, dtype=tdtype)
        if operator == "router_gemm":
            gate = torch.randn(es.num_experts, h, device=dev, dtype=tdtype)
            seconds = timed(lambda: x @ gate.T)
            key = (m, es.num_local_experts, es.top_k, h, 0, es.ep, es.moe_tp)
        elif operator == "moe_experts":
            ids, weights = balanced_topk(m, es.num_experts, es.top_k, dev)
            w13 = torch.randn(es.num_local_experts, 2 * es.expert_width, h, device=dev, dtype=tdtype) * h ** -0.5
            w2 = torch.randn(es.num_local_experts, h, es.expert_width, device=dev, dtype=tdtype) * es.expert_width ** -0.5
            seconds = timed(lambda: grouped_experts(x, ids, weights, w13, w2))
            key = es.key(m)
        else:  # moe_sum
            parts = torch.randn(m, es.top_k, h, device=dev, dtype=tdtype)
            seconds = timed(lambda: parts.sum(dim=1))
            key = (m, es.num_local_experts, es.top_k, h, 0, es.ep, es.moe_tp)
        rows.append((operator, "torch", dtype, tp, *key, flops, nbytes, seconds, "measured"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "moe.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MOE_COLUMNS)
        w.writerows(rows)
    info = describe(device)
    manifest = {
        "format": MOE_FORMAT, "kind": "moe", "model": {"name": model.name, **model_fields(model)}, "tensor_parallel_sizes": sorted(tps),
        "operators": {str(tp): ["router_gemm", "moe_experts", "moe_sum"] for tp in tps}, "dtype": dtype, "routing": "balanced",
        "provenance": {"source": f"servesim profile --device {device}", "measured_by": "servesim profiler (profiler/moe_profile.py, PyTorch reference kernels)",
                       "device": info.get("name"), "torch_version": torch.__version__, "threads": threads, "timer": clock if dev.type == "cpu" else "cuda",
                       "wall_s": round(time.perf_counter() - started, 3),
                       "what": "router GEMM; grouped experts by a loop over experts (gate/up, SiLU*mul, down, weighted index_add); moe_sum"},
    }
    with open(out / "moe_profile.json", "w") as f:
        json.dump(manifest, f, indent=1)
    return len(rows)
