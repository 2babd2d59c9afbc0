"""kernels.gemm against its torch reference: in the Triton interpreter on CPU (fp16, fp32; the
interpreter computes bf16 wrongly) and on CUDA in bf16 (marked gpu)."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda  # noqa: E402

MODULE = "test_kernels_gemm"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_rejects_bad_inputs',),
])

# The interpreter's tiles are 32 x 32 x 32: shapes below, at and past one tile, none a multiple
# of it except (64, 64, 64); (1, 17, 5) leaves a K tail shorter than a tensor-core step.
SHAPES = [(1, 17, 5), (7, 1, 40), (50, 70, 45), (64, 64, 64), (33, 100, 97), (130, 40, 70)]
# fp16 products are exact in fp32; sums differ from torch's only in order, so the result is
# within an ulp or two of fp16 (2**-10 relative) once rounded.
TOLERANCE = {"float16": dict(rtol=2e-3, atol=2e-3), "float32": dict(rtol=1e-5, atol=1e-5)}


def check_matches_reference(dtype_name: str) -> None:
    from kernels.gemm import gemm, gemm_reference

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for M, N, K in SHAPES:
        a = torch.randn(M, K, generator=gen).to(dtype)
        b = torch.randn(K, N, generator=gen).to(dtype)
        torch.testing.assert_close(gemm(a, b), gemm_reference(a, b), **TOLERANCE[dtype_name], msg=lambda m: f"{M}x{N}x{K}: {m}")
    # Strided operands: a row-slice of a wider activation, an nn.Linear weight passed as W.t().
    wide = torch.randn(40, 96, generator=gen).to(dtype)
    a = wide[:, 10:58]  # [40, 48], row stride 96
    weight = torch.randn(36, 48, generator=gen).to(dtype)  # [N, K]
    torch.testing.assert_close(gemm(a, weight.t()), gemm_reference(a, weight.t()), **TOLERANCE[dtype_name])
    torch.testing.assert_close(gemm(a.t().contiguous().t(), weight.t()), gemm_reference(a, weight.t()), **TOLERANCE[dtype_name])
    # Degenerate sizes: K = 0 is an empty sum.
    assert torch.equal(gemm(torch.zeros(3, 0, dtype=dtype), torch.zeros(0, 5, dtype=dtype)), torch.zeros(3, 5, dtype=dtype))
    assert gemm(torch.zeros(0, 4, dtype=dtype), torch.zeros(4, 5, dtype=dtype)).shape == (0, 5)


def check_rejects_bad_inputs() -> None:
    from kernels.gemm import gemm

    a = torch.zeros(8, 16, dtype=torch.float16)
    cases = {
        "rank": (lambda: gemm(a[0], a.t()), "a has shape (16,)"),
        "inner size": (lambda: gemm(a, torch.zeros(15, 4, dtype=torch.float16)), "expected [K, N] = [16, *]"),
        "mixed dtypes": (lambda: gemm(a, torch.zeros(16, 4, dtype=torch.float32)), "both operands need one dtype"),
        "integer dtype": (lambda: gemm(a.to(torch.int8), a.t().to(torch.int8)), "dtype int8"),
        "no dense dimension": (lambda: gemm(torch.zeros(8, 32, dtype=torch.float16)[::2, ::2], a.t()), "neither dimension is dense"),
        "two devices": (lambda: gemm(a, torch.zeros(16, 4, dtype=torch.float16, device="meta")), "one device"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_gemm_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_gemm_rejects_bad_inputs():
    CHECKS.expect_passed("check_rejects_bad_inputs")


@pytest.mark.gpu
@needs_cuda
def test_gemm_matches_reference_on_gpu_bf16():
    from kernels.gemm import gemm, gemm_reference

    gen = torch.Generator(device="cuda").manual_seed(0)
    for M, N, K in [(1, 4096, 4096), (77, 1000, 333), (512, 14336, 4096)]:
        a = torch.randn(M, K, device="cuda", generator=gen, dtype=torch.bfloat16)
        w = torch.randn(N, K, device="cuda", generator=gen, dtype=torch.bfloat16)
        out, ref = gemm(a, w.t()).float(), gemm_reference(a, w.t()).float()
        # bf16 output rounding is 2**-8 relative; allow a few ulps of the largest entry.
        assert (out - ref).abs().max() <= 2e-2 * ref.abs().max(), (M, N, K)
