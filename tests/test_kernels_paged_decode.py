"""kernels.paged_decode against its torch reference: in the Triton interpreter on CPU (fp16, fp32)
and on CUDA in bf16 (marked gpu). Cases vary the block size, the GQA ratio, the head size and
the number of KV splits, with contexts that end inside a block, exactly on one, and that leave
some splits empty."""

from __future__ import annotations

import math
import os

import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from test_kernels_package import InterpretedChecks  # noqa: E402

MODULE = "test_kernels_paged_decode"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_split_heuristic',),
    ('check_rejects_bad_inputs',),
])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                                reason="needs a CUDA GPU (and TRITON_INTERPRET unset)")

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
UNUSED_BLOCK_ID = 1_000_000  # fills block-table slots past a context: reading one would fault


def make_batch(block_size: int, num_q_heads: int, num_kv_heads: int, head_dim: int, context_lens: list[int],
               dtype: torch.dtype, gen: torch.Generator, device: str = "cpu") -> tuple:
    """A random paged KV cache with shuffled blocks, its block table and one query per sequence."""
    num_seqs = len(context_lens)
    blocks_per_seq = [math.ceil(n / block_size) for n in context_lens]
    max_blocks = max(blocks_per_seq) + 1  # one spare column, never read
    num_blocks = sum(blocks_per_seq) + 3  # spare blocks nobody owns
    k_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    owners = torch.randperm(num_blocks, generator=gen, device=device).tolist()
    block_tables = torch.full((num_seqs, max_blocks), UNUSED_BLOCK_ID, dtype=torch.int32)
    for s, n in enumerate(blocks_per_seq):
        block_tables[s, :n] = torch.tensor(owners[:n], dtype=torch.int32)
        owners = owners[n:]
    # q as a slice of a fused QKV projection output: a row stride larger than num_q_heads * head_dim.
    qkv = torch.randn(num_seqs, num_q_heads + 2 * num_kv_heads, head_dim, generator=gen, device=device).to(dtype)
    q = qkv[:, :num_q_heads]
    context = torch.tensor(context_lens, dtype=torch.int32)
    return q, k_cache, v_cache, block_tables.to(device), context.to(device)


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
    for case, (call, message) in cases.items():
        try:
            call()
        except ValueError as error:
            assert message in str(error), f"{case}: message {error!r} lacks {message!r}"
        else:
            raise AssertionError(f"{case}: no ValueError")



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
