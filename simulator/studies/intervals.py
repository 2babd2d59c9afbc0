"""Prediction intervals: N perturbed replicates of one scenario, an interval on every summary figure.

A run's figures move with two things a single seed hides:

* the workload: another draw of the same arrival process and length distributions (``reseed``),
  or another sample of a trace's requests (``bootstrap``: requests resampled with replacement,
  each with the inter-arrival gap before it, so the rate and the gap distribution are kept but
  a trace's slow swings in rate are not);
* the step-time model's own error: each replicate multiplies every step time by one lognormal
  factor (``simulator.cost_models.perturbed``), of median spread the model's relative error:
  ``uncertainty.step_time_relative_error`` when set; with ``hardware.profile``, the fit report's
  held-out median absolute percentage error per operator (``fit_report.json``, written by
  ``servesim fit``), combined as the shape-weighted root mean square over operators (one
  factor per run treats the operators' errors as fully correlated, the wider case); else the
  roofline's measured 6.4 % (``simulator.scenario.ROOFLINE_RELATIVE_ERROR``).

Replicate 0 is the scenario as given (the run whose results are written); replicates 1..N-1 take
seeds and factors spawned from ``np.random.SeedSequence([scenario.seed, STREAM])``, so the same
scenario and seed give the same intervals on any executor, in any order of completion.

The interval of a figure is distribution-free (order statistics of exchangeable draws: a new
draw falls between the j-th and k-th smallest of n with probability (k - j) / (n + 1); Wilks
1941, or any text on tolerance intervals): j = floor((n + 1)(1 - level) / 2), k = n + 1 - j.
That needs n >= 2 / (1 - level) - 1 replicates (19 for 90 %); fewer give [min, max] and a
nominal coverage below the level, reported as ``nominal_coverage``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.scenario import ROOFLINE_RELATIVE_ERROR, Scenario
from simulator.studies.executors import Executor

STREAM = 0x5EED_1A7E  # separates the replicates' seed stream from every other use of scenario.seed
# Summary entries that are settings or bookkeeping, not figures of the run.
_NOT_FIGURES = frozenset({"run", "slo", "wall_time_s", "num_requests", "num_kv_blocks_per_replica"})


@dataclass(frozen=True)
class Replicate:
    """One perturbed run: its scenario (seed set), its step-time factor, its bootstrap seed.

    Attributes:
        index: 0 for the scenario as given, 1..N-1 for the perturbed ones.
        scenario: the scenario to run (``seed`` replaced under ``reseed``).
        source: the scenario file, for error messages.
        step_time_factor: every step time is multiplied by this (1.0: unperturbed).
        bootstrap_seed: resample the requests with this seed; None keeps them.
    """

    index: int
    scenario: Scenario
    source: str
    step_time_factor: float = 1.0
    bootstrap_seed: int | None = None


def workload_mode(scenario: Scenario) -> str:
    """``reseed``, ``bootstrap`` or ``fixed``: ``uncertainty.workload`` with ``auto`` resolved."""
    mode = scenario.uncertainty.workload
    if mode == "auto":
        return "bootstrap" if scenario.workload.trace is not None else "reseed"
    return mode


def step_time_error(scenario: Scenario, base_summary: dict) -> tuple[float, str]:
    """The step-time model's relative error (a fraction) and where it came from.

    ``base_summary`` is the unperturbed run's summary: its ``run.cost_model.bundle`` names the
    profile folder whose ``fit_report.json`` is read.
    """
    stated = scenario.uncertainty.step_time_relative_error
    if stated is not None:
        return stated, "uncertainty.step_time_relative_error"
    bundle = ((base_summary.get("run") or {}).get("cost_model") or {}).get("bundle")
    if bundle is None:
        return ROOFLINE_RELATIVE_ERROR, "roofline, measured per-layer median |error| 6.4 % (benchmarks/README.md, Roofline calibration)"
    path = Path(bundle) / "fit_report.json"
    try:
        operators = json.loads(path.read_text(encoding="utf-8"))["operators"]
    except (OSError, ValueError, KeyError):
        return ROOFLINE_RELATIVE_ERROR, f"roofline's 6.4 %: no readable {path}"
    rows = [(e["median_ape_pct"] / 100, max(int(e.get("num_shapes") or 1), 1)) for e in operators if e.get("median_ape_pct") is not None]
    if not rows:
        return ROOFLINE_RELATIVE_ERROR, f"roofline's 6.4 %: {path} holds no held-out error"
    weight = sum(n for _, n in rows)
    rms = math.sqrt(sum(n * e * e for e, n in rows) / weight)
    return rms, f"held-out median |error| per operator, RMS over {len(rows)} operators ({path})"


def plan_replicates(scenario: Scenario, source: str, relative_error: float) -> list[Replicate]:
    """The ``uncertainty.replicates`` replicates of ``scenario`` (see the module docstring)."""
    from simulator.cost_models.perturbed import step_time_factor

    n, mode = scenario.uncertainty.replicates, workload_mode(scenario)
    replicates = [Replicate(0, scenario, source)]
    for index, child in enumerate(np.random.SeedSequence([scenario.seed, STREAM]).spawn(n - 1), start=1):
        seed, bootstrap_seed = (int(x) for x in child.generate_state(2))
        z = float(np.random.default_rng(child).standard_normal())
        run_scenario = dataclasses.replace(scenario, seed=seed) if mode == "reseed" else scenario
        replicates.append(Replicate(index, run_scenario, source, step_time_factor(relative_error, z),
                                    bootstrap_seed if mode == "bootstrap" else None))
    return replicates


def figures(summary: dict) -> dict[str, float]:
    """Every scalar figure of a run summary, by dotted name (``ttft_s.p50``, ``goodput_rps``).

    Settings and bookkeeping (``slo``, ``run``, ``wall_time_s``, ``num_requests``, KV blocks) and
    figures without a value (None, e.g. TPOT when no request has two output tokens) are left out.
    """
    out: dict[str, float] = {}
    for name, value in summary.items():
        if name in _NOT_FIGURES:
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, sub in items:
            if isinstance(sub, bool) or not isinstance(sub, int | float) or not math.isfinite(sub):
                continue
            out[name if key is None else f"{name}.{key}"] = float(sub)
    return out


def run_replicate(replicate: Replicate) -> dict[str, float]:
    """Run one replicate and return its ``figures`` (a module-level function: it goes to workers)."""
    from simulator.engine.simulation import Simulation

    with tempfile.TemporaryDirectory(prefix="servesim-bootstrap-") as folder:
        scenario = replicate.scenario
        if replicate.bootstrap_seed is not None:
            scenario = _bootstrapped(scenario, replicate.source, replicate.bootstrap_seed, Path(folder))
        # Records nobody reads are not kept: a replicate returns figures, not tables.
        scenario = dataclasses.replace(scenario, output=dataclasses.replace(scenario.output, iterations="none", report=False))
        simulation = Simulation(scenario, replicate.source)
        if replicate.step_time_factor != 1.0:
            from simulator.cost_models.perturbed import PerturbedCostModel

            for replica in simulation.replicas:  # before the run: each replica's loop reads its cost model when it starts
                replica.cost_model = PerturbedCostModel(replica.cost_model, replicate.step_time_factor)
        return figures(simulation.run().summary)


def _bootstrapped(scenario: Scenario, source: str, seed: int, folder: Path) -> Scenario:
    """``scenario`` replaying its own requests resampled with replacement, from a trace in ``folder``.

    The requests are those the scenario loads (trace or synthetic, after skipping and cuts); each
    resampled request keeps its prompt, output, prefix keys and the gap before it. Written as a
    Mooncake-format trace (timestamps in ms) so the replicate loads it like any trace.
    """
    from simulator.workload import load_workload_columns

    # No model-length cut here: the replicate's own load applies the scenario's policy.
    columns = load_workload_columns(scenario.workload, scenario.seed, 2**62, source)
    rng = np.random.default_rng(seed)
    n = len(columns)
    pick = rng.integers(0, n, n)
    gaps = np.diff(columns.arrival_time, prepend=columns.arrival_time[0])
    arrivals_ms = np.cumsum(gaps[pick]) * 1e3
    path = folder / "bootstrap.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row, i in enumerate(pick.tolist()):
            record = {"timestamp": float(arrivals_ms[row]), "input_length": int(columns.num_prompt_tokens[i]),
                      "output_length": int(columns.num_output_tokens[i])}
            if columns.block_hashes is not None and columns.block_hashes[i] is not None:
                record["hash_ids"] = list(columns.block_hashes[i])
            f.write(json.dumps(record) + "\n")
    workload = dataclasses.replace(scenario.workload, trace=str(path), time_scale=1.0, max_requests=None, max_duration_s=None)
    return dataclasses.replace(scenario, workload=workload)


def interval_ranks(n: int, level: float) -> tuple[int, int]:
    """The 1-based ranks (j, k) of the order statistics bounding a ``level`` interval of ``n`` draws."""
    assert n >= 1 and 0 < level < 1, f"need n >= 1 and 0 < level < 1, got {n}, {level}"
    j = max(1, math.floor((n + 1) * (1 - level) / 2))
    return j, n + 1 - j


def nominal_coverage(n: int, level: float) -> float:
    """The probability that a new exchangeable draw falls inside the interval of ``n`` draws."""
    j, k = interval_ranks(n, level)
    return (k - j) / (n + 1)


def prediction_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """(lo, hi): the j-th and k-th smallest of ``values`` (``interval_ranks``)."""
    ordered = sorted(values)
    j, k = interval_ranks(len(ordered), level)
    return ordered[j - 1], ordered[k - 1]


def compute_intervals(scenario: Scenario, source: str, base_summary: dict, executor: Executor) -> dict:
    """Run replicates 1..N-1 on ``executor``; return the ``intervals`` and ``uncertainty`` summary sections.

    ``base_summary`` is replicate 0's (the run of ``scenario`` as given). ``intervals`` maps every
    figure (``figures``) that every replicate has to ``[lo, hi]``; ``uncertainty`` says what was
    varied, how much, and the interval's nominal coverage.

    Raises:
        ScenarioError: a replicate's scenario cannot run (e.g. a bootstrapped trace too long).
    """
    level, n = scenario.uncertainty.level, scenario.uncertainty.replicates
    relative_error, error_source = step_time_error(scenario, base_summary)
    replicates = plan_replicates(scenario, source, relative_error)
    results: dict[int, dict[str, float]] = {0: figures(base_summary)}
    for index, result in executor.map(run_replicate, replicates[1:], desc="replicates"):
        results[index + 1] = result
    ordered = [results[i] for i in range(n)]
    names = [name for name in ordered[0] if all(name in r for r in ordered)]
    intervals = {name: list(prediction_interval([r[name] for r in ordered], level)) for name in names}
    uncertainty = {
        "replicates": n, "level": level, "nominal_coverage": nominal_coverage(n, level),
        "workload": workload_mode(scenario), "step_time_relative_error": relative_error, "step_time_error_source": error_source,
        "step_time_factors": [r.step_time_factor for r in replicates],
        "interval": "order statistics of the replicates (distribution-free prediction interval)",
    }
    return {"intervals": intervals, "uncertainty": uncertainty}


def coverage_note(n: int, level: float) -> str | None:
    """A warning when ``n`` replicates cannot reach ``level`` coverage, else None."""
    if nominal_coverage(n, level) >= level - 1e-12:
        return None
    need = math.ceil(2 / (1 - level) - 1 - 1e-9)
    return (f"{n} replicates give a {nominal_coverage(n, level):.0%} interval ([min, max]), not {level:.0%}; "
            f"use --replicates {need} or more")
