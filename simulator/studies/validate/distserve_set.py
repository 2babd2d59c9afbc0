"""DistServe's OPT-13B alignment measurements as measured runs (``servesim validate distserve:FOLDER``).

The DistServe authors measured vLLM and DistServe serving OPT-13B on A100-80GB SXM GPUs under
Poisson ShareGPT load, to align their simulator with reality (github.com/LLMServe/DistServe,
branch ``feat-add-simulator``, ``simdistserve/benchmarks/alignment/``; Apache-2.0; Zhong et
al., OSDI'24). Each ``runs/<system>[-<placement>]-<N>-<rate>.exp`` file holds, on its first
line, a Python-literal list of N request dicts (``prompt_len``, ``output_len``, ``issue_time``,
``first_token_time``, ``complete_time`` in s on one monotonic clock; ``ttft_ms``, ``tpot_ms``,
``latency_ms``), read with ``ast.literal_eval``; the client's summary block after it is not used.

Each file becomes one run:

* the workload is the file's own requests: arrival = ``issue_time`` minus the earliest,
  ``prompt_len`` / ``output_len`` tokens, written as a Vidur-format trace (``arrived_at``,
  ``num_prefill_tokens``, ``num_decode_tokens``) beside the per-request table into a cache
  folder (``$SERVESIM_CACHE_DIR/validate/distserve`` or ``~/.cache/servesim/validate/distserve``);
* the measured TTFT, TPOT and E2E (mean, P50, P90) and SLO attainment come from the per-request
  times. TPOT is (complete − first token) / (output − 1): the ``tpot_ms`` column equals it to
  float rounding (checked on load; a file where it does not is rejected), servesim's TPOT
  excluding the first token. A request of one output token has ``tpot_ms`` 0 and no TPOT;
  SLO attainment scores it on TTFT alone, as servesim does;
* the SLOs are the alignment script's (``align_with_real.py``): TTFT < 200 ms, TPOT < 100 ms;
* the system, with the settings of the authors' evaluation server
  (``evaluation/2-benchmark-serving/2-start-api-server.py``, branch ``main``): OPT-13B in fp16,
  block size 16, swap space 16 GiB, GPU memory utilization 0.95;

  - ``vllm-<N>-<rate>``: vLLM of 2023-24 (v0, prefill-prioritizing, no chunked prefill; servesim's
    ``vllm``) on 1 x A100-80GB, TP 1, ``max_num_batched_tokens`` 16384, ``max_num_seqs`` 1024;
  - ``distserve-c21d11-…``: DistServe, prefill instance TP 2 / PP 1, decode instance TP 1 / PP 1
    (``align_with_real.py`` simulates these with exactly that placement);
  - ``distserve-c21d12-…``: prefill TP 2 / PP 1, decode TP 1 / PP 2, by the naming;
  - ``distserve-<N>-<rate>`` (placement not named): taken as c21d11, the only placement the
    alignment script uses for DistServe and the OPT-13B entry ``(2, 1, 1, 1)`` of the evaluation
    server's ``MODEL_TO_PARALLEL_PARAMS``; their latencies track the c21d11 files of the same
    rate within a few percent;

  DistServe's prefill instance batches under ``--context-max-tokens-per-batch 8192`` and its
  decode instance holds up to ``--decoding-max-batch-size 1024`` requests (the same server
  script); out of blocks, the decode instance swaps its newest request out to CPU memory
  (``DecodingStageFCFSScheduler.get_next_batch``, ``distserve/decoding_stage_scheduler.py``):
  preemption by swap. Both pools sit on one NVLink node (the paper's testbed, Sec. 6.1).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ScenarioError
from simulator.studies.validate.run_format import MeasuredRun, parse_run

PREFIX = "distserve:"
REPO = "LLMServe/DistServe"
COMMIT = "33c3d3b08a442d5228094a468f97046132bb1537"
URL = f"https://github.com/{REPO}/tree/{COMMIT}/simdistserve/benchmarks/alignment/data-ground-truth/opt-13b-sharegpt"
TTFT_SLO_S, TPOT_SLO_S = 0.2, 0.1  # align_with_real.py: target_ftl=200, target_tpot=100 (ms)
KEYS = ("prompt_len", "output_len", "issue_time", "first_token_time", "complete_time", "ttft_ms", "tpot_ms")
# name -> (prefill TP, prefill PP, decode TP, decode PP); None: colocated vLLM on one GPU.
PLACEMENTS: dict[str, tuple[int, int, int, int] | None] = {"vllm": None, "distserve-c21d11": (2, 1, 1, 1),
                                                           "distserve-c21d12": (2, 1, 1, 2), "distserve": (2, 1, 1, 1)}
_NAME = re.compile(r"^(vllm|distserve(?:-c\d+d\d+)?)-(\d+)-(\d+(?:\.\d+)?)$")
_FIX = "give a DistServe alignment .exp file: a first line holding a Python list of request dicts"


def placement(stem: str, source: str) -> tuple[str, int, float, tuple[int, int, int, int] | None]:
    """(system, N, rate in req/s, placement) of a file name's stem (module docstring's table).

    Raises:
        ScenarioError: a name not of the form ``<system>[-c<..>d<..>]-<N>-<rate>``, or a
            placement code not in ``PLACEMENTS``.
    """
    m = _NAME.match(stem)
    if m is None:
        raise ScenarioError(source, "", ..., "file name is not <system>-<N>-<rate>.exp", "name it vllm-N-RATE, distserve-N-RATE or distserve-c21d11-N-RATE")
    system = m.group(1)
    if system not in PLACEMENTS:
        raise ScenarioError(source, "", system, "unknown placement code", f"use one of {', '.join(sorted(PLACEMENTS))}")
    return system, int(m.group(2)), float(m.group(3)), PLACEMENTS[system]


def read_exp(path: Path) -> pd.DataFrame:
    """The requests of one ``.exp`` file, sorted by issue time: one row each, columns ``KEYS``
    plus ``arrival_time`` (s from the first issue), ``ttft_s``, ``tpot_s`` (NaN for one output
    token), ``e2e_s``.

    Raises:
        ScenarioError: unreadable, not a Python literal list of dicts, a missing key, a
            non-positive length, or a ``tpot_ms`` that is not (complete − first) / (output − 1).
    """
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), "", ..., f"cannot read it ({getattr(e, 'strerror', None) or type(e).__name__})", _FIX) from None
    try:
        rows = ast.literal_eval(first)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ScenarioError(str(path), "line 1", ..., "is not a Python literal", _FIX) from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ScenarioError(str(path), "line 1", ..., "is not a non-empty list of dicts", _FIX)
    for i, r in enumerate(rows):
        missing = [k for k in KEYS if not isinstance(r.get(k), (int, float)) or isinstance(r.get(k), bool)]
        if missing:
            raise ScenarioError(str(path), f"request {i}", missing[0], "missing or not a number", _FIX)
        if r["prompt_len"] < 1 or r["output_len"] < 1:
            raise ScenarioError(str(path), f"request {i}", r["prompt_len"] if r["prompt_len"] < 1 else r["output_len"], "token count below 1", "give positive prompt_len and output_len")
    d = pd.DataFrame([{k: r[k] for k in KEYS} for r in rows]).sort_values("issue_time", kind="stable").reset_index(drop=True)
    d["arrival_time"] = d["issue_time"] - d["issue_time"].min()
    d["ttft_s"] = d["first_token_time"] - d["issue_time"]
    d["e2e_s"] = d["complete_time"] - d["issue_time"]
    multi = d["output_len"] > 1
    d["tpot_s"] = np.where(multi, (d["complete_time"] - d["first_token_time"]) / (d["output_len"] - 1).clip(lower=1), np.nan)
    off = multi & ~np.isclose(d["tpot_s"] * 1e3, d["tpot_ms"], rtol=1e-6, atol=1e-6)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ScenarioError(str(path), f"request {i} (by issue time): tpot_ms", float(d["tpot_ms"][i]),
                            "is not (complete_time - first_token_time) / (output_len - 1)", "give the times the benchmark client recorded")
    if (d["ttft_s"] < 0).any() or (d["e2e_s"] < d["ttft_s"]).any():
        raise ScenarioError(str(path), "", ..., "a request's first token precedes its issue or its completion precedes its first token", "give the times the benchmark client recorded")
    return d


def _cache_folder() -> Path:
    base = os.environ.get("SERVESIM_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "servesim") / "validate" / "distserve"


def _write_once(path: Path, frame: pd.DataFrame) -> None:
    if not path.is_file():  # content-addressed: an existing file is already this content
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))} if len(values) else {}


def attainment(d: pd.DataFrame) -> float:
    """Fraction of requests with TTFT < 200 ms and (TPOT < 100 ms or one output token)."""
    ok = (d["ttft_s"] < TTFT_SLO_S) & (d["tpot_s"].isna() | (d["tpot_s"] < TPOT_SLO_S))
    return float(ok.mean())


def run_for(path: Path, cache: Path | None = None) -> MeasuredRun:
    """The measured run of one ``.exp`` file (module docstring).

    Raises:
        ScenarioError: a bad file name or file (``placement``, ``read_exp``).
    """
    system, num, rate, place = placement(path.stem, str(path))
    d = read_exp(path)
    if len(d) != num:
        raise ScenarioError(str(path), "line 1", len(d), f"holds a different number of requests than the name's N = {num}", "name the file after its request count")
    folder = (cache or _cache_folder()) / hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    trace, table = folder / "trace.csv", folder / "requests.csv"
    _write_once(trace, pd.DataFrame({"arrived_at": d["arrival_time"], "num_prefill_tokens": d["prompt_len"], "num_decode_tokens": d["output_len"]}))
    _write_once(table, d[["arrival_time", "prompt_len", "output_len", "ttft_s", "tpot_s", "e2e_s"]])
    common = {"model.name": "opt-13b", "model.dtype": "float16", "hardware.gpu": "a100-80gb-sxm", "workload.trace": str(trace),
              "scheduler.block_size": 16, "scheduler.swap_space_gib": 16.0, "scheduler.gpu_memory_utilization": 0.95,
              "slo.ttft_s": TTFT_SLO_S, "slo.tpot_s": TPOT_SLO_S, "seed": 0}
    if place is None:
        scenario = common | {"scheduler.name": "vllm", "scheduler.max_num_batched_tokens": 16384, "scheduler.max_num_seqs": 1024,
                             "cluster.tensor_parallel_size": 1}
        engine, hardware, settings = "vllm", "1 x A100-80GB SXM", {"max_num_batched_tokens": 16384, "max_num_seqs": 1024}
    else:
        ptp, ppp, dtp, dpp = place
        scenario = common | {"scheduler.name": "distserve", "scheduler.max_num_batched_tokens": 8192, "scheduler.max_num_seqs": 1024,
                             "cluster.prefill": {"tensor_parallel_size": ptp, "pipeline_parallel_size": ppp},
                             "cluster.decode": {"tensor_parallel_size": dtp, "pipeline_parallel_size": dpp}, "cluster.kv_transfer.link": "nvlink",
                             "scheduler.preemption_mode": "swap"}
        engine, hardware = "distserve", f"{ptp * ppp + dtp * dpp} x A100-80GB SXM, one NVLink node"
        settings = {"context_max_tokens_per_batch": 8192, "context_max_batch_size": 128, "decoding_max_batch_size": 1024,
                    "placement": f"prefill TP{ptp} PP{ppp}, decode TP{dtp} PP{dpp}" + (" (assumed: the file name states none)" if system == "distserve" else "")}
    measured = {"ttft_s": _stats(d["ttft_s"].to_numpy()), "tpot_s": _stats(d["tpot_s"].to_numpy()), "e2e_s": _stats(d["e2e_s"].to_numpy()),
                "slo_attainment": attainment(d)}
    return parse_run({
        "name": path.stem, "description": f"{num} ShareGPT requests at {rate:g} req/s (Poisson), measured by the DistServe authors",
        "source": {"name": f"{REPO}@{COMMIT[:12]} simdistserve/benchmarks/alignment/data-ground-truth/opt-13b-sharegpt/{path.name}",
                   "licence": "Apache-2.0", "url": URL},
        "engine": {"name": engine, "version": "2023-24 (OSDI'24 artifact)", "settings": settings | {"gpu_memory_utilization": 0.95, "block_size": 16}},
        "hardware": hardware, "scenario": {"set": scenario}, "metrics": {"tpot": "excluding_first_token"},
        "measured": measured, "requests": str(table), "path": str(path.resolve()),
    }, str(path))


def distserve_runs(value: str, cache: Path | None = None) -> list[MeasuredRun]:
    """Every ``.exp`` file of ``distserve:FOLDER`` (the ``runs/`` folder or its parent), sorted by name.

    Raises:
        ScenarioError: the folder is missing or holds no ``.exp`` file, or a file is bad.
    """
    folder = Path(value.removeprefix(PREFIX))
    if (folder / "runs").is_dir():
        folder = folder / "runs"
    files = sorted(folder.glob("*.exp")) if folder.is_dir() else []
    if not files:
        raise ScenarioError(value, "", ..., "is not a folder holding DistServe .exp files", "give distserve:PATH of the runs/ folder or its parent")
    return [run_for(f, cache) for f in files]
