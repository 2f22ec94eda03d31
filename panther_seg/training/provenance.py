"""Where a run came from: code revision, machine, time."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone


from ..config import PROJECT_ROOT
from ..system.machine import summary

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
    """The training machine, as every figure of the project names it (``system.machine``)."""
    return summary()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
