"""Bundled GPU prices for capacity planning (``servesim plan``), each with its source and date.

These are public on-demand LIST prices, in US dollars per GPU-hour, as published by the named
vendor on the stated date. They are not quotes: list prices change often, differ between
vendors by 2-4x for the same GPU, and reserved or negotiated prices are lower. A plan file
overrides any of them (``prices: {h100-sxm: 2.49}``) and must give a price for a GPU that has
none here.

The four SXM data-centre GPUs come from one marketplace's single rate card, so they compare
like with like; the L40S comes from a different marketplace and date (the first has none).
The RTX 4090 has no bundled price: consumer cards are rented only on peer marketplaces whose
prices move daily, so a plan that names it must state its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GPUPrice:
    """One GPU's list price.

    Attributes:
        gpu: the name scenarios use (``hardware.gpu``).
        usd_per_gpu_hour: on-demand list price of one GPU for one hour (USD).
        vendor: who lists it, and which offer (on-demand, one GPU of an N-GPU machine).
        source: the page it was read from.
        as_of: the date it was read (ISO 8601).
    """

    gpu: str
    usd_per_gpu_hour: float
    vendor: str
    source: str
    as_of: str


_HYPERSTACK = "https://www.hyperstack.cloud/gpu-pricing"

GPU_PRICES: dict[str, GPUPrice] = {
    p.gpu: p
    for p in (
        GPUPrice("h100-sxm", 3.20, "Hyperstack on-demand, NVIDIA H100 SXM 80 GB", _HYPERSTACK, "2026-08-26"),
        GPUPrice("h200", 3.99, "Hyperstack on-demand, NVIDIA H200 SXM 141 GB", _HYPERSTACK, "2026-08-26"),
        GPUPrice("b200", 6.00, "Hyperstack on-demand, NVIDIA B200", _HYPERSTACK, "2026-08-26"),
        GPUPrice("a100-80gb-sxm", 1.60, "Hyperstack on-demand, NVIDIA A100 SXM 80 GB", _HYPERSTACK, "2026-08-26"),
        GPUPrice("l40s", 0.86, "RunPod on-demand pod, NVIDIA L40S 48 GB", "https://www.runpod.io/pricing", "2025-08-12"),
    )
}

PRICES_NOTE = (
    "Prices are public on-demand list prices per GPU-hour at the date stated for each "
    "(Hyperstack's rate card for H100/H200/B200/A100, RunPod's for L40S), not quotes; "
    "override them in the plan file under `prices`."
)
