"""kernels.paged_prefill against its torch reference: in the Triton interpreter on CPU (fp16, fp32)
and on CUDA in bf16 (marked gpu). Each batch mixes fresh prompts (prefix 0), extends of cached
prefixes (prefix > 0), single-token and empty chunks, across block sizes and GQA ratios."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda, paged_kv_cache  # noqa: E402

MODULE = "test_kernels_paged_prefill"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_reference_is_causal_attention',),
    ('check_rejects_bad_inputs',),
])

# (block_size, num_q_heads, num_kv_heads, head_dim, [(prefix, new), ...]). With GQA ratio r a
# program takes 64 // r new tokens: ratio 1 -> 64 (70 new tokens span two tiles), ratio 4 -> 16,
# ratio 3 -> 21 (63 of 64 rows used). Prefixes end mid-block and on a block boundary.
CASES = [
    (16, 2, 2, 64, [(0, 70), (45, 20), (0, 1)]),
    (8, 8, 2, 64, [(0, 37), (130, 3), (16, 0), (7, 40)]),
    (32, 6, 2, 80, [(64, 50), (0, 9)]),
]
TOLERANCE = {"float16": dict(rtol=5e-3, atol=5e-3), "float32": dict(rtol=2e-5, atol=2e-5)}


def make_batch(block_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int, seqs: list[tuple[int, int]],
               dtype: torch.dtype, gen: torch.Generator, device: str = "cpu") -> tuple:
    """A random paged KV cache already holding every sequence's prefix and new tokens (the
    kernel's convention), shuffled blocks, and the packed queries of the new tokens."""
    totals = [prefix + new for prefix, new in seqs]
    k_cache, v_cache, block_tables = paged_kv_cache(block_size, num_kv_heads, head_dim, totals, dtype, gen, device)
    new_counts = [new for _, new in seqs]
    query_start_loc = torch.tensor([0] + [sum(new_counts[: i + 1]) for i in range(len(seqs))], dtype=torch.int32)
    # q as a slice of a fused QKV projection output: a token stride larger than num_q_heads * head_dim.
    qkv = torch.randn(sum(new_counts), num_q_heads + 2 * num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    prefix_lens = torch.tensor([prefix for prefix, _ in seqs], dtype=torch.int32)
    return qkv[:, :num_q_heads], k_cache, v_cache, block_tables, query_start_loc.to(device), prefix_lens.to(device)


def check_matches_reference(dtype_name: str) -> None:
    from kernels.paged_prefill import paged_prefill, paged_prefill_reference

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for case in CASES:
        batch = make_batch(*case, dtype, gen)
        scale = case[3] ** -0.5
        out = paged_prefill(*batch, scale)
        assert out.shape == batch[0].shape and out.dtype == dtype
        torch.testing.assert_close(out, paged_prefill_reference(*batch, scale), **TOLERANCE[dtype_name],
                                   msg=lambda m: f"{case}: {m}")


def check_reference_is_causal_attention() -> None:
    """The reference, for one fresh prompt in one block, equals torch's causal SDPA: an anchor
    independent of the kernel for the position convention."""
    from kernels.paged_prefill import paged_prefill_reference

    gen = torch.Generator().manual_seed(4)
    q, k_cache, v_cache, block_tables, qsl, prefix = make_batch(16, 4, 2, 32, [(0, 11)], torch.float32, gen)
    k = k_cache[block_tables[0, 0], :11].repeat_interleave(2, dim=1)  # [11, 4, 32]
    v = v_cache[block_tables[0, 0], :11].repeat_interleave(2, dim=1)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True)
    torch.testing.assert_close(paged_prefill_reference(q, k_cache, v_cache, block_tables, qsl, prefix, 32**-0.5),
                               sdpa.transpose(0, 1), rtol=1e-5, atol=1e-5)


def check_rejects_bad_inputs() -> None:
    from kernels.paged_prefill import paged_prefill

    gen = torch.Generator().manual_seed(1)
    q, k, v, bt, qsl, pl = make_batch(16, 4, 2, 64, [(5, 6), (0, 4)], torch.float16, gen)
    cases = {
        "head_dim": (lambda: paged_prefill(q[..., :32], k, v, bt, qsl, pl, 0.1), "k_cache has shape"),
        "GQA": (lambda: paged_prefill(torch.zeros(10, 3, 64, dtype=torch.float16), k, v, bt, qsl, pl, 0.1), "not a multiple"),
        "cache dtype": (lambda: paged_prefill(q, k, v.float(), bt, qsl, pl, 0.1), "v_cache is torch.float32"),
        "start loc length": (lambda: paged_prefill(q, k, v, bt, qsl[:2], pl, 0.1), "query_start_loc has shape (2,)"),
        "start loc dtype": (lambda: paged_prefill(q, k, v, bt, qsl.long(), pl, 0.1), "query_start_loc has dtype int64"),
        "prefix lens": (lambda: paged_prefill(q, k, v, bt, qsl, pl[:1], 0.1), "prefix_lens has shape (1,)"),
        "token count": (lambda: paged_prefill(q[:9], k, v, bt, qsl, pl, 0.1), "must rise from 0 to num_tokens = 9"),
        "past the table": (lambda: paged_prefill(q, k, v, bt, qsl, torch.tensor([40, 0], dtype=torch.int32), 0.1), "sequence 0 has prefix 40"),
        "block id": (lambda: paged_prefill(q, k, v, torch.where(bt == bt[1, 0], -1, bt), qsl, pl, 0.1), "ids outside"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_paged_prefill_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_paged_prefill_reference_is_causal_attention():
    CHECKS.expect_passed("check_reference_is_causal_attention")


def test_paged_prefill_rejects_bad_inputs():
    CHECKS.expect_passed("check_rejects_bad_inputs")


@pytest.mark.gpu
@needs_cuda
def test_paged_prefill_matches_reference_on_gpu_bf16():
    from kernels.paged_prefill import paged_prefill, paged_prefill_reference

    gen = torch.Generator(device="cuda").manual_seed(0)
    for block_size, seqs in [(16, [(0, 1000), (3000, 512), (17, 1)]), (32, [(4096, 64)] * 4)]:
        batch = make_batch(block_size, 32, 8, 128, seqs, torch.bfloat16, gen, device="cuda")
        out = paged_prefill(*batch, 128**-0.5).float()
        ref = paged_prefill_reference(*batch, 128**-0.5).float()
        assert (out - ref).abs().max() <= 2e-2, block_size
