"""Per-replica batching policies, found by name in ``SCHEDULERS``.

Each policy is one module with one class behind ``simulator.schedulers.base.Scheduler``.
"""

from simulator.schedulers.base import Scheduler
from simulator.schedulers.orca import OrcaScheduler
from simulator.schedulers.sarathi import SarathiScheduler
from simulator.schedulers.vllm import VLLMScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "vllm": VLLMScheduler,
    "sarathi": SarathiScheduler,
    "orca": OrcaScheduler,
}

__all__ = ["SCHEDULERS", "Scheduler"]
