"""The memory budget: a case is refused before its memory is allocated, not killed after.

grand-challenge runs the container under a memory limit (8 GB by default, 4 to 32 GB as the
algorithm's editors choose) and kills it without a message when it goes over. So the size an
image header declares, and the size of the grid the network will see after resampling, are
turned into an estimate of the run's peak memory and compared with a limit, a ``MemoryBudget``
the caller passes: ``--memory-limit GIB``, else ``$PANTHER_MEMORY_LIMIT_GIB``, else the memory
limit of the process's cgroup (the container's; ``cgroup.py``), else the machine's RAM, less
``MEMORY_RESERVE_GIB``.

estimate = runtime reserve (interpreter, torch, network, CUDA context)
         + input voxels x (bytes per voxel + working bytes per input voxel)
         + network-grid voxels x (bytes per network-grid voxel + bytes per voxel per ensemble member)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import (
    INPUT_WORKING_BYTES_PER_VOXEL,
    MEMORY_LIMIT_ENV,
    MEMORY_RESERVE_GIB,
    MEMBER_BYTES_PER_VOXEL,
    RUNTIME_RESERVE_GIB,
    TARGET_BYTES_PER_VOXEL,
)
from ..errors import InputError
from .cgroup import memory_limit

GIB = 2**30


@dataclass(frozen=True)
class MemoryBudget:
    """A limit on a run's estimated peak memory, and where it comes from (for the refusal).

    The caller passes one: inference resolves it from its command line, training from its own
    settings; nothing global, so one process can hold two runs with different limits."""

    limit_gib: float
    source: str

    def __post_init__(self) -> None:
        if not (isinstance(self.limit_gib, (int, float)) and math.isfinite(self.limit_gib) and self.limit_gib > 0):
            raise ValueError(f"memory limit must be a positive number of GiB, got {self.limit_gib}")

    @classmethod
    def resolve(cls, gib: float | None = None, root: Path = Path("/")) -> "MemoryBudget":
        """``gib`` (the command line's ``--memory-limit``), else ``$PANTHER_MEMORY_LIMIT_GIB``,
        else what the process's cgroup (or the RAM) allows; ``root`` is where /proc and
        /sys/fs/cgroup are read (tests pass recorded files)."""
        if gib is not None:
            return cls(gib, "--memory-limit")
        text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
        if text:
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not (math.isfinite(value) and value > 0):
                raise InputError(MEMORY_LIMIT_ENV, f"environment variable must be a positive number of GiB, got {text!r}")
            return cls(value, f"${MEMORY_LIMIT_ENV}")
        return cls.from_machine(root)

    @classmethod
    def from_machine(cls, root: Path = Path("/")) -> "MemoryBudget":
        """The cgroup's limit (or the RAM) less the reserve; under twice the reserve, half of it."""
        limit = memory_limit(root)
        total = limit.bytes / GIB
        usable = total - MEMORY_RESERVE_GIB if total > 2 * MEMORY_RESERVE_GIB else total / 2
        return cls(math.floor(usable * 100) / 100,
                   f"{limit.where}: {total:.3g} GiB less a {MEMORY_RESERVE_GIB:g} GiB reserve; "
                   f"set ${MEMORY_LIMIT_ENV} or --memory-limit to change it")

    def describe(self) -> str:
        return f"memory limit {self.limit_gib:g} GiB ({self.source})"

    def check(self, path: Path | str | None, what: str, estimate: int) -> None:
        total = estimate + RUNTIME_RESERVE_GIB * GIB
        if total > self.limit_gib * GIB:
            raise InputError(
                path,
                f"{what} needs about {total / GIB:.1f} GiB of memory, over the limit of {self.limit_gib:g} GiB ({self.source})",
            )

    def check_image_size(self, path: Path | str | None, size_xyz: Sequence[int], bytes_per_voxel: int) -> None:
        """Refuse an image whose declared size would not fit, before reading its voxels."""
        self.check(path, f"image of {_size_text(size_xyz)} voxels ({bytes_per_voxel} bytes each)",
                   input_bytes(size_xyz, bytes_per_voxel))

    def check_target_grid(
        self,
        path: Path | str | None,
        size_xyz: Sequence[int],
        input_size_xyz: Sequence[int] | None = None,
        input_bytes_per_voxel: int = 4,
        members: int = 1,
    ) -> None:
        """Refuse a case whose network grid (after resampling to the target spacing) would not
        fit, before resampling; the input image, still held, counts too when its size is given."""
        held = input_bytes(input_size_xyz, input_bytes_per_voxel) if input_size_xyz is not None else 0
        what = f"network grid of {_size_text(size_xyz)} voxels (x, y, z){f' for {members} ensemble members' if members > 1 else ''}"
        self.check(path, what, held + target_bytes(size_xyz, members))

    def fits_weights(self, parameters: int) -> bool:
        """A network's fp32 weights take at most a quarter of the budget."""
        return parameters * 4 <= self.limit_gib * GIB / 4


def voxels(size_xyz: Sequence[int]) -> int:
    return math.prod(int(s) for s in size_xyz)


def input_bytes(size_xyz: Sequence[int], bytes_per_voxel: int) -> int:
    """Memory the input image costs in the pipeline: itself plus its working copies."""
    return voxels(size_xyz) * (int(bytes_per_voxel) + INPUT_WORKING_BYTES_PER_VOXEL)


def target_bytes(size_xyz: Sequence[int], members: int = 1) -> int:
    """Memory the network grid costs: the normalised volume and its flipped copy, MONAI's weight
    map, and each ensemble member's stitched, summed and softmaxed logits."""
    return voxels(size_xyz) * (TARGET_BYTES_PER_VOXEL + members * MEMBER_BYTES_PER_VOXEL)


def _size_text(size_xyz: Sequence[int]) -> str:
    return " x ".join(str(int(s)) for s in size_xyz)
