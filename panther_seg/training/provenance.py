"""Where a run came from: code revision, machine, time."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone

import torch

from ..config import PROJECT_ROOT

REVISION_ENV = "PANTHER_GIT_REVISION"  # set by the training image, which has no .git


def git_revision() -> str:
    """The commit of the code (with '-dirty' for uncommitted changes), or the image's build arg."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(REVISION_ENV, "unknown")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads" + (
        f", GPUs: {', '.join(gpus)}" if gpus else ", no GPU"
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
