"""kernels.fp8_gemm against its torch reference: in the Triton interpreter on CPU (fp16 and fp32
outputs) and on CUDA with bf16 output (marked gpu). The interpreter does not saturate fp8 casts,
so every operand comes from ``quantize_fp8``, which clamps into the e4m3 range first."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda  # noqa: E402

MODULE = "test_kernels_fp8_gemm"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_quantization_and_inputs',),
])

# (M, N, K, a scale: None per tensor / 1 per token, b scale: None per tensor / 0 per channel)
CASES = [(1, 17, 5, None, None), (50, 70, 45, 1, 0), (64, 64, 64, None, 0), (33, 100, 97, 1, None), (130, 40, 70, 1, 0)]
# Products of e4m3 values are exact in fp32 and the scaling order matches the reference, so the
# differences are fp32 summation order and the final rounding (an ulp of fp16, 2**-10 relative).
TOLERANCE = {"float16": dict(rtol=2e-3, atol=2e-3), "float32": dict(rtol=1e-5, atol=1e-5)}


def check_matches_reference(dtype_name: str) -> None:
    from kernels.fp8_gemm import fp8_gemm, fp8_gemm_reference, quantize_fp8

    out_dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for M, N, K, a_dim, b_dim in CASES:
        a, a_scale = quantize_fp8(torch.randn(M, K, generator=gen), a_dim)
        b, b_scale = quantize_fp8(torch.randn(K, N, generator=gen) * 0.05, b_dim)
        out = fp8_gemm(a, b, a_scale, b_scale, out_dtype)
        assert out.dtype == out_dtype and out.shape == (M, N)
        torch.testing.assert_close(out, fp8_gemm_reference(a, b, a_scale, b_scale, out_dtype), **TOLERANCE[dtype_name],
                                   msg=lambda m: f"{M}x{N}x{K} scales {a_dim}/{b_dim}: {m}")
    # The Hopper layout: an nn.Linear-style weight [N, K] passed as its transpose; 0-d scales.
    a, a_scale = quantize_fp8(torch.randn(9, 48, generator=gen))
    w, w_scale = quantize_fp8(torch.randn(36, 48, generator=gen), dim=1)  # one scale per output row of W
    out = fp8_gemm(a, w.t(), a_scale.reshape(()), w_scale, out_dtype)
    torch.testing.assert_close(out, fp8_gemm_reference(a, w.t(), a_scale, w_scale, out_dtype), **TOLERANCE[dtype_name])


def check_quantization_and_inputs() -> None:
    from kernels.fp8_gemm import FP8_MAX, fp8_gemm, quantize_fp8

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 40, generator=gen) * 1000
    for dim, scale_shape in ((None, (1,)), (1, (5,)), (0, (40,))):
        x_q, scale = quantize_fp8(x, dim)
        assert x_q.dtype == torch.float8_e4m3fn and scale.shape == scale_shape
        assert float(x_q.float().abs().max()) <= FP8_MAX
        # e4m3 keeps 3 mantissa bits: relative rounding error at most 2**-4 for normal values.
        shaped = scale if dim is None else (scale[:, None] if dim == 1 else scale[None, :])
        recon = x_q.float() * shaped
        normal = x.abs() > shaped * 2**-6  # below e4m3's smallest normal the error is absolute
        assert ((recon - x).abs()[normal] <= x.abs()[normal] * 2**-4 + 1e-6).all(), dim

    a, s = quantize_fp8(torch.randn(8, 32, generator=gen))
    b, t = quantize_fp8(torch.randn(32, 4, generator=gen))
    cases = {
        "fp16 operand": (lambda: fp8_gemm(a.half(), b, s, t), "a has dtype float16"),
        "e5m2 operand": (lambda: fp8_gemm(a, b.to(torch.float8_e5m2), s, t), "b has dtype float8_e5m2"),
        "inner size": (lambda: fp8_gemm(a, b[:31], s, t), "expected [K, N] = [32, *]"),
        "token scales": (lambda: fp8_gemm(a, b, torch.ones(7), t), "a_scale has shape (7,)"),
        "channel scales": (lambda: fp8_gemm(a, b, s, torch.ones(5)), "b_scale has shape (5,)"),
        "scale dtype": (lambda: fp8_gemm(a, b, s.half(), t), "a_scale has dtype float16"),
        "output dtype": (lambda: fp8_gemm(a, b, s, t, torch.float8_e4m3fn), "out_dtype"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_fp8_gemm_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_fp8_quantization_and_input_checks():
    CHECKS.expect_passed("check_quantization_and_inputs")


@pytest.mark.gpu
@needs_cuda
def test_fp8_gemm_matches_reference_on_gpu_bf16():
    from kernels.fp8_gemm import fp8_gemm, fp8_gemm_reference, quantize_fp8

    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need compute capability 8.9 (Ada) or 9.0 (Hopper)")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for M, N, K in [(1, 4096, 4096), (77, 1008, 336), (512, 14336, 4096)]:
        a, a_scale = quantize_fp8(torch.randn(M, K, device="cuda", generator=gen), dim=1)
        w, w_scale = quantize_fp8(torch.randn(N, K, device="cuda", generator=gen), dim=1)
        out = fp8_gemm(a, w.t(), a_scale, w_scale, torch.bfloat16).float()
        ref = fp8_gemm_reference(a, w.t(), a_scale, w_scale, torch.bfloat16).float()
        # Hopper's fast FP8 accumulation keeps fewer bits than fp32 between promotions.
        assert (out - ref).abs().max() <= 2e-2 * ref.abs().max(), (M, N, K)
