"""The dense GEMMs of a mixture-of-experts model, from aiconfigurator-core's measured GEMM table.

A MoE bundle (``profiler/imports/aiconfigurator_moe.py``) also carries ``dense_gemm.csv``: the
system's ``gemm/<framework>/<version>/gemm_perf.parquet`` (one ``torch.nn.functional.linear`` or
block-FP8 GEMM per row, CUDA graph, aiconfigurator ``collector/vllm/collect_gemm.py``) read at
every linear layer the MoE cost model prices outside the routed experts, per attention TP degree:

- attention projections: ``fused_qkv_a_proj`` (or ``q_proj`` and ``kv_a_proj_with_mqa``),
  ``q_b_proj`` and ``o_proj`` of latent attention (used only where the MLA module tables do not
  price them), else ``qkv_proj`` and ``o_proj``;
- shared experts' ``gate_up_proj`` and ``down_proj`` (the shared width over the attention TP);
- the dense layers' MLP (DeepSeek-V3's first three layers, Llama 4's dense layers);
- ``lm_head`` ([h] -> vocab / T, bf16).

Times come from ``aiconfigurator.gemm_times``, the dense importer's own mapping: the measured
(n, k) where the table has it, else the efficiency interpolated between the surrounding measured
widths and scaled by the roofline (``origin`` interpolated). Dtype: bf16 (``bfloat16``, the kernel
with most rows) for quantization none and for lm_head, which the FP8 checkpoints keep in bf16
(``GEMM_DTYPES`` says why the block-FP8 rows are not used).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from profiler.imports.aiconfigurator import gemm_times, system_spec
from simulator.specs.model import ModelSpec

DENSE_GEMM_TABLE = "dense_gemm.csv"
DENSE_GEMM_COLUMNS = ("operator", "implementation", "dtype", "tp", "m", "k", "n", "median_s", "origin")
# bf16 only. The table's block-FP8 rows (vLLM 0.24.0 on H200: DeepGemm 86 us at m = 64,
# n = 4,096, k = 7,168, FlashInfer 56-61 us at m = 1 and 16; bf16 18-19 us) are slower than the
# whole measured MLA module with its four FP8 projections (0.13 ms at one token), so they are not
# taken as the price of a block-FP8 linear inside a served step: FP8 linears stay the roofline's.
GEMM_DTYPES = {"bfloat16": "bfloat16"}


def dense_linear_shapes(model: ModelSpec, tp: int) -> dict[str, tuple[int, int]]:
    """(k, n) of the MoE model's dense linear layers on one GPU of attention TP ``tp``, as the roofline shards them.

    Mirrors ``MoERooflineCostModel`` (``simulator/cost_models/roofline_moe.py``, ``mla.py``,
    ``moe.py``): heads over ``tp``, KV heads replicated below one per GPU, the shared and
    dense MLP widths over ``tp``; lm_head over ``tp``.
    """
    h = model.hidden_size
    heads = model.num_attention_heads // tp
    shapes: dict[str, tuple[int, int]] = {}
    if model.mla is not None:
        m = model.mla
        latent = m.kv_lora_rank + m.qk_rope_head_dim
        if m.q_lora_rank:
            shapes["fused_qkv_a_proj"] = (h, m.q_lora_rank + latent)
            shapes["q_b_proj"] = (m.q_lora_rank, heads * (m.qk_nope_head_dim + m.qk_rope_head_dim))
        else:
            shapes["q_proj"] = (h, heads * (m.qk_nope_head_dim + m.qk_rope_head_dim))
            shapes["kv_a_proj_with_mqa"] = (h, latent)
        shapes["o_proj"] = (heads * m.v_head_dim, h)
    else:
        kv = max(1, model.num_kv_heads // tp)
        shapes["qkv_proj"] = (h, (heads + 2 * kv) * model.head_dim)
        shapes["o_proj"] = (heads * model.head_dim, h)
    if model.moe is not None and model.moe.shared_intermediate_size:
        s = model.moe.shared_intermediate_size // tp
        shapes["shared_gate_up_proj"], shapes["shared_down_proj"] = (h, 2 * s), (s, h)
    if model.num_moe_layers < model.num_layers:
        inter = model.intermediate_size // tp
        shapes["dense_gate_up_proj"], shapes["dense_down_proj"] = (h, 2 * inter), (inter, h)
    shapes["lm_head"] = (h, math.ceil(model.vocab_size / tp))
    return shapes


def attention_tps(tps: list[int]) -> list[int]:
    """Every attention TP degree a MoE group of ``tps`` GPUs may run: the powers of two dividing one of them (data-parallel attention runs 1)."""
    return sorted({d for tp in tps for d in range(1, tp + 1) if tp % d == 0 and d & (d - 1) == 0})


def write_dense_gemms(path: Path, root: Path, system: str, model: ModelSpec, tps: list[int], out: Path) -> list[str]:
    """Write ``dense_gemm.csv`` into ``out`` from the GEMM table at ``path``; the operators written ("name (dtype)").

    Nothing is written when the table is missing.
    """
    import pandas as pd

    if not path.is_file():
        return []
    table = pd.read_parquet(path)
    gpu, _ = system_spec(root, system)
    rows, held = [], set()
    for gemm_dtype, dtype in GEMM_DTYPES.items():
        d = table[table["gemm_dtype"] == gemm_dtype]
        if d.empty:
            continue
        kernel = d["kernel_source"].value_counts().index[0]
        d = d[d["kernel_source"] == kernel]
        for tp in attention_tps(tps):
            for name, (k, n) in dense_linear_shapes(model, tp).items():
                ms, secs, exact = gemm_times(d, n, k, dtype, gpu)
                for m, t in zip(ms, secs):
                    rows.append((name, str(kernel), dtype, tp, int(m), k, n, float(t), "measured" if exact else "interpolated"))
                if len(ms):
                    held.add(f"{name} ({dtype})")
    if rows:
        with open(out / DENSE_GEMM_TABLE, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(DENSE_GEMM_COLUMNS)
            w.writerows(rows)
    return sorted(held)


DENSE_FOLDER = "dense"


def write_dense_attention(spec: str, model: ModelSpec, tps: list[int], out: Path, source: str = "--source", field: str = "") -> Path | None:
    """Import and fit the dense profile of a grouped-query MoE model's attention into ``out/dense``; None for a latent-attention model.

    The dense importer (``profiler/imports/aiconfigurator.py``) and fit (``profiler/fit.py``) run
    on the model with its MoE block removed (``moe=None``: the same attention, projections,
    norms and vocabulary), at every attention TP degree of ``tps`` (``attention_tps``). The MoE
    cost model reads its prefill and decode attention tables from the fitted runtime model
    (``simulator/cost_models/profiled_moe.py``); its MLP rows (at the model's
    ``intermediate_size``) are not used.

    Raises:
        ScenarioError: the dense importer's errors (no attention table for the system, ...).
    """
    import dataclasses

    from profiler.fit import fit_bundle
    from profiler.imports import build

    if model.mla is not None:
        return None
    folder = Path(out) / DENSE_FOLDER
    build(f"aiconfigurator:{spec}", dataclasses.replace(model, moe=None), tuple(attention_tps(tps)), folder, source, field).write()
    fit_bundle(folder, html=False)
    return folder
