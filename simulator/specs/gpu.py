"""GPU datasheet numbers, each with its source.

Conventions: peaks are dense (no 2:4 sparsity), tensor-core, FP32 accumulate, in FLOP/s (int8 in
OP/s); ``None`` means the GPU has no such tensor-core path. Bandwidths are bytes/s; link bandwidth
is per GPU and per direction (NVLink's marketing figure counts both directions, so it is halved).
Memory is bytes as the datasheet states it (GB = 1e9 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """One GPU model's datasheet numbers.

    Attributes:
        name: the name scenarios use (``hardware.gpu``).
        bf16_flops: dense BF16/FP16 tensor-core peak (FLOP/s).
        fp8_flops: dense FP8 tensor-core peak (FLOP/s), None without FP8 tensor cores.
        int8_ops: dense INT8 tensor-core peak (OP/s).
        memory_bandwidth: HBM/GDDR bandwidth (bytes/s).
        memory_bytes: device memory (bytes).
        link_bandwidth: GPU-to-GPU bandwidth per direction (bytes/s): NVLink where the GPU has
            it, else PCIe.
        link_latency_s: per-hop latency of one collective step (s).
        pcie_bandwidth: host link bandwidth per direction (bytes/s).
        source: where the numbers come from.
    """

    name: str
    bf16_flops: float
    fp8_flops: float | None
    int8_ops: float
    memory_bandwidth: float
    memory_bytes: float
    link_bandwidth: float
    link_latency_s: float
    pcie_bandwidth: float
    source: str


# NVLink/NVSwitch per-hop latency of the ring all-reduce: 4.3 us fitted to NCCL all-reduce
# timings on H100 and A100 DGX nodes (Vidur's public measurements; benchmarks/calibrate_roofline.py).
_NVLINK_LATENCY_S = 4.3e-6
_PCIE_LATENCY_S = 8e-6

GPUS: dict[str, GPUSpec] = {
    gpu.name: gpu
    for gpu in (
        GPUSpec(
            name="a100-80gb-sxm",
            bf16_flops=312 * TERA, fp8_flops=None, int8_ops=624 * TERA,
            memory_bandwidth=2039 * GIGA, memory_bytes=80 * GIGA,
            link_bandwidth=300 * GIGA, link_latency_s=_NVLINK_LATENCY_S, pcie_bandwidth=32 * GIGA,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): 312 TFLOPS BF16, 624 TOPS INT8, "
            "2,039 GB/s HBM2e, NVLink 600 GB/s (both directions), PCIe Gen4 64 GB/s (both directions)",
        ),
        GPUSpec(
            name="h100-sxm",
            bf16_flops=989.4 * TERA, fp8_flops=1978.9 * TERA, int8_ops=1978.9 * TERA,
            memory_bandwidth=3350 * GIGA, memory_bytes=80 * GIGA,
            link_bandwidth=450 * GIGA, link_latency_s=_NVLINK_LATENCY_S, pcie_bandwidth=64 * GIGA,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM): 989 TFLOPS BF16, 1,979 TFLOPS FP8, "
            "1,979 TOPS INT8 (dense; sparse figures halved), 3.35 TB/s HBM3, 80 GB, NVLink 900 GB/s, PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="h200",
            bf16_flops=989.4 * TERA, fp8_flops=1978.9 * TERA, int8_ops=1978.9 * TERA,
            memory_bandwidth=4800 * GIGA, memory_bytes=141 * GIGA,
            link_bandwidth=450 * GIGA, link_latency_s=_NVLINK_LATENCY_S, pcie_bandwidth=64 * GIGA,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM): 989 TFLOPS BF16, 1,979 TFLOPS FP8, "
            "1,979 TOPS INT8 (dense), 4.8 TB/s HBM3e, 141 GB, NVLink 900 GB/s, PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="l40s",
            bf16_flops=362.05 * TERA, fp8_flops=733 * TERA, int8_ops=733 * TERA,
            memory_bandwidth=864 * GIGA, memory_bytes=48 * GIGA,
            link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S, pcie_bandwidth=32 * GIGA,
            source="NVIDIA L40S datasheet: 362.05 TFLOPS BF16, 733 TFLOPS FP8, 733 TOPS INT8 (dense), "
            "864 GB/s GDDR6, 48 GB, no NVLink, PCIe Gen4 x16 64 GB/s (both directions)",
        ),
        GPUSpec(
            name="b200",
            bf16_flops=2250 * TERA, fp8_flops=4500 * TERA, int8_ops=4500 * TERA,
            memory_bandwidth=8000 * GIGA, memory_bytes=180 * GIGA,
            link_bandwidth=900 * GIGA, link_latency_s=_NVLINK_LATENCY_S, pcie_bandwidth=64 * GIGA,
            source="NVIDIA DGX B200 datasheet divided by its 8 GPUs: 72 PFLOPS FP8 sparse -> 4.5 PFLOPS "
            "dense FP8 and INT8, 2.25 PFLOPS dense BF16; 1,440 GB and 64 TB/s HBM3e -> 180 GB and 8 TB/s; "
            "NVLink 5 1.8 TB/s (both directions); PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="rtx-4090",
            bf16_flops=165.2 * TERA, fp8_flops=330.3 * TERA, int8_ops=660.6 * TERA,
            memory_bandwidth=1008 * GIGA, memory_bytes=24 * GIGA,
            link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S, pcie_bandwidth=32 * GIGA,
            source="NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090): 165.2 TFLOPS FP16/BF16 "
            "with FP32 accumulate, 330.3 TFLOPS FP8 (FP32 accumulate), 660.6 TOPS INT8 (dense), 1,008 GB/s "
            "GDDR6X, 24 GB, no NVLink, PCIe Gen4 x16 64 GB/s (both directions)",
        ),
    )
}
