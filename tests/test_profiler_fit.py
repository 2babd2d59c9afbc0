"""Fitting runtime models: a bundle whose times follow a known formula is recovered, and reported."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler import TINY_MODEL_CONFIG, bundle
from profiler.catalogue import ALL_REDUCE, ATTENTION_DECODE, ATTENTION_PREFILL, CPU_OVERHEAD, ELEMENTWISE, GEMM, plan
from profiler.fit import RUNTIME_MODEL, RUNTIME_TABLES, fit_bundle
from profiler.sweeps import SweepConfig
from profiler.timer import Timing
from simulator.specs.model import model_spec_from_hf_config
from tests.conftest import log_axes_without_tick_format

TINY = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")
SMALL_SWEEP = SweepConfig.for_device("cpu").replace(max_tokens=192, points_per_octave=2, max_num_seqs=32, max_context=512)


def known_time(kind: str, shape: dict[str, int], flops: float, nbytes: float) -> float:
    """The synthetic device: a positive sum of physics terms per operator kind (s)."""
    if kind == GEMM:
        return 4e-6 + flops / 2e11 + nbytes / 2e10
    if kind == ELEMENTWISE:
        return 3e-6 + nbytes / 1e10 + 1e-8 * shape["num_tokens"]
    if kind == ATTENTION_PREFILL:
        return 10e-6 + flops / 1e11 + nbytes / 1e10 + 2e-6 * shape["num_seqs"]
    if kind == ATTENTION_DECODE:
        return 8e-6 + flops / 1e11 + nbytes / 1e10 + 1e-6 * shape["num_seqs"]
    if kind == ALL_REDUCE:
        return 12e-6 + nbytes / 5e10
    if kind == CPU_OVERHEAD:
        return 20e-6 + 2e-6 * shape["num_seqs"]
    raise KeyError(kind)


def synthetic_bundle(root: Path, tps: tuple[int, ...] = (1,), noise: float = 0.01, sweep: SweepConfig = SMALL_SWEEP, model=TINY,
                     quantizations: tuple[str, ...] = ()) -> Path:
    """A profile bundle of ``model`` whose measured times are ``known_time`` times (1 + uniform noise)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    bundle.write_json(root / bundle.MANIFEST, {
        "format": 1, "model": bundle.model_fields(model), "tensor_parallel_sizes": list(tps), "device": "cpu",
        "dtype": "float32", "threads": 1, "quantizations": list(quantizations), "sweep": dataclasses.asdict(sweep),
    })
    bundle.write_json(root / bundle.DEVICE, {"device": "cpu", "name": "synthetic device", "num_compute_units": 8, "runs": []})
    writer = bundle.RowWriter(root)
    for m in plan(model, list(tps), sweep, "float32", {}, quantizations):
        t = known_time(m.kind, m.shape_dict, m.flops, m.nbytes) * (1 + noise * rng.uniform(-1, 1))
        writer.write(m, Timing(t, 0.99 * t, 1.01 * t, 0.98 * t, 1.002 * t, 50, "synthetic"), "2026-01-01T00:00:00+00:00")
    writer.close()
    return root


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, dict]:
    root = synthetic_bundle(tmp_path_factory.mktemp("synthetic"), tps=(1, 2))
    return root, fit_bundle(root, folds=5, html=True, target="median_s")


def test_fit_recovers_a_known_formula_on_held_out_shapes(fitted):
    _, report = fitted
    for entry in report["operators"]:
        assert entry["median_ape_pct"] is not None, entry["operator"]
        # 1 % uniform noise: held-out errors stay near the noise, far below a wrong model's.
        assert entry["median_ape_pct"] < 1.5, entry
        assert entry["p95_ape_pct"] < 4.0, entry


def test_prediction_tables_match_the_formula_between_measured_shapes(fitted):
    root, _ = fitted
    meta = json.loads((root / RUNTIME_MODEL).read_text())
    tables = np.load(root / RUNTIME_TABLES)
    # qkv_proj at TP 2: every token count 1..192, most of them never measured.
    name = "qkv_proj|float32|tp2"
    assert meta["tables"][name]["axes"] == ["num_tokens"]
    m = tables[name + "/axis0"]
    assert list(m) == list(range(1, 193))
    n, k = 2 * 64 + 2 * 64, 256  # Q of 2 of the 4 query heads, K and V of 1 of the 2 KV heads, head_dim 64
    truth = np.array([known_time(GEMM, {}, 2.0 * x * n * k, (x * k + k * n + x * n) * 4.0) for x in m])
    assert np.max(np.abs(tables[name + "/values"] / truth - 1)) < 0.03
    # Decode attention: a 2-D table over batch size x context.
    name = "attention_decode|float32|tp1"
    batch, context = tables[name + "/axis0"], tables[name + "/axis1"]
    values = tables[name + "/values"]
    assert values.shape == (len(batch), len(context)) and batch[0] == 1 and context.min() == 16
    i, j = int(np.searchsorted(batch, 5)), int(np.searchsorted(context, 100))
    b, c = float(batch[i]), float(context[j])
    flops, nbytes = 4.0 * 4 * 64 * b * c, (2.0 * b * c * 2 + 2.0 * b * 4) * 64 * 4
    assert values[i, j] == pytest.approx(known_time(ATTENTION_DECODE, {"num_seqs": b}, flops, nbytes), rel=0.03)


def test_fit_report_names_every_operator_with_its_errors(fitted):
    root, report = fitted
    on_disk = json.loads((root / "fit_report.json").read_text())
    assert on_disk["summary"] == report["summary"] and on_disk["target"] == "median_s"
    names = {e["operator"] for e in report["operators"]}
    assert {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head", "add_rmsnorm", "rotary", "kv_cache_write",
            "silu_mul", "embedding", "rmsnorm", "sampling", "attention_prefill", "attention_decode", "cpu_overhead"} <= names
    for e in report["operators"]:
        assert set(e) >= {"num_rows", "num_shapes", "model", "median_ape_pct", "p95_ape_pct", "candidates", "fit_s"}
        assert e["model"] in e["candidates"]
    html = (root / "fit_report.html").read_text()
    assert "plotly" in html and "qkv_proj" in html and "<script" in html
    log_axes, bare = log_axes_without_tick_format(html)
    assert log_axes > 0 and not bare, bare  # every log axis labels its ticks with full numbers
    # The all-reduce of a one-GPU bundle is the link model: never fitted, listed as such.
    assert json.loads((root / RUNTIME_MODEL).read_text())["all_reduce_link_model_tps"] == [2]


def test_repeats_are_grouped_so_a_shape_never_sits_on_both_sides_of_a_fold(tmp_path):
    sweep = SMALL_SWEEP.replace(repeats=3)
    root = synthetic_bundle(tmp_path / "b", sweep=sweep, noise=0.0)
    gemm = pd.read_csv(root / "gemm.csv")
    assert (gemm.groupby(["operator", "m"]).size() == 3).all()
    report = fit_bundle(root, html=False, target="median_s")
    qkv = next(e for e in report["operators"] if e["operator"] == "qkv_proj")
    assert qkv["num_shapes"] == qkv["num_rows"] == gemm[gemm["operator"] == "qkv_proj"]["m"].nunique()


def test_repeats_combine_to_the_least_disturbed_pass(tmp_path):
    # Three passes; two of them disturbed (+30 % and +50 %) at some shapes: the fit sees the clean one.
    sweep = SMALL_SWEEP.replace(repeats=3)
    root = synthetic_bundle(tmp_path / "b", sweep=sweep, noise=0.0)
    gemm = pd.read_csv(root / "gemm.csv")
    disturbed = gemm["m"].isin([3, 8, 24])
    gemm.loc[disturbed & (gemm["repeat"] == 0), "median_s"] *= 1.3
    gemm.loc[disturbed & (gemm["repeat"] == 2), "median_s"] *= 1.5
    gemm.to_csv(root / "gemm.csv", index=False)
    fit_bundle(root, html=False, target="median_s")
    tables = np.load(root / RUNTIME_TABLES)
    n, k = 4 * 64 + 2 * 2 * 64, 256
    for m in (3, 8, 24):
        truth = known_time(GEMM, {}, 2.0 * m * n * k, (m * k + k * n + m * n) * 4.0)
        assert tables["qkv_proj|float32|tp1/values"][m - 1] == pytest.approx(truth, rel=0.01)


def test_tables_hold_the_measurement_at_every_measured_shape(tmp_path):
    # One shape runs its own kernel (30 % slower than the formula): the table prices it as measured,
    # and its unmeasured neighbours by the model.
    root = synthetic_bundle(tmp_path / "b", noise=0.0)
    gemm = pd.read_csv(root / "gemm.csv")
    odd = (gemm["operator"] == "qkv_proj") & (gemm["m"] == 45)
    gemm.loc[odd, "median_s"] *= 1.3
    gemm.to_csv(root / "gemm.csv", index=False)
    fit_bundle(root, html=False, target="median_s")
    values = np.load(root / RUNTIME_TABLES)["qkv_proj|float32|tp1/values"]
    n, k = 4 * 64 + 2 * 2 * 64, 256

    def truth(m: int) -> float:
        return known_time(GEMM, {}, 2.0 * m * n * k, (m * k + k * n + m * n) * 4.0)

    assert values[45 - 1] == pytest.approx(float(gemm.loc[odd, "median_s"].iloc[0]), rel=1e-9)
    for m in (40, 50, 100):  # not measured
        assert values[m - 1] == pytest.approx(truth(m), rel=0.05)


def test_register_block_remainders_are_features_the_fit_recovers(tmp_path):
    # A BLAS-like device: rows left over from blocks of 4 cost a second pass over the weights
    # (m = 3 is slower than m = 4). The linear prior has that term, so held-out shapes land.
    from profiler import features
    from profiler.fit import cross_validate

    m = np.arange(1, 97)
    n, k = 512.0, 256.0
    frame = pd.DataFrame({"m": m, "n": n, "k": k, "flops": 2.0 * m * n * k, "nbytes": (m * k + n * k + m * n) * 4.0})
    y = 5e-6 + frame["flops"] / 1e11 + n * k * 4 / 2e10 * (1 + ((m % 4 != 0) & (m > 1)))
    passes = features.remainder_passes(frame)
    assert [bool(passes[1][i]) for i in (0, 2, 3, 6, 7)] == [False, True, False, True, False]  # m = 1, 3, 4, 7, 8 (blocks of 4)
    assert list(passes[0][:5] / (n * k)) == [0, 1, 2, 0, 0]  # rows below one block: m = 1..5
    oof = cross_validate(frame.assign(tp=1, median_s=y), GEMM, 1, folds=5)
    errors = 100 * np.abs(oof["physics_linear"] / y - 1)
    assert np.percentile(errors, 95) < 1.0
    assert y[2] > y[3]  # the device this mimics: m = 3 slower than m = 4


def test_fit_of_a_folder_that_is_not_a_bundle_is_a_scenario_error(tmp_path):
    from simulator.errors import ScenarioError

    with pytest.raises(ScenarioError, match="not a profile bundle"):
        fit_bundle(tmp_path)
