"""The architecture of a decoder-only transformer: what its layers hold and how many parameters.

``ModelSpec`` is what the cost models, the memory plan and the profiler read. The families it
describes (``simulator/specs/architectures.py`` reads them from Hugging Face config.json files):

- dense layers: grouped-query attention (MHA when KV heads equal query heads), an MLP that is
  gated (SwiGLU: gate, up and down projections, Shazeer 2020) or two-matrix ReLU (OPT), RMSNorm or
  LayerNorm with a bias, rotary or learned absolute positions, optional per-head q/k norm
  (Qwen3, Llama 4), sliding-window attention on some or all layers (Mistral, gpt-oss);
- mixture-of-experts layers (``MoESpec``): routed experts with top-k routing, optional shared
  experts, on every layer or on some (DeepSeek-V3's first dense layers, Llama 4's interleaving);
- multi-head latent attention (``MLASpec``, DeepSeek-V2 paper, Sec. 2.1): low-rank projections of
  queries and of one compressed KV latent per token.

Parameter counts follow the weights the Hugging Face modelling code creates (each count below
names its module); they are checked against the model cards in ``benchmarks/model_params.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

FFN_KINDS = ("gated_silu", "relu")
NORM_KINDS = ("rmsnorm", "layernorm")
POSITION_KINDS = ("rotary", "learned")
QK_NORMS = ("none", "rmsnorm", "l2")


@dataclass(frozen=True, slots=True)
class MoESpec:
    """The mixture-of-experts MLP of a model.

    Attributes:
        num_experts: routed experts per MoE layer (E).
        num_experts_per_token: experts each token is routed to (top-k).
        expert_intermediate_size: each routed expert's MLP width (a gated MLP, h x width x 3).
        moe_layers: indices of the layers whose MLP is the MoE block (the others are dense, of
            the model's ``intermediate_size``).
        shared_intermediate_size: width of the shared experts every token runs, fused into one
            gated MLP (DeepSeek: ``moe_intermediate_size x n_shared_experts``; Llama 4: one expert
            of ``intermediate_size``); 0 without shared experts.
        expert_bias: whether expert projections carry biases (gpt-oss).
        router_bias: whether the router has a bias per expert (gpt-oss's router bias; DeepSeek-V3's
            ``e_score_correction_bias``).
    """

    num_experts: int
    num_experts_per_token: int
    expert_intermediate_size: int
    moe_layers: tuple[int, ...]
    shared_intermediate_size: int = 0
    expert_bias: bool = False
    router_bias: bool = False


@dataclass(frozen=True, slots=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2, Liu et al. 2024, Sec. 2.1; DeepSeek-V3 Sec. 2.1.1).

    Attributes:
        q_lora_rank: rank of the query's down-projection (None: queries are projected directly).
        kv_lora_rank: width of the compressed KV latent cached per token (c_KV).
        qk_rope_head_dim: per-head rotary part of queries and keys; the key's is shared by all
            heads and cached beside the latent.
        qk_nope_head_dim: per-head non-rotary part of queries and keys.
        v_head_dim: per-head value width.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of a decoder-only transformer.

    Attributes:
        name: bundled name or the config.json path it came from.
        num_layers: decoder layers (``num_hidden_layers``).
        hidden_size: model width h.
        intermediate_size: MLP width I of the dense layers (gated: gate and up are each h x I;
            ReLU: the up projection is h x I, OPT's ``ffn_dim``).
        num_attention_heads: query heads.
        num_kv_heads: key/value heads (``num_key_value_heads``; equals query heads without GQA).
        head_dim: per-head width of queries and keys (``head_dim``, else ``hidden_size /
            num_attention_heads``; MLA: ``qk_nope_head_dim + qk_rope_head_dim``).
        vocab_size: vocabulary size V.
        max_position_embeddings: the longest context the model was trained for (tokens).
        tie_word_embeddings: whether lm_head shares the embedding matrix.
        attention_bias: whether the QKV projection has a bias (Qwen2, OPT, gpt-oss).
        architecture: the config's ``model_type`` (``llama`` for specs built in code).
        ffn_kind: ``gated_silu`` (gate, up, down; SiLU(gate) * up) or ``relu`` (up, ReLU, down).
        mlp_bias: whether the dense MLP's projections have biases (OPT's fc1 and fc2).
        o_proj_bias: whether the attention output projection has a bias (OPT, gpt-oss).
        norm_kind: ``rmsnorm`` (a weight) or ``layernorm`` (a weight and a bias, OPT).
        qk_norm: per-head norm of queries and keys before rotary: ``none``, ``rmsnorm`` (a weight of
            head_dim each, Qwen3) or ``l2`` (no weight, Llama 4).
        position_kind: ``rotary`` (RoFormer, no weights) or ``learned`` (a table added to the
            token embeddings, OPT).
        num_position_embeddings: rows of the learned position table (OPT: max_position_embeddings
            + 2, the offset of ``OPTLearnedPositionalEmbedding``); 0 for rotary.
        word_embed_proj_dim: width of the token embedding when it differs from h (OPT-350M:
            ``project_in`` / ``project_out`` map it to h and back); None when it equals h.
        sliding_window: the attention window of the sliding-window layers (tokens), or None.
        sliding_layers: indices of the layers attending within ``sliding_window`` (the others
            attend to the whole context).
        attention_sinks: whether each head has a learned sink logit (gpt-oss).
        moe: the mixture-of-experts MLP, or None for a dense model.
        mla: the latent attention, or None for (grouped-query) multi-head attention.
    """

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    architecture: str = "llama"
    ffn_kind: str = "gated_silu"
    mlp_bias: bool = False
    o_proj_bias: bool = False
    norm_kind: str = "rmsnorm"
    qk_norm: str = "none"
    position_kind: str = "rotary"
    num_position_embeddings: int = 0
    word_embed_proj_dim: int | None = None
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()
    attention_sinks: bool = False
    moe: MoESpec | None = None
    mla: MLASpec | None = None

    def __post_init__(self) -> None:
        assert self.ffn_kind in FFN_KINDS, f"ffn_kind {self.ffn_kind!r} not in {FFN_KINDS}"
        assert self.norm_kind in NORM_KINDS, f"norm_kind {self.norm_kind!r} not in {NORM_KINDS}"
        assert self.position_kind in POSITION_KINDS, f"position_kind {self.position_kind!r} not in {POSITION_KINDS}"
        assert self.qk_norm in QK_NORMS, f"qk_norm {self.qk_norm!r} not in {QK_NORMS}"
        assert not self.sliding_layers or self.sliding_window, "sliding layers need a sliding_window"
        assert all(0 <= i < self.num_layers for i in self.sliding_layers), "sliding layer index out of range"

    # -- shape -----------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        """Whether some layer's MLP is a mixture of experts."""
        return self.moe is not None

    @property
    def num_sliding_layers(self) -> int:
        """Layers whose attention is bounded by ``sliding_window``."""
        return len(self.sliding_layers)

    @property
    def embedding_dim(self) -> int:
        """Width of the token embedding and of lm_head's input (h unless ``word_embed_proj_dim``)."""
        return self.word_embed_proj_dim or self.hidden_size

    # -- parameter counts ------------------------------------------------------------------
    def _mlp_params(self, width: int, gated: bool, bias: bool) -> int:
        """One MLP of ``width``: gated h x 2w + w x h (LlamaMLP), ReLU h x w + w x h (OPT fc1, fc2)."""
        h = self.hidden_size
        if gated:
            return 3 * h * width + (2 * width + h if bias else 0)
        return 2 * h * width + (width + h if bias else 0)

    @property
    def attention_params(self) -> int:
        """One layer's attention weights (projections, q/k norms, sinks)."""
        h, heads = self.hidden_size, self.num_attention_heads
        if self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:  # q_a_proj, q_a_layernorm, q_b_proj
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * heads * qk
            else:
                q = h * heads * qk
            # kv_a_proj_with_mqa (latent + shared rotary key), kv_a_layernorm, kv_b_proj
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank + m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
            return q + kv + heads * m.v_head_dim * h
        qkv_width = (heads + 2 * self.num_kv_heads) * self.head_dim
        params = h * qkv_width + heads * self.head_dim * h
        params += qkv_width if self.attention_bias else 0
        params += h if self.o_proj_bias else 0
        params += 2 * self.head_dim if self.qk_norm == "rmsnorm" else 0
        params += heads if self.attention_sinks else 0
        return params

    @property
    def norm_params(self) -> int:
        """One norm over h: a weight (RMSNorm) or a weight and a bias (LayerNorm)."""
        return self.hidden_size * (2 if self.norm_kind == "layernorm" else 1)

    @property
    def dense_mlp_params(self) -> int:
        """One dense layer's MLP."""
        return self._mlp_params(self.intermediate_size, self.ffn_kind == "gated_silu", self.mlp_bias)

    @property
    def expert_params(self) -> int:
        """One routed expert of an MoE layer (0 for a dense model)."""
        if self.moe is None:
            return 0
        return self._mlp_params(self.moe.expert_intermediate_size, True, self.moe.expert_bias)

    @property
    def moe_mlp_params(self) -> int:
        """One MoE layer's MLP: router, every routed expert, the shared experts (0 for a dense model)."""
        moe = self.moe
        if moe is None:
            return 0
        router = self.hidden_size * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
        shared = self._mlp_params(moe.shared_intermediate_size, True, False) if moe.shared_intermediate_size else 0
        return router + moe.num_experts * self.expert_params + shared

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe.moe_layers) if self.moe is not None else 0

    def params_of_layer(self, index: int) -> int:
        """Decoder layer ``index``'s weights: attention, its two norms, and its dense or MoE MLP."""
        moe = self.moe is not None and index in self.moe.moe_layers
        return self.attention_params + 2 * self.norm_params + (self.moe_mlp_params if moe else self.dense_mlp_params)

    @property
    def embedding_params(self) -> int:
        """Token embedding plus lm_head (once when tied)."""
        table = self.vocab_size * self.embedding_dim
        return table if self.tie_word_embeddings else 2 * table

    @property
    def layer_params(self) -> int:
        """All decoder layers' weights: attention, MLPs, the two norms of each layer."""
        per_layer = self.attention_params + 2 * self.norm_params
        dense_layers = self.num_layers - self.num_moe_layers
        return self.num_layers * per_layer + dense_layers * self.dense_mlp_params + self.num_moe_layers * self.moe_mlp_params

    @property
    def num_params(self) -> int:
        """Parameter count: embedding, position table, embedding projections, layers, final norm, lm_head.

        The multi-token-prediction module of DeepSeek-V3 (``num_nextn_predict_layers``) is not a
        decoder layer and is not counted (vLLM loads it only for speculative decoding).
        """
        h = self.hidden_size
        projections = 2 * h * self.word_embed_proj_dim if self.word_embed_proj_dim else 0  # project_in, project_out
        positions = self.num_position_embeddings * h
        return self.embedding_params + positions + projections + self.layer_params + self.norm_params

    @property
    def num_active_params(self) -> int:
        """Parameters one token's forward pass uses: all of them but the routed experts it skips.

        Counts the embedding and lm_head (as Mixtral's and Qwen3's model cards do); equals
        ``num_params`` for a dense model.
        """
        if self.moe is None:
            return self.num_params
        skipped = self.moe.num_experts - self.moe.num_experts_per_token
        return self.num_params - self.num_moe_layers * skipped * self.expert_params

    # -- KV cache --------------------------------------------------------------------------
    def kv_elements_per_token_layer(self) -> int:
        """Elements one token caches in one layer (unsharded): K and V of every KV head, or MLA's latent.

        MLA caches the compressed latent and the shared rotary key, ``kv_lora_rank +
        qk_rope_head_dim`` per layer (DeepSeek-V2, Sec. 2.1.2; vLLM's MLA backends cache this one
        vector per token, the same on every TP rank).
        """
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Bytes of KV cache one token occupies across all layers (unsharded, window not applied)."""
        return self.num_layers * self.kv_elements_per_token_layer() * dtype_bytes
