"""Multi-head latent attention (DeepSeek-V2, Liu et al. 2024, Sec. 2.1) as vLLM runs it.

Per layer and token, at H / T query heads per GPU (vLLM ``models/deepseek_v2.py``,
``DeepseekV2MLAAttention``; ``v1/attention/backends/mla/common.py``):

- projections: the fused down-projection of the query and of the KV latent with its rotary key,
  ``fused_qkv_a_proj`` ([h] -> [q_lora_rank + kv_lora_rank + qk_rope_head_dim], replicated on every
  GPU), or separate ``q_proj`` and ``kv_a_proj_with_mqa`` without a query rank; RMSNorms of the two
  latents; ``q_b_proj`` (column parallel, to ``H / T x (qk_nope + qk_rope)``); rotary on the rope
  parts; the cache write of the latent and the rotary key; ``o_proj`` (row parallel, from
  ``H / T x v_head_dim``);
- prefill (the uncompressed form): ``kv_b_proj`` expands the latent of every key the chunk
  attends to (its own tokens and the cached context) into per-head K_nope and V, then causal
  multi-head attention with QK width ``qk_nope + qk_rope`` and V width ``v_head_dim``;
- decode (the absorbed form, FlashMLA and vLLM's MLA decode kernels): the query's nope part is
  multiplied into the latent space by W_UK (a batched GEMM per head), attention runs as one
  KV head of width ``kv_lora_rank + qk_rope`` (K) and ``kv_lora_rank`` (V) over the cached latents,
  and W_UV maps the result back to ``v_head_dim`` per head. Each context token's latent is read once
  for all of the GPU's heads, so decode attention does ``2 H / T (2 kv_lora_rank + qk_rope)`` FLOPs
  per cached token against ``kv_lora_rank + qk_rope`` elements read: about 240 FLOP per byte at
  DeepSeek-V3's 128 heads on one GPU, near the H100's ridge point; it is priced by the roofline's
  max of the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.cost_models.windows import windowed_prefill
from simulator.specs.model import ModelSpec

if TYPE_CHECKING:
    from simulator.cost_models.roofline import RooflineCostModel


class LatentAttention:
    """MLA's attention-side prices on one GPU of a rank of ``roofline.tp`` GPUs."""

    def __init__(self, roofline: RooflineCostModel, model: ModelSpec) -> None:
        assert model.mla is not None
        self.roof, self.model, self.mla = roofline, model, model.mla
        self.heads = model.num_attention_heads // roofline.tp
        m = self.mla
        self.qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        self.latent = m.kv_lora_rank + m.qk_rope_head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(k, n) of the attention's projections on one GPU, in run order."""
        h, m, heads = self.model.hidden_size, self.mla, self.heads
        if m.q_lora_rank:
            shapes = {"fused_qkv_a_proj": (h, m.q_lora_rank + self.latent), "q_b_proj": (m.q_lora_rank, heads * self.qk)}
        else:
            shapes = {"q_proj": (h, heads * self.qk), "kv_a_proj_with_mqa": (h, self.latent)}
        shapes["o_proj"] = (heads * m.v_head_dim, h)
        return shapes

    def token_time(self, num_tokens: int) -> float:
        """Projections, latent norms, rotary and the latent cache write for ``num_tokens`` tokens (s)."""
        r, m, b, t = self.roof, self.mla, self.roof.dtype_bytes, num_tokens
        total = sum(r.linear_time(t, k, n) for k, n in self.linear_shapes().values())
        if m.q_lora_rank:
            total += r.elementwise_time(2 * t * m.q_lora_rank * b)  # q_a_layernorm
        total += r.elementwise_time(2 * t * m.kv_lora_rank * b)  # kv_a_layernorm
        total += r.elementwise_time(2 * t * (self.heads + 1) * m.qk_rope_head_dim * b)  # rotary on q and the shared key
        total += r.elementwise_time(2 * t * self.latent * b)  # latent + rotary key to the cache
        return total

    def prefill_time(self, new_tokens: list[int], prefix_tokens: list[int], window: int | None = None) -> float:
        """One layer's prefill attention over the chunks: ``kv_b_proj`` of every key, then causal MHA (s)."""
        r, m, b, heads = self.roof, self.mla, self.roof.dtype_bytes, self.heads
        work = keys = queries = 0.0
        for n, c in zip(new_tokens, prefix_tokens):
            pairs, kv = (n * (c + (n + 1) / 2), c + n) if window is None else windowed_prefill(n, c, window)
            work += pairs
            keys += kv
            queries += n
        expand = r.gemm_time(int(keys), m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim))
        flops = 2.0 * heads * (self.qk + m.v_head_dim) * work
        nbytes = (queries + keys) * heads * (self.qk + m.v_head_dim) * b
        return expand + max(flops / r.attention_flops, nbytes / r.attention_bandwidth) + r.attention_launch_s

    def decode_time(self, num_requests: int, context_tokens: int) -> float:
        """One layer's absorbed decode attention: W_UK, latent attention over the cache, W_UV (s)."""
        r, m, b, heads, q = self.roof, self.mla, self.roof.dtype_bytes, self.heads, num_requests
        w_uk = r.bmm_time(heads, q, m.qk_nope_head_dim, m.kv_lora_rank)
        w_uv = r.bmm_time(heads, q, m.kv_lora_rank, m.v_head_dim)
        flops = 2.0 * heads * (self.latent + m.kv_lora_rank) * context_tokens
        nbytes = (context_tokens * self.latent + q * heads * (self.latent + m.kv_lora_rank)) * b
        return w_uk + w_uv + max(flops / r.attention_flops, nbytes / r.attention_bandwidth) + r.attention_launch_s
