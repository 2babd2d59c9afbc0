"""Import Vidur's operator profiles of one model as a profile bundle.

Vidur (github.com/microsoft/vidur, MIT; read at commit 7d47513) profiles a model per GPU SKU in
``data/profiling/compute/<gpu>/<org>/<model>/``: ``mlp.csv`` from ``vidur/profiling/mlp``
(a one-block model of Sarathi-Serve's layers in fp16, ``mlp_impl.py``, each operator wrapped in a
``CudaTimer``) and ``attention.csv`` from ``vidur/profiling/attention`` (the paged attention
kernels of Sarathi-Serve's attention wrapper; the A30 profile read here comes from the fork
github.com/AKafakA/vidur_opt_scheduler, FlashInfer, block size 16). Every column
``time_stats.<op>.{min,max,mean,median,std}`` is milliseconds per layer on one of
``num_tensor_parallel_workers`` GPUs (``timer_stats_store.py``); the shape columns give the
full model (``n_head``, ``n_kv_head``, ``n_embd``, ``n_expanded_embd``), which Vidur shards by the
worker count, as servesim does. The importer reads each statistic's median, as Vidur's
predictor does (``sklearn_execution_time_predictor.py``: ``target_col=time_stats.<op>.median``).

What maps onto the catalogue (``profiler.catalogue``), at the model's TP shard shapes:

- ``attn_pre_proj`` -> ``qkv_proj``, ``attn_post_proj`` -> ``o_proj``, ``mlp_up_proj`` ->
  ``gate_up_proj`` (a gated MLP's 2 x n_expanded_embd columns), ``mlp_down_proj`` -> ``down_proj``:
  GEMMs of m = ``num_tokens``; ``mlp_act`` (SiluAndMul) -> ``silu_mul``; ``attn_rope`` ->
  ``rotary``; ``emb`` -> ``embedding``.
- ``input_layernorm``, ``post_attention_layernorm`` (plain RMSNorms) and ``add`` (the one residual
  add Vidur times): Vidur sums the three once per block (``vidur/entities/execution_time.py``,
  ``_get_block_execution_time``); servesim runs two ``add_rmsnorm`` per layer, so each row is half
  their sum, which keeps the block's time.
- ``attention.csv``: ``is_prefill`` rows are ``attention_prefill`` (one chunk of
  ``prefill_chunk_size`` new tokens after ``kv_cache_size`` cached ones); the others are
  ``attention_decode`` (``batch_size`` requests of one new token after ``kv_cache_size`` cached
  ones, a context of kv_cache_size + 1: ``attention_wrapper.py`` gives each sequence
  ``processed_len = kv_cache_size``); ``attn_kv_cache_save`` is ``kv_cache_write`` at the
  step's tokens (the chunk, or one per decode), the median over rows of the same token count, as
  Vidur's predictor fits it on ``num_tokens`` alone. The reshape timers are left out, as Vidur's
  predictor leaves them out.

Not in the profiles: lm_head, the final norm and sampling (Vidur counts neither the embedding nor
the final layers in a step, ``ExecutionTime.model_time``), so they are filled from the roofline
calibrated on the profile's own operators; without ``attention.csv`` attention is filled too. The
TP all-reduce is measured in Vidur's ``network/<topology>/all_reduce.csv``, per node topology
rather than per model; ``vidur:MODEL_FOLDER`` does not read it, so the all-reduce is priced by
the scenario GPU's link model. A row faster than the GPU's datasheet roofline at full efficiency
cannot be a measurement of that shape (the A30 profile's ``attn_pre_proj`` reads 2 us for
thousands of tokens) and is left out, with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from profiler.catalogue import (
    ATTENTION_DECODE, ATTENTION_PREFILL, DTYPE_BYTES, ELEMENTWISE, GEMM, OPERATORS, check_tp, elementwise_width, gemm_shape, layer_dims,
)
from profiler.imports.bundle_writer import ImportedBundle, Source, counts
from profiler.imports.csv_tables import fail, numbers, read_csv
from profiler.sweeps import SweepConfig
from simulator.specs.gpu import GIGA, GPUS, TERA, GPUSpec
from simulator.specs.model import ModelSpec

DTYPE = "float16"  # Vidur profiles in fp16 (mlp_wrapper.py: model.to(dtype=torch.float16); attention/main.py: dtype = torch.float16)
A30 = GPUSpec(
    name="a30", bf16_flops=165 * TERA, fp8_flops=None, int8_ops=330 * TERA,
    memory_bandwidth=933 * GIGA, memory_bytes=24 * GIGA, pcie_bandwidth=32 * GIGA,
    link_kind="pcie", link_bandwidth=32 * GIGA, link_latency_s=GPUS["a100-80gb-pcie"].link_latency_s,
    source="NVIDIA A30 Tensor Core GPU datasheet: 165 TFLOPS BF16/FP16 and 330 TOPS INT8 dense (330 and 661 with "
    "sparsity), 933 GB/s HBM2, 24 GB, PCIe Gen4 64 GB/s (both directions), all-reduce over PCIe (the 200 GB/s NVLink "
    "bridge joins pairs only); per-hop latency the PCIe estimate of simulator/specs/gpu.py",
)
# Vidur's compute folder -> (GPU spec, streaming multiprocessors; NVIDIA datasheets and architecture
# whitepapers: H100 SXM 132, A100 108, A30 56). Vidur's README lists its a100 device as "A100 80GB DGX" (SXM).
GPU_FOLDERS: dict[str, tuple[GPUSpec, int]] = {"h100": (GPUS["h100-sxm"], 132), "a100": (GPUS["a100-80gb-sxm"], 108), "a30": (A30, 56)}
URLS = {"a30": "https://github.com/AKafakA/vidur_opt_scheduler (data/profiling/compute/a30/)"}
URL = "https://github.com/microsoft/vidur (data/profiling/compute/)"
MLP_SHAPE = ("num_tokens", "num_tensor_parallel_workers", "n_head", "n_kv_head", "n_embd", "n_expanded_embd")
ATTENTION_SHAPE = ("num_tensor_parallel_workers", "n_embd", "n_q_head", "n_kv_head", "block_size", "batch_size", "prefill_chunk_size",
                   "kv_cache_size", "is_prefill")
# mlp.csv timer -> catalogue operator (the GEMMs must be there; the rest are filled when absent).
MLP_OPERATORS = {"attn_pre_proj": "qkv_proj", "attn_post_proj": "o_proj", "mlp_up_proj": "gate_up_proj", "mlp_down_proj": "down_proj",
                 "mlp_act": "silu_mul", "attn_rope": "rotary", "emb": "embedding"}
REQUIRED = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
NORMS = ("input_layernorm", "post_attention_layernorm", "add")
BOOLEANS = ("is_prefill", "use_gated_mlp")
ATTENTION_SAMPLES = 5  # attention_wrapper.py: ACTIVE_STEPS timed calls per shape



def median_column(op: str) -> str:
    return f"time_stats.{op}.median"


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A Vidur CSV holding ``columns`` (numeric ones checked), all its columns kept.

    Raises:
        ScenarioError: the file is missing, empty, not a CSV, lacks a column, or a shape column
            holds a non-number (the message names the file, column and row).
    """
    fix = "restore the file from the Vidur profile (or re-run Vidur's profiler)"
    frame = read_csv(path, columns, fix)
    for c in columns:
        if c in BOOLEANS:
            text = frame[c].astype(str).str.strip().str.lower()
            bad = np.flatnonzero(~text.isin(["true", "false"]).to_numpy())
            if len(bad):
                fail(path, f"row {int(bad[0]) + 2}", frame[c].iloc[bad[0]], f"column {c} is not True or False", fix)
            frame[c] = text == "true"
            continue
        values = numbers(frame, c, path, fix)
        frame[c] = values.astype(np.int64)
    for c in [c for c in frame.columns if str(c).startswith("time_stats.")]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce")  # a failed timing is NaN: the row is skipped
    return frame


def _model_rows(frame: pd.DataFrame, path: Path, model: ModelSpec, heads_column: str) -> pd.DataFrame:
    """The rows that profile ``model``'s dimensions.

    Raises:
        ScenarioError: no row does (the message gives what the file profiles).
    """
    want = {heads_column: model.num_attention_heads, "n_kv_head": model.num_kv_heads, "n_embd": model.hidden_size}
    if "n_expanded_embd" in frame.columns:
        want["n_expanded_embd"] = model.intermediate_size
    match = np.logical_and.reduce([frame[c].to_numpy() == v for c, v in want.items()])
    if not match.any():
        first = frame.iloc[0]
        wrong = next(c for c in want if int(first[c]) != want[c])
        have = ", ".join(f"{c} {int(first[c])}" for c in want)
        mine = ", ".join(f"{c} {v}" for c, v in want.items())
        fail(path, wrong, int(first[wrong]), f"the file profiles a model with {have}, not {model.name} ({mine})",
              "import with the model Vidur profiled: give its config.json")
    if model.hidden_size // model.num_attention_heads != model.head_dim:
        fail(path, "n_embd", model.hidden_size, f"Vidur's head size is n_embd / n_head = {model.hidden_size // model.num_attention_heads}, "
              f"but {model.name} has head_dim {model.head_dim}", "import a model whose head_dim is hidden_size / num_attention_heads")
    return frame[match]


def _tp_rows(frame: pd.DataFrame, path: Path, tp: int) -> pd.DataFrame:
    rows = frame[frame["num_tensor_parallel_workers"] == tp]
    if rows.empty:
        have = ", ".join(map(str, sorted(frame["num_tensor_parallel_workers"].unique())))
        fail(path, "num_tensor_parallel_workers", tp, f"TP {tp} was not profiled (the file has {have})", "import profiled TP degrees only (--tp)")
    return rows


class _Rows:
    """Adds rows to a bundle after the datasheet check, counting what it leaves out."""

    def __init__(self, b: ImportedBundle) -> None:
        self.b = b
        self.impossible: dict[str, int] = {}

    def add(self, kind: str, op: str, tp: int, shape: tuple[int, ...], seconds: float, num_samples: int) -> None:
        if not (seconds > 0 and np.isfinite(seconds)):
            return
        flops, nbytes = counts(kind, op, shape, DTYPE, DTYPE_BYTES[DTYPE])
        if seconds < max(flops / self.b.gpu.bf16_flops, nbytes / self.b.gpu.memory_bandwidth):
            self.impossible[op] = self.impossible.get(op, 0) + 1
            return
        self.b.add(kind, op, "vidur", tp, shape, seconds, num_samples=num_samples)


def _mlp(rows: _Rows, frame: pd.DataFrame, tp: int, first_tp: int) -> None:
    d = layer_dims(rows.b.model, tp)
    med = frame.groupby("num_tokens").median(numeric_only=True)  # repeated shapes: the median of their medians
    for timer, op in MLP_OPERATORS.items():
        col = median_column(timer)
        if col not in med.columns or (not OPERATORS[op].tp_dependent and tp != first_tp):
            continue
        for m, ms in med[col].items():
            shape = (int(m), *gemm_shape(op, d)) if OPERATORS[op].kind == GEMM else (int(m), elementwise_width(op, d))
            rows.add(OPERATORS[op].kind, op, tp, shape, float(ms) * 1e-3, 1)
    present = [median_column(n) for n in NORMS if median_column(n) in med.columns]
    if present and tp == first_tp:
        block = med[present].fillna(0.0).sum(axis=1)  # Vidur counts a missing norm or add as 0 (_load_compute_df)
        for m, ms in block.items():
            rows.add(ELEMENTWISE, "add_rmsnorm", tp, (int(m), d.hidden), float(ms) * 1e-3 / 2, 1)


def _attention(rows: _Rows, frame: pd.DataFrame, tp: int) -> None:
    d = layer_dims(rows.b.model, tp)
    nan = np.full(len(frame), np.nan)
    prefill_ms = frame.get(median_column("attn_prefill"), nan)
    decode_ms = frame.get(median_column("attn_decode"), nan)
    columns = (frame["is_prefill"], frame["batch_size"], frame["prefill_chunk_size"], frame["kv_cache_size"], frame["block_size"], prefill_ms, decode_ms)
    for is_prefill, batch, chunk, cached, block, t_prefill, t_decode in zip(*columns):
        heads = (d.q_heads, d.kv_heads, d.head_dim, int(block))
        if is_prefill:
            rows.add(ATTENTION_PREFILL, "attention_prefill", tp, (int(batch), int(chunk), int(cached), *heads), float(t_prefill) * 1e-3, ATTENTION_SAMPLES)
        else:
            rows.add(ATTENTION_DECODE, "attention_decode", tp, (int(batch), int(cached) + 1, *heads), float(t_decode) * 1e-3, ATTENTION_SAMPLES)
    col = median_column("attn_kv_cache_save")
    if col in frame.columns:
        tokens = np.where(frame["is_prefill"], frame["prefill_chunk_size"] * frame["batch_size"], frame["batch_size"])
        for m, ms in frame.assign(num_tokens=tokens).groupby("num_tokens")[col].median().items():
            rows.add(ELEMENTWISE, "kv_cache_write", tp, (int(m), d.kv_width), float(ms) * 1e-3, ATTENTION_SAMPLES)


def import_vidur(folder: Path, model: ModelSpec, tps: tuple[int, ...], out: Path, source: str = "--source", field: str = "",
                 sweep: SweepConfig | None = None) -> ImportedBundle:
    """Build the bundle of ``vidur:<folder>`` for ``model`` at TP degrees ``tps`` in ``out`` (not yet written).

    Args:
        folder: Vidur's model folder ``.../compute/<gpu>/<org>/<model>/`` holding ``mlp.csv`` and
            optionally ``attention.csv``; the GPU is the folder two levels up (``h100``,
            ``a100``, ``a30``).
        model: the architecture Vidur profiled (its dimensions are checked against the files).
        tps: TP degrees to import; each must be profiled.
        out: the bundle folder the caller writes.
        source, field: where the source string came from, for error messages.
        sweep: unused (the profile's own shapes are imported); accepted like every importer.

    Returns:
        the bundle with every usable row (seconds per layer on one GPU), not yet filled.

    Raises:
        ScenarioError: the folder or mlp.csv is missing; a CSV is empty, corrupt or lacks a
            column; the files profile another model; a TP degree or the GPU is unknown.
    """
    folder = Path(folder)
    if not folder.is_dir():
        fail(source, field, f"vidur:{folder}", "profile folder not found", "give Vidur's model folder .../compute/<gpu>/<org>/<model> (it holds mlp.csv)")
    gpu_name = folder.parent.parent.name.lower()
    if gpu_name not in GPU_FOLDERS:
        fail(source, field, f"vidur:{folder}", f"the GPU folder {folder.parent.parent.name!r} is not one servesim has datasheet numbers for",
              f"give a model folder under compute/{{{','.join(GPU_FOLDERS)}}}/<org>/<model>, or add the GPU to profiler/imports/vidur.py GPU_FOLDERS")
    gpu, sms = GPU_FOLDERS[gpu_name]
    tps = tuple(sorted(tps))
    for tp in tps:
        if (why := check_tp(model, tp)) is not None:
            fail(source, field, tp, f"TP {tp} {why} of {model.name}", "import TP degrees the model can be sharded over")
    mlp_path, att_path = folder / "mlp.csv", folder / "attention.csv"
    mlp = read_table(mlp_path, MLP_SHAPE + ("use_gated_mlp",))
    missing = [t for t in REQUIRED if median_column(t) not in mlp.columns]
    if missing:
        fail(mlp_path, median_column(missing[0]), ..., "column missing", "restore the file from the Vidur profile (or re-run Vidur's profiler)")
    if not mlp["use_gated_mlp"].all():
        fail(mlp_path, "use_gated_mlp", False, "servesim's layers have a gated (SwiGLU) MLP", "import a profile of a gated-MLP model")
    mlp = _model_rows(mlp, mlp_path, model, "n_head")
    attention = None
    if att_path.is_file():
        attention = _model_rows(read_table(att_path, ATTENTION_SHAPE), att_path, model, "n_q_head")
    files = ["mlp.csv"] + (["attention.csv"] if attention is not None else [])
    details = {"gpu_folder": folder.parent.parent.name, "model_folder": f"{folder.parent.name}/{folder.name}", "files": files, "dtype": DTYPE,
               "statistic": "time_stats.<op>.median (ms)"}
    if attention is not None and "attention_backend" in attention.columns:
        details["attention_backend"] = sorted(map(str, attention["attention_backend"].unique()))
    src = Source(spec=f"vidur:{folder}", kind="vidur", device_name=f"{gpu.name} (Vidur profile folder {folder.parent.parent.name})",
                 licence="MIT", url=URLS.get(gpu_name, URL), details=details)
    b = ImportedBundle(out, model, tps, src, gpu, DTYPE, sms)
    rows = _Rows(b)
    for tp in tps:
        _mlp(rows, _tp_rows(mlp, mlp_path, tp), tp, tps[0])
        if attention is not None:
            _attention(rows, _tp_rows(attention, att_path, tp), tp)
    times = mlp[[median_column(t) for t in MLP_OPERATORS if median_column(t) in mlp.columns]].to_numpy(np.float64)
    b.kernel_floor_s = float(np.nanmin(np.where(times > 0, times, np.nan))) * 1e-3 if (times > 0).any() else None
    vocab = set(int(v) for v in mlp["vocab_size"].unique()) if "vocab_size" in mlp.columns else set()
    if vocab and vocab != {model.vocab_size}:
        b.note(f"Vidur profiled a vocabulary of {', '.join(map(str, sorted(vocab)))} (its model config), {model.name} has {model.vocab_size}: "
               "only the embedding lookup saw it, whose time does not depend on the vocabulary")
    for op, n in sorted(rows.impossible.items()):
        b.note(f"{op}: {n} rows faster than the {gpu.name} datasheet roofline at full efficiency left out (not a measurement of that shape)"
               + ("; none was left, so it is filled" if not b.has(op) else ""))
    b.note("add_rmsnorm is half of input_layernorm + post_attention_layernorm + add, the block's norms and residual add as Vidur sums them")
    b.note("measured in float16 (Vidur's profilers); the catalogue counts bytes as for any 16-bit float")
    if attention is None:
        b.note("no attention.csv beside mlp.csv: attention and kv_cache_write are filled from the roofline")
    b.note("the TP all-reduce (Vidur's network/<topology>/all_reduce.csv) is not read: it is priced by the scenario GPU's link model")
    b.note("mlp.csv does not say how many runs each statistic summarizes: its rows carry num_samples 1")
    return b
