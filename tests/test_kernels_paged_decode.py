"""kernels.paged_decode against its torch reference: in the Triton interpreter on CPU (fp16, fp32)
and on CUDA in bf16 (marked gpu). Cases vary the block size, the GQA ratio, the head size and
the number of KV splits, with contexts that end inside a block, exactly on one, and that leave
some splits empty."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda, paged_kv_cache  # noqa: E402

MODULE = "test_kernels_paged_decode"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_split_heuristic',),
    ('check_rejects_bad_inputs',),
])

# (block_size, num_q_heads, num_kv_heads, head_dim, context_lens): GQA ratios 1, 4 and 3 (a
# group that is no power of two); head_dim 80 is padded to 128 inside the kernel; block sizes
# below, at and above the kernel's 64-token tile.
CASES = [
    (16, 2, 2, 64, [1, 64, 65, 300]),
    (8, 8, 2, 64, [3, 129, 250]),
    (32, 6, 2, 80, [31, 200]),
    (128, 4, 1, 32, [100, 257]),
]
SPLITS = [1, 3, 6, None]  # 300 tokens are 5 tiles of 64: 6 splits leave one empty, shorter contexts more
# fp16: the kernel rounds the softmax weights to fp16 before multiplying V (2**-11 relative) and
# the output to fp16; fp32: exp2 instead of exp and the summation order only.
TOLERANCE = {"float16": dict(rtol=5e-3, atol=5e-3), "float32": dict(rtol=2e-5, atol=2e-5)}


def make_batch(block_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int, context_lens: list[int],
               dtype: torch.dtype, gen: torch.Generator, device: str = "cpu") -> tuple:
    """A random paged KV cache with shuffled blocks, its block table and one query per sequence."""
    k_cache, v_cache, block_tables = paged_kv_cache(block_size, num_kv_heads, head_dim, context_lens, dtype, gen, device)
    # q as a slice of a fused QKV projection output: a row stride larger than num_q_heads * head_dim.
    qkv = torch.randn(len(context_lens), num_q_heads + 2 * num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    q = qkv[:, :num_q_heads]
    context = torch.tensor(context_lens, dtype=torch.int32)
    return q, k_cache, v_cache, block_tables, context.to(device)


def check_matches_reference(dtype_name: str) -> None:
    from kernels.paged_decode import paged_decode, paged_decode_reference

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for case in CASES:
        q, k_cache, v_cache, block_tables, context_lens = make_batch(*case, dtype, gen)
        scale = case[3] ** -0.5
        ref = paged_decode_reference(q, k_cache, v_cache, block_tables, context_lens, scale)
        for num_splits in SPLITS:
            out = paged_decode(q, k_cache, v_cache, block_tables, context_lens, scale, num_splits=num_splits)
            assert out.shape == q.shape and out.dtype == dtype
            torch.testing.assert_close(out, ref, **TOLERANCE[dtype_name], msg=lambda m: f"{case}, {num_splits} splits: {m}")
    # A sequence with an empty context gets a zero output (no NaN from 0 / 0), whatever the splits.
    q, k_cache, v_cache, block_tables, _ = make_batch(16, 4, 2, 32, [40, 10], dtype, gen)
    context_lens = torch.tensor([40, 0], dtype=torch.int32)
    for num_splits in (1, 2):
        out = paged_decode(q, k_cache, v_cache, block_tables, context_lens, 32**-0.5, num_splits=num_splits)
        assert torch.equal(out[1], torch.zeros_like(out[1]))
        torch.testing.assert_close(out, paged_decode_reference(q, k_cache, v_cache, block_tables, context_lens, 32**-0.5),
                                   **TOLERANCE[dtype_name])


def check_split_heuristic() -> None:
    from kernels.paged_decode import DEFAULT_NUM_SMS, MAX_SPLITS, MIN_TOKENS_PER_SPLIT, default_num_splits

    cpu = torch.device("cpu")
    assert DEFAULT_NUM_SMS == 132 and MIN_TOKENS_PER_SPLIT == 256
    # One sequence, 8 KV heads, a long context: enough splits to give every one of 132 SMs a program.
    assert default_num_splits(1, 8, 32768, cpu) == math.ceil(132 / 8)
    # The same with a 1,000-token context: no split shorter than 256 tokens -> 4 splits.
    assert default_num_splits(1, 8, 1000, cpu) == 4
    # A batch that already fills the GPU is not split.
    assert default_num_splits(64, 8, 32768, cpu) == 1
    assert default_num_splits(1, 1, 10**6, cpu) == MAX_SPLITS
    assert default_num_splits(1, 1, 1, cpu) == 1


def check_rejects_bad_inputs() -> None:
    from kernels.paged_decode import paged_decode

    gen = torch.Generator().manual_seed(1)
    q, k, v, bt, cl = make_batch(16, 4, 2, 64, [20, 5], torch.float16, gen)
    cases = {
        "head_dim": (lambda: paged_decode(q[..., :32], k, v, bt, cl, 0.1), "k_cache has shape"),
        "v shape": (lambda: paged_decode(q, k, v[:, :8], bt, cl, 0.1), "v_cache has shape"),
        "GQA": (lambda: paged_decode(torch.zeros(2, 3, 64, dtype=torch.float16), k, v, bt, cl, 0.1), "not a multiple of num_kv_heads"),
        "cache dtype": (lambda: paged_decode(q, k.float(), v, bt, cl, 0.1), "k_cache is torch.float32"),
        "table dtype": (lambda: paged_decode(q, k, v, bt.long(), cl, 0.1), "block_tables has dtype int64"),
        "table rows": (lambda: paged_decode(q, k, v, bt[:1], cl, 0.1), "block_tables has shape (1,"),
        "context dtype": (lambda: paged_decode(q, k, v, bt, cl.long(), 0.1), "context_lens has dtype int64"),
        "context too long": (lambda: paged_decode(q, k, v, bt, torch.tensor([20, 999], dtype=torch.int32), 0.1), "context_lens[1] = 999"),
        "block id": (lambda: paged_decode(q, k, v, torch.where(bt == bt[0, 0], 10**4, bt), cl, 0.1), "ids outside"),
        "head_dim stride": (lambda: paged_decode(q.transpose(1, 2).contiguous().transpose(1, 2), k, v, bt, cl, 0.1), "stride 1"),
        "splits": (lambda: paged_decode(q, k, v, bt, cl, 0.1, num_splits=0), "num_splits must be >= 1"),
        "q dtype": (lambda: paged_decode(q.to(torch.int8), k, v, bt, cl, 0.1), "q has dtype int8"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_paged_decode_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_paged_decode_split_heuristic():
    CHECKS.expect_passed("check_split_heuristic")


def test_paged_decode_rejects_bad_inputs():
    CHECKS.expect_passed("check_rejects_bad_inputs")


@pytest.mark.gpu
@needs_cuda
def test_paged_decode_matches_reference_on_gpu_bf16():
    from kernels.paged_decode import paged_decode, paged_decode_reference

    gen = torch.Generator(device="cuda").manual_seed(0)
    for block_size, context_lens in [(16, [1, 77, 1000, 4097]), (32, [5000] * 3)]:
        q, k, v, bt, cl = make_batch(block_size, 32, 8, 128, context_lens, torch.bfloat16, gen, device="cuda")
        ref = paged_decode_reference(q, k, v, bt, cl, 128**-0.5).float()
        for num_splits in (1, 4, None):
            out = paged_decode(q, k, v, bt, cl, 128**-0.5, num_splits=num_splits).float()
            assert (out - ref).abs().max() <= 2e-2, (block_size, num_splits)
