"""kernels.w8a8_gemm against its torch reference: in the Triton interpreter on CPU (fp16 and fp32
outputs) and on CUDA with bf16 output (marked gpu); plus the quantization helpers."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda  # noqa: E402

MODULE = "test_kernels_w8a8_gemm"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_quantization_round_trips',),
    ('check_rejects_bad_inputs',),
])

SHAPES = [(1, 17, 5), (50, 70, 45), (64, 64, 64), (33, 100, 97), (130, 40, 200)]
# The int32 sum is exact, so the only differences are the scaling order in fp32 (a few fp32
# ulps) and the final rounding to the output dtype (half an ulp each way).
TOLERANCE = {"float16": dict(rtol=2e-3, atol=1e-3), "float32": dict(rtol=1e-5, atol=1e-6)}


def check_matches_reference(dtype_name: str) -> None:
    from kernels.w8a8_gemm import quantize_per_channel, quantize_per_token, w8a8_gemm, w8a8_gemm_reference

    out_dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for M, N, K in SHAPES:
        a_q, a_scale = quantize_per_token(torch.randn(M, K, generator=gen))
        w_q, w_scale = quantize_per_channel(torch.randn(K, N, generator=gen) * 0.05)
        out = w8a8_gemm(a_q, a_scale, w_q, w_scale, out_dtype)
        assert out.dtype == out_dtype and out.shape == (M, N)
        ref = w8a8_gemm_reference(a_q, a_scale, w_q, w_scale, out_dtype)
        torch.testing.assert_close(out, ref, **TOLERANCE[dtype_name], msg=lambda m: f"{M}x{N}x{K}: {m}")
    # Extreme int8 values everywhere: the int32 sum 127 * 127 * K must not be rounded.
    a_q = torch.full((3, 200), 127, dtype=torch.int8)
    w_q = torch.full((200, 5), -127, dtype=torch.int8)
    ones3, ones5 = torch.ones(3), torch.ones(5)
    assert torch.equal(w8a8_gemm(a_q, ones3, w_q, ones5, torch.float32), torch.full((3, 5), -127.0 * 127 * 200))
    # A weight in nn.Linear layout, passed transposed.
    a_q, a_scale = quantize_per_token(torch.randn(9, 48, generator=gen))
    w_q, w_scale = quantize_per_channel(torch.randn(36, 48, generator=gen).t())
    torch.testing.assert_close(w8a8_gemm(a_q, a_scale, w_q, w_scale, out_dtype),
                               w8a8_gemm_reference(a_q, a_scale, w_q, w_scale, out_dtype), **TOLERANCE[dtype_name])


def check_quantization_round_trips() -> None:
    from kernels.w8a8_gemm import quantize_per_channel, quantize_per_token

    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 40, generator=gen)
    a[2] = 0.0  # an all-zero token keeps a finite scale
    a_q, a_scale = quantize_per_token(a)
    assert a_q.dtype == torch.int8 and a_scale.shape == (6,) and int(a_q.abs().max()) == 127
    # Round-to-nearest: each value is within half a step of its scale.
    assert ((a_q.float() * a_scale[:, None] - a).abs() <= a_scale[:, None] / 2 + 1e-7).all()
    assert torch.equal(a_q[2], torch.zeros(40, dtype=torch.int8))
    w = torch.randn(40, 7, generator=gen)
    w_q, w_scale = quantize_per_channel(w)
    assert w_scale.shape == (7,) and ((w_q.float() * w_scale - w).abs() <= w_scale / 2 + 1e-7).all()


def check_rejects_bad_inputs() -> None:
    from kernels.w8a8_gemm import w8a8_gemm

    a_q = torch.zeros(8, 16, dtype=torch.int8)
    w_q = torch.zeros(16, 4, dtype=torch.int8)
    a_s, w_s = torch.ones(8), torch.ones(4)
    cases = {
        "float activations": (lambda: w8a8_gemm(a_q.half(), a_s, w_q, w_s), "a_q has dtype float16"),
        "inner size": (lambda: w8a8_gemm(a_q, a_s, w_q[:15], w_s), "expected [K, N] = [16, *]"),
        "token scales": (lambda: w8a8_gemm(a_q, a_s[:7], w_q, w_s), "a_scale has shape (7,)"),
        "channel scales": (lambda: w8a8_gemm(a_q, a_s, w_q, torch.ones(4, 1)), "w_scale has shape (4, 1)"),
        "scale dtype": (lambda: w8a8_gemm(a_q, a_s.half(), w_q, w_s), "a_scale has dtype float16"),
        "strided scales": (lambda: w8a8_gemm(a_q, torch.ones(16)[::2], w_q, w_s), "stride 1"),
        "output dtype": (lambda: w8a8_gemm(a_q, a_s, w_q, w_s, torch.int32), "out_dtype"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_w8a8_gemm_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_w8a8_quantization_round_trips():
    CHECKS.expect_passed("check_quantization_round_trips")


def test_w8a8_gemm_rejects_bad_inputs():
    CHECKS.expect_passed("check_rejects_bad_inputs")


@pytest.mark.gpu
@needs_cuda
def test_w8a8_gemm_matches_reference_on_gpu_bf16():
    from kernels.w8a8_gemm import quantize_per_channel, quantize_per_token, w8a8_gemm, w8a8_gemm_reference

    gen = torch.Generator(device="cuda").manual_seed(0)
    for M, N, K in [(1, 4096, 4096), (77, 1000, 336), (512, 14336, 4096)]:
        a_q, a_scale = quantize_per_token(torch.randn(M, K, device="cuda", generator=gen))
        w_q, w_scale = quantize_per_channel(torch.randn(N, K, device="cuda", generator=gen).t())
        out = w8a8_gemm(a_q, a_scale, w_q, w_scale, torch.bfloat16).float()
        ref = w8a8_gemm_reference(a_q, a_scale, w_q, w_scale, torch.bfloat16).float()
        assert (out - ref).abs().max() <= 1e-2 * ref.abs().max(), (M, N, K)
