"""Importing LLMServingSim's and Vidur's profile files: mapping at TP shards, filled rows labelled, bad input, a priced step.

The stories write small profiles in each project's real column layout into tmp_path, every time
from a formula of the test's own (``dense_us``, ``prefill_us``, ``vidur_ms`` ...), so what the
importer must produce at any shape is known without reading its code. One story per importer
reads the real copies in /work/shared/reference-profiles/ (skipped when they are absent).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from profiler import TINY_MODEL_CONFIG
from profiler.fit import fit_bundle
from profiler.imports import build, import_profile
from simulator.engine.batch import Batch
from simulator.cost_models import ProfiledCostModel
from simulator.errors import ScenarioError
from simulator.engine.request import Request
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec, model_spec_from_hf_config

TINY = model_spec_from_hf_config(TINY_MODEL_CONFIG, name="tiny-llama")  # h 256, I 768, 4 / 2 heads of 64, vocab 4096
REFERENCE = Path("/work/shared/reference-profiles")
DENSE = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn", "down_proj", "final_layernorm")
TOKENS, SEQUENCES = (1, 4, 16, 64, 256), (1, 4, 16)
CHUNKS, KVS, DECODES = (16, 64), (16, 64), (1, 4)


def dense_us(layer: str, tokens: int, tp: int) -> float:
    return (DENSE.index(layer) + 1) * (1.0 + 0.01 * tokens) / tp


def prefill_us(chunk: int, cached: int) -> float:
    return 8.0 + 0.001 * chunk * (chunk + cached)


def decode_us(n: int, history: int) -> float:
    return 6.0 + 0.0005 * n * history


def write_llmservingsim(root: Path, tps=(1, 2), hardware: str = "RTX4090", layers=DENSE) -> Path:
    """A profile of TINY in LLMServingSim's layout: meta.yaml and tp<N>/{dense,per_sequence,attention}.csv (times in us)."""
    root.mkdir(parents=True, exist_ok=True)
    last = tps[-1]
    meta = {"profiler_version": "1.0.0", "vllm_version": "0.19.0", "gpu": "NVIDIA GeForce RTX 4090", "hardware": hardware,
            "profiled_at": "2026-08-17T19:43:32+00:00", "architecture": "llama", "model": "test/tiny", "variant": "bf16",
            "tp_degrees": list(tps), "measurement_iterations": 3,
            "engine_effective": {"block_size": 16, "tensor_parallel_size": 1, "hf_overrides": {
                "num_hidden_layers": 1, "intermediate_size": 768 // last, "num_attention_heads": 4 // last,
                "num_key_value_heads": 2 // last, "vocab_size": 4096 // last}}}
    (root / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    for tp in tps:
        d = root / f"tp{tp}"
        d.mkdir()
        dense = [f"{layer},{m},{dense_us(layer, m, tp):.6g}" for layer in layers for m in TOKENS]
        (d / "dense.csv").write_text("layer,tokens,time_us\n" + "\n".join(dense) + "\n")
        seq = [f"lm_head,{s},{50.0 / tp + 0.5 * s}" for s in SEQUENCES] + [f"sampler,{s},{5.0 + 0.1 * s}" for s in SEQUENCES]
        (d / "per_sequence.csv").write_text("layer,sequences,time_us\n" + "\n".join(seq) + "\n")
        att = [f"{c},{k},0,0,{prefill_us(c, k)}" for c in CHUNKS for k in (0, *KVS)]
        att += [f"0,0,{n},{h},{decode_us(n, h)}" for n in DECODES for h in KVS]
        # Mixed launches 25 % slower than their two parts: the parts sum to -20 % of the mixed time.
        att += [f"{c},{k},{n},{h},{1.25 * (prefill_us(c, k) + decode_us(n, h))}" for c in CHUNKS for k in (0, *KVS) for n in DECODES for h in KVS]
        (d / "attention.csv").write_text("prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n" + "\n".join(att) + "\n")
    return root


def rows(out: Path, kind: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{kind}.csv")


def test_llmservingsim_layers_map_onto_the_catalogue_at_tp_shard_shapes(tmp_path):
    out = import_profile(f"llmservingsim:{write_llmservingsim(tmp_path / 'p')}", TINY, (1, 2), tmp_path / "b")
    g = rows(out, "gemm")
    # TP 1: qkv 256 -> (4 + 2 x 2) x 64 = 512; TP 2 half the heads; gate/up 2 x 768 / TP; lm_head vocab / TP.
    shapes = {(op, tp): set(zip(r.n, r.k)) for (op, tp), r in g.groupby(["operator", "tp"])}
    assert shapes[("qkv_proj", 1)] == {(512, 256)} and shapes[("qkv_proj", 2)] == {(256, 256)}
    assert shapes[("o_proj", 2)] == {(256, 128)} and shapes[("gate_up_proj", 2)] == {(768, 256)} and shapes[("down_proj", 2)] == {(256, 384)}
    assert shapes[("lm_head", 1)] == {(4096, 256)} and shapes[("lm_head", 2)] == {(2048, 256)}
    qkv2 = g[(g.operator == "qkv_proj") & (g.tp == 2)].set_index("m")
    assert sorted(qkv2.index) == list(TOKENS) and (qkv2.timer == "llmservingsim:measured").all()
    assert np.allclose(qkv2.median_s, [dense_us("qkv_proj", m, 2) * 1e-6 for m in qkv2.index], rtol=1e-5)
    ew = rows(out, "elementwise")
    widths = {(op, tp): set(r.width) for (op, tp), r in ew.groupby(["operator", "tp"])}
    assert widths[("silu_mul", 2)] == {384} and widths[("rotary", 2)] == {128 + 64} and widths[("sampling", 1)] == {4096}
    # TP-independent operators come once, from the first TP degree (LLMServingSim copies them into tp2/).
    assert {tp for (op, tp) in widths if op in ("add_rmsnorm", "embedding", "rmsnorm", "sampling")} == {1}
    norm = ew[ew.operator == "add_rmsnorm"].set_index("num_tokens")
    assert norm.median_s[64] == pytest.approx(dense_us("layernorm", 64, 1) * 1e-6, rel=1e-5)
    final = ew[ew.operator == "rmsnorm"].set_index("num_tokens")  # final_layernorm, at its measured token counts
    assert final.median_s[16] == pytest.approx(dense_us("final_layernorm", 16, 1) * 1e-6, rel=1e-5)
    pre, dec = rows(out, "attention_prefill"), rows(out, "attention_decode")
    p2 = pre[pre.tp == 2].set_index(["new_tokens", "prefix_tokens"])
    assert len(p2) == len(CHUNKS) * 3 and (p2.num_seqs == 1).all() and (p2.num_heads == 2).all() and (p2.num_kv_heads == 1).all()
    assert p2.median_s[(64, 16)] == pytest.approx(prefill_us(64, 16) * 1e-6, rel=1e-5)
    d1 = dec[dec.tp == 1].set_index(["num_seqs", "context_tokens"])  # history 64 + the new token
    assert sorted(d1.index) == [(n, h + 1) for n in DECODES for h in KVS]
    assert d1.median_s[(4, 65)] == pytest.approx(decode_us(4, 64) * 1e-6, rel=1e-5) and (dec.block_size == 16).all()


def test_llmservingsim_fuses_the_kv_write_fills_the_rest_and_reports_mixed_launches(tmp_path):
    profile = write_llmservingsim(tmp_path / "p", layers=tuple(x for x in DENSE if x != "rotary_emb"))
    out = import_profile(f"llmservingsim:{profile}", TINY, (1, 2), tmp_path / "b")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["kind"] == "llmservingsim" and prov["licence"] == "MIT" and prov["gpu_spec"] == "rtx-4090"
    assert prov["fused"] == {"kv_cache_write": "attention"}
    assert json.loads((out / "profile.json").read_text())["fused"] == {"kv_cache_write": "attention"}
    assert set(prov["filled"]) == {"rotary", "cpu_overhead"}  # the one layer the profile lacks, and the host
    assert prov["filled"]["rotary"]["origin"] == "filled" and "add_rmsnorm" in prov["filled"]["rotary"]["calibrated_on"]
    assert prov["operators"]["rotary|bfloat16|tp2"]["rows"].keys() == {"filled"}
    ew = rows(out, "elementwise")
    assert set(ew[ew.operator == "rotary"].timer) == {"llmservingsim:filled"} and "kv_cache_write" not in set(ew.operator)
    mixed = [n for n in prov["notes"] if "mixed attention rows" in n]
    assert len(mixed) == 2 and all("-20.0 % at the median" in n for n in mixed)
    assert prov["details"]["measured_at"] == "2026-08-17T19:43:32+00:00" and "tp2/attention.csv" in prov["details"]["files"]


def test_llmservingsim_qk_norm_is_summed_into_rotary(tmp_path):
    profile = write_llmservingsim(tmp_path / "p", tps=(1,))
    with open(profile / "tp1" / "dense.csv", "a") as f:
        f.writelines(f"qk_norm,{m},{0.5 + 0.001 * m}\n" for m in TOKENS)
    out = import_profile(f"llmservingsim:{profile}", TINY, (1,), tmp_path / "b")
    rot = rows(out, "elementwise").query("operator == 'rotary'").set_index("num_tokens")
    assert rot.median_s[16] == pytest.approx((dense_us("rotary_emb", 16, 1) + 0.5 + 0.016) * 1e-6, rel=1e-5)
    assert any("qk_norm" in n for n in json.loads((out / "provenance.json").read_text())["notes"])


def write_file(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("damage, tps, words", [
    (lambda p: p.rename(p.parent / "gone"), (1,), ["profile folder not found"]),
    (lambda p: None, (1, 4), ["tp4", "TP 4 was not profiled", "tp1, tp2"]),
    (lambda p: write_file(p / "tp1" / "dense.csv", ""), (1,), ["dense.csv", "empty file"]),
    (lambda p: write_file(p / "tp1" / "dense.csv", "layer,tokens,time_us\n"), (1,), ["dense.csv", "no rows"]),
    (lambda p: write_file(p / "tp2" / "attention.csv", "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n1,2,3,4,5,6,7\n"), (1, 2), ["tp2/attention.csv", "not a readable CSV"]),
    (lambda p: write_file(p / "tp1" / "dense.csv", "layer,tokens,time_us\nqkv_proj,1,2.0\nqkv_proj,2\n"), (1,), ["dense.csv: row 3", "time_us is not a number"]),
    (lambda p: write_file(p / "tp1" / "per_sequence.csv", b"\xff\xfe\x00\x81garbage"), (1,), ["per_sequence.csv", "not a readable CSV"]),
    (lambda p: write_file(p / "tp1" / "per_sequence.csv", "layer,sequences,t_us\nlm_head,1,5\n"), (1,), ["per_sequence.csv", "time_us", "column missing"]),
    (lambda p: write_file(p / "tp1" / "dense.csv", "layer,tokens,time_us\nqkv_proj,1,fast\n"), (1,), ["dense.csv: row 2", "'fast'", "time_us is not a number"]),
    (lambda p: (p / "tp1" / "attention.csv").unlink(), (1,), ["attention.csv", "file not found"]),
    (lambda p: write_file(p / "meta.yaml", "hardware: [RTX4090\n"), (1,), ["meta.yaml", "not valid YAML"]),
    (lambda p: write_file(p / "meta.yaml", (p / "meta.yaml").read_text().replace("intermediate_size: 384", "intermediate_size: 500")), (1,),
     ["meta.yaml: engine_effective.hf_overrides.intermediate_size = 500", "1000", "tiny-llama's 768"]),
    (lambda p: write_file(p / "meta.yaml", (p / "meta.yaml").read_text().replace("hardware: RTX4090", "hardware: TPUv9")), (1,), ["meta.yaml: hardware = 'TPUv9'", "RTX4090"]),
])
def test_llmservingsim_bad_input_is_one_error_naming_the_file_and_field(tmp_path, damage, tps, words):
    profile = write_llmservingsim(tmp_path / "p")
    damage(profile)
    with pytest.raises(ScenarioError) as e:
        build(f"llmservingsim:{profile}", TINY, tps, tmp_path / "b")
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# -- Vidur --------------------------------------------------------------------------------------
VIDUR_OPS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
VIDUR_TOKENS = (1, 8, 32, 128)


def vidur_ms(op: str, m: int, tp: int) -> float:
    return 0.002 * (VIDUR_OPS.index(op) + 1) * (1.0 + m / 32) / tp


def stats(op: str, median: float) -> dict[str, float]:
    return {f"time_stats.{op}.{s}": v for s, v in (("min", 0.9 * median), ("max", 1.2 * median), ("mean", 1.05 * median), ("median", median), ("std", 0.01))}


def write_vidur(root: Path, gpu: str = "h100", tps=(1, 2), n_embd: int = 256, attention: bool = True) -> Path:
    """Vidur's compute/<gpu>/<org>/<model>/ folder for TINY: mlp.csv and attention.csv (times in ms)."""
    folder = root / "compute" / gpu / "test" / "tiny"
    folder.mkdir(parents=True)
    mlp = []
    for tp in tps:
        for m in VIDUR_TOKENS:
            row = {k: v for op in VIDUR_OPS for k, v in stats(op, vidur_ms(op, m, tp)).items()}
            row.update(n_head=4, n_kv_head=2, n_embd=n_embd, n_expanded_embd=768, vocab_size=4096, use_gated_mlp=True, num_tokens=m, num_tensor_parallel_workers=tp)
            mlp.append(row)
    mlp[3]["time_stats.attn_pre_proj.median"] = 1e-9  # 1 ps for 128 tokens at TP 1: faster than any H100 can run it
    pd.DataFrame(mlp).to_csv(folder / "mlp.csv", index=False)
    if attention:
        att = []
        for tp in tps:
            shapes = [(True, 1, c, k) for c in (32, 128) for k in (0, 64)] + [(False, b, 0, k) for b in (1, 4) for k in (32, 128)]
            for i, (is_prefill, batch, chunk, kv) in enumerate(shapes):
                row = {**stats("attn_input_reshape", 0.0), **stats("attn_kv_cache_save", 0.001 * (i + 1) / tp),
                       **stats("attn_prefill", 0.01 * (1 + chunk * (chunk + kv) / 4096) / tp if is_prefill else 0.0),
                       **stats("attn_decode", 0.0 if is_prefill else 0.005 * (1 + batch * kv / 512) / tp), **stats("attn_output_reshape", 0.0)}
                row.update(n_embd=n_embd, n_q_head=4, n_kv_head=2, block_size=16, num_tensor_parallel_workers=tp, max_model_len=4096,
                           batch_size=batch, prefill_chunk_size=chunk, kv_cache_size=kv, is_prefill=is_prefill, attention_backend="AttentionBackend.FLASHINFER")
                att.append(row)
        pd.DataFrame(att).to_csv(folder / "attention.csv", index=False)
    return folder


def test_vidur_operators_map_onto_the_catalogue_at_tp_shard_shapes(tmp_path):
    out = import_profile(f"vidur:{write_vidur(tmp_path)}", TINY, (1, 2), tmp_path / "b")
    g = rows(out, "gemm")
    assert set(g.dtype) == {"float16"} and set(g.timer) - {"vidur:filled"} == {"vidur:measured"}
    up2 = g[(g.operator == "gate_up_proj") & (g.tp == 2)].set_index("m")
    assert set(zip(up2.n, up2.k)) == {(768, 256)} and sorted(up2.index) == list(VIDUR_TOKENS)
    assert np.allclose(up2.median_s, [vidur_ms("mlp_up_proj", m, 2) * 1e-3 for m in up2.index], rtol=1e-5)
    qkv1 = g[(g.operator == "qkv_proj") & (g.tp == 1)].set_index("m")
    assert set(zip(qkv1.n, qkv1.k)) == {(512, 256)} and sorted(qkv1.index) == [1, 8, 32]  # the impossible row left out
    ew = rows(out, "elementwise")
    norm = ew[ew.operator == "add_rmsnorm"].set_index("num_tokens")
    both = sum(vidur_ms(op, 32, 1) for op in ("input_layernorm", "post_attention_layernorm", "add"))
    assert norm.median_s[32] == pytest.approx(both / 2 * 1e-3, rel=1e-5) and set(norm.tp) == {1}
    kv = ew[(ew.operator == "kv_cache_write") & (ew.tp == 1)].set_index("num_tokens")
    assert kv.width.iloc[0] == 128  # 2 KV heads x 64
    assert kv.median_s[32] == pytest.approx(0.0015e-3, rel=1e-5)  # chunks of 32 with 0 and 64 cached: 1 and 2 us, median 1.5
    assert kv.median_s[4] == pytest.approx(np.median([0.007, 0.008]) * 1e-3, rel=1e-5)  # 4 decodes at two contexts
    dec = rows(out, "attention_decode").query("tp == 2").set_index(["num_seqs", "context_tokens"])
    assert dec.median_s[(4, 129)] == pytest.approx(0.005 * (1 + 4 * 128 / 512) / 2 * 1e-3, rel=1e-5) and (dec.num_heads == 2).all()
    pre = rows(out, "attention_prefill").query("tp == 1").set_index(["new_tokens", "prefix_tokens"])
    assert pre.median_s[(128, 64)] == pytest.approx(0.01 * (1 + 128 * 192 / 4096) * 1e-3, rel=1e-5)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["gpu_spec"] == "h100-sxm" and set(prov["filled"]) == {"lm_head", "rmsnorm", "sampling", "cpu_overhead"}
    assert any(n.startswith("qkv_proj: 1 rows faster than the h100-sxm datasheet") for n in prov["notes"])
    assert json.loads((out / "device.json").read_text())["num_compute_units"] == 132


def test_vidur_without_attention_fills_it_and_a30_has_its_own_datasheet(tmp_path):
    out = import_profile(f"vidur:{write_vidur(tmp_path, gpu='a30', tps=(1,), attention=False)}", TINY, (1,), tmp_path / "b")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["gpu_spec"] == "a30" and {"attention_prefill", "attention_decode", "kv_cache_write"} <= set(prov["filled"])
    assert "AKafakA/vidur_opt_scheduler" in prov["url"]
    assert (rows(out, "attention_decode").timer == "vidur:filled").all()


def vidur_mlp(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "mlp.csv")


@pytest.mark.parametrize("damage, tps, words", [
    (lambda f: f.rename(f.parent / "gone"), (1,), ["profile folder not found"]),
    (lambda f: (f / "mlp.csv").unlink(), (1,), ["mlp.csv", "file not found"]),
    (lambda f: write_file(f / "mlp.csv", ""), (1,), ["mlp.csv", "empty file"]),
    (lambda f: write_file(f / "attention.csv", "n_embd,n_q_head\n1,2,3\n4,5,6,7,8\n"), (1,), ["attention.csv", "not a readable CSV"]),
    (lambda f: vidur_mlp(f).drop(columns=["time_stats.mlp_down_proj.median"]).to_csv(f / "mlp.csv", index=False), (1,),
     ["mlp.csv: time_stats.mlp_down_proj.median", "column missing"]),
    (lambda f: vidur_mlp(f).drop(columns=["num_tokens"]).to_csv(f / "mlp.csv", index=False), (1,), ["mlp.csv: num_tokens", "column missing"]),
    (lambda f: vidur_mlp(f).assign(n_embd=512).to_csv(f / "mlp.csv", index=False), (1,), ["mlp.csv: n_embd = 512", "n_embd 512", "not tiny-llama"]),
    (lambda f: None, (4,), ["num_tensor_parallel_workers = 4", "TP 4 was not profiled", "1, 2"]),
])
def test_vidur_bad_input_is_one_error_naming_the_file_and_field(tmp_path, damage, tps, words):
    folder = write_vidur(tmp_path)
    damage(folder)
    with pytest.raises(ScenarioError) as e:
        build(f"vidur:{folder}", TINY, tps, tmp_path / "b")
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_vidur_gpu_is_read_from_the_folder_and_an_unknown_one_is_an_error(tmp_path):
    with pytest.raises(ScenarioError, match="'b200' is not one servesim has datasheet numbers for.*h100,a100,a30"):
        build(f"vidur:{write_vidur(tmp_path, gpu='b200')}", TINY, (1,), tmp_path / "b")


# -- a priced step, the command line, the real files --------------------------------------------
def test_an_imported_profile_fits_and_prices_steps_at_its_measurements(tmp_path):
    write_llmservingsim(tmp_path / "p")
    out = build("llmservingsim:p", TINY, (1,), tmp_path / "b", base=tmp_path).write()  # relative to the scenario's folder
    fit_bundle(out, html=False)
    cost = ProfiledCostModel(out, TINY, GPUS["rtx-4090"], 1, 1, RooflineConfig(), 2, "none", 256)
    prefill = Batch()
    prefill.add(Request(0, 0.0, 64, 4), 64)
    parts = cost.step_breakdown(prefill)
    layers = TINY.num_layers
    assert "kv_cache_write" not in parts  # fused into attention
    assert parts["qkv_proj"] == pytest.approx(layers * dense_us("qkv_proj", 64, 1) * 1e-6, rel=1e-4)
    assert parts["add_rmsnorm"] == pytest.approx(layers * 2 * dense_us("layernorm", 64, 1) * 1e-6, rel=1e-4)
    assert parts["attention_prefill"] == pytest.approx(layers * prefill_us(64, 0) * 1e-6, rel=1e-4)
    assert parts["lm_head"] == pytest.approx((50.0 + 0.5) * 1e-6, rel=1e-4)
    decodes = Batch.of_decodes([Request(i, 0.0, 60, 8, num_computed_tokens=64) for i in range(4)])  # context 65 each
    dec_parts = cost.step_breakdown(decodes)
    assert dec_parts["attention_decode"] == pytest.approx(layers * decode_us(4, 64) * 1e-6, rel=1e-4)
    assert dec_parts["sampling"] == pytest.approx((5.0 + 0.4) * 1e-6, rel=1e-4)
    for batch, p in ((prefill, parts), (decodes, dec_parts)):
        assert cost.step_time(batch) == pytest.approx(sum(p.values()), rel=1e-9)


def test_a_vidur_profile_fits_and_prices_a_prefill_at_its_measurements(tmp_path):
    out = build(f"vidur:{write_vidur(tmp_path, tps=(2,))}", TINY, (2,), tmp_path / "b").write()
    fit_bundle(out, html=False)
    cost = ProfiledCostModel(out, TINY, GPUS["h100-sxm"], 2, 1, RooflineConfig(), 2, "none", 256)
    prefill = Batch()
    prefill.add(Request(0, 0.0, 32, 4), 32)
    parts = cost.step_breakdown(prefill)
    layers = TINY.num_layers
    assert parts["gate_up_proj"] == pytest.approx(layers * vidur_ms("mlp_up_proj", 32, 2) * 1e-3, rel=1e-4)
    assert parts["attention_prefill"] == pytest.approx(layers * 0.01 * (1 + 32 * 32 / 4096) / 2 * 1e-3, rel=1e-4)
    assert parts["all_reduce"] > 0 and cost.step_time(prefill) == pytest.approx(sum(parts.values()), rel=1e-9)  # the link model


def test_the_command_line_reports_a_bad_profile_on_one_line(tmp_path):
    profile = write_llmservingsim(tmp_path / "p", tps=(1,))
    write_file(profile / "tp1" / "dense.csv", "layer,tokens\nqkv_proj,1\n")
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "profile", "import", f"llmservingsim:{profile}", "--model", str(TINY_MODEL_CONFIG),
                           "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "dense.csv: time_us" in lines[0] and "column missing" in lines[0]


LSS = REFERENCE / "llmservingsim"
VIDUR = REFERENCE / "vidur-microsoft" / "compute"


@pytest.mark.skipif(not LSS.is_dir() or not VIDUR.is_dir(), reason="the reference profiles are not on this machine")
def test_the_real_profiles_import_at_llama_3_8b_shards(tmp_path):
    model = bundled_model_spec("llama-3-8b")  # Llama-3.1-8B's layer dimensions
    pro = import_profile(f"llmservingsim:{LSS / 'RTXPRO6000/meta-llama/Llama-3.1-8B/bf16'}", model, (1, 2), tmp_path / "pro")
    g = rows(pro, "gemm")
    shapes = {(op, tp): set(zip(r.n, r.k)) for (op, tp), r in g.groupby(["operator", "tp"])}
    assert shapes[("qkv_proj", 1)] == {(6144, 4096)} and shapes[("qkv_proj", 2)] == {(3072, 4096)}
    assert shapes[("gate_up_proj", 2)] == {(14336, 4096)} and shapes[("lm_head", 2)] == {(64128, 4096)}
    raw = pd.read_csv(LSS / "RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp2/dense.csv").query("layer == 'down_proj'").set_index("tokens")
    down = g[(g.operator == "down_proj") & (g.tp == 2)].set_index("m")
    assert np.allclose(down.median_s.loc[raw.index], raw.time_us * 1e-6, rtol=1e-5) and set(zip(down.n, down.k)) == {(4096, 7168)}
    prov = json.loads((pro / "provenance.json").read_text())
    assert prov["gpu_spec"] == "rtx-pro-6000-server" and set(prov["filled"]) == {"cpu_overhead"} and prov["fused"] == {"kv_cache_write": "attention"}
    vid = import_profile(f"vidur:{VIDUR / 'a100/meta-llama/Meta-Llama-3-8B'}", model, (1, 2), tmp_path / "vidur")
    g = rows(vid, "gemm")
    assert set(zip(*g[(g.operator == "o_proj") & (g.tp == 2)][["n", "k"]].to_numpy().T)) == {(4096, 2048)}
    prov = json.loads((vid / "provenance.json").read_text())
    assert prov["gpu_spec"] == "a100-80gb-sxm" and {"lm_head", "attention_decode", "kv_cache_write"} <= set(prov["filled"])
    with pytest.raises(ScenarioError, match="intermediate_size"):
        build(f"llmservingsim:{LSS / 'RTXPRO6000/Qwen/Qwen3-32B/bf16'}", model, (1,), tmp_path / "x")
