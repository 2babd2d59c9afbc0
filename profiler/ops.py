"""PyTorch implementations of the catalogue's operators, and builders that time them.

The functions here are what a PyTorch serving step runs (eager mode): ``F.linear`` GEMMs,
RMSNorm with the residual add, neox-style rotary embedding, a scatter into a paged KV cache
(vLLM layout ``[num_blocks, block_size, num_kv_heads, head_dim]``), causal prefill attention over
a cached prefix read through a block table, paged decode attention, SiLU-and-mul, the embedding
lookup, lm_head and Gumbel-max sampling; for OPT and Qwen3 also the residual add then LayerNorm,
ReLU, the learned position embedding and the per-head q/k RMSNorm. ``profiler.model`` runs a whole step from the same
functions, so a measured step and the sum of its measured operators compare like for like.

Builders (``build``) allocate an operator's inputs for one ``Measurement`` and return the
callable the timer repeats. This module imports torch; import it only inside functions that
need it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from profiler.catalogue import ATTENTION_DECODE, ATTENTION_PREFILL, CPU_OVERHEAD, ELEMENTWISE, GEMM, Measurement, layer_dims
from simulator.specs.model import ModelSpec

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RMS_EPS = 1e-5
LN_EPS = 1e-5  # OPT's nn.LayerNorm default; any value costs the same
ROPE_THETA = 500_000.0  # Llama 3's rope_theta; any value costs the same


# -- operators ----------------------------------------------------------------------------------
def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm(x + residual) * weight and the new residual; x, residual [tokens, hidden]."""
    residual = x + residual
    r = residual.float()
    y = (r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + RMS_EPS)).to(x.dtype) * weight
    return y, residual


def add_layernorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LayerNorm(x + residual) and the new residual, unfused as OPT's layers run them; x, residual [tokens, hidden]."""
    residual = x + residual
    return F.layer_norm(residual, (x.shape[-1],), weight, bias, LN_EPS), residual


def rmsnorm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """RMSNorm(x) * weight; x [tokens, hidden]."""
    r = x.float()
    return (r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + RMS_EPS)).to(x.dtype) * weight


def rope_cache(max_positions: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """cos | sin of every position, [max_positions, head_dim] (Su et al., RoFormer 2021, Eq. 34)."""
    inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float32, device=device), inv_freq)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(dtype)


def rotary(positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Neox-style rotary embedding of q [tokens, q_heads, d] and k [tokens, kv_heads, d]."""
    cos, sin = cos_sin[positions].unsqueeze(1).chunk(2, dim=-1)  # [tokens, 1, d/2] each

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    return rotate(q), rotate(k)


def kv_cache_write(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Scatter k, v [tokens, kv_heads, d] into the paged caches [num_blocks, block_size, kv_heads, d] at flat slots."""
    kv_heads, d = k.shape[1], k.shape[2]
    k_cache.view(-1, kv_heads, d).index_copy_(0, slot_mapping, k)
    v_cache.view(-1, kv_heads, d).index_copy_(0, slot_mapping, v)


def silu_mul(x: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up of the fused gate/up output x [tokens, 2 * intermediate]."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def sample(logits: torch.Tensor) -> torch.Tensor:
    """One token per row of logits [requests, vocab]: Gumbel-max sampling at temperature 1 (fp32).

    argmax(p / q) with q ~ Exp(1) draws from softmax p without a host sync (the exponential-race
    form of the Gumbel-max trick), the way GPU serving engines sample.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    q = torch.empty_like(probs).exponential_()
    return probs.div_(q).argmax(dim=-1)


def _gather_context(cache: torch.Tensor, block_table: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The first ``num_tokens`` tokens a block table points to: [num_tokens, kv_heads, d]."""
    bs = cache.shape[1]
    blocks = block_table[: math.ceil(num_tokens / bs)]
    return cache[blocks].flatten(0, 1)[:num_tokens]


def prefill_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, new_tokens: list[int], prefix_tokens: list[int], scale: float,
) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its cached prefix and themselves.

    Args:
        q: [total new tokens, q_heads, d]; k, v: [total new tokens, kv_heads, d] (this step's).
        k_cache, v_cache: [num_blocks, block_size, kv_heads, d]; the prefix of sequence i is at
            ``block_tables[i]``.
        new_tokens, prefix_tokens: per sequence, chunk length and cached prefix length.

    Returns:
        [total new tokens, q_heads, d].
    """
    out = torch.empty_like(q)
    start = 0
    for i, (n, c) in enumerate(zip(new_tokens, prefix_tokens)):
        qi, ki, vi = q[start:start + n], k[start:start + n], v[start:start + n]
        if c:
            ki = torch.cat([_gather_context(k_cache, block_tables[i], c), ki])
            vi = torch.cat([_gather_context(v_cache, block_tables[i], c), vi])
            # New token j sees the prefix and new tokens 0..j: bottom-right aligned causal mask.
            mask = torch.ones(n, c + n, dtype=torch.bool, device=q.device).tril_(c)
            o = F.scaled_dot_product_attention(qi.transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1), attn_mask=mask, scale=scale, enable_gqa=True)
        else:
            o = F.scaled_dot_product_attention(qi.transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1), is_causal=True, scale=scale, enable_gqa=True)
        out[start:start + n] = o.transpose(0, 1)
        start += n
    return out


def decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float,
) -> torch.Tensor:
    """Paged decode attention: q [requests, q_heads, d] over each request's cached context.

    Args:
        k_cache, v_cache: [num_blocks, block_size, kv_heads, d].
        block_tables: [requests, max blocks] int32 (padding entries point to any valid block).
        context_lens: [requests] tokens of context (the new token's K/V already written).

    Returns:
        [requests, q_heads, d].
    """
    b, kv_heads, d = q.shape[0], k_cache.shape[2], k_cache.shape[3]
    k = k_cache[block_tables].view(b, -1, kv_heads, d).transpose(1, 2)  # [b, kv_heads, T, d]
    v = v_cache[block_tables].view(b, -1, kv_heads, d).transpose(1, 2)
    mask = torch.arange(k.shape[2], device=q.device)[None, :] < context_lens[:, None]  # [b, T]
    o = F.scaled_dot_product_attention(q.unsqueeze(2), k, v, attn_mask=mask[:, None, None, :], scale=scale, enable_gqa=True)
    return o.squeeze(2)


def prepare_inputs(
    context_lens: list[int], num_new_tokens: list[int], block_tables: list[list[int]], block_size: int, device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """The host's per-iteration input preparation: positions, slot mapping, padded block tables.

    Builds, in Python, the position and KV-cache slot of every token computed this step and the
    padded block table of every request, then copies them to ``device`` (pinned and
    non-blocking on CUDA), as a serving engine's model runner does each step.

    Args:
        context_lens: per request, tokens of context after this step.
        num_new_tokens: per request, tokens computed this step.
        block_tables: per request, its KV cache block ids.

    Returns:
        positions [tokens] int64, slot_mapping [tokens] int64, block_tables [requests, max blocks]
        int32, context_lens [requests] int32, all on ``device``.
    """
    positions: list[int] = []
    slots: list[int] = []
    for ctx, n, table in zip(context_lens, num_new_tokens, block_tables):
        for p in range(ctx - n, ctx):
            positions.append(p)
            slots.append(table[p // block_size] * block_size + p % block_size)
    width = max(len(t) for t in block_tables)
    padded = [t + [0] * (width - len(t)) for t in block_tables]
    pin = device.type == "cuda"
    host = (
        torch.tensor(positions, dtype=torch.int64, pin_memory=pin),
        torch.tensor(slots, dtype=torch.int64, pin_memory=pin),
        torch.tensor(padded, dtype=torch.int32, pin_memory=pin),
        torch.tensor(context_lens, dtype=torch.int32, pin_memory=pin),
    )
    if not pin:
        return host
    return tuple(t.to(device, non_blocking=True) for t in host)


# -- quantized GEMMs (PyTorch references) -------------------------------------------------------
def quantize_per_token(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token symmetric quantization of x [tokens, k] to int8 (``w8a8``) or FP8 e4m3 (``fp8``); returns (q, scale [tokens, 1])."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_(min=1e-6)
    if kind == "w8a8":
        scale = amax / 127.0
        return (x.float() / scale).round_().clamp_(-128, 127).to(torch.int8), scale
    scale = amax / 448.0
    return (x.float() / scale).to(torch.float8_e4m3fn), scale


def _w8a8_linear(a_q: torch.Tensor, a_scale: torch.Tensor, w_q_t: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    acc = torch._int_mm(a_q, w_q_t) if a_q.shape[0] > 16 or a_q.device.type == "cpu" else (a_q.float() @ w_q_t.float())
    return (acc.float() * a_scale * w_scale).to(out_dtype)


def _w4a16_linear(a: torch.Tensor, w_packed: torch.Tensor, scales: torch.Tensor, group: int) -> torch.Tensor:
    """a [m, k] @ dequant(w)^T; w_packed [n, k / 2] uint8 (two int4 per byte, offset 8), scales [n, k / group]."""
    low = (w_packed & 0xF).to(torch.int8) - 8
    high = (w_packed >> 4).to(torch.int8) - 8
    w = torch.stack([low, high], dim=-1).flatten(1)  # [n, k]
    n, k = w.shape
    w = (w.view(n, k // group, group).to(a.dtype) * scales.unsqueeze(-1)).view(n, k)
    return F.linear(a, w)


def _fp8_linear(a_q: torch.Tensor, a_scale: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    if a_q.device.type == "cuda":
        return torch._scaled_mm(a_q, w_q.t(), scale_a=a_scale, scale_b=w_scale.view(1, -1), out_dtype=out_dtype)
    return ((a_q.float() @ w_q.float().t()) * a_scale * w_scale).to(out_dtype)


# -- builders -----------------------------------------------------------------------------------
class Builder:
    """Allocates operator inputs on ``device`` and returns callables to time.

    Weights are kept between consecutive measurements of the same GEMM (only the activations
    change along a token sweep), so a sweep allocates each weight once.

    With ``cold_bytes`` > 0 (the CPU), a measurement gets enough copies of its inputs to span
    ``cold_bytes`` and the callable cycles through them: every call finds its weights, KV cache
    and activations evicted from the caches by the other copies, as a real step finds them after
    every other layer's weights and KV blocks streamed through. (On GPUs ``do_bench`` flushes the
    L2 instead.) Activations are cycled cold too: inside a real step of the tiny model the norms,
    rotary and SiLU*mul measured between their cold and their cache-hot isolated times, the
    norms nearer the cold ones.
    """

    MAX_COPIES = 256  # 64 MiB over copies of 256 KiB: even the smallest weight (o_proj of the tiny model) goes cold

    def __init__(self, device: torch.device, model: ModelSpec, cold_bytes: int = 0) -> None:
        self.device = device
        self.model = model
        self.max_positions = model.max_position_embeddings
        self.cold_bytes = cold_bytes
        self._weights: dict[tuple, Any] = {}
        self._sources: dict[tuple, torch.Tensor] | None = None  # set while building copies
        self._kv_pool: dict[str, Any] | None = None  # one KV block pool shared by the copies

    def _randn(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        """Standard normal values made directly in ``dtype`` (no float32 copy: KV caches reach tens of GB).

        While building copies, the first tensor of each shape is random and the others clone it
        (a memory copy is far cheaper than drawing again).
        """
        if self._sources is not None and (shape, dtype) in self._sources:
            return self._sources[shape, dtype].clone()
        if dtype.is_floating_point and dtype.itemsize >= 2:
            t = torch.randn(*shape, device=self.device, dtype=dtype)
        else:
            t = torch.randn(*shape, device=self.device, dtype=torch.float32).to(dtype)
        if self._sources is not None:
            self._sources[shape, dtype] = t
        return t

    def _weight(self, key: tuple, make: Callable[[], Any]) -> Any:
        if self._sources is not None:  # every copy owns its weights
            return make()
        if key not in self._weights:
            self._weights.clear()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self._weights[key] = make()
        return self._weights[key]

    def build(self, m: Measurement, float_dtype: str) -> Callable[[], Any]:
        """The callable that runs measurement ``m`` once (``float_dtype``: the bundle's activation dtype).

        Raises:
            KeyError: an operator or quantization this builder does not know.
        """
        copies = 1
        if self.cold_bytes > 0:
            copies = int(min(self.MAX_COPIES, max(1, math.ceil(self.cold_bytes / max(m.nbytes, 4096.0)))))
        if copies == 1:
            return self._build_one(m, float_dtype)
        self._sources = {}
        if m.kind in (ATTENTION_DECODE, ATTENTION_PREFILL):
            self._kv_pool = {"copies": copies}
        try:
            fns = [self._build_one(m, float_dtype) for _ in range(copies)]
        finally:
            self._sources = None
            self._kv_pool = None
        cycle = itertools.cycle(fns)
        return lambda: next(cycle)()

    def _build_one(self, m: Measurement, float_dtype: str) -> Callable[[], Any]:
        dtype = TORCH_DTYPES[float_dtype]
        shape = m.shape_dict
        if m.kind == GEMM:
            return self._gemm(m.dtype, shape["m"], shape["n"], shape["k"], dtype)
        if m.kind == ELEMENTWISE:
            return self._elementwise(m, shape["num_tokens"], shape["width"], dtype)
        if m.kind == ATTENTION_PREFILL:
            return self._prefill(shape, dtype)
        if m.kind == ATTENTION_DECODE:
            return self._decode(shape, dtype)
        if m.kind == CPU_OVERHEAD:
            return self._cpu_overhead(shape)
        raise KeyError(m.kind)

    def _gemm(self, kind: str, m: int, n: int, k: int, dtype: torch.dtype) -> Callable[[], Any]:
        a = self._randn(m, k, dtype=dtype)
        if kind in TORCH_DTYPES:
            w = self._weight(("gemm", n, k, dtype), lambda: self._randn(n, k, dtype=dtype))
            return lambda: F.linear(a, w)
        if kind == "w8a8":
            w_q_t, w_scale = self._weight(("w8a8", n, k), lambda: (
                torch.randint(-127, 128, (n, k), dtype=torch.int8, device=self.device).t(),
                torch.rand(1, n, device=self.device) * 1e-2))
            a_q, a_scale = quantize_per_token(a, "w8a8")
            return lambda: _w8a8_linear(a_q, a_scale, w_q_t, w_scale, dtype)
        if kind == "w4a16":
            group = 128 if k % 128 == 0 else k
            w_packed, scales = self._weight(("w4a16", n, k, dtype), lambda: (
                torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=self.device),
                (torch.rand(n, k // group, device=self.device) * 1e-2).to(dtype)))
            return lambda: _w4a16_linear(a, w_packed, scales, group)
        if kind == "fp8":
            w_q, w_scale = self._weight(("fp8", n, k), lambda: (
                self._randn(n, k, dtype=torch.float32).to(torch.float8_e4m3fn), torch.rand(n, device=self.device) * 1e-2))
            # torch._scaled_mm wants M a multiple of 16: pad the activations, as a PyTorch engine must.
            padded = math.ceil(m / 16) * 16 if self.device.type == "cuda" else m
            a_q, a_scale = quantize_per_token(self._randn(padded, k, dtype=dtype), "fp8")
            return lambda: _fp8_linear(a_q, a_scale, w_q, w_scale, dtype)[:m]
        raise KeyError(kind)

    def _elementwise(self, meas: Measurement, m: int, width: int, dtype: torch.dtype) -> Callable[[], Any]:
        op, dev = meas.operator, self.device
        if op == "add_rmsnorm":
            x, res, w = self._randn(m, width, dtype=dtype), self._randn(m, width, dtype=dtype), self._randn(width, dtype=dtype)
            return lambda: add_rmsnorm(x, res, w)
        if op == "rmsnorm":
            x, w = self._randn(m, width, dtype=dtype), self._randn(width, dtype=dtype)
            return lambda: rmsnorm(x, w)
        if op == "silu_mul":
            x = self._randn(m, 2 * width, dtype=dtype)
            return lambda: silu_mul(x)
        if op in ("add_layernorm", "layernorm"):
            x, res = self._randn(m, width, dtype=dtype), self._randn(m, width, dtype=dtype)
            w, bias = self._randn(width, dtype=dtype), self._randn(width, dtype=dtype)
            if op == "layernorm":
                return lambda: F.layer_norm(x, (width,), w, bias, LN_EPS)
            return lambda: add_layernorm(x, res, w, bias)
        if op == "relu":
            x = self._randn(m, width, dtype=dtype)
            return lambda: F.relu(x)
        if op == "qk_norm":  # RMSNorm over each head of Q and of K (Qwen3's q_norm, k_norm)
            dims = layer_dims(self.model, meas.tp)
            q, k = self._randn(m, dims.q_heads, dims.head_dim, dtype=dtype), self._randn(m, dims.kv_heads, dims.head_dim, dtype=dtype)
            wq, wk = self._randn(dims.head_dim, dtype=dtype), self._randn(dims.head_dim, dtype=dtype)
            return lambda: (rmsnorm(q, wq), rmsnorm(k, wk))
        if op == "position_embedding":  # OPT: gather the learned positions, add them to the token embeddings
            table = self._weight(("positions", width, dtype), lambda: self._randn(self.max_positions + 2, width, dtype=dtype))
            x = self._randn(m, width, dtype=dtype)
            positions = torch.randint(0, self.max_positions, (m,), device=dev)
            return lambda: x + F.embedding(positions, table)
        if op == "embedding":
            # One table for every copy: it is larger than the caches, and each call gathers other rows.
            key = ("embedding", width, dtype)
            table = self._weights.get(key)
            if table is None:
                table = self._weights[key] = torch.randn(32_000, width, device=dev, dtype=torch.float32).to(dtype)
            ids = torch.randint(0, table.shape[0], (m,), device=dev)
            return lambda: F.embedding(ids, table)
        if op == "sampling":
            logits = self._randn(m, width, dtype=dtype)
            return lambda: sample(logits)
        if op == "quantize_activations":
            x = self._randn(m, width, dtype=dtype)
            return lambda: quantize_per_token(x, meas.dtype)
        if op in ("rotary", "kv_cache_write"):
            dims = layer_dims(self.model, meas.tp)
            head_dim = dims.head_dim
            positions = torch.randint(0, self.max_positions, (m,), device=dev)
            if op == "rotary":
                cos_sin = self._weight(("rope", head_dim, dtype), lambda: rope_cache(self.max_positions, head_dim, dtype, dev))
                qk = self._randn(m, width // head_dim, head_dim, dtype=dtype)
                q_heads = dims.q_heads
                q, k = qk[:, :q_heads], qk[:, q_heads:]
                return lambda: rotary(positions, q, k, cos_sin)
            kv_heads, block_size = width // head_dim, 16
            num_blocks = math.ceil(m / block_size) + 1
            k_cache = torch.zeros(num_blocks, block_size, kv_heads, head_dim, device=dev, dtype=dtype)
            v_cache = torch.zeros_like(k_cache)
            k, v = self._randn(m, kv_heads, head_dim, dtype=dtype), self._randn(m, kv_heads, head_dim, dtype=dtype)
            slots = torch.randperm(num_blocks * block_size, device=dev)[:m]
            return lambda: kv_cache_write(k, v, k_cache, v_cache, slots)
        raise KeyError(op)

    def _paged_cache(self, num_seqs: int, context: int, kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype):
        """Caches holding ``num_seqs`` contexts of ``context`` tokens in shuffled blocks, and their block tables.

        While copies are built, all of them draw disjoint blocks from one pool shuffled as a
        whole, as the requests of a serving engine hold blocks scattered over one large KV
        cache: each copy's blocks lie all over the pool (on the CPU, decode attention took up to
        43 % longer with its blocks scattered over a pool four times larger than over just the
        blocks it reads: ``benchmarks/cpu_timing_effects.py --only blocks``).
        """
        per_seq = max(1, math.ceil(context / block_size))
        num_blocks = num_seqs * per_seq
        pool = self._kv_pool
        if pool is not None:
            if "k" not in pool:
                total = pool["copies"] * num_blocks
                pool["k"] = self._randn(total, block_size, kv_heads, head_dim, dtype=dtype)
                pool["v"] = self._randn(total, block_size, kv_heads, head_dim, dtype=dtype)
                pool["order"], pool["next"] = torch.randperm(total, device=self.device).to(torch.int32), 0
            start, pool["next"] = pool["next"], pool["next"] + num_blocks
            return pool["k"], pool["v"], pool["order"][start:start + num_blocks].view(num_seqs, per_seq)
        k_cache = self._randn(num_blocks, block_size, kv_heads, head_dim, dtype=dtype)
        v_cache = self._randn(num_blocks, block_size, kv_heads, head_dim, dtype=dtype)
        tables = torch.randperm(num_blocks, device=self.device).view(num_seqs, per_seq).to(torch.int32)
        return k_cache, v_cache, tables

    def _prefill(self, s: dict[str, int], dtype: torch.dtype) -> Callable[[], Any]:
        seqs, n, c, hq, hkv, d, bs = (s[k] for k in ("num_seqs", "new_tokens", "prefix_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"))
        k_cache, v_cache, tables = self._paged_cache(seqs, c, hkv, d, bs, dtype)
        tables = tables.long()
        q = self._randn(seqs * n, hq, d, dtype=dtype)
        k, v = self._randn(seqs * n, hkv, d, dtype=dtype), self._randn(seqs * n, hkv, d, dtype=dtype)
        news, prefixes, scale = [n] * seqs, [c] * seqs, d**-0.5
        return lambda: prefill_attention(q, k, v, k_cache, v_cache, tables, news, prefixes, scale)

    def _decode(self, s: dict[str, int], dtype: torch.dtype) -> Callable[[], Any]:
        b, ctx, hq, hkv, d, bs = (s[k] for k in ("num_seqs", "context_tokens", "num_heads", "num_kv_heads", "head_dim", "block_size"))
        k_cache, v_cache, tables = self._paged_cache(b, ctx, hkv, d, bs, dtype)
        q = self._randn(b, hq, d, dtype=dtype)
        lens = torch.full((b,), ctx, dtype=torch.int32, device=self.device)
        return lambda: decode_attention(q, k_cache, v_cache, tables, lens, d**-0.5)

    def _cpu_overhead(self, s: dict[str, int]) -> Callable[[], Any]:
        b, ctx, bs = s["num_seqs"], s["context_tokens"], s["block_size"]
        per_seq = math.ceil(ctx / bs)
        tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(b)]
        lens, news = [ctx] * b, [1] * b
        sampled = torch.zeros(b, dtype=torch.int64, device=self.device)
        dev = self.device

        def step_inputs() -> list[int]:
            prepare_inputs(lens, news, tables, bs, dev)
            return sampled.tolist()  # the sampled tokens come back to the host

        return step_inputs
