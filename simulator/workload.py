"""The workload: the requests of one run, replayed from a trace or drawn from distributions.

Supported traces (format found from the file extension and its columns; see
``../shared/traces/README.md`` for where each is published):

    format        file    arrival                              prompt / output tokens
    Azure 2023    .csv    TIMESTAMP (absolute datetime)        ContextTokens / GeneratedTokens
    Vidur         .csv    arrived_at (s)                       num_prefill_tokens / num_decode_tokens
    length-only   .csv    none: drawn from workload.arrival    num_prefill_tokens / num_decode_tokens
    Mooncake      .jsonl  timestamp (ms), plus hash_ids        input_length / output_length
    vLLM ShareGPT .jsonl  arrival_time_ns (ns)                 input_toks / output_toks

Mooncake's ``hash_ids`` (the prefix-cache keys) are optional: a trace without them replays with
no shared prefixes; a value that is not a list of integers is an invalid row.

Every arrival time is shifted so the first request arrives at 0.0 and divided by
``workload.time_scale``; requests are sorted by arrival (stable) and numbered 0..N-1.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.scenario import ArrivalConfig, LengthConfig, WorkloadConfig
from simulator.yaml_files import decode_utf8

_TRACES_FIX = (
    "check the path; public traces are downloaded from their publishers: Azure/AzurePublicDataset, "
    "kvcache-ai/Mooncake, microsoft/vidur, microsoft/sarathi-serve, project-etalon/etalon on GitHub "
    "(see the traces README)"
)
_ROW_FIX = "correct the trace file or set workload.on_invalid: skip"


@dataclass(frozen=True, slots=True)
class _Format:
    name: str
    time: str | None  # arrival column; None: arrivals come from workload.arrival
    prompt: str
    output: str
    time_unit_s: float | None  # seconds per time unit; None: absolute datetime strings
    hashes: str | None = None


_CSV_FORMATS = (
    _Format("Azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", None),
    _Format("Vidur", "arrived_at", "num_prefill_tokens", "num_decode_tokens", 1.0),
    _Format("length-only", None, "num_prefill_tokens", "num_decode_tokens", None),
)
_JSONL_FORMATS = (
    _Format("Mooncake", "timestamp", "input_length", "output_length", 1e-3, hashes="hash_ids"),
    _Format("vLLM ShareGPT", "arrival_time_ns", "input_toks", "output_toks", 1e-9),
)
_SUPPORTED = "supported column sets: " + "; ".join(
    f"{f.name} ({', '.join(c for c in (f.time, f.prompt, f.output, f.hashes) if c)})" for f in _CSV_FORMATS + _JSONL_FORMATS
)


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests of one run.

    Attributes:
        requests: sorted by ``arrival_time`` (s, first at 0.0); ``request_id`` is the position.
        source: the trace path, or ``"synthetic"``.
        num_skipped: bad rows (or too-long prompts) dropped under ``on_invalid: skip``.
        num_truncated_outputs: requests whose output was cut so prompt + output <= max_model_len.
    """

    requests: list[Request]
    source: str
    num_skipped: int
    num_truncated_outputs: int


@dataclass(frozen=True, slots=True)
class WorkloadColumns:
    """The requests of one run as columns, row i being request i (sorted by arrival), so a long
    trace costs 8 bytes a field a request instead of one ``Request`` object each.

    Attributes:
        arrival_time: float64 (s), shape (N,). num_prompt_tokens, num_output_tokens: int64 (N,).
        block_hashes: per request its prompt's prefix-cache keys (or None), or None for none at all.
        source, num_skipped, num_truncated_outputs: as ``Workload``.
    """

    arrival_time: np.ndarray
    num_prompt_tokens: np.ndarray
    num_output_tokens: np.ndarray
    block_hashes: list | None
    source: str
    num_skipped: int
    num_truncated_outputs: int

    def __len__(self) -> int:
        return len(self.arrival_time)

    def requests(self, start: int = 0, stop: int | None = None) -> list[Request]:
        """Fresh ``Request`` objects for rows ``start`` to ``stop`` (exclusive; default: the end)."""
        stop = len(self) if stop is None else stop
        hashes = self.block_hashes[start:stop] if self.block_hashes is not None else [None] * (stop - start)
        return [
            Request(request_id=i, arrival_time=t, num_prompt_tokens=p, num_output_tokens=o, block_hashes=h)
            for i, t, p, o, h in zip(range(start, stop), self.arrival_time[start:stop].tolist(), self.num_prompt_tokens[start:stop].tolist(),
                                     self.num_output_tokens[start:stop].tolist(), hashes)
        ]


def load_workload(cfg: WorkloadConfig, seed: int, max_model_len: int, source: str = "<scenario>") -> Workload:
    """The workload of ``load_workload_columns`` as one ``Request`` per row."""
    columns = load_workload_columns(cfg, seed, max_model_len, source)
    return Workload(columns.requests(), columns.source, columns.num_skipped, columns.num_truncated_outputs)


def load_workload_columns(cfg: WorkloadConfig, seed: int, max_model_len: int, source: str = "<scenario>") -> WorkloadColumns:
    """Build the workload a scenario describes: replay ``cfg.trace``, or sample ``cfg.num_requests``.

    Arrival processes and length distributions draw from independent child streams of
    ``np.random.SeedSequence(seed)`` (arrivals, prompts, outputs), so the same seed gives the same
    workload and changing one distribution leaves the others' samples unchanged.

    Policies:
      * A row with a missing or non-integer token count, a prompt < 1 token or an output < 1 token
        is invalid, and so is a prompt of >= ``max_model_len`` tokens (at least one output token
        must fit). ``on_invalid: error`` raises on the first one, ``skip`` drops and counts them.
        The whole file is checked before ``max_requests`` / ``max_duration_s`` cut it.
      * prompt + output > ``max_model_len``: the output is cut to ``max_model_len - prompt``, as
        vLLM stops a request when it reaches the model's maximum length.
      * ``max_requests`` keeps the first N requests by arrival; ``max_duration_s`` keeps those
        arriving (after time scaling) before T seconds.

    Args:
        cfg: the scenario's ``workload`` section.
        seed: the scenario seed, >= 0 (validated with the scenario).
        max_model_len: the model's context length (tokens).
        source: the scenario file, named in errors about scenario fields; errors about trace
            rows name the trace file.

    Raises:
        ScenarioError: a missing or unrecognized trace file, an invalid row under
            ``on_invalid: error``, or no valid request left after skipping (truncation always keeps
            the first request, which arrives at 0.0).
    """
    arrival_rng, prompt_rng, output_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    hashes: list | None = None
    if cfg.trace is None:
        origin = "synthetic"
        prompts = _sample_lengths(cfg.prompt_tokens, cfg.num_requests, prompt_rng, "prompt", source)
        outputs = _sample_lengths(cfg.output_tokens, cfg.num_requests, output_rng, "output", source)
        too_long = prompts >= max_model_len
        if too_long.any() and cfg.on_invalid == "error":
            problem = f"a sampled prompt is >= model.max_model_len = {max_model_len}"
            fix = "lower workload.prompt_tokens.max, raise model.max_model_len or set workload.on_invalid: skip"
            raise ScenarioError(source, "workload.prompt_tokens", int(prompts[too_long][0]), problem, fix)
        keep = ~too_long
        arrivals = _arrival_times(cfg.arrival, cfg.num_requests, arrival_rng)
    else:
        origin = cfg.trace
        fmt, table = _read_trace(Path(cfg.trace), source, "workload.trace")
        arrivals, prompts, outputs, keep = _check_rows(fmt, table, max_model_len, cfg.on_invalid, cfg.trace)
        if fmt.time is None:
            arrivals = _arrival_times(cfg.arrival, len(table), arrival_rng)
        if fmt.hashes is not None and fmt.hashes in table.columns:  # a Mooncake trace may carry no hash_ids
            hashes = [tuple(h) if isinstance(h, list) else None for h in table[fmt.hashes][keep]]
    num_skipped = int((~keep).sum())
    if not keep.any():
        raise ScenarioError(origin, "", ..., f"no valid request ({num_skipped} skipped)", _ROW_FIX)
    arrivals, prompts, outputs = arrivals[keep], prompts[keep].astype(np.int64), outputs[keep].astype(np.int64)

    arrivals = (arrivals - arrivals.min()) / cfg.time_scale
    order = np.argsort(arrivals, kind="stable")
    arrivals = arrivals[order]
    num_kept = len(order)
    if cfg.max_requests is not None:
        num_kept = min(num_kept, cfg.max_requests)
    if cfg.max_duration_s is not None:
        num_kept = min(num_kept, int(np.searchsorted(arrivals, cfg.max_duration_s, side="left")))
    order, arrivals = order[:num_kept], arrivals[:num_kept]
    prompts, wanted = prompts[order], outputs[order]
    outputs = np.minimum(wanted, max_model_len - prompts)
    hashes = [hashes[i] for i in order.tolist()] if hashes is not None else None
    return WorkloadColumns(arrivals, prompts, outputs, hashes, origin, num_skipped, int((outputs < wanted).sum()))


def has_prefix_keys(cfg: WorkloadConfig, source: str = "<scenario>") -> bool:
    """Whether the workload's requests carry prefix-cache keys (a trace's ``hash_ids``).

    Synthetic workloads never do. Reads the trace (memoized, so a run after it reads it once).

    Raises:
        ScenarioError: the trace is missing or unreadable, as in ``load_workload``.
    """
    if cfg.trace is None:
        return False
    fmt, table = _read_trace(Path(cfg.trace), source, "workload.trace")
    return fmt.hashes is not None and fmt.hashes in table.columns and bool(table[fmt.hashes].map(lambda h: isinstance(h, list) and len(h) > 0).any())


def _read_trace(path: Path, source: str, field: str) -> tuple[_Format, pd.DataFrame]:
    table = _read_table(path, source, field)
    return _detect(path, table.columns), table


def _read_table(path: Path, source: str, field: str) -> pd.DataFrame:
    """One row per request, columns as in the file (JSONL: scalar fields and block hashes only).

    The parsed table is memoized per process by path, size and modification time (sweeps run
    many simulations of one trace); callers must not modify it.
    """
    if path.is_dir():
        raise ScenarioError(source, field, str(path), "is a directory, not a trace file", "give the trace file itself (a .csv or .jsonl inside it)")
    if not path.is_file():
        raise ScenarioError(source, field, str(path), "trace file not found", _TRACES_FIX)
    stat = path.stat()
    try:
        return _parse_table(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError as e:
        raise ScenarioError(str(path), "", ..., f"cannot read the trace file ({e.strerror or type(e).__name__})", "check the file's permissions") from None


@functools.lru_cache(maxsize=8)
def _parse_table(name: str, size: int, mtime_ns: int) -> pd.DataFrame:
    path = Path(name)
    if _is_jsonl(path):
        table = _read_jsonl(path)
    else:
        try:
            table = pd.read_csv(path)
        except UnicodeDecodeError:
            decode_utf8(path.read_bytes(), str(path), "save the trace as UTF-8")  # names the encoding
            raise ScenarioError(str(path), "", ..., "cannot read it as UTF-8 text", "save the trace as UTF-8") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise ScenarioError(str(path), "", ..., f"unreadable CSV ({str(e).strip()})", "give a CSV trace with a header row") from None
    if table.empty:
        raise ScenarioError(str(path), "", ..., "the trace has no rows", "give a trace with at least one request")
    return table


def _read_jsonl(path: Path) -> pd.DataFrame:
    # Token-id lists (vLLM's input_tok_ids) are parsed line by line and dropped, never kept.
    hash_columns = {f.hashes for f in _JSONL_FORMATS if f.hashes}
    columns: dict[str, list] = {}
    try:
        with path.open(encoding="utf-8-sig") as file:
            for n, line in enumerate(filter(str.strip, file), start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ScenarioError(str(path), f"row {n}", ..., f"not valid JSON ({e.msg})", "correct the trace file") from None
                if not isinstance(record, dict):
                    raise ScenarioError(str(path), f"row {n}", ..., "not a JSON object", "write one JSON object per line")
                if not columns:
                    columns = {k: [] for k, v in record.items() if not isinstance(v, list) or k in hash_columns}
                for key, values in columns.items():
                    values.append(record.get(key))
    except UnicodeDecodeError:
        decode_utf8(path.read_bytes(), str(path), "save the trace as UTF-8")  # names the encoding
        raise ScenarioError(str(path), "", ..., "cannot read it as UTF-8 text", "save the trace as UTF-8") from None
    return pd.DataFrame(columns)


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json")


def _detect(path: Path, columns: pd.Index) -> _Format:
    for fmt in _JSONL_FORMATS if _is_jsonl(path) else _CSV_FORMATS:
        if {c for c in (fmt.time, fmt.prompt, fmt.output) if c} <= set(columns):
            return fmt
    kind = "JSON lines" if _is_jsonl(path) else "CSV"
    raise ScenarioError(str(path), "", list(map(str, columns)), f"unrecognized {kind} trace columns", _SUPPORTED)


def _check_rows(
    fmt: _Format, table: pd.DataFrame, max_model_len: int, on_invalid: str, trace: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times (s, NaN if none), prompt and output lengths (float), and the mask of valid rows.

    Raises ScenarioError on the first invalid row when ``on_invalid`` is ``"error"``.
    """
    arrivals = _seconds(table[fmt.time], fmt) if fmt.time else np.zeros(len(table))
    prompts = pd.to_numeric(table[fmt.prompt], errors="coerce").to_numpy(float)
    outputs = pd.to_numeric(table[fmt.output], errors="coerce").to_numpy(float)
    # (bad rows, column, problem, fix), in the order a row's problems are reported.
    checks: list[tuple[np.ndarray, str, str, str]] = []
    if fmt.time:
        checks.append((~np.isfinite(arrivals), fmt.time, "is missing or not a time", _ROW_FIX))
    for column, values, what in ((fmt.prompt, prompts, "prompt"), (fmt.output, outputs, "output")):
        finite = np.isfinite(values)
        checks += [
            (~finite, column, "is missing or not a number", _ROW_FIX),
            (finite & (values != np.floor(values)), column, "is not an integer", _ROW_FIX),
            (finite & (values < 1), column, f"must be >= 1 (a request has at least one {what} token)", _ROW_FIX),
        ]
    too_long = f"is >= model.max_model_len = {max_model_len}, leaving no room for an output token"
    checks.append((prompts >= max_model_len, fmt.prompt, too_long, "raise model.max_model_len or set workload.on_invalid: skip"))
    if fmt.hashes is not None and fmt.hashes in table.columns:  # optional; a row without them shares no prefix
        bad_ids = np.array([not (h is None or isinstance(h, list) and all(type(x) is int for x in h)) for h in table[fmt.hashes]], dtype=bool)
        checks.append((bad_ids, fmt.hashes, "is not a list of integer block ids", _ROW_FIX))
    bad = np.logical_or.reduce([mask for mask, *_ in checks])
    if on_invalid == "error" and bad.any():
        row = int(np.argmax(bad))
        _, column, problem, fix = next(c for c in checks if c[0][row])
        value = table[column].iloc[row]
        value = value.item() if isinstance(value, np.generic) else value
        raise ScenarioError(trace, f"row {row + 1}", value, f"{column} {problem}", fix)
    return arrivals, prompts, outputs, ~bad


def _seconds(column: pd.Series, fmt: _Format) -> np.ndarray:
    """Arrival times in seconds after the file's earliest one; NaN where unreadable."""
    if fmt.time_unit_s is None:  # absolute datetimes, e.g. Azure's 2023-11-16 18:15:46.6805900
        times = pd.to_datetime(column, format="ISO8601", errors="coerce")
        return ((times - times.min()) / pd.Timedelta(seconds=1)).to_numpy(float)
    # Subtract first, in the file's integer unit, so nanosecond epochs keep their precision.
    times = pd.to_numeric(column, errors="coerce")
    return ((times - times.min()) * fmt.time_unit_s).to_numpy(float)


def _arrival_times(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s), the first at 0.0 like a replayed trace, then i.i.d. gaps.

    Poisson: exponential gaps of mean 1/rate. Gamma: shape k = 1/cv^2, scale 1/(rate k), so the
    mean gap is 1/rate and its coefficient of variation is cv (cv = 1 is Poisson; cv > 1 bursty).
    """
    if cfg.process == "poisson":
        gaps = rng.exponential(1.0 / cfg.rate, n)
    else:
        shape = 1.0 / cfg.cv**2
        gaps = rng.gamma(shape, 1.0 / (cfg.rate * shape), n)
    return np.concatenate(([0.0], np.cumsum(gaps[1:])))


def _sample_lengths(cfg: LengthConfig, n: int, rng: np.random.Generator, kind: str, source: str) -> np.ndarray:
    """``n`` token lengths (int64), rounded and clipped to [min, max].

    Lognormal from its mean and median: mu = ln(median), sigma = sqrt(2 ln(mean / median)).
    Clipping moves the sample mean slightly away from ``mean`` (a heavy tail cut at ``max``).
    """
    match cfg.distribution:
        case "fixed":
            samples = np.full(n, float(cfg.value))
        case "uniform":
            samples = rng.integers(cfg.min, cfg.max, size=n, endpoint=True)
        case "lognormal":
            sigma = np.sqrt(2.0 * np.log(cfg.mean / cfg.median))
            samples = rng.lognormal(np.log(cfg.median), sigma, n)
        case "empirical":
            samples = rng.choice(_empirical_values(cfg, kind, source), size=n, replace=True)
    return np.clip(np.rint(samples), cfg.min, cfg.max).astype(np.int64)


def _empirical_values(cfg: LengthConfig, kind: str, source: str) -> np.ndarray:
    """The numeric values of ``cfg.column`` in ``cfg.file`` (default: its prompt or output column)."""
    field = f"workload.{kind}_tokens"
    path = Path(cfg.file)
    table = _read_table(path, source, f"{field}.file")
    column = cfg.column
    if column is None:
        fmt = _detect(path, table.columns)
        column = fmt.prompt if kind == "prompt" else fmt.output
    elif column not in table.columns:
        known = ", ".join(map(str, table.columns))
        raise ScenarioError(source, f"{field}.column", column, f"no such column in {path}", f"use one of: {known}")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    values = values[np.isfinite(values)]
    if not len(values):
        raise ScenarioError(str(path), column, ..., "has no numeric values", "pick a column of token counts")
    return values
