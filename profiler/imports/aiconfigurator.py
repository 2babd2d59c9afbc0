"""Import NVIDIA AIConfigurator's kernel database (``aiconfigurator-core``) as a profile bundle.

The package (PyPI ``aiconfigurator-core``, Apache-2.0; pinned by servesim's ``aiconfigurator``
extra) ships real kernel timings per GPU system, serving framework and version as parquet tables
under ``aiconfigurator_core/systems/data/<system>/<op>/<framework>/<version>/``, and each
system's datasheet numbers in ``aiconfigurator_core/systems/<system>.yaml``. Nothing of it is
copied into servesim: the importer reads the installed package. Latencies there are in
milliseconds per kernel on one GPU.

What maps onto the catalogue (``profiler.catalogue``), at the model's TP shard shapes:

- ``gemm/gemm_perf`` (m, n, k, ``gemm_dtype``, ``kernel_source``): the model family's linear
  layers (qkv_proj, o_proj, gate_up_proj or OPT's up_proj, down_proj) and lm_head at every
  measured m. The table measures a grid of widths
  (n, k in 32 .. 65536); a shard width between two grid widths is interpolated from the four
  surrounding (n, k) measurements at the same m by holding the measured efficiency (time over its
  roofline time, bilinear in log n and log k) and scaling the roofline time to the shard's shape;
  a width past the grid holds the edge's efficiency. ``bfloat16`` rows are the unquantized GEMMs,
  ``fp8`` (per-tensor scaled) rows the FP8 GEMMs; each kernel source is an implementation (the
  fit keeps the faster at each shape).
- ``attention/context_attention_perf`` (batch_size, isl, heads, KV heads, head_dim): prefill
  attention of ``batch_size`` prompts of ``isl`` tokens with no cached prefix (bf16 KV, no
  sliding window). The table never has a cached prefix; the fit extends to prefixes by the
  roofline at the measured efficiency.
- ``attention/generation_attention_perf`` (batch_size, step): decode attention of
  ``batch_size`` requests of ``step + 1`` context tokens each (checked against HBM bandwidth:
  on H100, batch 64 at 8,192 tokens streams 3.1 TB/s, 93 % of the datasheet's 3.35 TB/s, which a
  context of ``step`` or ``2 step`` would not give).
- ``comm/<framework>/custom_allreduce_perf`` (the CUDA-graph variant) up to vLLM's 8 MiB limit
  for its custom all-reduce (``max_size = 8192 * 1024``, vllm/distributed/device_communicators/
  custom_all_reduce.py) and ``comm/nccl/<version>/nccl_perf`` (all_reduce, half): the TP
  all-reduce at ``num_tokens x hidden`` bf16 elements, interpolated log-log in message size.

Norms, rotary, activation, KV-cache writes, embedding and sampling are not in the database: the
bundle fills them from the roofline calibrated on the system's own kernels
(``profiler.imports.bundle_writer``) and says so in ``provenance.json``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from profiler.catalogue import ALL_REDUCE, ATTENTION_DECODE, ATTENTION_PREFILL, GEMM, gemm_counts, gemm_shape, layer_dims, linear_operators
from profiler.imports.bundle_writer import ImportedBundle, Source
from profiler.sweeps import SweepConfig
from simulator.errors import ScenarioError
from simulator.specs.gpu import GPUSpec
from simulator.specs.model import ModelSpec

EXTRA = 'pip install "servesim[aiconfigurator]" (in a checkout: pip install -e ".[aiconfigurator]")'
PACKAGE = "aiconfigurator-core"
URL = "https://pypi.org/project/aiconfigurator-core/ (github.com/ai-dynamo/aiconfigurator)"
CUSTOM_ALLREDUCE_MAX_BYTES = 8192 * 1024  # vLLM's custom all-reduce limit (custom_all_reduce.py, max_size)
BLOCK_SIZE = 16  # vLLM's default KV cache block size (vllm/config/cache.py), recorded in the shape columns
# Streaming multiprocessors per GPU (NVIDIA datasheets and architecture whitepapers), for the
# fit's wave features; systems left out are fitted without them.
_SMS = {"a100_sxm": 108, "a100_pcie": 108, "h100_sxm": 132, "h100_pcie": 114, "h200_sxm": 132, "b200_sxm": 148,
        "l40s": 142, "l4": 58, "rtx_pro_6000_server": 188}
_GEMM_DTYPES = {"bfloat16": "bfloat16", "fp8": "fp8"}  # aiconfigurator gemm_dtype -> catalogue dtype


def package_root(source: str = "--source") -> Path:
    """The ``systems`` folder: ``$AICONFIGURATOR_SYSTEMS`` when set (another copy of the
    database, e.g. a source checkout's ``src/aiconfigurator/systems``), else the installed package's.

    Raises:
        ScenarioError: aiconfigurator-core is not installed (and no folder is set), or the set
            folder does not exist.
    """
    override = os.environ.get("AICONFIGURATOR_SYSTEMS")
    if override:
        path = Path(override).expanduser()
        if not (path / "data").is_dir():
            raise ScenarioError("AICONFIGURATOR_SYSTEMS", "", override, "has no data/ folder of aiconfigurator systems", "point it at an aiconfigurator systems folder, or unset it")
        return path
    try:
        import aiconfigurator_core
    except ImportError:
        raise ScenarioError(source, "", "aiconfigurator", f"needs the {PACKAGE} package, which is not installed", EXTRA) from None
    return Path(aiconfigurator_core.__file__).resolve().parent / "systems"


def package_version() -> str | None:
    """The installed aiconfigurator-core version (None when not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def available(root: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """``{system: {framework: [versions with both GEMM and attention tables]}}`` of the installed package."""
    root = root or package_root()
    out: dict[str, dict[str, list[str]]] = {}
    data = root / "data"
    for system in sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
        for fw_dir in sorted((data / system / "gemm").glob("*")):
            versions = [v.name for v in sorted(fw_dir.iterdir()) if (v / "gemm_perf.parquet").is_file()
                        and (data / system / "attention" / fw_dir.name / v.name / "context_attention_perf.parquet").is_file()]
            if versions:
                out.setdefault(system, {})[fw_dir.name] = versions
    return out


def parse(spec: str, source: str, field: str, root: Path | None = None) -> tuple[str, str, str]:
    """``SYSTEM/FRAMEWORK/VERSION`` -> its three parts, each checked against the installed package.

    Raises:
        ScenarioError: not three parts, or an unknown system, framework or version (the message
            lists what exists).
    """
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts):
        raise ScenarioError(source, field, f"aiconfigurator:{spec}", "is not aiconfigurator:SYSTEM/FRAMEWORK/VERSION", "write e.g. aiconfigurator:h100_sxm/vllm/0.24.0 (`servesim list` shows what exists)")
    system, framework, version = parts
    have = available(root)
    if system not in have:
        raise ScenarioError(source, field, f"aiconfigurator:{spec}", f"unknown system {system!r}", f"use one of {', '.join(have)}")
    if framework not in have[system]:
        raise ScenarioError(source, field, f"aiconfigurator:{spec}", f"{system} has no {framework!r} tables", f"use one of {', '.join(have[system])}")
    if version not in have[system][framework]:
        raise ScenarioError(source, field, f"aiconfigurator:{spec}", f"{system}/{framework} has no version {version!r}", f"use one of {', '.join(have[system][framework])}")
    return system, framework, version


def system_spec(root: Path, system: str) -> tuple[GPUSpec, dict[str, Any]]:
    """A ``GPUSpec`` from ``<system>.yaml`` (the peaks and bandwidths the database was collected against), and the raw file."""
    import yaml

    with open(root / f"{system}.yaml") as f:
        raw = yaml.safe_load(f)
    gpu, node = raw.get("gpu", {}), raw.get("node", {})
    spec = GPUSpec(
        name=f"aiconfigurator:{system}", bf16_flops=float(gpu["bfloat16_tc_flops"]), fp8_flops=float(gpu["fp8_tc_flops"]) if gpu.get("fp8_tc_flops") else None,
        int8_ops=float(gpu.get("int8_tc_flops") or gpu["bfloat16_tc_flops"]), memory_bandwidth=float(gpu["mem_bw"]), memory_bytes=float(gpu["mem_capacity"]),
        link_bandwidth=float(node.get("intra_node_bw") or node.get("pcie_bw")), link_latency_s=float(node.get("p2p_latency", 1e-5)),
        link_kind="pcie" if node.get("intra_node_bw") == node.get("pcie_bw") else "nvlink", pcie_bandwidth=float(node.get("pcie_bw", 32e9)), source=f"{PACKAGE} {package_version()} systems/{system}.yaml", aiconfigurator_system=system,
    )
    return spec, raw


def _roof(m: np.ndarray, n: float, k: float, dtype: str, gpu: GPUSpec) -> np.ndarray:
    """Roofline time at efficiency 1 of [m, k] x [k, n] GEMMs (s)."""
    flops, nbytes = gemm_counts(m.astype(np.float64), float(n), float(k), dtype)
    peak = gpu.fp8_flops if dtype == "fp8" and gpu.fp8_flops else gpu.bf16_flops
    return np.maximum(flops / peak, nbytes / gpu.memory_bandwidth)


def _bracket(grid: np.ndarray, x: int) -> tuple[int, int]:
    """The grid values around ``x`` (equal when ``x`` is on the grid or past an end)."""
    lo, hi = grid[grid <= x], grid[grid >= x]
    a = int(lo.max()) if len(lo) else int(grid.min())
    b = int(hi.min()) if len(hi) else int(grid.max())
    return a, b


def gemm_times(table, n: int, k: int, dtype: str, gpu: GPUSpec) -> tuple[np.ndarray, np.ndarray, bool]:
    """Times (s) of ``[m, k] x [k, n]`` at every m measured at the surrounding widths, and whether measured exactly.

    Args:
        table: one kernel's rows (columns m, n, k, latency in ms).
        n, k: the shard's output and reduction widths.
        dtype: catalogue dtype (for the roofline's bytes).
        gpu: the system's datasheet numbers.

    Returns:
        (m values, seconds, exact): exact when (n, k) itself was measured.
    """
    n0, n1 = _bracket(np.unique(table["n"].to_numpy()), n)
    k0, k1 = _bracket(np.unique(table["k"].to_numpy()), k)
    corners = table[table["n"].isin([n0, n1]) & table["k"].isin([k0, k1])]
    pivot = corners.pivot_table(index="m", columns=["n", "k"], values="latency", aggfunc="min").dropna()
    if pivot.empty:
        return np.array([], dtype=np.int64), np.array([]), False
    m = pivot.index.to_numpy(np.int64)

    def log_eff(nn: int, kk: int) -> np.ndarray:
        return np.log(pivot[(nn, kk)].to_numpy() * 1e-3 / _roof(m, nn, kk, dtype, gpu))

    def frac(x: int, a: int, b: int) -> float:
        return 0.0 if a == b else (math.log(min(max(x, a), b)) - math.log(a)) / (math.log(b) - math.log(a))

    fn, fk = frac(n, n0, n1), frac(k, k0, k1)
    e = (1 - fn) * ((1 - fk) * log_eff(n0, k0) + fk * log_eff(n0, k1)) + fn * ((1 - fk) * log_eff(n1, k0) + fk * log_eff(n1, k1))
    exact = (n0 == n1 == n) and (k0 == k1 == k)
    return m, np.exp(e) * _roof(m, n, k, dtype, gpu), exact


def _attention_rows(table, q: int, kv: int, d: int) -> tuple[Any, str, float]:
    """Rows of ``table`` at q/kv heads and head_dim, else at the nearest head count of the same GQA ratio.

    Returns (rows, origin, head scale): the scale multiplies their work to the shard's heads
    (attention work and bytes are linear in the heads at a fixed GQA ratio).
    """
    keep = table["head_dim"] == d
    if "kv_cache_dtype" in table:
        keep &= table["kv_cache_dtype"] == "bfloat16"
    if "window_size" in table:  # older collections measured full attention only
        keep &= table["window_size"] == 0
    base = table[keep]
    exact = base[(base["num_heads"] == q) & (base["num_key_value_heads"] == kv)]
    if len(exact):
        return exact, "measured", 1.0
    same_ratio = base[(base["num_heads"] * kv == base["num_key_value_heads"] * q)]
    if not len(same_ratio):
        return same_ratio, "filled", 1.0
    heads = same_ratio["num_heads"].to_numpy()
    nearest = int(heads[np.argmin(np.abs(np.log(heads / q)))])
    return same_ratio[same_ratio["num_heads"] == nearest], "interpolated", q / nearest


def _closest_version(folder: Path, version: str, table: str) -> Path | None:
    """``folder/<v>/table`` for ``v == version``, else the newest ``v`` below it, else the oldest; None if none has it."""
    from packaging.version import InvalidVersion, Version

    def key(v: str):
        try:
            return (0, Version(v))
        except InvalidVersion:
            return (1, v)

    have = sorted((p.parent.name for p in folder.glob(f"*/{table}")), key=key)
    if not have:
        return None
    if version in have:
        return folder / version / table
    below = [v for v in have if key(v) < key(version)]
    return folder / (below[-1] if below else have[0]) / table


def _interp_loglog(sizes: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Times at ``at`` bytes, linear in log-log between measured sizes; NaN outside them."""
    order = np.argsort(sizes)
    xs, ys = np.log(sizes[order]), np.log(times[order])
    out = np.exp(np.interp(np.log(at), xs, ys))
    out[(at < sizes.min()) | (at > sizes.max())] = np.nan
    return out


def import_aiconfigurator(spec: str, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source",
                          field: str = "", sweep: SweepConfig | None = None) -> ImportedBundle:
    """Build the bundle of ``aiconfigurator:<spec>`` for ``model`` at TP degrees ``tps`` in ``out`` (not yet written).

    Raises:
        ScenarioError: the package is missing, the spec is unknown, or a table cannot be read.
    """
    import pandas as pd

    root = package_root(source)
    system, framework, version = parse(spec, source, field, root)
    data = root / "data" / system
    gpu, raw = system_spec(root, system)
    sweep = sweep or SweepConfig.for_device("cuda")

    def read(path: Path, needed: tuple[str, ...]):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a corrupt or truncated file
            raise ScenarioError(str(path), "", ..., f"cannot be read as a parquet table ({type(e).__name__})", f"reinstall the package: {EXTRA}") from None
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ScenarioError(str(path), missing[0], ..., "column missing from the table", f"reinstall the package: {EXTRA}")
        return frame

    gemm_path = data / "gemm" / framework / version / "gemm_perf.parquet"
    att = data / "attention" / framework / version
    attention_columns = ("kernel_source", "batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "latency")
    gemm = read(gemm_path, ("device", "kernel_source", "gemm_dtype", "m", "n", "k", "latency"))
    ctx = read(att / "context_attention_perf.parquet", (*attention_columns, "step"))
    gen = read(att / "generation_attention_perf.parquet", (*attention_columns, "step"))
    if gemm.empty or ctx.empty or gen.empty:
        raise ScenarioError(str(gemm_path.parent), "", ..., "holds an empty table", f"reinstall the package: {EXTRA}")
    files = [str(p.relative_to(root)) for p in (gemm_path, att / "context_attention_perf.parquet", att / "generation_attention_perf.parquet")]
    device_name = str(gemm["device"].iloc[0])
    nccl_dirs = sorted((data / "comm" / "nccl").glob("*/nccl_perf.parquet"))
    wanted_nccl = str(raw.get("misc", {}).get("nccl_version", ""))
    nccl_path = next((p for p in nccl_dirs if p.parent.name == wanted_nccl), nccl_dirs[-1] if nccl_dirs else None)
    car_path = _closest_version(data / "comm" / framework, version, "custom_allreduce_perf.parquet")
    src = Source(spec=f"aiconfigurator:{spec}", kind="aiconfigurator", device_name=device_name, licence="Apache-2.0", url=URL,
                 details={"package": PACKAGE, "package_version": package_version(), "system": system, "framework": framework,
                          "framework_version": version, "files": files, "system_file": f"{system}.yaml"})
    b = ImportedBundle(out, model, tps, src, gpu, "bfloat16", _SMS.get(system))
    b.kernel_floor_s = float(gemm["latency"].min()) * 1e-3  # the fastest kernel the system timed

    for gemm_dtype, dtype in _GEMM_DTYPES.items():
        rows = gemm[gemm["gemm_dtype"] == gemm_dtype]
        for kernel, krows in rows.groupby("kernel_source"):
            for tp in tps:
                d = layer_dims(model, tp)
                for op in (*linear_operators(model), "lm_head") if dtype == "bfloat16" else linear_operators(model):
                    n, k = gemm_shape(op, d)
                    ms, secs, exact = gemm_times(krows, n, k, dtype, gpu)
                    for m, t in zip(ms, secs):
                        b.add(GEMM, op, str(kernel), tp, (int(m), n, k), float(t), "measured" if exact else "interpolated", dtype=dtype)
    for tp in tps:
        d = layer_dims(model, tp)
        rows, origin, scale = _attention_rows(ctx[ctx["step"] == 0], d.q_heads, d.kv_heads, d.head_dim)
        for r in rows.itertuples():
            b.add(ATTENTION_PREFILL, "attention_prefill", str(r.kernel_source), tp,
                  (int(r.batch_size), int(r.isl), 0, d.q_heads, d.kv_heads, d.head_dim, BLOCK_SIZE), r.latency * 1e-3 * scale, origin)
        rows, origin, scale = _attention_rows(gen, d.q_heads, d.kv_heads, d.head_dim)
        for r in rows.itertuples():
            b.add(ATTENTION_DECODE, "attention_decode", str(r.kernel_source), tp,
                  (int(r.batch_size), int(r.isl + r.step), d.q_heads, d.kv_heads, d.head_dim, BLOCK_SIZE), r.latency * 1e-3 * scale, origin)
        if origin == "filled" or not len(rows):
            b.note(f"TP {tp}: no attention measured at {d.q_heads} query / {d.kv_heads} KV heads of head_dim {d.head_dim}; filled from the roofline")

    tokens = np.array(sweep.token_counts(), dtype=np.int64)
    for tp in [t for t in tps if t > 1]:
        nbytes = tokens * model.hidden_size * 2.0
        tables = []
        if car_path is not None:
            car = read(car_path, ("kernel_source", "num_gpus", "message_size", "latency"))
            graph = car["kernel_source"].str.contains("graph") if "backend" not in car else car["backend"] == "vllm_graph"
            car = car[graph & (car["num_gpus"] == tp) & (car["message_size"] <= CUSTOM_ALLREDUCE_MAX_BYTES)]
            tables.append(("vllm_custom_allreduce", car))
            files.append(str(car_path.relative_to(root)))
        if nccl_path is not None:
            nccl = read(nccl_path, ("op_name", "nccl_dtype", "num_gpus", "message_size", "latency"))
            nccl = nccl[(nccl["op_name"] == "all_reduce") & (nccl["nccl_dtype"] == "half") & (nccl["num_gpus"] == tp)]
            tables.append(("nccl", nccl))
            files.append(str(nccl_path.relative_to(root)))
        for impl, t in tables:
            if t.empty:
                continue
            sizes, lat = t["message_size"].to_numpy(np.float64), t["latency"].to_numpy(np.float64) * 1e-3
            secs = _interp_loglog(sizes, lat, nbytes)
            measured = set(sizes.astype(np.int64).tolist())
            for m, nb, s in zip(tokens, nbytes, secs):
                if np.isfinite(s):
                    b.add(ALL_REDUCE, "all_reduce", impl, tp, (int(m), model.hidden_size), float(s), "measured" if int(nb) in measured else "interpolated")
    if car_path is not None and car_path.parent.name != version:
        b.note(f"custom all-reduce measured with {framework} {car_path.parent.name} (the closest version collected)")
    src.details["files"] = sorted(set(files))
    if len(ctx["kernel_source"].unique()) > 1:
        b.note(f"context attention measured with {', '.join(sorted(ctx['kernel_source'].unique()))}: the fit keeps the fastest at each shape")
    b.note("prefill attention measured without a cached prefix; prefixes are priced by the roofline at the measured efficiency")
    return b
