"""Profiled prices for mixture-of-experts replicas: the routed experts read from a measured MoE profile.

A MoE profile (``moe_profile.json`` and ``moe.csv`` in a bundle folder; ``servesim profile
import aiconfigurator:...`` writes one from aiconfigurator-core's measured vLLM ``moe_perf``
tables, ``profiler/imports/aiconfigurator_moe.py``) holds ``moe_experts``: vLLM's
``fused_experts`` (align, grouped gate/up GEMM, SiLU * mul, grouped down GEMM, moe_sum) timed on
one GPU holding its share of the experts, over a sweep of tokens on that GPU, under balanced
routing, per dtype (bf16, block FP8) and expert split (expert-parallel, expert-tensor-parallel).

``ProfiledMoECostModel`` prices a step as ``MoERooflineCostModel`` does, with the ``experts`` part
of every MoE block (routed experts plus moe_sum) replaced by the profile's runtime model at the
step's tokens on the GPU:

    t(m) = table(m) x roofline(m, scenario routing) / roofline(m, balanced routing)

``table`` interpolates linearly between measured token counts and, outside the measured range,
holds the efficiency measured at the nearest edge and scales the roofline's time
(``simulator.cost_models.tables.Table1D``; DESIGN.md). The roofline here is ``MoELayer``'s own
experts_time + combine_time (``simulator/cost_models/moe.py``: routed pairs and distinct experts
touched, the GPU's fit to the same tables), so the distinct-experts math is that module's alone:
a zipf routing that touches fewer or more experts than the balanced measurement moves the price by
the roofline's ratio. The router GEMM is read from the profile's ``router_gemm`` rows where it has
them (the same table scheme over the step's tokens per rank; its top-k softmax stays the
roofline's). Shared experts, all-reduce and all-to-all stay the roofline's; for a latent-attention model
whose bundle holds ``mla.csv`` rows at the GPU's heads and dtype, the whole MLA module
(projections, norms, rotary, cache write, attention, o_proj) is read from them
(``simulator/cost_models/profiled_mla.py``); a grouped-query model's prefill and decode
attention is read from the fitted dense profile the import writes into ``dense/`` (the dense
importer and fit run on the model without its MoE block); bf16 dense linears (attention
projections, shared experts, dense MLP, lm_head) from ``dense_gemm.csv``; else they stay the roofline's, as ``MoERooflineCostModel`` prices them (labelled ``roofline`` in
``sources``). With data-parallel attention the measured moe_sum covers all the group's tokens on
the GPU, as the collector ran it, where the roofline sums only the rank's held tokens.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from simulator.cost_models.moe import MoELayer
from simulator.cost_models.profiled_mla import MLAModuleTables, read_mla_rows
from simulator.cost_models.profiled import ProfiledCostModel
from simulator.cost_models.roofline import RooflineCostModel
from simulator.cost_models.roofline_moe import MoERooflineCostModel
from simulator.cost_models.tables import Table1D
from simulator.errors import ScenarioError
from simulator.scenario import MoERoutingConfig

FIELD = "hardware.profile"
PROFILE_FILE, TABLE_FILE = "moe_profile.json", "moe.csv"
REQUIRED = ("moe_experts",)


def read_moe_table(root: Path, model_name: str, hidden: int, num_experts: int, top_k: int, expert_width: int, ep: int, moe_tp: int,
                   quantization: str = "none", source: str = "<scenario>") -> tuple[np.ndarray, np.ndarray, dict]:
    """The ``moe_experts`` rows of bundle ``root`` at one GPU's expert shape: (tokens, seconds, manifest).

    ``expert_width`` is the width on one GPU (w / moe_tp). ``quantization`` ``none`` takes rows
    of a float dtype (bf16 imported, float32 from a CPU profile), ``fp8`` the block-FP8 rows.
    Repeats of one token count are averaged by their median.

    Raises:
        ScenarioError: one line naming the missing operators, when the folder has no MoE profile or
            none at this shape and split.
    """
    wanted = {"none": {"bfloat16", "float16", "float32"}}.get(quantization, {quantization})
    where = f"{quantization if quantization != 'none' else 'float'} expert shape h {hidden}, E {num_experts}, top {top_k}, width {expert_width} per GPU, EP {ep}, expert TP {moe_tp}"
    path = root / PROFILE_FILE
    if not path.is_file() or not (root / TABLE_FILE).is_file():
        raise ScenarioError(source, FIELD, str(root), f"holds no MoE operators (missing: {', '.join(REQUIRED)}) for the mixture-of-experts model {model_name}",
                            "import them: `servesim profile import aiconfigurator:SYSTEM/vllm/VERSION --model ... --out DIR`, or remove hardware.profile to price it with the roofline")
    with open(path) as f:
        manifest = json.load(f)
    by_tokens: dict[int, list[float]] = {}
    with open(root / TABLE_FILE, newline="") as f:
        for r in csv.DictReader(f):
            key = tuple(int(float(r[c])) for c in ("hidden", "top_k", "expert_width", "ep", "moe_tp"))
            if r["operator"] == "moe_experts" and r["dtype"] in wanted and key == (hidden, top_k, expert_width, ep, moe_tp):
                by_tokens.setdefault(int(float(r["num_tokens"])), []).append(float(r["median_s"]))
    if len(by_tokens) < 2:
        raise ScenarioError(source, FIELD, str(root), f"has no measurements of moe_experts at the {where} of {model_name}",
                            "import a source that measured this split (aiconfigurator's moe_perf), or remove hardware.profile to price it with the roofline")
    tokens = np.array(sorted(by_tokens), dtype=np.float64)
    seconds = np.array([float(np.median(by_tokens[int(m)])) for m in tokens])
    return tokens, seconds, manifest


def read_router_table(root: Path, hidden: int, num_experts: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The bundle's ``router_gemm`` rows ([m, h] x [h, E], a float dtype): (tokens, seconds), or None without them."""
    by_tokens: dict[int, list[float]] = {}
    with open(root / TABLE_FILE, newline="") as f:
        for r in csv.DictReader(f):
            if r["operator"] == "router_gemm" and r["dtype"] in ("bfloat16", "float16", "float32") and int(float(r["hidden"])) == hidden:
                by_tokens.setdefault(int(float(r["num_tokens"])), []).append(float(r["median_s"]))
    if len(by_tokens) < 2:
        return None
    tokens = np.array(sorted(by_tokens), dtype=np.float64)
    return tokens, np.array([float(np.median(by_tokens[int(m)])) for m in tokens])


DENSE_GEMM_FILE, DENSE_FOLDER = "dense_gemm.csv", "dense"


def read_dense_gemms(root: Path) -> dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]]:
    """The bundle's ``dense_gemm.csv`` rows: (dtype, k, n) -> (m values, seconds); empty without the file.

    Written by ``profiler/imports/aiconfigurator_dense_gemm.py`` from the system's GEMM table.
    A shape measured under several names (o_proj at two TP degrees) keeps the median per m.
    """
    path = Path(root) / DENSE_GEMM_FILE
    if not path.is_file():
        return {}
    pts: dict[tuple[str, int, int], dict[int, list[float]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            pts.setdefault((r["dtype"], int(r["k"]), int(r["n"])), {}).setdefault(int(r["m"]), []).append(float(r["median_s"]))
    out = {}
    for key, by_m in pts.items():
        if len(by_m) >= 2:
            ms = np.array(sorted(by_m), dtype=np.float64)
            out[key] = (ms, np.array([float(np.median(by_m[int(m)])) for m in ms]))
    return out


class ProfiledMoELayer(MoELayer):
    """A ``MoELayer`` whose routed experts and moe_sum cost the measured ``moe_experts`` runtime model.

    Args: those of ``MoELayer``, plus
        tokens, seconds: the measured table at this GPU's expert shape (tokens on the GPU, s).
    """

    def __init__(self, roofline, model, par, routing: MoERoutingConfig, tokens: np.ndarray, seconds: np.ndarray,
                 router: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(roofline, model, par, routing)
        self.balanced = MoELayer(roofline, model, par, MoERoutingConfig())
        self.table = Table1D(tokens, seconds, self.roofline_balanced_s)
        self.skewed = routing.distribution != "balanced"
        e, h = model.moe.num_experts, model.hidden_size
        self.router_table = Table1D(*router, lambda m: roofline.gemm_time(int(round(m)), h, e)) if router is not None else None

    def router_time(self, rank_tokens: int) -> float:
        """The gate GEMM from the profile's ``router_gemm`` rows when it has them (else the roofline's), plus the roofline's top-k softmax (s)."""
        if self.router_table is None:
            return super().router_time(rank_tokens)
        return self.router_table(rank_tokens) + self.roof.elementwise_time(2 * rank_tokens * self.moe.num_experts * 4)

    def roofline_balanced_s(self, group_tokens: float) -> float:
        """The roofline's routed experts plus moe_sum under balanced routing (s), the shape of extrapolation."""
        m = int(round(group_tokens))
        return self.balanced.experts_time(m) + self.balanced.combine_time(m)

    def profiled_experts_time(self, group_tokens: int) -> float:
        """Routed experts plus moe_sum for ``group_tokens`` tokens on the MoE group (s): the table, times the routing ratio."""
        if group_tokens <= 0:
            return 0.0
        t = self.table(group_tokens)
        if self.skewed:
            balanced = self.roofline_balanced_s(group_tokens)
            if balanced > 0:
                t *= (self.experts_time(group_tokens) + self.combine_time(group_tokens)) / balanced
        return t

    def parts(self, group_tokens: int, rank_tokens: int) -> dict[str, float]:
        """``MoELayer.parts`` with ``experts`` from the profile (every token of the group is on each GPU, as measured)."""
        out = super().parts(group_tokens, rank_tokens)
        out["experts"] = self.profiled_experts_time(group_tokens)
        return out


class ProfiledMoECostModel(MoERooflineCostModel):
    """``MoERooflineCostModel`` with the routed experts read from a MoE profile bundle.

    Args: those of ``MoERooflineCostModel``, plus
        bundle: the folder holding ``moe_profile.json`` and ``moe.csv``.

    Raises:
        ScenarioError: the folder holds no MoE operators, or none at the replica's expert split
            (one line naming ``moe_experts``).
    """

    def __init__(self, bundle: str | Path, model, gpu, tensor_parallel_size, pipeline_parallel_size, params, dtype_bytes=2, quantization="none",
                 source="<scenario>", data_parallel_size=1, expert_parallel=False, routing: MoERoutingConfig | None = None) -> None:
        super().__init__(model, gpu, tensor_parallel_size, pipeline_parallel_size, params, dtype_bytes, quantization, source,
                         data_parallel_size, expert_parallel, routing)
        assert model.moe is not None
        moe, par = model.moe, self.par
        width = moe.expert_intermediate_size // par.expert_tensor_parallel_size
        tokens, seconds, manifest = read_moe_table(Path(bundle), model.name, model.hidden_size, moe.num_experts, moe.num_experts_per_token, width,
                                                   par.expert_parallel_size, par.expert_tensor_parallel_size, quantization, source)
        self.bundle, self.manifest = Path(bundle), manifest
        router = read_router_table(Path(bundle), model.hidden_size, moe.num_experts)
        self.moe_layer = ProfiledMoELayer(self, model, par, routing or MoERoutingConfig(), tokens, seconds, router)
        self._parts_cache.clear()
        self._token_time_cache.clear()
        self.mla_module = self._mla_module(quantization)
        self.dense_attention = self._dense_attention(gpu, params, dtype_bytes, quantization, source)
        self.dense_gemms = {key: Table1D(ms, secs, lambda m, k=key[1], n=key[2]: RooflineCostModel.gemm_time(self, int(round(m)), k, n))
                            for key, (ms, secs) in read_dense_gemms(self.bundle).items() if key[0] == "bfloat16"}
        self._sample_time_cache.clear()
        self._parts_cache.clear()
        self._token_time_cache.clear()
        self.sources = {"experts": f"measured: {manifest.get('provenance', {}).get('source', str(bundle))} moe_experts",
                        "router": "measured: router_gemm" if router is not None else "roofline",
                        "dense_gemms": f"measured: {DENSE_GEMM_FILE} ({len(self.dense_gemms)} shapes)" if self.dense_gemms else "roofline",
                        "attention": "measured: mla_module (projections, attention, o_proj)" if self.mla_module is not None
                        else f"measured: {DENSE_FOLDER}/ attention tables" if self.dense_attention is not None else "roofline",
                        "all_reduce": "roofline", "all_to_all": "roofline"}

    def _dense_attention(self, gpu, params, dtype_bytes: int, quantization: str, source: str) -> ProfiledCostModel | None:
        """The fitted dense profile of a grouped-query model's attention (``dense/`` in the bundle), or None (MLA, none, or not at this TP / dtype)."""
        folder = self.bundle / DENSE_FOLDER
        if self.latent is not None or not (folder / "runtime_model.json").is_file():
            return None
        try:
            return ProfiledCostModel(folder, dataclasses.replace(self.model, moe=None), gpu, self.tp, 1, params, dtype_bytes, quantization, 1, source)
        except ScenarioError:
            return None

    def _mla_module(self, quantization: str) -> MLAModuleTables | None:
        """The measured MLA module of this GPU's heads (``profiled_mla.py``), or None (no MLA, no ``mla.csv`` rows, a sliding window)."""
        if self.latent is None or self.sliding_layers:
            return None
        rows = read_mla_rows(self.bundle, self.latent.heads, "fp8" if quantization == "fp8" else "bfloat16")
        try:
            return MLAModuleTables(self.latent, rows)
        except ValueError:
            return None

    # Dense linear layers (attention projections, shared experts, dense MLP, lm_head) read the
    # system's measured bf16 GEMM table at their (k, n) where the bundle has it, through
    # gemm_time: every linear without quantization and lm_head (bf16 in the FP8 checkpoints too).
    # FP8 linears and shapes the table lacks stay the roofline's
    # (``profiler/imports/aiconfigurator_dense_gemm.py`` says why the FP8 rows are not used).
    def gemm_time(self, m: int, k: int, n: int) -> float:
        table = getattr(self, "dense_gemms", {}).get(("bfloat16", k, n))
        return table(m) if table is not None and m > 0 else super().gemm_time(m, k, n)

    # With a measured MLA module, the module's rows time the projections, norms, rotary, cache
    # write and attention of each layer together: the token-wise side keeps only the input
    # add + RMSNorm and the all-reduce, and prefill / decode attention carry the module.
    def _attention_side(self, t: int) -> dict[str, float]:
        if getattr(self, "mla_module", None) is None:
            return super()._attention_side(t)
        h, b = self.model.hidden_size, self.dtype_bytes
        return {"attention_projections": 0.0, "elementwise": self.elementwise_time(4 * t * h * b), "all_reduce": self.all_reduce_time(t * h * b)}

    # A grouped-query model's attention reads the fitted dense profile's prefill and decode
    # tables (its own chunk and prefix handling, ``profiled.py``); sliding-window layers stay the roofline's.
    def _prefill_layer(self, new: list[int], prefix: list[int], window: int | None = None) -> float:
        if window is None and getattr(self, "mla_module", None) is not None:
            return self.mla_module.prefill_time(new, prefix)
        if window is None and getattr(self, "dense_attention", None) is not None:
            return self.dense_attention.attention_prefill_time(new, prefix)
        return super()._prefill_layer(new, prefix, window)

    def _decode_layer(self, requests: int, context: float) -> float:
        if getattr(self, "mla_module", None) is not None:
            return self.mla_module.decode_time(requests, context)
        if getattr(self, "dense_attention", None) is not None and not self.sliding_layers:
            return self.dense_attention.attention_decode_time(requests, int(round(context)))
        return super()._decode_layer(requests, context)
