"""Import LLMServingSim's layer-wise vLLM profiles of one model as a profile bundle.

LLMServingSim (github.com/casys-kaist/LLMServingSim, MIT; read at commit 5daddb2, folder
``profiler/perf/``) times each layer of a model inside vLLM (0.19.0 for the published profiles):
``profiler/core/hooks/extension.py`` runs a synthetic batch through vLLM's model runner (eager,
one decoder layer, dummy weights) under ``vllm.profiler.layerwise_profile`` and
``hooks/timings.py`` reads each module's CUDA time divided by its invocations, in microseconds.
A profile is ``<GPU>/<org>/<model>/<variant>/``: ``meta.yaml`` and one ``tp<N>/`` folder per TP
degree, each measured on one GPU with the sharded fields of the model config divided by N
(``profiler/core/engine.py``, ``fuse_engine_kwargs``; ``SHARD_FIELDS`` in ``config.py``:
intermediate size, attention and KV heads, vocabulary). So no collective is ever timed: servesim
prices the TP all-reduce with the scenario GPU's link model, as LLMServingSim does with ASTRA-Sim.

How LLMServingSim sums a step (``serving/core/trace_generator.py``, the sequence of
``profiler/models/<arch>.yaml``): ``embedding`` once; per decoder layer ``layernorm, qkv_proj,
[qk_norm,] rotary_emb, attention, o_proj, layernorm, gate_up_proj, act_fn, down_proj``; then
``final_layernorm``, ``lm_head``, ``sampler``. Token-level layers are read at the step's
scheduled tokens, ``lm_head`` and ``sampler`` at its number of requests, attention at
(sum of prefill chunks, sum of their cached prefixes, number of decodes, mean decode history),
each interpolated linearly between grid points. What maps onto the catalogue, at the model's TP
shard shapes:

- ``dense.csv`` (layer, tokens, time_us): ``qkv_proj``, ``o_proj``, ``gate_up_proj``,
  ``down_proj`` are GEMMs of m = tokens; ``act_fn`` (SiluAndMul) is ``silu_mul``; ``rotary_emb``
  is ``rotary`` (for Qwen3 plus ``qk_norm``, its per-head RMSNorm of Q and K, which the
  catalogue has no operator for: the two are summed so a layer's time is kept); ``layernorm``
  (the RMSNorm modules inside the decoder layer) is ``add_rmsnorm``, two per layer as
  LLMServingSim counts it: vLLM's layerwise profile merges the two same-named modules of a
  layer, so the row is the mean of the layer's two calls; ``embedding`` is ``embedding``;
  ``final_layernorm`` is ``rmsnorm``. LLMServingSim applies the final norm to every scheduled
  token (vLLM normalizes all hidden states) while servesim prices it at the sampled requests:
  the rows keep the measured token counts.
- ``per_sequence.csv`` (layer, sequences, time_us): ``lm_head`` is vLLM's LogitsProcessor, the
  lm_head GEMM over one row per request (m = sequences, n = vocab / TP); ``sampler`` is
  ``sampling`` (vLLM's Sampler, greedy: the profiler samples at temperature 0).
- ``attention.csv`` (prefill_chunk, kv_prefill, n_decode, kv_decode, time_us): vLLM's Attention
  module, which also writes the step's K and V into the paged cache
  (vllm/model_executor/layers/attention/attention.py, ``Attention.forward`` calls
  ``unified_kv_cache_update`` before ``unified_attention_with_output``), so ``kv_cache_write``
  is fused into attention. Rows without decodes are ``attention_prefill`` (one chunk of
  prefill_chunk new tokens after kv_prefill cached ones); rows without a prefill are
  ``attention_decode`` (n_decode requests of one new token after kv_decode cached ones: a
  context of kv_decode + 1, ``hooks/batch.py``, ``Shot.attention``). Mixed rows (one chunk and
  decodes in one launch) have no catalogue kind: servesim prices such a step as its prefill and
  its decodes apart; how far that sum is from the mixed measurement is a note in
  ``provenance.json``.
- ``moe.csv`` (MoE models) is not imported: servesim simulates dense MLPs only. ``skew.csv`` and
  ``skew_fit.csv`` (the cost of uneven decode contexts) are not imported: servesim reads decode
  attention at the batch's mean context, as LLMServingSim does before its skew correction.

The all-reduce and the per-step host overhead are not in the profiles (the bundle writer
leaves the first to the link model and assumes the second, ``bundle_writer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiler.catalogue import ATTENTION_DECODE, ATTENTION_PREFILL, GEMM, OPERATORS, check_tp, elementwise_width, gemm_shape, layer_dims
from profiler.imports.bundle_writer import ImportedBundle, Source
from profiler.imports.csv_tables import fail, numbers, read_csv
from profiler.sweeps import SweepConfig
from simulator.specs.gpu import GPUS, GPUSpec
from simulator.specs.model import ModelSpec

URL = "https://github.com/casys-kaist/LLMServingSim (profiler/perf/)"
IMPLEMENTATION = "vllm"
# meta.yaml ``hardware`` -> (servesim GPU spec, streaming multiprocessors). SM counts: NVIDIA Ada
# Lovelace architecture whitepaper (RTX 4090: 128 SMs); RTX PRO 6000 Blackwell Server Edition:
# 188 SMs (NVIDIA's product specifications; aiconfigurator-core counts the same).
HARDWARE = {"RTX4090": ("rtx-4090", 128), "RTXPRO6000": ("rtx-pro-6000-server", 188)}
# Model config fields the profiler divides by TP (profiler/core/config.py, SHARD_FIELDS) -> ModelSpec.
SHARDED_FIELDS = {"intermediate_size": "intermediate_size", "num_attention_heads": "num_attention_heads",
                  "num_key_value_heads": "num_kv_heads", "vocab_size": "vocab_size"}
# dense.csv layer -> catalogue operator.
TOKEN_LAYERS = {"qkv_proj": "qkv_proj", "o_proj": "o_proj", "gate_up_proj": "gate_up_proj", "down_proj": "down_proj",
                "act_fn": "silu_mul", "layernorm": "add_rmsnorm", "rotary_emb": "rotary", "embedding": "embedding",
                "final_layernorm": "rmsnorm"}
FOLDED = {"qk_norm": "rotary_emb"}  # a layer without a catalogue operator, summed into this one
SEQUENCE_LAYERS = {"lm_head": "lm_head", "sampler": "sampling"}
DENSE_COLUMNS = ("layer", "tokens", "time_us")
SEQUENCE_COLUMNS = ("layer", "sequences", "time_us")
ATTENTION_COLUMNS = ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us")


def read_meta(folder: Path, source: str = "--source", field: str = "") -> dict[str, Any]:
    """``meta.yaml`` of a profile folder.

    Raises:
        ScenarioError: the folder or its meta.yaml is missing, or meta.yaml is not a YAML mapping.
    """
    import yaml

    fix = "give the LLMServingSim profile folder that holds meta.yaml and tp1/, tp2/, ... (perf/<GPU>/<org>/<model>/<variant>)"
    if not folder.is_dir():
        fail(source, field, f"llmservingsim:{folder}", "profile folder not found", fix)
    path = folder / "meta.yaml"
    if not path.is_file():
        fail(path, "", ..., "file not found", fix)
    try:
        meta = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        fail(path, "", ..., f"not valid YAML ({type(e).__name__})", "restore the file from the LLMServingSim profile")
    if not isinstance(meta, dict):
        fail(path, "", ..., "not a YAML mapping", "restore the file from the LLMServingSim profile")
    return meta


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """One of the profile's CSVs with ``columns`` (all but ``layer`` numeric), rows in file order.

    Raises:
        ScenarioError: the file is missing, empty, not a CSV, lacks a column, or holds a
            non-number where a number belongs (the message names the file, column and row).
    """
    fix = "restore the file from the LLMServingSim profile (or re-run its profiler)"
    frame = read_csv(path, columns, fix)
    frame = frame[list(columns)].copy()
    for c in columns:
        if c == "layer":
            frame[c] = frame[c].astype(str)
            continue
        values = numbers(frame, c, path, fix)
        frame[c] = values
    return frame


def check_model(meta: dict[str, Any], meta_path: Path, model: ModelSpec) -> list[str]:
    """Check the sharded dimensions meta.yaml records against ``model``; returns notes on what could not be checked.

    The profiler writes the engine settings of the last TP degree it ran (``persist_meta`` in
    ``profiler/core/writer.py`` after the loop of ``runner.run_full``), so each
    ``engine_effective.hf_overrides`` field is the model's value divided by ``tp_degrees[-1]``.

    Raises:
        ScenarioError: a recorded field disagrees with ``model``, or the variant is not bf16.
    """
    variant = str(meta.get("variant", "bf16"))
    if variant != "bf16":
        fail(meta_path, "variant", variant, "servesim imports bf16 profiles only (FP8 weights or KV cache are other operators)",
              "give the bf16 folder of the profile")
    degrees = meta.get("tp_degrees") or [1]
    last = int(degrees[-1])
    overrides = (meta.get("engine_effective") or {}).get("hf_overrides") or {}
    notes = []
    for key, attr in SHARDED_FIELDS.items():
        if key not in overrides:
            notes.append(f"meta.yaml records no {key}: not checked against the model")
            continue
        recorded, mine = int(overrides[key]), getattr(model, attr)
        if recorded * last != mine:
            fail(meta_path, f"engine_effective.hf_overrides.{key}", recorded,
                  f"is {key} / TP {last} of a model with {key} {recorded * last}, not {model.name}'s {mine}",
                  f"import with the model this profile measured ({meta.get('model', '?')}): give its config.json")
    notes.append("meta.yaml does not record hidden_size or head_dim: they were taken from the model, not checked")
    return notes


def gpu_of(meta: dict[str, Any], meta_path: Path) -> tuple[GPUSpec, int | None]:
    """servesim's datasheet numbers and SM count of the profile's GPU (meta.yaml ``hardware``).

    Raises:
        ScenarioError: the GPU is not one servesim has datasheet numbers for.
    """
    hardware = str(meta.get("hardware", ""))
    if hardware not in HARDWARE:
        fail(meta_path, "hardware", hardware, "no servesim GPU spec is known for this GPU",
              f"import a profile of {', '.join(sorted(HARDWARE))}, or add the GPU to profiler/imports/llmservingsim.py HARDWARE")
    name, sms = HARDWARE[hardware]
    if name not in GPUS:
        fail(meta_path, "hardware", hardware, f"servesim has no datasheet numbers named {name!r} (simulator/specs/gpu.py)",
              f"add {name!r} to simulator/specs/gpu.py GPUS")
    return GPUS[name], sms


def mixed_gaps(attention: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(prefill alone + decodes alone) / mixed - 1 for every mixed row whose two parts were measured (fractions), and its n_decode."""
    pure_p = attention[(attention["n_decode"] == 0) & (attention["prefill_chunk"] > 0)].groupby(["prefill_chunk", "kv_prefill"])["time_us"].first()
    pure_d = attention[(attention["prefill_chunk"] == 0) & (attention["n_decode"] > 0)].groupby(["n_decode", "kv_decode"])["time_us"].first()
    mixed = attention[(attention["prefill_chunk"] > 0) & (attention["n_decode"] > 0)]
    p = pure_p.reindex(pd.MultiIndex.from_frame(mixed[["prefill_chunk", "kv_prefill"]])).to_numpy(np.float64)
    d = pure_d.reindex(pd.MultiIndex.from_frame(mixed[["n_decode", "kv_decode"]])).to_numpy(np.float64)
    gap = (p + d) / mixed["time_us"].to_numpy(np.float64) - 1.0
    ok = np.isfinite(gap)
    return gap[ok], mixed["n_decode"].to_numpy(np.int64)[ok]


def _token_rows(b: ImportedBundle, dense: pd.DataFrame, tp: int, first_tp: int, qwen_norm: bool) -> set[str]:
    """Add dense.csv's layers at ``tp``; returns the layers left out."""
    d = layer_dims(b.model, tp)
    dense = dense.drop_duplicates(subset=["layer", "tokens"], keep="first")
    by_layer = {layer: rows.set_index("tokens")["time_us"] for layer, rows in dense.groupby("layer")}
    for extra, into in FOLDED.items():
        if extra in by_layer and into in by_layer:
            both = by_layer[into].index.intersection(by_layer[extra].index)
            by_layer[into] = by_layer[into].loc[both] + by_layer[extra].loc[both]
    for layer, series in by_layer.items():
        op = TOKEN_LAYERS.get(layer)
        if op is None or (not OPERATORS[op].tp_dependent and tp != first_tp):
            continue
        impl = "vllm_rotary_qk_norm" if layer == "rotary_emb" and qwen_norm else IMPLEMENTATION
        kind = OPERATORS[op].kind
        for tokens, t_us in series.items():
            m = int(tokens)
            shape = (m, *gemm_shape(op, d)) if kind == GEMM else (m, elementwise_width(op, d))
            b.add(kind, op, impl, tp, shape, float(t_us) * 1e-6, num_samples=b.source.details["measurement_iterations"])
    return set(by_layer) - set(TOKEN_LAYERS) - set(FOLDED)


def import_llmservingsim(folder: Path, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source",
                         field: str = "", sweep: SweepConfig | None = None) -> ImportedBundle:
    """Build the bundle of ``llmservingsim:<folder>`` for ``model`` at TP degrees ``tps`` in ``out`` (not yet written).

    Args:
        folder: the profile folder holding ``meta.yaml`` and ``tp<N>/`` (module docstring).
        model: the architecture the profile measured (its sharded fields are checked).
        tps: TP degrees to import; each needs its ``tp<N>/`` folder.
        out: the bundle folder the caller writes.
        source, field: where the source string came from, for error messages.
        sweep: unused (the profile's own grids set the shapes); accepted like every importer.

    Returns:
        the bundle with every measured row (seconds per layer on one GPU), not yet filled.

    Raises:
        ScenarioError: the folder, meta.yaml, a ``tp<N>/`` folder or a CSV is missing, empty or
            corrupt; a column is missing; meta.yaml disagrees with ``model``; the GPU or TP
            degree is unknown.
    """
    folder = Path(folder)
    meta = read_meta(folder, source, field)
    meta_path = folder / "meta.yaml"
    notes = check_model(meta, meta_path, model)
    gpu, sms = gpu_of(meta, meta_path)
    tps = tuple(sorted(tps))
    have = sorted(p.name for p in folder.glob("tp*") if p.is_dir())
    for tp in tps:
        if (why := check_tp(model, tp)) is not None:
            fail(source, field, tp, f"TP {tp} {why} of {model.name}", "import TP degrees the model can be sharded over")
        if not (folder / f"tp{tp}").is_dir():
            fail(folder / f"tp{tp}", "", ..., f"TP {tp} was not profiled (folders: {', '.join(have) or 'none'})", "import profiled TP degrees only (--tp)")
    engine = meta.get("engine_effective") or {}
    block_size = int(engine.get("block_size", 16))
    arch = str(meta.get("architecture", ""))
    details: dict[str, Any] = {k: meta.get(k) for k in ("profiler_version", "vllm_version", "cuda_version", "hardware", "model", "variant", "architecture")}
    details.update(measured_at=str(meta.get("profiled_at", "")), measurement_iterations=int(meta.get("measurement_iterations", 1)),
                   block_size=block_size, files=["meta.yaml"])
    src = Source(spec=f"llmservingsim:{folder}", kind="llmservingsim", device_name=str(meta.get("gpu", meta.get("hardware", ""))),
                 licence="MIT", url=URL, details=details)
    b = ImportedBundle(out, model, tps, src, gpu, "bfloat16", sms)
    b.fused["kv_cache_write"] = "attention"
    floor = np.inf
    left_out: set[str] = set()
    for tp in tps:
        tp_dir = folder / f"tp{tp}"
        d = layer_dims(model, tp)
        dense = read_table(tp_dir / "dense.csv", DENSE_COLUMNS)
        per_seq = read_table(tp_dir / "per_sequence.csv", SEQUENCE_COLUMNS)
        attention = read_table(tp_dir / "attention.csv", ATTENTION_COLUMNS)
        details["files"] += [f"tp{tp}/dense.csv", f"tp{tp}/per_sequence.csv", f"tp{tp}/attention.csv"]
        times = pd.concat([dense["time_us"], per_seq["time_us"], attention["time_us"]])
        if (times > 0).any():
            floor = min(floor, float(times[times > 0].min()))
        left_out |= _token_rows(b, dense, tp, tps[0], "qk_norm" in set(dense["layer"]))
        for layer, rows in per_seq.drop_duplicates(subset=["layer", "sequences"], keep="first").groupby("layer"):
            op = SEQUENCE_LAYERS.get(str(layer))
            if op is None:
                left_out.add(str(layer))
                continue
            if not OPERATORS[op].tp_dependent and tp != tps[0]:
                continue
            for s, t_us in zip(rows["sequences"].astype(int), rows["time_us"]):
                shape = (s, *gemm_shape(op, d)) if op == "lm_head" else (s, elementwise_width(op, d))
                b.add(OPERATORS[op].kind, op, IMPLEMENTATION, tp, shape, float(t_us) * 1e-6, num_samples=details["measurement_iterations"])
        attention = attention.drop_duplicates(subset=list(ATTENTION_COLUMNS[:4]), keep="first")
        heads = (d.q_heads, d.kv_heads, d.head_dim, block_size)
        for r in attention[(attention["n_decode"] == 0) & (attention["prefill_chunk"] > 0)].itertuples():
            b.add(ATTENTION_PREFILL, "attention_prefill", IMPLEMENTATION, tp, (1, int(r.prefill_chunk), int(r.kv_prefill), *heads),
                  r.time_us * 1e-6, num_samples=details["measurement_iterations"])
        for r in attention[(attention["prefill_chunk"] == 0) & (attention["n_decode"] > 0)].itertuples():
            b.add(ATTENTION_DECODE, "attention_decode", IMPLEMENTATION, tp, (int(r.n_decode), int(r.kv_decode) + 1, *heads),
                  r.time_us * 1e-6, num_samples=details["measurement_iterations"])
        gaps, n_dec = mixed_gaps(attention)
        if len(gaps):
            p10, p50, p90 = (100 * float(np.percentile(gaps, q)) for q in (10, 50, 90))
            lo, hi = (100 * float(np.median(gaps[n_dec == n])) for n in (n_dec.min(), n_dec.max()))
            b.note(f"TP {tp}: {len(gaps)} mixed attention rows (one prefill chunk and decodes in one launch) are not imported: "
                   f"servesim prices such a step as its prefill and its decodes apart, and that sum differs from the mixed "
                   f"measurement by {p50:+.1f} % at the median (P10 {p10:+.1f} %, P90 {p90:+.1f} %; {lo:+.1f} % with "
                   f"{int(n_dec.min())} decode, {hi:+.1f} % with {int(n_dec.max())}): a negative gap is a mixed step servesim under-prices")
        if (tp_dir / "moe.csv").is_file():
            b.note(f"TP {tp}: moe.csv (the MoE block by tokens and activated experts) is not imported: servesim simulates dense "
                       "MLPs only, so gate_up_proj, down_proj and silu_mul are filled at the config's dense intermediate size")
    b.kernel_floor_s = float(floor) * 1e-6 if np.isfinite(floor) else None
    for note in notes:
        b.note(note)
    b.note("attention is vLLM's Attention layer, which writes the step's K and V into the paged KV cache itself: kv_cache_write is fused into it")
    b.note("add_rmsnorm is the mean of a decoder layer's two RMSNorm calls (vLLM's layerwise profile merges the two same-named modules); "
           "two per layer, as LLMServingSim counts it")
    b.note("rmsnorm (final_layernorm) rows are at the step's token counts (LLMServingSim normalizes every token); servesim reads them at the sampled requests")
    b.note("TP > 1 folders were measured on one GPU at the TP shard shapes: no all-reduce or logits gather is timed (the link model prices them)")
    b.note("skew.csv and skew_fit.csv (uneven decode contexts) are not imported: decode attention is read at the batch's mean context")
    if "qk_norm" in set(dense["layer"]):
        b.note("qk_norm (Qwen3's per-head RMSNorm of Q and K) has no catalogue operator: it is summed into rotary at every token count")
    if left_out:
        b.note(f"layers without a catalogue operator, not imported: {', '.join(sorted(left_out))}")
    if arch.endswith("_moe"):
        b.note(f"architecture {arch} is a mixture of experts: only its attention, projections and norms are measured here")
    return b
