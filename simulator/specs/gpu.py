"""GPU datasheet numbers, each with its source.

Conventions: peaks are dense (no 2:4 sparsity), tensor-core, FP32 accumulate, in FLOP/s (int8 in
OP/s); ``None`` means the GPU has no such tensor-core path. Bandwidths are bytes/s; link bandwidth
is per GPU and per direction (NVLink's marketing figure counts both directions, so it is halved).
Memory is bytes as the datasheet states it (GB = 1e9 bytes), not what ``nvidia-smi`` reports
(an "80 GB" part shows about 80 GiB there). GPUs without NVLink all-reduce over PCIe: their
``link_kind`` is ``"pcie"`` and ``link_bandwidth`` is the PCIe per-direction bandwidth (NVLink
bridges joining PCIe cards in pairs are not modelled: a TP group larger than two cannot use them).

``aiconfigurator_system`` names the matching system file of NVIDIA's aiconfigurator-core package
(``aiconfigurator_core/systems/<system>.yaml``, Apache-2.0, version 0.12.0 read here), whose
kernel tables a profile bundle can be imported from; several figures below cite those files.
A scenario may also name a GPU spec file instead (``simulator.specs.gpu_file``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
        link_kind: what ``link_bandwidth`` is: ``"nvlink"`` (NVLink/NVSwitch) or ``"pcie"``.
        pcie_bandwidth: host link bandwidth per direction (bytes/s).
        source: where the numbers come from.
        aiconfigurator_system: the matching aiconfigurator-core system (``h100_sxm``), or None.
    """

    name: str
    bf16_flops: float
    fp8_flops: float | None
    int8_ops: float
    memory_bandwidth: float
    memory_bytes: float
    link_bandwidth: float
    link_latency_s: float
    link_kind: Literal["nvlink", "pcie"]
    pcie_bandwidth: float
    source: str
    aiconfigurator_system: str | None = None



# NVLink/NVSwitch per-hop latency of the ring all-reduce: 4.3 us fitted to NCCL all-reduce
# timings on H100 and A100 DGX nodes (Vidur's public measurements; benchmarks/calibrate_roofline.py);
# assumed for the other NVLink GPUs.
_NVLINK_LATENCY_S = 4.3e-6
# PCIe per-hop latency: an estimate, not fitted (no public PCIe all-reduce timings have been fitted
# yet); aiconfigurator-core 0.12.0 assumes 10 us per peer-to-peer step on every system.
_PCIE_LATENCY_S = 8e-6
_AIC = "aiconfigurator-core 0.12.0 systems/"

GPUS: dict[str, GPUSpec] = {
    gpu.name: gpu
    for gpu in (
        GPUSpec(
            name="a100-80gb-sxm", aiconfigurator_system="a100_sxm",
            bf16_flops=312 * TERA, fp8_flops=None, int8_ops=624 * TERA,
            memory_bandwidth=2039 * GIGA, memory_bytes=80 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="nvlink", link_bandwidth=300 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): 312 TFLOPS BF16, 624 TOPS INT8, "
            "2,039 GB/s HBM2e, NVLink 600 GB/s (both directions), PCIe Gen4 64 GB/s (both directions)",
        ),
        GPUSpec(
            name="a100-40gb-sxm", aiconfigurator_system=None,
            bf16_flops=312 * TERA, fp8_flops=None, int8_ops=624 * TERA,
            memory_bandwidth=1555 * GIGA, memory_bytes=40 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="nvlink", link_bandwidth=300 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source="NVIDIA A100 Tensor Core GPU datasheet (40GB SXM): 312 TFLOPS BF16, 624 TOPS INT8 (dense), "
            "1,555 GB/s HBM2, 40 GB, NVLink 600 GB/s (both directions), PCIe Gen4 64 GB/s (both directions); "
            f"{_AIC} has no 40 GB system (its a100_sxm.yaml is the 80 GB part)",
        ),
        GPUSpec(
            name="a100-80gb-pcie", aiconfigurator_system="a100_pcie",
            bf16_flops=312 * TERA, fp8_flops=None, int8_ops=624 * TERA,
            memory_bandwidth=1935 * GIGA, memory_bytes=80 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="pcie", link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB PCIe): 312 TFLOPS BF16, 624 TOPS INT8 (dense), "
            "1,935 GB/s HBM2e, 80 GB, PCIe Gen4 64 GB/s (both directions), all-reduce over PCIe (the 600 GB/s "
            f"NVLink bridge joins pairs only); {_AIC}a100_pcie.yaml has the same figures",
        ),
        GPUSpec(
            name="h100-sxm", aiconfigurator_system="h100_sxm",
            bf16_flops=989.4 * TERA, fp8_flops=1978.9 * TERA, int8_ops=1978.9 * TERA,
            memory_bandwidth=3350 * GIGA, memory_bytes=80 * GIGA, pcie_bandwidth=64 * GIGA,
            link_kind="nvlink", link_bandwidth=450 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM): 989 TFLOPS BF16, 1,979 TFLOPS FP8, "
            "1,979 TOPS INT8 (dense; sparse figures halved), 3.35 TB/s HBM3, 80 GB, NVLink 900 GB/s, PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="h100-pcie", aiconfigurator_system="h100_pcie",
            bf16_flops=756.5 * TERA, fp8_flops=1513 * TERA, int8_ops=1513 * TERA,
            memory_bandwidth=2000 * GIGA, memory_bytes=80 * GIGA, pcie_bandwidth=64 * GIGA,
            link_kind="pcie", link_bandwidth=64 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source="NVIDIA H100 Tensor Core GPU datasheet (PCIe): 1,513 TFLOPS BF16, 3,026 TFLOPS FP8, 3,026 TOPS "
            "INT8 with sparsity, halved to dense; 2 TB/s HBM2e, 80 GB, PCIe Gen5 128 GB/s (both directions), "
            "all-reduce over PCIe (the 600 GB/s NVLink bridge joins pairs only); "
            f"{_AIC}h100_pcie.yaml has the same dense figures",
        ),
        GPUSpec(
            name="h200", aiconfigurator_system="h200_sxm",
            bf16_flops=989.4 * TERA, fp8_flops=1978.9 * TERA, int8_ops=1978.9 * TERA,
            memory_bandwidth=4800 * GIGA, memory_bytes=141 * GIGA, pcie_bandwidth=64 * GIGA,
            link_kind="nvlink", link_bandwidth=450 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM): 989 TFLOPS BF16, 1,979 TFLOPS FP8, "
            "1,979 TOPS INT8 (dense), 4.8 TB/s HBM3e, 141 GB, NVLink 900 GB/s, PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="l4", aiconfigurator_system="l4",
            bf16_flops=121 * TERA, fp8_flops=242.5 * TERA, int8_ops=242.5 * TERA,
            memory_bandwidth=300 * GIGA, memory_bytes=24 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="pcie", link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source="NVIDIA L4 Tensor Core GPU datasheet: 242 TFLOPS BF16, 485 TFLOPS FP8, 485 TOPS INT8 with "
            "sparsity, halved to dense; 300 GB/s GDDR6, 24 GB, no NVLink, PCIe Gen4 x16 64 GB/s (both "
            f"directions); {_AIC}l4.yaml: 121 TFLOPS BF16, 242 TFLOPS FP8 and TOPS INT8 dense",
        ),
        GPUSpec(
            name="l40s", aiconfigurator_system="l40s",
            bf16_flops=362.05 * TERA, fp8_flops=733 * TERA, int8_ops=733 * TERA,
            memory_bandwidth=864 * GIGA, memory_bytes=48 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="pcie", link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source="NVIDIA L40S datasheet: 362.05 TFLOPS BF16, 733 TFLOPS FP8, 733 TOPS INT8 (dense), "
            "864 GB/s GDDR6, 48 GB, no NVLink, PCIe Gen4 x16 64 GB/s (both directions)",
        ),
        GPUSpec(
            name="rtx-pro-6000-server", aiconfigurator_system="rtx_pro_6000_server",
            bf16_flops=467.8 * TERA, fp8_flops=935.6 * TERA, int8_ops=935.6 * TERA,
            memory_bandwidth=1792 * GIGA, memory_bytes=96 * GIGA, pcie_bandwidth=64 * GIGA,
            link_kind="pcie", link_bandwidth=64 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source=f"RTX PRO 6000 Blackwell Server Edition. Peaks from {_AIC}rtx_pro_6000_server.yaml: "
            "467.8 TFLOPS BF16, 935.6 TFLOPS FP8 and TOPS INT8, dense, NVIDIA's architecture figures scaled "
            "to the 2,430 MHz maximum SM clock a server card reported (NVIDIA's own dense datasheet peaks for "
            "this edition were not found to check them); 1,792 GB/s GDDR7 (512-bit, 28 Gbps), from the same "
            "file and NVIDIA's announced specifications; 96 GB GDDR7 (NVIDIA; the file's 97,887 MiB is what "
            "nvidia-smi reports); no NVLink, PCIe Gen5 x16 64 GB/s per direction",
        ),
        GPUSpec(
            name="b200", aiconfigurator_system="b200_sxm",
            bf16_flops=2250 * TERA, fp8_flops=4500 * TERA, int8_ops=4500 * TERA,
            memory_bandwidth=8000 * GIGA, memory_bytes=180 * GIGA, pcie_bandwidth=64 * GIGA,
            link_kind="nvlink", link_bandwidth=900 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source="NVIDIA DGX B200 datasheet divided by its 8 GPUs: 72 PFLOPS FP8 sparse -> 4.5 PFLOPS "
            "dense FP8 and INT8, 2.25 PFLOPS dense BF16; 1,440 GB and 64 TB/s HBM3e -> 180 GB and 8 TB/s; "
            "NVLink 5 1.8 TB/s (both directions); PCIe Gen5 128 GB/s",
        ),
        GPUSpec(
            name="b300", aiconfigurator_system="b300_sxm",
            bf16_flops=2250 * TERA, fp8_flops=4500 * TERA, int8_ops=153.5 * TERA,
            memory_bandwidth=7750 * GIGA, memory_bytes=288 * GIGA, pcie_bandwidth=128 * GIGA,
            link_kind="nvlink", link_bandwidth=900 * GIGA, link_latency_s=_NVLINK_LATENCY_S,
            source=f"B300 (Blackwell Ultra, SXM). {_AIC}b300_sxm.yaml, which cites NVIDIA's Blackwell Ultra "
            "datasheet: 2.25 PFLOPS BF16, 4.5 PFLOPS FP8, 153.5 TOPS INT8 (its sparse figures halved; INT8 is "
            "that low on Blackwell Ultra per the file, not checked against the datasheet here), 7.75 TB/s "
            "HBM3e (62 TB/s per 8 GPUs), NVLink 5 1.8 TB/s and PCIe Gen6 256 GB/s (both directions); 288 GB "
            "HBM3e (NVIDIA; the file's 275,040 MiB is what nvidia-smi reports)",
        ),
        GPUSpec(
            name="rtx-4090", aiconfigurator_system=None,
            bf16_flops=165.2 * TERA, fp8_flops=330.3 * TERA, int8_ops=660.6 * TERA,
            memory_bandwidth=1008 * GIGA, memory_bytes=24 * GIGA, pcie_bandwidth=32 * GIGA,
            link_kind="pcie", link_bandwidth=32 * GIGA, link_latency_s=_PCIE_LATENCY_S,
            source="NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090): 165.2 TFLOPS FP16/BF16 "
            "with FP32 accumulate, 330.3 TFLOPS FP8 (FP32 accumulate), 660.6 TOPS INT8 (dense), 1,008 GB/s "
            "GDDR6X, 24 GB, no NVLink, PCIe Gen4 x16 64 GB/s (both directions)",
        ),
    )
}
