"""kernels.w4a16_gemm against its torch reference: in the Triton interpreter on CPU (fp16, fp32)
and on CUDA in bf16 (marked gpu); plus the packing format and ``quantize_w4``."""

from __future__ import annotations


import pytest

torch = pytest.importorskip("torch", reason="the kernel tests need torch (pip install -e '.[profile]')")
pytest.importorskip("triton", reason="the kernel tests need triton (pip install -e '.[profile]')")

from kernel_checks import InterpretedChecks, expect_value_errors, needs_cuda  # noqa: E402

MODULE = "test_kernels_w4a16_gemm"
CHECKS = InterpretedChecks(MODULE, [
    ('check_matches_reference', 'float16'),
    ('check_matches_reference', 'float32'),
    ('check_packing_and_quantization',),
    ('check_rejects_bad_inputs',),
])

# (M, N, K, group_size, symmetric): M and N off the interpreter's 32-wide tiles; group sizes
# 128 (K step 64, two steps per group), 32 and 16 (K step equal to the group).
CASES = [(1, 17, 128, 128, False), (50, 70, 256, 128, True), (33, 100, 96, 32, False), (7, 40, 64, 16, True)]
# The kernel and the reference dequantize to the same values; sums differ in order only.
TOLERANCE = {"float16": dict(rtol=2e-3, atol=2e-3), "float32": dict(rtol=1e-5, atol=1e-5)}


def check_matches_reference(dtype_name: str) -> None:
    from kernels.w4a16_gemm import quantize_w4, w4a16_gemm, w4a16_gemm_reference

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    for M, N, K, group_size, symmetric in CASES:
        a = torch.randn(M, K, generator=gen).to(dtype)
        w = (torch.randn(K, N, generator=gen) * 0.1).to(dtype)
        w_packed, scales, zeros = quantize_w4(w, group_size, symmetric)
        out = w4a16_gemm(a, w_packed, scales, zeros, group_size)
        ref = w4a16_gemm_reference(a, w_packed, scales, zeros, group_size)
        torch.testing.assert_close(out, ref, **TOLERANCE[dtype_name], msg=lambda m: f"{M}x{N}x{K} g{group_size}: {m}")
    # An nn.Linear weight [N, K] quantized through its transpose.
    a = torch.randn(5, 128, generator=gen).to(dtype)
    w_packed, scales, zeros = quantize_w4(torch.randn(24, 128, generator=gen).to(dtype).t(), 64)
    torch.testing.assert_close(w4a16_gemm(a, w_packed, scales, zeros, 64),
                               w4a16_gemm_reference(a, w_packed, scales, zeros, 64), **TOLERANCE[dtype_name])


def check_packing_and_quantization() -> None:
    from kernels.w4a16_gemm import dequantize_w4, quantize_w4, unpack_w4

    # The documented packing: nibble j (bits 4j..4j+3) of word r holds row 8r + j.
    word = sum(j << (4 * j) for j in range(8))  # 0x76543210
    assert unpack_w4(torch.tensor([[word]], dtype=torch.int32)).flatten().tolist() == list(range(8))
    top = torch.tensor([[(0xF << 28) - 2**32]], dtype=torch.int32)  # 0xF0000000 as int32: the sign bit set
    assert unpack_w4(top).flatten().tolist() == [0] * 7 + [15]

    gen = torch.Generator().manual_seed(2)
    w = torch.randn(256, 12, generator=gen)
    w[:128, 3] = 0.0  # an all-zero group keeps a finite scale and stays exactly 0
    for symmetric in (False, True):
        w_packed, scales, zeros = quantize_w4(w, 128, symmetric)
        assert w_packed.shape == (32, 12) and w_packed.dtype == torch.int32 and scales.shape == (2, 12)
        assert (zeros is None) == symmetric
        q = unpack_w4(w_packed)
        assert 0 <= int(q.min()) and int(q.max()) <= 15
        w_hat = dequantize_w4(w_packed, scales, zeros, 128)
        # Round to nearest: within half a step of the group's scale (plus fp32 slack).
        assert ((w_hat - w).abs() <= scales.repeat_interleave(128, dim=0) * 0.5 + 1e-6).all(), symmetric
        assert torch.equal(w_hat[:128, 3], torch.zeros(128))


def check_rejects_bad_inputs() -> None:
    from kernels.w4a16_gemm import quantize_w4, w4a16_gemm

    a = torch.zeros(4, 256, dtype=torch.float16)
    w_packed, scales, zeros = quantize_w4(torch.randn(256, 8, dtype=torch.float16), 128)
    cases = {
        "K not a group multiple": (lambda: w4a16_gemm(a[:, :200], w_packed[:25], scales, zeros, 128), "not a multiple of group_size"),
        "bad group size": (lambda: w4a16_gemm(a, w_packed, scales, zeros, 100), "multiple of 16"),
        "packed rows": (lambda: w4a16_gemm(a, w_packed[:31], scales, zeros, 128), "w_packed has shape (31, 8)"),
        "scale groups": (lambda: w4a16_gemm(a, w_packed, scales[:1], zeros, 128), "scales has shape (1, 8)"),
        "scale dtype": (lambda: w4a16_gemm(a, w_packed, scales.float(), zeros, 128), "scales has dtype float32"),
        "zeros shape": (lambda: w4a16_gemm(a, w_packed, scales, zeros[:, :4], 128), "zeros has shape (2, 4)"),
        "packed dtype": (lambda: w4a16_gemm(a, w_packed.to(torch.int64), scales, zeros, 128), "w_packed has dtype int64"),
        "int activations": (lambda: w4a16_gemm(a.to(torch.int8), w_packed, scales, zeros, 128), "a has dtype int8"),
    }
    expect_value_errors(cases)


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
def test_w4a16_gemm_matches_reference_in_interpreter(dtype_name):
    CHECKS.expect_passed("check_matches_reference", dtype_name)


def test_w4a16_packing_and_quantization():
    CHECKS.expect_passed("check_packing_and_quantization")


def test_w4a16_gemm_rejects_bad_inputs():
    CHECKS.expect_passed("check_rejects_bad_inputs")


@pytest.mark.gpu
@needs_cuda
def test_w4a16_gemm_matches_reference_on_gpu_bf16():
    from kernels.w4a16_gemm import quantize_w4, w4a16_gemm, w4a16_gemm_reference

    gen = torch.Generator(device="cuda").manual_seed(0)
    for M, N, K in [(1, 4096, 4096), (77, 1000, 384), (512, 14336, 4096)]:
        a = torch.randn(M, K, device="cuda", generator=gen, dtype=torch.bfloat16)
        w_packed, scales, zeros = quantize_w4(torch.randn(N, K, device="cuda", generator=gen, dtype=torch.bfloat16).t(), 128)
        out = w4a16_gemm(a, w_packed, scales, zeros, 128).float()
        ref = w4a16_gemm_reference(a, w_packed, scales, zeros, 128).float()
        assert (out - ref).abs().max() <= 2e-2 * ref.abs().max(), (M, N, K)
