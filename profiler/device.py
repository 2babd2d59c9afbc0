"""What machine a profile was measured on (``device.json``).

GPU properties come from ``torch.cuda.get_device_properties``; clocks, power, temperature and
the driver from ``nvidia-smi --query-gpu`` when it is installed (each guarded: a missing tool or
field leaves the entry out). CPU model from ``/proc/cpuinfo`` (or ``platform``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from typing import Any

_SMI_FIELDS = (
    "name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
    "power.draw", "power.limit", "temperature.gpu", "utilization.gpu", "pstate",
)


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_smi(index: int = 0) -> dict[str, str]:
    """``nvidia-smi --query-gpu`` fields of GPU ``index``; empty when the tool is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run(
            [exe, f"--id={index}", f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    values = [v.strip() for v in out.splitlines()[0].split(",")] if out else []
    return {k: v for k, v in zip(_SMI_FIELDS, values) if v and "N/A" not in v and "Not Supported" not in v}


def snapshot(device: str) -> dict[str, Any]:
    """Clocks, power and temperature now (GPU), or the load average (CPU)."""
    snap: dict[str, Any] = {"time": now()}
    if device == "cuda":
        snap.update({k: v for k, v in nvidia_smi().items() if k not in ("name", "driver_version")})
    elif hasattr(os, "getloadavg"):
        snap["load_average_1min"] = os.getloadavg()[0]
    return snap


def describe(device: str) -> dict[str, Any]:
    """Everything about the machine that a profile's numbers depend on.

    Args:
        device: ``cuda`` or ``cpu``.

    Returns:
        a JSON-able dict: ``device``, ``name`` (GPU or CPU model), ``num_compute_units`` (SMs,
        or threads torch uses on the CPU), memory, versions, host and date; ``start`` holds
        the clocks and power at this moment.
    """
    import torch

    info: dict[str, Any] = {
        "device": device, "date": now(), "hostname": socket.gethostname(), "cpu_model": cpu_model(),
        "num_cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
    }
    try:  # the installed version, without importing triton (slow, and it may look for a GPU)
        info["triton"] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        info["triton"] = None
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        smi = nvidia_smi()
        info.update({
            "name": props.name, "num_compute_units": props.multi_processor_count, "memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}", "num_gpus": torch.cuda.device_count(),
            "cuda": torch.version.cuda, "driver": smi.get("driver_version"),
        })
    else:
        info.update({"name": cpu_model(), "num_compute_units": torch.get_num_threads(), "torch_num_threads": torch.get_num_threads()})
        try:
            info["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    info["start"] = snapshot(device)
    return info
