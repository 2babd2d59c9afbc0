"""Per-GPU roofline calibration: each GPU its own efficiencies, the scenario's fields win, the
all-reduce priced from measured fits, and provenance on every entry of the calibration file."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from simulator.engine.batch import Batch
from simulator.cost_models.roofline import RooflineCostModel
from simulator.scenario import RooflineConfig
from simulator.specs import calibration
from simulator.specs.calibration import CALIBRATION_FILE, FALLBACK, FALLBACK_SOURCE, ROOFLINE_FIELDS
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec
from tests.conftest import make_request

LLAMA = bundled_model_spec("llama-3-8b")
H100_DEFAULTS = RooflineConfig(**FALLBACK)  # every field set: what servesim priced every GPU with before
CUSTOM = 8 * 1024 * 1024  # vLLM's custom all-reduce limit


def roofline(gpu: str, tp: int = 1, params: RooflineConfig | None = None) -> RooflineCostModel:
    return RooflineCostModel(LLAMA, GPUS[gpu], tp, 1, params or RooflineConfig())


def decode_batch(num_requests: int = 32, context: int = 1000) -> Batch:
    batch = Batch()
    for i in range(num_requests):
        r = make_request(i, prompt=context, output=50)
        r.num_computed_tokens, r.num_generated_tokens = context, 1
        batch.add(r, 1)
    return batch


def test_each_gpu_is_priced_with_its_own_calibration():
    for gpu in ("a100-80gb-sxm", "h100-sxm", "b200", "l40s"):
        cm = roofline(gpu)
        assert cm.resolved.values == calibration.for_gpu(gpu).values
        assert cm.resolved.label.startswith(f"{gpu}: calibrated (aiconfigurator-core")
    # A100 against H100: with calibration the step ratio is not the datasheet ratio at H100's efficiencies.
    batch = decode_batch()
    calibrated = roofline("a100-80gb-sxm").step_time(batch) / roofline("h100-sxm").step_time(batch)
    datasheet = roofline("a100-80gb-sxm", params=H100_DEFAULTS).step_time(batch) / roofline("h100-sxm", params=H100_DEFAULTS).step_time(batch)
    assert abs(calibrated / datasheet - 1) > 0.05


def test_the_a100_calibration_prices_measured_a100_kernels_closer_than_the_h100_defaults():
    pd = pytest.importorskip("pandas")
    aic = pytest.importorskip("aiconfigurator_core")
    from pathlib import Path

    folder = Path(aic.__file__).parent / "systems" / "data" / "a100_sxm"
    gemm_file = folder / "gemm" / "vllm" / "0.14.0" / "gemm_perf.parquet"
    decode_file = folder / "attention" / "vllm" / "0.14.0" / "generation_attention_perf.parquet"
    if not (gemm_file.is_file() and decode_file.is_file()):
        pytest.skip("aiconfigurator-core's A100 vLLM tables are not installed")
    gemm = pd.read_parquet(gemm_file)
    gemm = gemm[(gemm.gemm_dtype == "bfloat16") & gemm.m.isin([1, 16, 256, 4096])
                & gemm.n.isin([4096, 8192, 16384]) & gemm.k.isin([4096, 8192])]
    decode = pd.read_parquet(decode_file)
    decode = decode[(decode.kv_cache_dtype == "bfloat16") & (decode.num_heads == 32) & (decode.num_key_value_heads == 8)
                    & (decode.head_dim == 128) & decode.batch_size.isin([1, 8, 64]) & decode.step.isin([1023, 4095])]
    assert len(gemm) >= 20 and len(decode) >= 6
    errors = {}
    for name, params in (("calibrated", RooflineConfig()), ("h100 defaults", H100_DEFAULTS)):
        cm = roofline("a100-80gb-sxm", params=params)  # Llama-3-8B at TP 1: 32 query, 8 KV heads of 128
        pred = [cm.gemm_time(int(r.m), int(r.k), int(r.n)) for r in gemm.itertuples()]
        pred += [cm.attention_decode_time(int(r.batch_size), int(r.batch_size) * (int(r.step) + 1)) for r in decode.itertuples()]
        measured = np.concatenate([gemm.latency.to_numpy(), decode.latency.to_numpy()]) * 1e-3
        errors[name] = float(np.mean(np.abs(np.log(np.array(pred) / measured))))
    assert errors["calibrated"] < 0.7 * errors["h100 defaults"]


def test_a_field_set_in_the_scenario_wins_over_the_calibration():
    cm = roofline("h100-sxm", params=RooflineConfig(gemm_bandwidth_efficiency=0.5))
    assert cm.resolved.values["gemm_bandwidth_efficiency"] == 0.5
    assert cm.resolved.sources["gemm_bandwidth_efficiency"] == "scenario"
    cal = calibration.for_gpu("h100-sxm")
    assert cm.resolved.values["gemm_flops_efficiency"] == cal.values["gemm_flops_efficiency"]
    # A batch-1 GEMM is weight-bound: bytes / (bandwidth x 0.5) plus the calibrated floor.
    m, k, n = 1, 4096, 14336
    nbytes = (m * k + k * n + m * n) * 2
    assert cm.gemm_time(m, k, n) == pytest.approx(nbytes / (GPUS["h100-sxm"].memory_bandwidth * 0.5) + cal.values["kernel_launch_s"])


def test_an_unknown_gpu_falls_back_to_the_h100_defaults_and_says_so():
    gpu = dataclasses.replace(GPUS["h100-sxm"], name="my-lab-gpu", aiconfigurator_system=None)
    cm = RooflineCostModel(LLAMA, gpu, 2, 1, RooflineConfig())
    assert cm.resolved.values == FALLBACK
    assert set(cm.resolved.sources.values()) == {FALLBACK_SOURCE}
    assert "no calibration" in cm.resolved.label and cm.resolved.label.startswith("my-lab-gpu")
    assert cm.all_reduce_time(1 << 20) == cm.ring_all_reduce_time(1 << 20)  # no measured fits: the ring formula


def test_the_all_reduce_grows_with_bytes_and_beats_the_old_ring_formula_at_decode_sizes():
    sizes = [1 << e for e in range(8, 30)] + [CUSTOM - 16, CUSTOM, CUSTOM + 16]
    sizes.sort()
    for tp in (2, 4, 8):
        cm = roofline("h100-sxm", tp)
        times = [cm.all_reduce_time(n) for n in sizes]
        assert all(b >= a for a, b in zip(times, times[1:])), f"TP {tp}: not monotone in bytes"
        ring = roofline("h100-sxm", tp, H100_DEFAULTS)  # link efficiency set: the old ring formula
        for tokens in (1, 8, 64):  # decode batches: tokens x hidden 4096 x 2 bytes, 8-512 KiB
            nbytes = tokens * LLAMA.hidden_size * 2
            assert cm.all_reduce_time(nbytes) < ring.all_reduce_time(nbytes)
            assert ring.all_reduce_time(nbytes) == ring.ring_all_reduce_time(nbytes)



def test_setting_the_link_efficiency_prices_the_ring_formula_at_that_efficiency():
    cm = roofline("h100-sxm", 4, RooflineConfig(link_bandwidth_efficiency=0.5))
    nbytes = 1 << 22
    expected = 2 * 3 / 4 * nbytes / (GPUS["h100-sxm"].link_bandwidth * 0.5) + 6 * GPUS["h100-sxm"].link_latency_s
    assert cm.all_reduce_time(nbytes) == pytest.approx(expected)


def test_every_gpu_entry_carries_provenance_and_only_fitted_parameters():
    raw = json.loads(CALIBRATION_FILE.read_text())
    assert raw["gpus"], "the calibration file covers no GPU"
    for name, entry in raw["gpus"].items():
        p = entry["provenance"]
        for key in ("package", "package_version", "licence", "system", "device", "framework", "framework_version", "fit_date", "script"):
            assert p[key], f"{name}: provenance lacks {key}"
        assert p["tables"] and all(t.startswith(f"systems/data/{p['system']}/") and t.endswith(".parquet") for t in p["tables"])
        assert set(entry["roofline"]) == set(ROOFLINE_FIELDS)
        for field, v in entry["roofline"].items():
            assert v["source"].split(":")[0] in ("fitted", "assumed") or v["source"].startswith(f"proxy of {p['proxy_of']}"), (name, field)
            assert 0 < v["value"] <= 1 if field.endswith("efficiency") else 0 <= v["value"] < 50e-6, (name, field)
        if p["proxy_of"] is None and name in GPUS:  # efficiencies are fractions of this GPU's own datasheet numbers
            gpu = GPUS[name]
            assert entry["reference"] == {"bf16_flops": gpu.bf16_flops, "memory_bandwidth": gpu.memory_bandwidth,
                                          "link_bandwidth": gpu.link_bandwidth}, f"{name}: GPU spec changed; rerun the script"
        ar = entry["all_reduce"]
        if ar is not None:
            for tp in ar["custom"]:  # vLLM's custom all-reduce: two GPUs or an NVLink group only
                assert tp == "2" or ar["link_kind"] == "nvlink", name
            assert all(f["latency_s"] > 0 and f["bandwidth"] > 0 for f in [*ar["custom"].values(), *ar["nccl"].values()])

    def lists(node):  # every list in the file: table rows would be lists of numbers
        if isinstance(node, dict):
            return [x for v in node.values() for x in lists(v)]
        return [node] if isinstance(node, list) else []

    assert all(isinstance(x, str) for lst in lists(raw) for x in lst)


def test_a_gpu_of_a_spec_file_takes_the_calibration_of_its_aiconfigurator_system():
    gpu = dataclasses.replace(GPUS["h100-sxm"], name="h100-from-a-file")  # keeps aiconfigurator_system h100_sxm
    cm = RooflineCostModel(LLAMA, gpu, 2, 1, RooflineConfig())
    assert cm.resolved.values == roofline("h100-sxm", 2).resolved.values
    assert "h100_sxm" in cm.resolved.label


def test_the_profilers_link_model_rows_are_the_roofline_ring_formula():
    from profiler.run import link_model_timing

    for name in ("h100-sxm", "l40s", "rtx-4090"):
        assert link_model_timing(2, 1e6, GPUS[name]).median_s == pytest.approx(roofline(name, 2).ring_all_reduce_time(1e6), rel=1e-12)
