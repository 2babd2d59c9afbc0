"""Profiled cost model: every operator of a step priced from a measured profile bundle.

The bundle (``servesim profile`` then ``servesim fit``) holds, per operator and TP degree,
prediction tables of the fitted runtime models over the measured range (``runtime_model.json``
and ``runtime_model.npz``; see ``profiler/fit.py``). A step is priced exactly as the roofline
model prices it (``roofline.py``: same operators, same counts per layer), each operator read from
its table instead of the datasheet:

    per layer: qkv_proj, o_proj, gate_up_proj, down_proj (their W8A8 / W4A16 / FP8 tables under
    ``model.quantization``, plus quantize_activations for W8A8 and FP8), 2 x add_rmsnorm, rotary,
    kv_cache_write, silu_mul, 2 x all_reduce, attention_prefill, attention_decode;
    per step: embedding (+ all_reduce), rmsnorm, lm_head, logits gather, sampling, cpu_overhead.

Other dense families run the roofline's operators for them (``RooflineCostModel.linear_shapes``
and ``layer_elementwise``), each read from its own table: OPT up_proj, relu, 2 x add_layernorm,
position_embedding and the final layernorm in place of gate_up_proj, silu_mul, add_rmsnorm,
rotary and rmsnorm; Qwen3 adds qk_norm. OPT's project_in / project_out (only where its embedding
is narrower than h) are not profiled and cost the roofline's GEMM time. Sliding-window layers
read the decode table at the batch's mean windowed context (``windowed_decode_context``) and
price prefill as the table's full-causal time scaled by the roofline's windowed / full ratio.

Outside the measured range an operator costs its roofline time scaled by the efficiency measured
at the nearest edge of the range, ``t(x) = t(edge) * roofline(x) / roofline(edge)`` (DESIGN.md:
"never by letting a tree model run flat"). When the bundle could not measure the all-reduce (one GPU,
the CPU, or a source without collectives) it is the roofline's: the scenario GPU's measured
all-reduce fits where calibrated, else the ring formula over its link; pipeline-stage sends and
the TP gather of logits, which the profiler does not measure, are the roofline's link model.
Operators an imported bundle declares ``fused`` into another (``profile.json``) cost nothing.

Prefill attention of several chunks is the sum of each chunk's table time minus
``prefill_saving_s`` per extra chunk (what launching chunks together saved in the measurements).
Decode attention is read at the batch's mean context (``decode_context_tokens / requests``).

The bundle's device need not be ``hardware.gpu``: the times are the bundle's; ``hardware.gpu``
still sets memory (KV blocks) and the roofline that shapes extrapolation and link costs. The
bundle's model must have the scenario model's layer dimensions (the layer count may differ:
tables are per layer), and the scenario's TP degree must be profiled.

Loading reads the tables once and precomputes the token-count parts for every token count up to
``max_num_batched_tokens``; pricing a step is then list lookups plus O(prefill chunks) for
prefill attention, as in the roofline model. If the bundle has no up-to-date runtime model, it is
fitted on first use and cached in the bundle (``profiler.fit``; needs scikit-learn, never torch).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from simulator.engine.batch import Batch
from simulator.cost_models.roofline import RooflineCostModel, windowed_decode_context
from simulator.cost_models.tables import LinkModel, Table1D, Table2D
from simulator.errors import ScenarioError
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUSpec
from simulator.specs.model import ModelSpec

FIELD = "hardware.profile"
_MODEL_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size")
LINEAR_OPERATORS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def _read_runtime_model(root: Path, check_fingerprint: bool) -> tuple[dict, dict[str, np.ndarray]] | None:
    """The bundle's cached fit, or None when it is missing, stale or unreadable."""
    from profiler.bundle import fingerprint  # cheap: no scikit-learn, no torch

    try:
        with open(root / "runtime_model.json") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("format") != 1 or (check_fingerprint and meta.get("fingerprint") != fingerprint(root)):
            return None
        with np.load(root / "runtime_model.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):  # JSON and decoding errors are ValueErrors
        return None
    return meta, arrays


def _load_runtime_model(root: Path, source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """runtime_model.json and its tables, fitting the bundle first when they are missing, stale or broken.

    The runtime model is a cache of the fit of the bundle's measurements (keyed by their
    fingerprint), so a broken one (corrupt JSON, a truncated .npz) is refitted from the
    measurements and rewritten, as ``servesim fit`` would, the same as a stale one.

    Raises:
        ScenarioError: the refit cannot be written into the bundle, or what it wrote cannot be
            read back (both name the bundle and ``servesim fit``); or the fit's own errors.
    """
    cached = _read_runtime_model(root, check_fingerprint=True)
    if cached is not None:
        return cached
    from profiler.fit import fit_bundle  # scikit-learn: only when a fit is needed

    try:
        fit_bundle(root, html=False)
    except OSError as e:
        raise ScenarioError(source, FIELD, str(root), f"has no up-to-date runtime model and it cannot be written there ({e.strerror})", f"run `servesim fit {root}` where the bundle is writable") from None
    cached = _read_runtime_model(root, check_fingerprint=False)
    if cached is None:
        raise ScenarioError(source, FIELD, str(root), "its runtime model (runtime_model.json, runtime_model.npz) was refitted but cannot be read back", f"check the disk, then run `servesim fit {root}`")
    return cached


class ProfiledCostModel:
    """Measured prices for one replica (TP x PP GPUs), from a profile bundle.

    Args:
        bundle: the profile bundle folder.
        model, gpu, tensor_parallel_size, pipeline_parallel_size, params, dtype_bytes,
            quantization: as ``RooflineCostModel`` (the roofline shapes extrapolation and link costs).
        max_num_batched_tokens: precompute token-count parts up to this many tokens per step.
        source: the scenario file, for error messages.

    Raises:
        ScenarioError: the bundle is missing, is not a bundle, was profiled for another model,
            lacks the TP degree, the quantization or an operator, or cannot be fitted.
    """

    def __init__(
        self,
        bundle: str | Path,
        model: ModelSpec,
        gpu: GPUSpec,
        tensor_parallel_size: int,
        pipeline_parallel_size: int,
        params: RooflineConfig,
        dtype_bytes: int = 2,
        quantization: str = "none",
        max_num_batched_tokens: int = 8192,
        source: str = "<scenario>",
    ) -> None:
        root = Path(bundle)
        self.bundle, self.model, self.tp, self.pp, self.params = root, model, tensor_parallel_size, pipeline_parallel_size, params
        self.quantization = quantization
        self.layers = model.num_layers
        self.roofline = roof = RooflineCostModel(model, gpu, tensor_parallel_size, pipeline_parallel_size, params, dtype_bytes, quantization, source)
        manifest = self._check_bundle(root, source)
        meta, arrays = _load_runtime_model(root, source)
        self.device_name = str(meta.get("device", {}).get("name"))
        self.dtype = meta["dtype"]
        self.prefill_saving_s = float(meta.get("prefill_saving_s", {}).get(str(self.tp), 0.0))
        tp, b = self.tp, dtype_bytes
        h, vocab = model.hidden_size, model.vocab_size

        def table(operator: str, dtype: str, width: int | None = None) -> str:
            name = f"{operator}|{dtype}|tp{tp}" + (f"|w{width}" if width is not None else "")
            if name + "/values" not in arrays:
                fix = f"rerun `servesim profile --model ... --tp {tp} --out {root}` to finish the bundle (it resumes), then `servesim fit {root}`"
                if dtype in ("w8a8", "w4a16", "fp8"):
                    fix = f"profile the quantized GEMMs: `servesim profile ... --quantization {dtype} --out {root}`"
                raise ScenarioError(source, FIELD, str(root), f"has no measurements of {operator} ({dtype}) at TP {tp}", fix)
            return name

        def one_d(name: str, roof_fn: Callable[[float], float]) -> Table1D:
            return Table1D(arrays[name + "/axis0"], arrays[name + "/values"], roof_fn)

        linear_dtype = self.dtype if quantization == "none" else quantization
        gemm_roof = roof.gemm_time if quantization == "none" else roof.linear_time
        shapes = roof.linear_shapes()  # the family's linear layers: {name: (k, n)}
        # (name, count per layer, Table1D over tokens); order follows roofline.layer_token_time.
        self.layer_operators: list[tuple[str, int, Table1D | LinkModel]] = []
        for op, (k, n) in shapes.items():
            self.layer_operators.append((op, 1, one_d(table(op, linear_dtype), lambda m, k=k, n=n: gemm_roof(m, k, n))))
            if quantization in ("w8a8", "fp8"):
                self.layer_operators.append((f"quantize_activations:{op}", 1, one_d(table("quantize_activations", quantization, k), lambda m, k=k: roof.elementwise_time(m * k * (b + 1)))))
        e = roof.elementwise_time
        # Operators an imported bundle's source timed inside another (vLLM's attention layer
        # writes the KV cache itself) cost nothing on their own.
        self.fused: dict[str, str] = dict(manifest.get("fused") or {})
        elementwise = roof.layer_elementwise()  # the family's memory-bound operators, as the roofline prices them
        self.layer_operators += [(op, count, one_d(table(op, self.dtype), roof_fn)) for op, count, roof_fn in elementwise if op not in self.fused]
        self.all_reduce_measured = tp > 1 and f"all_reduce|{self.dtype}|tp{tp}/values" in arrays
        if self.all_reduce_measured:
            self.all_reduce = one_d(f"all_reduce|{self.dtype}|tp{tp}", lambda m: roof.all_reduce_time(m * h * b))
        else:  # the ring formula over the scenario GPU's link (0 without TP)
            self.all_reduce = LinkModel(lambda m: roof.all_reduce_time(m * h * b))
        if tp > 1:
            self.layer_operators.append(("all_reduce", 2, self.all_reduce))
        width = model.embedding_dim
        self.embedding = one_d(table("embedding", self.dtype), lambda m: e(2 * m * width * b))
        # OPT: learned positions (a measured table); project_in / project_out where the embedding is narrower (the roofline).
        self.position_embedding = one_d(table("position_embedding", self.dtype), lambda m: e(2 * m * h * b) + e(3 * m * h * b)) if model.position_kind == "learned" else None
        self.project_in: Callable[[float], float] | None = (lambda m: roof.gemm_time(m, width, h)) if model.word_embed_proj_dim else None
        self.project_out: Callable[[float], float] | None = (lambda s: roof.gemm_time(s, h, width)) if model.word_embed_proj_dim else None
        self.final_norm = one_d(table("rmsnorm" if model.norm_kind == "rmsnorm" else "layernorm", self.dtype), lambda s: e(2 * s * h * b))
        self.lm_head = one_d(table("lm_head", self.dtype), lambda s: roof.gemm_time(s, width, math.ceil(vocab / tp)))
        self.sampling = one_d(table("sampling", self.dtype), lambda s: e(3 * s * vocab * 4))
        self.cpu_overhead = one_d(table("cpu_overhead", "none"), lambda n: params.cpu_overhead_s + params.cpu_overhead_per_request_s * n)
        name = table("attention_decode", self.dtype)
        self.decode = Table2D(arrays[name + "/axis0"], arrays[name + "/axis1"], arrays[name + "/values"],
                              lambda bsz, ctx: roof.attention_decode_time(bsz, bsz * ctx))
        name = table("attention_prefill", self.dtype)
        self.prefill = Table2D(arrays[name + "/axis0"], arrays[name + "/axis1"], arrays[name + "/values"],
                               lambda n, c: roof.attention_prefill_time([n], [c]))

        # Token-count parts of every step size up to the budget, vectorized once.
        num = max(int(max_num_batched_tokens), 1)
        ms = np.arange(1, num + 1, dtype=np.float64)
        per_layer = sum(count * t.many(ms) for _, count, t in self.layer_operators)
        token = self.layers * per_layer + self.embedding.many(ms)
        if self.position_embedding is not None:
            token += self.position_embedding.many(ms)
        if self.project_in is not None:
            token += np.array([self.project_in(m) for m in ms])
        if tp > 1:
            token += self.all_reduce.many(ms)  # vocab-parallel embedding
        token += (self.pp - 1) * (ms * h * b / roof._link_bandwidth + gpu.link_latency_s)
        self._token_time = [0.0, *token.tolist()]
        self._sample_time_cache: dict[int, float] = {}
        self._cpu_time = [0.0, *self.cpu_overhead.many(np.arange(1, 1025, dtype=np.float64)).tolist()]
        self._prefill_cache: dict[tuple[int, int], float] = {}
        self.manifest = manifest

    def _check_bundle(self, root: Path, source: str) -> dict:
        """profile.json, after checking the bundle exists and matches the model and TP degree."""
        if not root.is_dir():
            raise ScenarioError(source, FIELD, str(root), "profile bundle folder not found", "give the --out folder of `servesim profile` (relative paths are relative to the scenario file)")
        path = root / "profile.json"
        if not path.is_file():
            raise ScenarioError(source, FIELD, str(root), "not a profile bundle (no profile.json)", "give a folder written by `servesim profile --out DIR`")
        try:
            with open(path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:  # unreadable, or not JSON (a torn or hand-edited file)
            raise ScenarioError(source, FIELD, str(root), f"has an unreadable profile.json ({type(e).__name__})", "restore it, or profile or import the bundle again") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict):
            raise ScenarioError(source, FIELD, str(root), "has a profile.json without its model section", "restore it, or profile or import the bundle again")
        profiled = manifest.get("model", {})
        for key in _MODEL_FIELDS:
            mine = getattr(self.model, key)
            if profiled.get(key) != mine:
                raise ScenarioError(source, FIELD, str(root), f"was profiled for {profiled.get('name')} ({key} {profiled.get(key)}), not {self.model.name} ({key} {mine})",
                                    f"profile this model: `servesim profile --model {self.model.name} --out DIR`, or use the matching model")
        tps = manifest.get("tensor_parallel_sizes", [])
        if self.tp not in tps:
            wanted = ",".join(map(str, sorted({*tps, self.tp})))
            raise ScenarioError(source, FIELD, str(root), f"has no measurements at TP {self.tp} (profiled: {', '.join(map(str, tps))})",
                                f"rerun `servesim profile --tp {wanted} --out {root}` (it resumes), or use a profiled TP degree")
        return manifest

    # -- operators (the roofline model's names) -----------------------------------------------
    def layer_operator_times(self, num_tokens: int) -> dict[str, float]:
        """One layer's time per operator for ``num_tokens`` tokens, attention excluded (s), counts applied."""
        return {name: count * t(num_tokens) for name, count, t in self.layer_operators}

    def layer_token_time(self, num_tokens: int) -> float:
        """One layer's time for ``num_tokens`` tokens, attention excluded (s)."""
        return sum(self.layer_operator_times(num_tokens).values())

    def attention_prefill_time(self, new_tokens: list[int], prefix_tokens: list[int]) -> float:
        """One layer's prefill attention over all prefill chunks of a step (s)."""
        total = 0.0
        cache = self._prefill_cache
        for n, c in zip(new_tokens, prefix_tokens):
            t = cache.get((n, c))
            if t is None:
                t = cache[n, c] = self.prefill(n, c)
            total += t
        if len(new_tokens) > 1:
            total -= (len(new_tokens) - 1) * self.prefill_saving_s
        return total

    def attention_decode_time(self, num_requests: int, context_tokens: int) -> float:
        """One layer's decode attention for ``num_requests`` requests holding ``context_tokens`` in all (s)."""
        return self.decode(num_requests, context_tokens / num_requests)

    def embedding_time(self, num_tokens: int) -> float:
        """The embedding before the first layer (s): the table's gather, OPT's positions and project_in."""
        t = self.embedding(num_tokens)
        if self.position_embedding is not None:
            t += self.position_embedding(num_tokens)
        if self.project_in is not None:
            t += self.project_in(num_tokens)
        return t

    def decode_attention_time(self, batch: Batch) -> float:
        """All layers' decode attention (s): the table at the mean context, windowed on sliding-window layers."""
        n, roof = batch.num_decode_tokens, self.roofline
        t = roof.full_layers * self.decode(n, batch.decode_context_tokens / n)
        if roof.sliding_layers:
            t += roof.sliding_layers * self.decode(n, windowed_decode_context(batch, roof.window) / n)
        return t

    def prefill_attention_time(self, batch: Batch) -> float:
        """All layers' prefill attention (s); sliding-window layers scaled by the roofline's windowed / full ratio."""
        new, prefix, roof = batch.prefill_new_tokens, batch.prefill_prefix_tokens, self.roofline
        full = self.attention_prefill_time(new, prefix)
        t = roof.full_layers * full
        if roof.sliding_layers:
            ratio = roof.attention_prefill_time(new, prefix, roof.window) / roof.attention_prefill_time(new, prefix)
            t += roof.sliding_layers * full * ratio
        return t

    # -- parts of a step ----------------------------------------------------------------------
    def token_time(self, num_tokens: int) -> float:
        """All layers' attention-free time plus embedding and stage sends (s)."""
        if num_tokens < len(self._token_time):
            return self._token_time[num_tokens]
        h, b = self.model.hidden_size, self.roofline.dtype_bytes
        t = self.layers * self.layer_token_time(num_tokens) + self.embedding_time(num_tokens)
        if self.tp > 1:
            t += self.all_reduce(num_tokens)
        return t + (self.pp - 1) * (num_tokens * h * b / self.roofline._link_bandwidth + self.roofline.gpu.link_latency_s)

    def sample_time(self, num_sampled: int) -> float:
        """Final norm, lm_head, logits gather and sampling for ``num_sampled`` requests (s), memoized."""
        t = self._sample_time_cache.get(num_sampled)
        if t is None:
            s, tp, roof = num_sampled, self.tp, self.roofline
            t = self.final_norm(s) + self.lm_head(s) + self.sampling(s)
            if self.project_out is not None:
                t += self.project_out(s)
            if tp > 1:  # gather the vocab shards of the logits (not profiled: the link model)
                t += (tp - 1) / tp * s * self.model.vocab_size * 4 / roof._link_bandwidth + roof.gpu.link_latency_s
            self._sample_time_cache[num_sampled] = t
        return t

    def cpu_time(self, num_requests: int) -> float:
        """Per-iteration host overhead with ``num_requests`` requests in the batch (s)."""
        if num_requests < len(self._cpu_time):
            return self._cpu_time[num_requests]
        return self.cpu_overhead(num_requests)

    def host_time(self, batch: Batch) -> float:
        """The host (CPU) part of ``step_time`` (s): the bundle's ``cpu_overhead`` for the batch's
        requests. A replica overlaps it with the GPU under vLLM's async scheduling."""
        return self.cpu_time(len(batch.requests))

    def step_breakdown(self, batch: Batch) -> dict[str, float]:
        """One iteration of ``batch`` by operator (s, summed over all layers); the values add up to ``step_time``.

        Keys are the catalogue's operator names (``qkv_proj`` ... ``attention_decode``,
        ``embedding``, ``rmsnorm`` (``layernorm``) for the final norm, ``lm_head``, ``sampling``,
        ``cpu_overhead``), plus ``all_reduce`` with TP and ``pipeline_sends`` with PP. For
        reading where a step's time goes, not for the hot loop (``step_time`` is the fast path).
        """
        n, tp, h, b = batch.num_tokens, self.tp, self.model.hidden_size, self.roofline.dtype_bytes
        out: dict[str, float] = {}
        if n:
            for name, count, t in self.layer_operators:
                out[name] = out.get(name, 0.0) + self.layers * count * t(n)
            out["embedding"] = self.embedding_time(n)
            if tp > 1:
                out["all_reduce"] = out.get("all_reduce", 0.0) + self.all_reduce(n)
            if self.pp > 1:
                out["pipeline_sends"] = (self.pp - 1) * (n * h * b / self.roofline._link_bandwidth + self.roofline.gpu.link_latency_s)
        if batch.num_prefill_tokens:
            out["attention_prefill"] = self.prefill_attention_time(batch)
        if batch.num_decode_tokens:
            out["attention_decode"] = self.decode_attention_time(batch)
        s = batch.num_sampled_tokens
        if s:
            norm = "rmsnorm" if self.model.norm_kind == "rmsnorm" else "layernorm"
            lm_head = self.lm_head(s) + (self.project_out(s) if self.project_out is not None else 0.0)
            out[norm], out["lm_head"], out["sampling"] = self.final_norm(s), lm_head, self.sampling(s)
            gather = self.sample_time(s) - (out[norm] + out["lm_head"] + out["sampling"])
            if gather:  # TP: the vocab shards of the logits (link model)
                out["all_reduce"] = out.get("all_reduce", 0.0) + gather
        out["cpu_overhead"] = self.cpu_time(len(batch.requests))
        return out

    def step_time(self, batch: Batch) -> float:
        """Seconds one iteration of ``batch`` takes on this replica."""
        t = self.token_time(batch.num_tokens)
        if batch.num_prefill_tokens:
            t += self.prefill_attention_time(batch)
        if batch.num_decode_tokens:
            t += self.decode_attention_time(batch)
        if batch.num_sampled_tokens:
            t += self.sample_time(batch.num_sampled_tokens)
        return t + self.cpu_time(len(batch.requests))
