"""Profiled prices for multi-head latent attention: the whole MLA module read from measured tables.

aiconfigurator-core's vLLM ``mla_context_module_perf`` / ``mla_generation_module_perf`` tables
(imported into a MoE bundle's ``mla.csv`` by ``profiler/imports/aiconfigurator_moe.py``) time
vLLM's ``DeepseekV2MLAAttention`` forward on one GPU (tp_size 1, ``num_heads`` of the model's
heads on it) in one call: hidden states in, attention output after ``o_proj`` out. What it
includes is what aiconfigurator's own DeepSeek model replaces with one module row
(``aiconfigurator_core/sdk/models/deepseek.py``, ``context_mla_granular`` and
``generation_mla_granular``, the fallbacks of ``ops.MLAModule``; ``sdk/operations/mla.py``):

- prefill (``mla_module_prefill``, batch_size prompts of isl new tokens, no cached prefix):
  the down-projection ``fused_qkv_a_proj`` ([h] -> q_lora + kv_lora + rope = 2112), the q/kv
  latent RMSNorms, ``q_b_proj``, rotary, the latent cache write, ``kv_b_proj`` of every key,
  causal attention (vLLM's FLASH_ATTN_MLA backend for isl <= 512, FLASH_ATTN beyond, as the
  collector recorded) and ``o_proj``;
- decode (``mla_module_decode``, batch_size requests, one new token each over isl + step cached
  tokens): the same projections, W_UK (absorbed), latent attention over the cache, W_UV, ``o_proj``.

Not included (priced apart, as aiconfigurator prices them): the input add + RMSNorm
(``add_norm_1``), the TP all-reduce after ``o_proj`` (the rows are one GPU, no collective),
the MoE or dense MLP. The collector source itself (``collector/vllm/collect_mla_module.py``) is
not shipped in the package; the operator list above is the SDK's.

``MLAModuleTables`` turns the rows into two ``Table2D`` grids: prefill over (prompts, tokens per
prompt), decode over (requests, context per request); bilinear inside, roofline-scaled from the
nearest edge outside (DESIGN.md). A grid cell the collector skipped (long contexts at large
batches, which ran out of memory) is filled from the nearest measured batch at the same tokens
per prompt or context, scaled by the roofline (``_grid``). The roofline of the module is ``LatentAttention``'s token_time (projections, norms,
rotary, cache write) plus its prefill or decode attention (``simulator/cost_models/mla.py``).

A step's chunks rarely match the grid: its p prefill chunks of n_i new tokens after c_i cached
ones are priced as the table at (p, mean n_i), times the roofline's ratio of the real chunks to p
equal chunks without prefix (the ratio carries the prefix and unequal lengths); its decodes at
(requests, mean context). A step holding both phases pays both module calls, as the tables were
measured (vLLM runs the projections once over all tokens: a small overcount of one projection
launch per layer).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from simulator.cost_models.mla import LatentAttention
from simulator.cost_models.tables import Table2D

MLA_TABLE = "mla.csv"


def _grid(points: dict[tuple[int, int], float], roof: Callable[[float, float], float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A full (axis0, axis1, values) grid from measured ``points``, and the number of cells filled.

    A missing cell (batch b, tokens x) is filled from the measured cell of the nearest batch in
    its column, scaled by the roofline: at a fixed x, b prompts (or decodes) are b copies of the
    same work, so the mix of projections and attention, and with it the module's efficiency,
    stays as measured. A column with no measurement at all is filled along its row the same way.
    """
    a0 = np.array(sorted({k[0] for k in points}), dtype=np.float64)
    a1 = np.array(sorted({k[1] for k in points}), dtype=np.float64)
    values = np.full((len(a0), len(a1)), np.nan)
    for (x0, x1), v in points.items():
        values[np.searchsorted(a0, x0), np.searchsorted(a1, x1)] = v
    measured = ~np.isnan(values)
    filled = 0
    for i, j in zip(*np.nonzero(~measured)):
        column, row = np.flatnonzero(measured[:, j]), np.flatnonzero(measured[i])
        if len(column):
            k = column[np.argmin(np.abs(column - i))]
            values[i, j] = values[k, j] * roof(a0[i], a1[j]) / roof(a0[k], a1[j])
        elif len(row):
            k = row[np.argmin(np.abs(row - j))]
            values[i, j] = values[i, k] * roof(a0[i], a1[j]) / roof(a0[i], a1[k])
        else:
            continue
        filled += 1
    rows = ~np.isnan(values).any(axis=1)
    return a0[rows], a1, values[rows], filled


def read_mla_rows(root: Path, heads: int, dtype: str) -> dict[str, dict[tuple[int, int], float]]:
    """The bundle's ``mla.csv`` rows at ``heads`` per GPU and GEMM ``dtype``: per operator, (batch, tokens or context) -> seconds.

    Empty when the bundle has no ``mla.csv``. Repeats of a point are averaged by their median.
    """
    path = Path(root) / MLA_TABLE
    out: dict[str, dict[tuple[int, int], list[float]]] = {}
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if int(r["num_heads"]) != heads or r["dtype"] != dtype:
                continue
            axis = int(r["new_tokens"]) if r["operator"] == "mla_module_prefill" else int(r["context_tokens"])
            out.setdefault(r["operator"], {}).setdefault((int(r["num_seqs"]), axis), []).append(float(r["median_s"]))
    return {op: {k: float(np.median(v)) for k, v in pts.items()} for op, pts in out.items()}


class MLAModuleTables:
    """One layer's MLA module time (s) on one GPU from the measured prefill and decode tables.

    Args:
        latent: the roofline's ``LatentAttention`` of this GPU (extrapolation and ratios).
        rows: ``read_mla_rows``' result; needs both ``mla_module_prefill`` and ``mla_module_decode``.

    Raises:
        ValueError: ``rows`` lacks one of the two phases (the caller then keeps the roofline).
    """

    def __init__(self, latent: LatentAttention, rows: dict[str, dict[tuple[int, int], float]]) -> None:
        if "mla_module_prefill" not in rows or "mla_module_decode" not in rows:
            raise ValueError("mla.csv needs both mla_module_prefill and mla_module_decode rows")
        self.latent = latent
        a0, a1, v, self.prefill_filled = _grid(rows["mla_module_prefill"], self.roof_prefill)
        self.prefill = Table2D(a0, a1, v, self.roof_prefill)
        a0, a1, v, self.decode_filled = _grid(rows["mla_module_decode"], self.roof_decode)
        self.decode = Table2D(a0, a1, v, self.roof_decode)

    def roof_prefill(self, prompts: float, tokens: float) -> float:
        """The roofline's module time for ``prompts`` prompts of ``tokens`` new tokens each, no prefix (s)."""
        b, s = max(int(round(prompts)), 1), max(float(tokens), 1.0)
        return self.latent.token_time(int(round(b * s))) + self.latent.prefill_time([s] * b, [0] * b)

    def roof_decode(self, requests: float, context: float) -> float:
        """The roofline's module time for ``requests`` decodes over ``context`` cached tokens each (s)."""
        q = max(int(round(requests)), 1)
        return self.latent.token_time(q) + self.latent.decode_time(q, int(round(q * context)))

    def prefill_time(self, new_tokens: list[int], prefix_tokens: list[int]) -> float:
        """One layer's module time for prefill chunks of ``new_tokens`` after ``prefix_tokens`` cached tokens (s)."""
        p = len(new_tokens)
        if p == 0:
            return 0.0
        mean = sum(new_tokens) / p
        t = self.prefill(p, mean)
        if any(prefix_tokens) or min(new_tokens) != max(new_tokens):
            actual = self.latent.token_time(sum(new_tokens)) + self.latent.prefill_time(new_tokens, prefix_tokens)
            t *= actual / self.roof_prefill(p, mean)
        return t

    def decode_time(self, num_requests: int, context_tokens: float) -> float:
        """One layer's module time for ``num_requests`` decodes over ``context_tokens`` cached tokens in all (s)."""
        if num_requests <= 0:
            return 0.0
        return self.decode(num_requests, max(context_tokens / num_requests, 1.0))
