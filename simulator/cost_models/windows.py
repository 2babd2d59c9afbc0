"""Sliding-window attention: what a layer attending within ``sliding_window`` keys computes and reads.

A sliding-window layer (Mistral, gpt-oss's alternate layers) attends to at most ``window`` keys
per query (FlashAttention's ``window_size``, which vLLM passes for those layers); attention sinks
(gpt-oss; StreamingLLM, Xiao et al. ICLR'24) add one logit per head and query, negligible work.
"""

from __future__ import annotations

from simulator.engine.batch import Batch


def windowed_prefill(new_tokens: int, prefix_tokens: int, window: int) -> tuple[float, int]:
    """(query-key pairs, KV tokens read) of a prefill chunk whose queries see at most ``window`` keys.

    The query at position p (1-based, itself included) attends to min(p, window) keys, so the n
    new tokens after c cached ones form sum over p = c+1..c+n of min(p, window) pairs; they read
    the keys from position c + 2 - window on (at most window - 1 + n tokens). Without a binding
    window this is the causal n (c + (n + 1) / 2) pairs over c + n tokens.
    """
    n, c, w = new_tokens, prefix_tokens, window
    last = c + n
    if last <= w:
        return n * (c + (n + 1) / 2), last
    if c >= w:
        pairs = float(n * w)
    else:
        pairs = (w * (w + 1) - c * (c + 1)) / 2 + (last - w) * w
    return pairs, min(last, w - 1 + n)


def windowed_decode_context(batch: Batch, window: int) -> int:
    """Sum over the batch's decode entries of min(context, ``window``): the KV tokens a sliding-window layer reads.

    Decode entries are those ``Batch.add`` counts as decodes (one new token after the prompt);
    context the batch holds beyond them (static batching's idle slots) is bounded by ``window``
    per remaining decode token.
    """
    total = counted = entries = 0
    for request, new in zip(batch.requests, batch.num_new_tokens):
        computed = request.num_computed_tokens
        if new == 1 and computed >= request.num_prompt_tokens:
            context = computed + 1
            total += min(context, window)
            counted += context
            entries += 1
    rest = batch.decode_context_tokens - counted
    if rest > 0:
        total += min(rest, max(batch.num_decode_tokens - entries, 0) * window)
    return total
