"""A Llama layer stack in PyTorch that runs real serving steps from ``profiler.ops``.

One ``step`` is what a serving engine's model runner does per iteration, built from the same
operator functions the profiler times, in the order of the catalogue: input preparation on the
host (positions, KV slots, block tables), the embedding lookup, per layer add+RMSNorm, the QKV
GEMM, rotary, the KV-cache write, prefill attention over each chunk's cached prefix and paged
decode attention, the O GEMM, add+RMSNorm, the fused gate/up GEMM, SiLU*mul and the down GEMM;
then the final RMSNorm, lm_head and sampling for the requests that sample. Weights and the KV
cache hold random values: the cost, not the output, is what is measured. Used to check that
the profiled cost model reproduces measured step times (``benchmarks/validate_profiled_cpu.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from profiler import ops
from simulator.specs.model import ModelSpec


@dataclass(frozen=True)
class Entry:
    """One request of a step: ``prefix_tokens`` already cached, ``new_tokens`` computed now, and whether it samples."""

    prefix_tokens: int
    new_tokens: int
    samples: bool


class LayerStack:
    """The whole model (all layers, TP 1) with a paged KV cache.

    Args:
        model: the architecture.
        max_tokens_per_request: capacity of each request's block table (tokens).
        max_requests: requests a step may hold.
        device: where tensors live.
        dtype: weights, activations and KV cache dtype.
        block_size: KV cache block size (tokens).
    """

    def __init__(self, model: ModelSpec, max_tokens_per_request: int, max_requests: int, device: torch.device, dtype: torch.dtype, block_size: int = 16) -> None:
        gen = torch.Generator(device="cpu").manual_seed(0)

        def w(*shape: int) -> torch.Tensor:
            return (torch.randn(*shape, generator=gen) * 0.02).to(device=device, dtype=dtype)

        h, d, inter, v = model.hidden_size, model.head_dim, model.intermediate_size, model.vocab_size
        self.model, self.device, self.dtype, self.block_size = model, device, dtype, block_size
        self.q_heads, self.kv_heads, self.head_dim = model.num_attention_heads, model.num_kv_heads, d
        q_width, kv_width = self.q_heads * d, self.kv_heads * d
        self.layers = [
            {"in_norm": w(h) + 1, "qkv": w(q_width + 2 * kv_width, h), "o": w(h, q_width), "post_norm": w(h) + 1,
             "gate_up": w(2 * inter, h), "down": w(h, inter)}
            for _ in range(model.num_layers)
        ]
        self.embedding, self.final_norm, self.lm_head = w(v, h), w(h) + 1, w(v, h)
        self.blocks_per_request = math.ceil(max_tokens_per_request / block_size)
        num_blocks = self.blocks_per_request * max_requests
        # Blocks in a seeded random order: after a while of admissions and frees a serving
        # engine's free-block queue hands out scattered blocks, and the profiler times attention
        # over shuffled block tables too (on the CPU, decode attention over scattered 16-token
        # blocks took up to 1.4x as long as over contiguous ones: benchmarks/cpu_timing_effects.py).
        self.block_order = torch.randperm(num_blocks, generator=gen).tolist()
        self.k_caches = [w(num_blocks, block_size, self.kv_heads, d) for _ in self.layers]
        self.v_caches = [w(num_blocks, block_size, self.kv_heads, d) for _ in self.layers]
        self.cos_sin = ops.rope_cache(model.max_position_embeddings, d, dtype, device)
        self.scale = d**-0.5

    def step(self, entries: list[Entry], op_times: dict[str, float] | None = None) -> torch.Tensor:
        """Run one iteration over ``entries`` (prefill chunks first, then decodes); returns the sampled tokens.

        With ``op_times``, each operator's thread CPU time (s) is added to ``op_times[name]``
        under the catalogue's names (``qkv_proj`` ... ``sampling``; ``cpu_overhead`` for the
        host's input preparation and the sampled tokens' return), as
        ``ProfiledCostModel.step_breakdown`` names its parts; the few tensor manipulations
        between operators are not counted. Timing adds about a microsecond per operator.
        """
        timed = _Timed(op_times)
        prefills = [e for e in entries if e.new_tokens > 1 or e.prefix_tokens == 0]
        decodes = [e for e in entries if not (e.new_tokens > 1 or e.prefix_tokens == 0)]
        ordered = prefills + decodes
        contexts = [e.prefix_tokens + e.new_tokens for e in ordered]
        # Request i owns slots [i * blocks_per_request, ...) of the block order; its table lists the ones it uses.
        per = self.blocks_per_request
        tables = [self.block_order[i * per: i * per + math.ceil(c / self.block_size)] for i, c in enumerate(contexts)]
        positions, slots, block_tables, context_lens = timed("cpu_overhead", ops.prepare_inputs, contexts, [e.new_tokens for e in ordered], tables, self.block_size, self.device)
        num_prefill = sum(e.new_tokens for e in prefills)
        ids = positions % self.model.vocab_size  # any token ids do
        x = timed("embedding", F.embedding, ids, self.embedding)
        residual = torch.zeros_like(x)
        d, hq, hkv = self.head_dim, self.q_heads, self.kv_heads
        prefill_tables = block_tables[: len(prefills)].long()
        decode_tables, decode_lens = block_tables[len(prefills):], context_lens[len(prefills):]
        news, prefixes = [e.new_tokens for e in prefills], [e.prefix_tokens for e in prefills]
        for layer, k_cache, v_cache in zip(self.layers, self.k_caches, self.v_caches):
            y, residual = timed("add_rmsnorm", ops.add_rmsnorm, x, residual, layer["in_norm"])
            q, k, v = timed("qkv_proj", F.linear, y, layer["qkv"]).split([hq * d, hkv * d, hkv * d], dim=-1)
            q, k = timed("rotary", ops.rotary, positions, q.view(-1, hq, d), k.view(-1, hkv, d), self.cos_sin)
            v = v.view(-1, hkv, d)
            timed("kv_cache_write", ops.kv_cache_write, k, v, k_cache, v_cache, slots)
            outs = []
            if prefills:
                outs.append(timed("attention_prefill", ops.prefill_attention, q[:num_prefill], k[:num_prefill], v[:num_prefill], k_cache, v_cache,
                                  prefill_tables, news, prefixes, self.scale))
            if decodes:
                outs.append(timed("attention_decode", ops.decode_attention, q[num_prefill:], k_cache, v_cache, decode_tables, decode_lens, self.scale))
            attn = outs[0] if len(outs) == 1 else torch.cat(outs)
            y = timed("o_proj", F.linear, attn.flatten(1), layer["o"])
            y, residual = timed("add_rmsnorm", ops.add_rmsnorm, y, residual, layer["post_norm"])
            x = timed("down_proj", F.linear, timed("silu_mul", ops.silu_mul, timed("gate_up_proj", F.linear, y, layer["gate_up"])), layer["down"])
        last = torch.tensor([sum(e.new_tokens for e in ordered[: i + 1]) - 1 for i, e in enumerate(ordered) if e.samples], dtype=torch.int64, device=self.device)
        if len(last) == 0:
            return last
        logits = timed("lm_head", F.linear, timed("rmsnorm", ops.rmsnorm, x[last], self.final_norm), self.lm_head)
        sampled = timed("sampling", ops.sample, logits)
        return timed("cpu_overhead", sampled.tolist)


class _Timed:
    """Calls ``fn(*args)``; with a dict, also adds the call's thread CPU time (s) to ``times[name]``."""

    __slots__ = ("times",)

    def __init__(self, times: dict[str, float] | None) -> None:
        self.times = times

    def __call__(self, name: str, fn, *args):
        if self.times is None:
            return fn(*args)
        t0 = time.thread_time()
        out = fn(*args)
        self.times[name] = self.times.get(name, 0.0) + time.thread_time() - t0
        return out
