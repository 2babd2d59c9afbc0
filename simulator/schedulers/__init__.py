"""Per-replica batching policies, found by name in ``SCHEDULERS``.

Each policy is one module with one class behind ``simulator.schedulers.base.Scheduler``.
"""

from simulator.schedulers.base import Scheduler
from simulator.schedulers.distserve import DistServeScheduler
from simulator.schedulers.fastserve import FastServeScheduler
from simulator.schedulers.orca import OrcaScheduler
from simulator.schedulers.sarathi import SarathiScheduler
from simulator.schedulers.sjf import SJFScheduler
from simulator.schedulers.static import StaticScheduler
from simulator.schedulers.vllm import VLLMScheduler
from simulator.schedulers.vllm_v1 import VLLMV1Scheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "vllm": VLLMScheduler,
    "sarathi": SarathiScheduler,
    "orca": OrcaScheduler,
    "vllm_v1": VLLMV1Scheduler,
    "static": StaticScheduler,
    "distserve": DistServeScheduler,
    "fastserve": FastServeScheduler,
    "sjf": SJFScheduler,
}

__all__ = ["SCHEDULERS", "Scheduler"]
