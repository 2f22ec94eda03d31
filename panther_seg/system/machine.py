"""The machine a run or a measurement came from, described once: figures are only comparable
with the machine beside them (benchmarks, departures, a checkpoint's provenance)."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor() or platform.machine())


def machine() -> dict[str, Any]:
    """CPU, cores this process may use, RAM, torch and its CUDA and cuDNN builds, the GPU."""
    info: dict[str, Any] = {
        "host": platform.node(), "cpu": cpu_name(), "cpu_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__, "cuda_build": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "gpu": None, "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name} ({p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor})"
        info["gpus"] = torch.cuda.device_count()
        info["cuda_driver"] = torch.cuda.driver_version() if hasattr(torch.cuda, "driver_version") else None
    return info


def summary(info: dict[str, Any] | None = None) -> str:
    """One line of ``machine()``, for logs and provenance records."""
    m = info or machine()
    gpu = f"{m.get('gpus', 1)} x {m['gpu']}" if m["gpu"] else "no GPU"
    return (f"{m['host']}: {m['cpu']}, {m['cpu_cores']} cores, {m['ram_gib']} GiB; torch {m['torch']} "
            f"(CUDA {m['cuda_build']}, cuDNN {m['cudnn']}), {m['torch_threads']} threads; {gpu}")
