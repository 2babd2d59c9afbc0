"""servesim's step price from an imported LLMServingSim profile against LLMServingSim's own sum of it.

What it does:
    Imports LLMServingSim's RTX 4090 profile of Llama-3.1-8B (vLLM 0.19.0, TP 1) as a profile
    bundle (``servesim profile import``'s code path, ``profiler.imports.llmservingsim``), fits it
    (``servesim fit``) and prices four steps with ``ProfiledCostModel``: (a) one prefill chunk of
    2,048 tokens with nothing cached, (b) decode batches of 1, 32 and 128 requests with 1,000
    tokens each in the KV cache (servesim context 1,001: the new token attends to itself).
    The reference is the profile's own layer-wise sum, computed from the CSVs as LLMServingSim's
    trace generator sums a step (``serving/core/trace_generator.py`` at commit 5daddb2):
    embedding, then per decoder layer (32) layernorm x 2, qkv_proj, rotary_emb, attention,
    o_proj, gate_up_proj, act_fn, down_proj, then final_layernorm, lm_head and sampler; dense
    layers at the step's tokens, lm_head and sampler at its requests, attention at
    (prefill chunk, its cached prefix, number of decodes, their mean history), each lookup
    linear between grid points on every axis (``_lookup_1d``, ``_axis_bracket``,
    ``_lookup_attention``) in integer nanoseconds. LLMServingSim models no host overhead, so
    servesim's GPU time (step_time minus its assumed cpu_overhead) is what is compared; the
    target is within 5 %. Llama-3.1-8B has the layer dimensions of the bundled ``llama-3-8b``
    (hidden 4,096, intermediate 14,336, 32 heads, 8 KV heads, vocabulary 128,256, 32 layers; only
    the context window differs), so that spec is used.

What it reads:
    /work/shared/reference-profiles/llmservingsim/RTX4090/meta-llama/Llama-3.1-8B/bf16/
    (a byte-for-byte copy of LLMServingSim's profiler/perf/ folder, MIT), or --profile.

How to run:
    python benchmarks/llmservingsim_step_check.py [--profile FOLDER] [--out BUNDLE_DIR]

It prints one rich table per step (operator by operator) and a summary; about 10 s on one core.
"""

from __future__ import annotations

import argparse
import bisect
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from profiler.fit import fit_bundle
from profiler.imports import build
from simulator.engine.batch import Batch
from simulator.cost_models import ProfiledCostModel
from simulator.engine.request import Request
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec

PROFILE = Path("/work/shared/reference-profiles/llmservingsim/RTX4090/meta-llama/Llama-3.1-8B/bf16")
TARGET_PCT = 5.0
# LLMServingSim's layer -> the servesim operators (step_breakdown keys) it is compared with.
GROUPS = {
    "embedding": ("embedding",), "layernorm x 2": ("add_rmsnorm",), "qkv_proj": ("qkv_proj",), "rotary_emb": ("rotary",),
    "attention": ("attention_prefill", "attention_decode", "kv_cache_write"), "o_proj": ("o_proj",),
    "gate_up_proj": ("gate_up_proj",), "act_fn": ("silu_mul",), "down_proj": ("down_proj",),
    "final_layernorm": ("rmsnorm",), "lm_head": ("lm_head",), "sampler": ("sampling",),
}


class LayerwiseSum:
    """A step priced from LLMServingSim's CSVs by its own rules (module docstring), in seconds."""

    def __init__(self, tp_dir: Path) -> None:
        def table(name: str, key: str) -> dict[str, tuple[list[int], list[int]]]:
            frame = pd.read_csv(tp_dir / name)
            frame["ns"] = (frame["time_us"] * 1000.0).round().astype(int).clip(lower=1)
            out = {}
            for layer, g in frame.groupby("layer"):
                g = g.sort_values(key).drop_duplicates(subset=[key])
                out[str(layer)] = (g[key].astype(int).tolist(), g["ns"].tolist())
            return out

        self.dense, self.per_seq = table("dense.csv", "tokens"), table("per_sequence.csv", "sequences")
        att = pd.read_csv(tp_dir / "attention.csv")
        att["ns"] = (att["time_us"] * 1000.0).round().astype(int).clip(lower=1)
        self.pc_vals, self.nd_vals = sorted(set(att["prefill_chunk"])), sorted(set(att["n_decode"]))
        self.slices: dict[tuple[int, int], tuple[list[int], list[tuple[list[int], list[int]]]]] = {}
        for (pc, nd), g in att.groupby(["prefill_chunk", "n_decode"]):
            rows = {int(kp): g2.sort_values("kv_decode").drop_duplicates(subset=["kv_decode"]) for kp, g2 in g.groupby("kv_prefill")}
            kps = sorted(rows)
            self.slices[int(pc), int(nd)] = (kps, [(rows[k]["kv_decode"].astype(int).tolist(), rows[k]["ns"].tolist()) for k in kps])

    @staticmethod
    def one_d(keys: list[int], values: list[int], x: int) -> float:
        """Linear between neighbours; the first value below the grid; the top two extended above it."""
        if len(keys) == 1:
            return values[0]
        i = bisect.bisect_right(keys, x)
        if i == 0:
            return values[0]
        lo, hi = (len(keys) - 2, len(keys) - 1) if i >= len(keys) else (i - 1, i)
        if keys[lo] == x or keys[hi] == keys[lo]:
            return values[lo]
        return values[lo] + (x - keys[lo]) / (keys[hi] - keys[lo]) * (values[hi] - values[lo])

    @staticmethod
    def bracket(axis: list[int], x: int) -> tuple[int, int, float]:
        if len(axis) == 1 or x <= axis[0]:
            return 0, 0, 0.0
        i = bisect.bisect_right(axis, x)
        lo, hi = (len(axis) - 2, len(axis) - 1) if i >= len(axis) else (i - 1, i)
        return lo, hi, (x - axis[lo]) / (axis[hi] - axis[lo])

    def _slice(self, pc: int, nd: int, kp: int, kvd: int) -> float | None:
        if (pc, nd) not in self.slices:
            return None
        kps, rows = self.slices[pc, nd]
        lo, hi, t = self.bracket(kps, kp)

        def row(r: tuple[list[int], list[int]]) -> float:
            keys, vals = r
            if len(keys) == 1:
                return vals[0]
            a, b, f = self.bracket(keys, kvd)
            return vals[a] + f * (vals[b] - vals[a])

        low = row(rows[lo])
        return low if lo == hi else low + t * (row(rows[hi]) - low)

    def attention(self, pc: int, kp: int, nd: int, kvd: int) -> int:
        a0, a1, t_pc = self.bracket(self.pc_vals, pc)
        b0, b1, t_nd = self.bracket(self.nd_vals, nd)

        def corner(p: int, n: int) -> float:
            v = self._slice(p, n, kp, kvd)
            if v is None:  # the nearest measured (chunk, decodes) pair
                p, n = min(self.slices, key=lambda k: (k[0] - p) ** 2 + (k[1] - n) ** 2)
                v = self._slice(p, n, kp, kvd) or 0.0
            return v

        c00, c01 = corner(self.pc_vals[a0], self.nd_vals[b0]), corner(self.pc_vals[a0], self.nd_vals[b1])
        c10, c11 = corner(self.pc_vals[a1], self.nd_vals[b0]), corner(self.pc_vals[a1], self.nd_vals[b1])
        v0, v1 = c00 + t_nd * (c01 - c00), c10 + t_nd * (c11 - c10)
        return max(1, int(v0 + t_pc * (v1 - v0)))

    def step(self, num_layers: int, tokens: int, requests: int, pc: int, kp: int, nd: int, kvd: int) -> dict[str, float]:
        """Seconds per LLMServingSim layer group for one step (summed over the decoder layers)."""
        dense = lambda name: max(1, int(self.one_d(*self.dense[name], max(tokens, 1))))  # noqa: E731
        seq = lambda name: max(1, int(self.one_d(*self.per_seq[name], max(requests, 1))))  # noqa: E731
        ns = {"embedding": dense("embedding"), "layernorm x 2": num_layers * 2 * dense("layernorm"),
              "qkv_proj": num_layers * dense("qkv_proj"), "rotary_emb": num_layers * dense("rotary_emb"),
              "attention": num_layers * self.attention(pc, kp, nd, kvd), "o_proj": num_layers * dense("o_proj"),
              "gate_up_proj": num_layers * dense("gate_up_proj"), "act_fn": num_layers * dense("act_fn"),
              "down_proj": num_layers * dense("down_proj"), "final_layernorm": dense("final_layernorm"),
              "lm_head": seq("lm_head"), "sampler": seq("sampler")}
        return {k: v * 1e-9 for k, v in ns.items()}


def steps() -> list[tuple[str, Batch, tuple[int, int, int, int, int, int]]]:
    """(label, servesim batch, LLMServingSim's (tokens, requests, prefill chunk, its prefix, decodes, decode history))."""
    prefill = Batch()
    prefill.add(Request(0, 0.0, 2048, 16), 2048)
    out = [("prefill chunk of 2,048 tokens", prefill, (2048, 1, 2048, 0, 0, 0))]
    for n in (1, 32, 128):
        batch = Batch.of_decodes([Request(i, 0.0, 1000, 64, num_computed_tokens=1000) for i in range(n)])
        out.append((f"decode x {n}, 1,000 tokens cached each", batch, (n, n, 0, 0, n, 1000)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", type=Path, default=PROFILE, help="LLMServingSim profile folder (holds meta.yaml, tp1/)")
    parser.add_argument("--out", type=Path, default=None, help="bundle folder (default: a temporary one)")
    args = parser.parse_args()
    console = Console(width=120)
    model = bundled_model_spec("llama-3-8b")
    out = args.out or Path(tempfile.mkdtemp(prefix="lss-4090-"))
    t0 = time.perf_counter()
    build(f"llmservingsim:{args.profile}", model, (1,), out).write()
    fit_bundle(out, html=False)
    cost = ProfiledCostModel(out, model, GPUS["rtx-4090"], 1, 1, RooflineConfig(), 2, "none", 2048)
    reference = LayerwiseSum(args.profile / "tp1")
    console.print(f"bundle {out} imported and fitted in {time.perf_counter() - t0:.1f} s")
    summary = Table(title=f"step price (ms): servesim GPU time vs LLMServingSim's layer-wise sum, target within {TARGET_PCT:.0f} %")
    for col in ("step", "LLMServingSim", "servesim GPU", "error %", "servesim step_time", "of which cpu_overhead (assumed)"):
        summary.add_column(col, justify="left" if col == "step" else "right")
    worst = 0.0
    for label, batch, shape in steps():
        ref = reference.step(model.num_layers, *shape)
        parts = cost.step_breakdown(batch)
        step_time = cost.step_time(batch)
        gpu_s = step_time - parts["cpu_overhead"]
        table = Table(title=label)
        for col in ("LLMServingSim layer", "LLMServingSim ms", "servesim operators", "servesim ms", "diff %"):
            table.add_column(col, justify="left" if "layer" in col or "operators" in col else "right")
        for group, ops in GROUPS.items():
            mine = sum(parts.get(op, 0.0) for op in ops)
            table.add_row(group, f"{ref[group] * 1e3:.3f}", " + ".join(o for o in ops if o in parts) or "-", f"{mine * 1e3:.3f}",
                          f"{100 * (mine / ref[group] - 1):+.1f}")
        console.print(table)
        err = 100 * (gpu_s / sum(ref.values()) - 1)
        worst = max(worst, abs(err))
        summary.add_row(label, f"{sum(ref.values()) * 1e3:.3f}", f"{gpu_s * 1e3:.3f}", f"{err:+.2f}", f"{step_time * 1e3:.3f}",
                        f"{parts['cpu_overhead'] * 1e3:.3f}")
    console.print(summary)
    ok = worst <= TARGET_PCT
    console.print(f"worst |error| {worst:.2f} % -> {'within' if ok else 'MISSES'} the {TARGET_PCT:.0f} % target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
