"""MoE profile bundles from aiconfigurator-core's measured vLLM fused-MoE tables.

``moe/<framework>/<version>/moe_perf.parquet`` of a system holds, per (moe_dtype, hidden_size,
inter_size, num_experts, topk, moe_tp_size, moe_ep_size, distribution), the latency of vLLM's
``fused_experts`` alone in a CUDA graph on one GPU over a sweep of ``num_tokens`` (aiconfigurator
``collector/vllm/collect_moe.py``): token alignment, grouped gate/up GEMM, SiLU * mul, grouped
down GEMM and the sum of each token's k outputs, every token on that GPU. That is the catalogue's
``moe_experts`` (``profiler/catalogue_moe.py``). Rows kept: ``distribution == balanced``,
``moe_dtype`` bfloat16 or fp8_block (``MOE_DTYPES``), the model's (h, w, E, k) and, per TP degree
T, both expert splits vLLM runs: the 1 / T slice of every expert (its default) and whole experts
over T GPUs (``enable_expert_parallel``); vLLM's Triton fused-MoE kernel where the table has it
(FlashInfer's are opt-in), else the kernel with the most rows.

For a latent-attention model (DeepSeek-V3) the MLA module tables are imported too, into ``mla.csv``
(``_write_mla``), which prices the attention module (``simulator/cost_models/profiled_mla.py``). The bundle is two files beside any dense tables: ``moe.csv`` (one tidy row per measurement,
``MOE_COLUMNS``) and ``moe_profile.json`` (format, model dimensions, operators held per TP
degree, provenance: package, version, system, framework version, table file, kernel).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from profiler.catalogue_moe import MOE, MOE_SHAPE_COLUMNS, expert_counts, expert_shape, router_counts
from profiler.imports.aiconfigurator_dense_gemm import DENSE_FOLDER, DENSE_GEMM_TABLE, write_dense_attention, write_dense_gemms
from profiler.imports.aiconfigurator import EXTRA, PACKAGE, URL, _closest_version, gemm_times, package_root, package_version, parse, system_spec
from simulator.errors import ScenarioError
from simulator.specs.model import ModelSpec

MOE_COLUMNS = ("operator", "implementation", "dtype", "tp", *MOE_SHAPE_COLUMNS, "flops", "nbytes", "median_s", "origin")
MOE_FORMAT = 5
# moe_perf moe_dtype -> the bundle's dtype: bf16 weights and activations (quantization none); e4m3
# weights in 128 x 128 blocks with per-token-group activations (the FP8 checkpoints of DeepSeek-V3
# and Qwen3, servesim quantization fp8).
MOE_DTYPES = {"bfloat16": "bfloat16", "fp8_block": "fp8"}
MOE_MODEL_FIELDS = ("hidden_size", "num_experts", "num_experts_per_token", "expert_intermediate_size")


def model_fields(model: ModelSpec) -> dict[str, int]:
    """The dimensions a MoE bundle is valid for (hidden size, experts, top-k, expert width)."""
    assert model.moe is not None
    m = model.moe
    return {"hidden_size": model.hidden_size, "num_experts": m.num_experts, "num_experts_per_token": m.num_experts_per_token,
            "expert_intermediate_size": m.expert_intermediate_size}


def select_rows(table, model: ModelSpec, tp: int, ep: int = 1, moe_dtype: str = "bfloat16"):
    """The balanced ``moe_dtype`` rows of ``table`` (a moe_perf DataFrame) at ``model``'s expert shape, one kernel, by tokens.

    ``ep`` > 1: whole experts over ``ep`` GPUs (``tp`` is then ignored); else every expert's
    slice over ``tp`` GPUs.
    """
    shape = expert_shape(model, tp, ep)
    d = table[(table["distribution"] == "balanced") & (table["moe_dtype"] == moe_dtype) & (table["hidden_size"] == shape.hidden)
              & (table["inter_size"] == model.moe.expert_intermediate_size) & (table["num_experts"] == shape.num_experts)
              & (table["topk"] == shape.top_k) & (table["moe_tp_size"] == shape.moe_tp) & (table["moe_ep_size"] == shape.ep)]
    if d.empty:
        return d
    counts = d.groupby("kernel_source").size()
    triton = [k for k in counts.index if "triton" in str(k)]
    kernel = max(triton or list(counts.index), key=lambda k: counts[k])
    return d[d["kernel_source"] == kernel].sort_values("num_tokens").drop_duplicates("num_tokens")


MLA_TABLE = "mla.csv"
# mla module gemm_type -> the bundle's dtype (servesim quantization none, fp8)
MLA_DTYPES = {"bfloat16": "bfloat16", "fp8_block": "fp8"}
MLA_COLUMNS = ("operator", "implementation", "dtype", "tp", "num_seqs", "new_tokens", "context_tokens", "num_heads", "median_s", "origin")


def _write_mla(folder: Path, version: str, model: ModelSpec, tps: list[int], out: Path) -> list[str]:
    """Write ``mla.csv``: the whole latent-attention module's measured times at each heads-per-GPU of the model; the tables read.

    Rows: ``mla_module_prefill`` (batch_size prompts of isl tokens, no prefix) and
    ``mla_module_decode`` (batch_size decodes over isl + step tokens each) from
    ``mla_context_module_perf`` / ``mla_generation_module_perf`` (aiconfigurator
    ``collector/vllm/collect_mla_module.py``), bf16 KV cache, per GEMM dtype (``MLA_DTYPES``:
    bf16, block FP8). The collector recorded the prefill rows of isl <= 512 under vLLM's
    FLASH_ATTN_MLA backend and longer ones under FLASH_ATTN (they do not overlap): both are
    kept, one kernel per (batch, isl), the kernel with more rows first. What one row times is
    documented in ``simulator/cost_models/profiled_mla.py``, which prices the module from them.
    """
    import pandas as pd

    rows, files = [], []
    for phase, operator in (("context", "mla_module_prefill"), ("generation", "mla_module_decode")):
        path = _closest_version(folder, version, f"mla_{phase}_module_perf.parquet")
        if path is None:
            continue
        table = pd.read_parquet(path)
        for gemm_type, dtype in MLA_DTYPES.items():
            d = table[(table["gemm_type"] == gemm_type) & (table["kv_cache_dtype"] == "bfloat16") & (table["tp_size"] == 1)]
            if d.empty:
                continue
            order = list(d["kernel_source"].value_counts().index)
            d = d.assign(rank=d["kernel_source"].map(order.index)).sort_values("rank").drop_duplicates(["num_heads", "batch_size", "isl", "step"])
            if str(path) not in files:
                files.append(str(path))
            # Every attention TP degree (heads per GPU), not only the MoE group's: with data-parallel
            # attention a GPU holds all the heads while the experts spread over the group.
            for heads in sorted(set(d["num_heads"]), reverse=True):
                tp = model.num_attention_heads // int(heads)
                if tp * int(heads) != model.num_attention_heads:
                    continue
                for r in d[d["num_heads"] == heads].itertuples():
                    new, context = (int(r.isl), int(r.isl)) if phase == "context" else (1, int(r.isl + r.step))
                    rows.append((operator, str(r.kernel_source), dtype, tp, int(r.batch_size), new, context, heads, float(r.latency) * 1e-3, "measured"))
    if rows:
        with open(out / MLA_TABLE, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(MLA_COLUMNS)
            w.writerows(rows)
    return files


def _router_rows(path: Path, root: Path, system: str, model: ModelSpec, tps: list[int]) -> list[tuple]:
    """``router_gemm`` rows ([m, h] x [h, E], bf16) from the system's GEMM table, as the dense importer maps GEMMs.

    The table's widths rarely include E (8 to 256), so times are read at the measured efficiency of
    the nearest measured (n, k) and scaled by the roofline (``aiconfigurator.gemm_times``;
    ``origin`` interpolated unless (E, h) was measured). Empty when the table is missing.
    """
    import pandas as pd

    if not path.is_file():
        return []
    gemm = pd.read_parquet(path)
    gemm = gemm[gemm["gemm_dtype"] == "bfloat16"]
    if gemm.empty:
        return []
    kernel = gemm["kernel_source"].value_counts().index[0]
    gpu, _ = system_spec(root, system)
    e, h = model.moe.num_experts, model.hidden_size
    ms, secs, exact = gemm_times(gemm[gemm["kernel_source"] == kernel], e, h, "bfloat16", gpu)
    out = []
    for tp in tps:
        shape = expert_shape(model, tp)
        for m, t in zip(ms, secs):
            out.append(("router_gemm", str(kernel), "bfloat16", tp, int(m), shape.num_local_experts, shape.top_k, h, 0, 1, shape.moe_tp,
                        *router_counts(model, int(m)), float(t), "measured" if exact else "interpolated"))
    return out


def import_moe(spec: str, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source", field: str = "") -> Path:
    """Write the MoE bundle of ``aiconfigurator:<spec>`` for ``model`` at TP degrees ``tps`` into ``out``; returns ``out``.

    A TP degree without rows at the model's shape is left out of ``operators`` (a scenario at that
    degree is then refused, naming ``moe_experts``).

    Raises:
        ScenarioError: the package is missing, the spec is unknown, the system has no
            ``moe_perf`` table for the framework, or the table cannot be read.
    """
    import pandas as pd

    root = package_root(source)
    system, framework, version = parse(spec, source, field, root)
    path = _closest_version(root / "data" / system / "moe" / framework, version, "moe_perf.parquet")
    if path is None:
        raise ScenarioError(source, field, f"aiconfigurator:{spec}", f"{system} has no {framework} moe_perf table", "use a system and framework with MoE tables (e.g. h100_sxm/vllm)")
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt or truncated file
        raise ScenarioError(str(path), "", ..., f"cannot be read as a parquet table ({type(e).__name__})", f"reinstall the package: {EXTRA}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, operators, kernels = [], {}, {}
    for tp in sorted(tps):
        held = []
        for ep in (1, tp) if tp > 1 else (1,):
            for moe_dtype, dtype in MOE_DTYPES.items():
                shape = expert_shape(model, tp, ep)
                d = select_rows(table, model, tp, ep, moe_dtype)
                if d.empty:
                    continue
                held.append(f"moe_experts ({dtype}, {'EP' if ep > 1 else 'expert TP'} {tp})")
                kernels[f"{dtype}|tp{shape.moe_tp}|ep{ep}"] = str(d["kernel_source"].iloc[0])
                for r in d.itertuples():
                    m = int(r.num_tokens)
                    flops, nbytes = expert_counts(shape, m, 2.0, 1.0 if dtype == "fp8" else 2.0)
                    rows.append(("moe_experts", str(r.kernel_source), dtype, tp, *shape.key(m), flops, nbytes, float(r.latency) * 1e-3, "measured"))
        operators[str(tp)] = held
    router = _router_rows(root / "data" / system / "gemm" / framework / version / "gemm_perf.parquet", root, system, model, sorted(tps))
    if router:
        rows += router
        for tp in sorted(tps):
            operators[str(tp)].append("router_gemm (bfloat16)")
    dense = write_dense_gemms(root / "data" / system / "gemm" / framework / version / "gemm_perf.parquet", root, system, model, sorted(tps), out)
    attention, notes = None, []
    if model.mla is None:
        try:
            attention = write_dense_attention(spec, model, sorted(tps), out, source, field)
        except ScenarioError as e:  # a system without attention or GEMM tables: attention stays the roofline's
            notes.append(f"attention not imported ({e}); priced by the roofline")
    mla_files = _write_mla(root / "data" / system / "mla" / framework, version, model, sorted(tps), out) if model.mla is not None else []
    with open(out / "moe.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MOE_COLUMNS)
        w.writerows(rows)
    manifest = {
        "format": MOE_FORMAT, "kind": MOE, "model": {"name": model.name, **model_fields(model)}, "tensor_parallel_sizes": sorted(tps),
        "operators": operators, "routing": "balanced",
        "provenance": {"source": f"aiconfigurator:{spec}", "measured_by": "NVIDIA aiconfigurator collector (collector/vllm/collect_moe.py)",
                       "licence": "Apache-2.0", "url": URL, "package": PACKAGE, "package_version": package_version(), "system": system,
                       "framework": framework, "framework_version": path.parent.name, "file": str(path.relative_to(root)),
                       "device": str(table["device"].iloc[0]) if "device" in table and len(table) else None, "kernels": kernels,
                       "what": "vLLM fused_experts in a CUDA graph: align, gate/up, SiLU*mul, down, moe_sum; router and top-k outside"},
    }
    if dense:
        manifest["dense_gemms"] = {"table": DENSE_GEMM_TABLE, "operators": dense, "file": f"data/{system}/gemm/{framework}/{version}/gemm_perf.parquet",
                                   "what": "the system's measured GEMMs at the dense linear layers (attention projections, shared experts, dense MLP, lm_head)"}
    if attention is not None:
        manifest["attention"] = {"folder": DENSE_FOLDER, "what": "the dense importer's bundle of the model without its MoE block, fitted: prefill and decode attention tables"}
    if mla_files:
        manifest["mla"] = {"files": [str(Path(f).relative_to(root)) for f in mla_files], "table": MLA_TABLE, "priced": True,
                           "what": "vLLM DeepseekV2MLAAttention forward (fused_qkv_a_proj, q/kv_a norms, q_b_proj, rotary, latent cache write, kv_b_proj or W_UK/W_UV, attention, o_proj), bf16 KV cache, one GPU"}
    if path.parent.name != version:
        notes.append(f"MoE measured with {framework} {path.parent.name} (the closest version collected)")
    if notes:
        manifest["notes"] = notes
    with open(out / "moe_profile.json", "w") as f:
        json.dump(manifest, f, indent=1)
    with open(out / "provenance.json", "w") as f:  # what the run header shows (source, device, what is measured)
        json.dump({"source": manifest["provenance"]["source"], "device_name": manifest["provenance"]["device"], "priced": priced_parts(out)}, f, indent=1)
    return out


def named_moe_profile(value: str, model: ModelSpec, tp: int, source: str = "<scenario>", field: str = "hardware.profile") -> Path:
    """The cached MoE bundle of ``aiconfigurator:<spec>`` for ``model`` on a MoE group of ``tp`` GPUs (both expert splits), imported on first use.

    Kept under ``profiler.imports.cache_root()``, keyed by the source, the model's expert
    dimensions, the TP degree, the package version and ``MOE_FORMAT``; built in a temporary folder
    and renamed into place, so parallel simulations never read half of one.

    Raises:
        ScenarioError: see ``import_moe``; the cache folder cannot be written.
    """
    import hashlib

    from profiler.imports import cache_root, cached_bundle

    spec = value.partition(":")[2]
    ident = {"value": value, "model": model_fields(model), "tp": tp, "format": MOE_FORMAT, "package_version": package_version()}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    final = cache_root() / f"moe-{spec.replace('/', '-')}-{Path(model.name).stem}-tp{tp}-{key}"
    return cached_bundle(final, "moe_profile.json", lambda tmp: import_moe(spec, model, (tp,), tmp, source, field), value, source, field)


def priced_parts(root: Path) -> dict[str, list[str]]:
    """Which parts of a MoE step bundle ``root`` prices from measurements and which the roofline prices (what its files hold)."""
    root = Path(root)
    measured = ["routed experts + moe_sum (moe.csv)"]
    with open(root / "moe.csv", newline="") as f:
        if any(r["operator"] == "router_gemm" for r in csv.DictReader(f)):
            measured.append("router GEMM (moe.csv)")
    roofline = ["router top-k", "all-reduce", "all-to-all", "norms and elementwise", "host overhead"]
    if (root / MLA_TABLE).is_file():
        measured.append("MLA module: projections, norms, rotary, cache write, attention, o_proj (mla.csv)")
    elif (root / DENSE_FOLDER / "runtime_model.json").is_file():
        measured.append(f"prefill and decode attention ({DENSE_FOLDER}/, fitted)")
    else:
        roofline.append("attention")
    if (root / DENSE_GEMM_TABLE).is_file():
        measured.append("bf16 dense GEMMs: attention projections, shared experts, dense MLP, lm_head (dense_gemm.csv)")
        roofline.append("FP8 dense linears")
    else:
        roofline.append("dense linears (shared experts, dense MLP, lm_head)")
    return {"measured": measured, "roofline": roofline}


def moe_provenance(root: Path) -> dict:
    """A MoE bundle's provenance in ``read_provenance``'s layout: source, device_name, rows per ``operator|dtype|tpN``, and ``priced`` (``priced_parts``)."""
    with open(Path(root) / "moe_profile.json") as f:
        manifest = json.load(f)
    prov = manifest["provenance"]
    operators: dict[str, dict] = {}

    def count(file: str, name_of) -> None:
        path = Path(root) / file
        if not path.is_file():
            return
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                entry = operators.setdefault(f"{name_of(r)}|{r['dtype']}|tp{r['tp']}", {"rows": {}})
                entry["rows"][r["origin"]] = entry["rows"].get(r["origin"], 0) + 1

    count("moe.csv", lambda r: r["operator"] + (" (EP)" if int(r["ep"]) > 1 else ""))
    count(MLA_TABLE, lambda r: r["operator"])
    count(DENSE_GEMM_TABLE, lambda r: r["operator"])
    return {**prov, "device_name": prov.get("device"), "operators": operators, "filled": {}, "priced": priced_parts(root)}
