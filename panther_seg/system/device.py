"""Choosing the device, and saying loudly when a GPU is there but CUDA cannot use it."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from ..errors import InputError
from .gpu_check import check_once

log = logging.getLogger("panther_seg")


def gpu_present() -> bool:
    """A GPU is visible to the container (device node or driver tool), whether or not torch can use it."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def select_device(requested: str) -> str:
    """auto, cpu or cuda -> the device used; on CUDA, once per process, the GPU self-check
    (gpu_check): torch can silently run 3D convolutions on a slow fallback."""
    if requested not in ("auto", "cpu", "cuda"):
        raise InputError(None, f"--device must be auto, cpu or cuda, not {requested!r}")
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise InputError(None, "--device cuda was asked for but CUDA is not available to this torch build")
    if requested == "auto" and not available and gpu_present():
        log.warning(
            "WARNING: a GPU is present but CUDA cannot be used (torch %s built for CUDA %s; the driver may "
            "be too old): running on CPU, which is much slower", torch.__version__, torch.version.cuda,
        )
    if requested == "cpu" or not available:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        return "cpu"
    check_once(("fp32", "fp16"))
    return "cuda"


def describe(device: str) -> str:
    text = f"device {device}; torch {torch.__version__}, CUDA build {torch.version.cuda}"
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        text += f"; GPU {p.name} ({p.total_memory / 2**30:.1f} GiB, sm_{p.major}{p.minor})"
    else:
        text += f"; {torch.get_num_threads()} CPU threads"
    return text
