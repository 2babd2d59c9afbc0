"""Shape sweeps, the operator catalogue's plan, and the bundle's append-only CSVs."""

from __future__ import annotations

import pytest

from profiler import TINY_MODEL_CONFIG, bundle
from profiler.catalogue import OPERATORS, check_tp, layer_dims, plan
from profiler.sweeps import SweepConfig, decode_grid, log_spaced, prefill_grid, tile_edges, token_counts
from profiler.timer import Timing, summarize
from simulator.specs.model import bundled_model_spec, model_spec_from_hf_config

TINY = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")


def test_token_counts_hold_both_sides_of_every_tile_edge_sorted_and_unique():
    counts = token_counts(16384, points_per_octave=4)
    assert counts == sorted(set(counts)) and counts[0] == 1 and counts[-1] == 16384
    for edge in (64, 128, 256, 512, 1024, 2048, 4096, 8192):
        assert {edge - 1, edge, edge + 1} <= set(counts), edge
    assert 16383 in counts and 16385 not in counts  # the top edge only from below
    # About four points per doubling between edges, not a dense range.
    assert 4 <= sum(1024 < c < 2048 for c in counts) <= 6


def test_small_sweeps_stay_within_their_limits():
    assert token_counts(1) == [1]
    assert token_counts(100, points_per_octave=1) == [*range(1, 17), 32, 63, 64, 65, 100]  # every count to 16
    assert token_counts(100, points_per_octave=1, dense_below=0) == [1, 2, 4, 8, 16, 32, 63, 64, 65, 100]
    assert token_counts(5, points_per_octave=1) == [1, 2, 3, 4, 5]
    assert tile_edges(130) == [63, 64, 65, 127, 128, 129]
    assert log_spaced(3, 3, 2) == [3]
    with pytest.raises(ValueError):
        token_counts(0)


def test_attention_grids_are_sorted_unique_and_within_the_context():
    grid = prefill_grid([512, 1, 64, 64], [0, 1024, 0, 3000], max_context=2048)
    assert grid == sorted(set(grid))
    assert all(n + c <= 2048 for n, c in grid) and (512, 1024) in grid and (64, 0) in grid
    assert not any(c == 3000 for _, c in grid)
    dec = decode_grid([4, 1, 4], [4096, 16], max_context=2048)
    assert dec == [(1, 16), (4, 16)]
    sweep = SweepConfig.for_device("cpu").replace(max_num_seqs=8, max_tokens=32, max_context=128)
    assert max(b for b, _ in sweep.decode_grid(2048)) == 8 and max(c for _, c in sweep.decode_grid(2048)) <= 128
    assert max(n for n, _ in sweep.prefill_grid(2048)) <= 32 and sweep.cpu_overhead_batches() == [1, 2, 4, 8]


def test_plan_uses_tp_shard_shapes_and_measures_tp_independent_operators_once():
    llama = bundled_model_spec("llama-3-8b")
    sweep = SweepConfig.for_device("cpu").replace(max_tokens=8, points_per_octave=1, max_num_seqs=2, max_context=64)
    rows = plan(llama, [1, 2, 4], sweep, "bfloat16", {})
    qkv = {(m.tp, m.shape_dict["n"], m.shape_dict["k"]) for m in rows if m.operator == "qkv_proj"}
    # Llama-3-8B: 32 query heads and 8 KV heads of 128 (6144 = 4096 + 2 x 1024), MLP 14336, split over TP.
    assert qkv == {(1, 6144, 4096), (2, 3072, 4096), (4, 1536, 4096)}
    down = {(m.tp, m.shape_dict["k"]) for m in rows if m.operator == "down_proj"}
    assert down == {(1, 14336), (2, 7168), (4, 3584)}
    assert {m.tp for m in rows if m.operator == "add_rmsnorm"} == {1}  # TP-independent: once
    assert {m.tp for m in rows if m.operator == "all_reduce"} == {2, 4}
    assert {m.implementation for m in rows if m.operator == "all_reduce"} == {"link_model"}
    assert {m.operator for m in rows} == set(OPERATORS) - {"quantize_activations"}
    keys = [m.key for m in rows]
    assert len(keys) == len(set(keys))


def test_quantized_gemms_and_repeats_as_whole_passes():
    sweep = SweepConfig.for_device("cpu").replace(max_tokens=4, points_per_octave=1, max_num_seqs=2, max_context=32, repeats=2)
    rows = plan(TINY, [1], sweep, "float32", {"w8a8": ("torch", "triton")}, quantizations=("w8a8", "w4a16"))
    quant = {(m.operator, m.dtype, m.implementation) for m in rows if m.dtype in ("w8a8", "w4a16")}
    assert ("qkv_proj", "w8a8", "triton") in quant and ("down_proj", "w4a16", "torch") in quant
    assert ("lm_head", "w8a8", "torch") not in quant  # lm_head stays unquantized
    assert {m.dtype for m in rows if m.operator == "quantize_activations"} == {"w8a8"}  # W4A16 keeps 16-bit activations
    half = len(rows) // 2
    assert all(m.repeat == 0 for m in rows[:half]) and all(m.repeat == 1 for m in rows[half:])
    assert [m.key[:-1] for m in rows[:half]] == [m.key[:-1] for m in rows[half:]]


def test_check_tp_follows_the_simulators_sharding_rules():
    assert check_tp(TINY, 1) is None and check_tp(TINY, 4) is None  # 4 heads; 2 KV heads replicated
    assert "attention heads" in check_tp(TINY, 3)
    dims = layer_dims(TINY, 4)
    assert (dims.q_heads, dims.kv_heads, dims.intermediate) == (1, 1, 192)


def test_torn_last_line_is_cut_and_measured_keys_are_skipped(tmp_path):
    rows = plan(TINY, [1], SweepConfig.for_device("cpu").replace(max_tokens=4, points_per_octave=1, max_num_seqs=1, max_context=16), "float32", {})
    writer = bundle.RowWriter(tmp_path)
    for m in rows[:5]:
        writer.write(m, Timing(1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 3, "test"), "now")
    writer.fail(rows[5], "RuntimeError: out of memory", "now")
    writer.close()
    with open(tmp_path / "gemm.csv", "a") as f:
        f.write("qkv_proj,torch,float32,1,99")  # killed mid-row
    keys = bundle.measured_keys(tmp_path)
    assert keys == {m.key for m in rows[:6]}
    text = (tmp_path / "gemm.csv").read_text()
    assert text.endswith("\n") and ",99" not in text
    assert text.splitlines()[0].split(",") == bundle.columns("gemm")


def test_summarize_reports_median_spread_and_minimum():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0], "cpu_perf_counter")
    assert (t.median_s, t.min_s, t.mean_s, t.num_samples) == (3.0, 1.0, 3.0, 5)
    assert t.p20_s < t.median_s < t.p80_s
