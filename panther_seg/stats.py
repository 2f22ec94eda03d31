"""The normalisation statistics file ``mri_statistics.csv`` of the original code, and the target
spacing it implies. Vectors are in SimpleITK (x, y, z) order, as in the file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import ANISOTROPY_RATIO
from .errors import InputError

HEADER = "median_spacing,10th_percentile_spacing,median_size"
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class NormalisationStats:
    median_spacing: Vec3  # (x, y, z) mm
    p10_spacing: Vec3  # (x, y, z) mm
    median_size: Vec3  # (x, y, z) voxels

    def target_spacing(self) -> Vec3:
        """nnU-Net's rule: the median spacing, but the 10th-percentile z for anisotropic data."""
        x, y, z = self.median_spacing
        if z / x >= ANISOTROPY_RATIO:
            z = self.p10_spacing[2]
        return (x, y, z)

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "median_spacing": list(self.median_spacing),
            "p10_spacing": list(self.p10_spacing),
            "median_size": list(self.median_size),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "NormalisationStats":
        return cls(*(_vec3(d[k]) for k in ("median_spacing", "p10_spacing", "median_size")))


def _vec3(values: Sequence[float]) -> Vec3:
    v = tuple(float(x) for x in values)
    if len(v) != 3 or not all(np.isfinite(v)):
        raise ValueError(f"expected 3 finite numbers, got {list(values)}")
    return v  # type: ignore[return-value]


def compute_stats(spacings_xyz: Sequence[Sequence[float]], sizes_xyz: Sequence[Sequence[float]]) -> NormalisationStats:
    """Statistics over a dataset, as the original preprocessing computed them."""
    sp = np.asarray(spacings_xyz, dtype=float)
    sz = np.asarray(sizes_xyz, dtype=float)
    return NormalisationStats(
        _vec3(np.median(sp, axis=0)), _vec3(np.percentile(sp, 10, axis=0)), _vec3(np.median(sz, axis=0))
    )


def read_stats_csv(path: Path) -> NormalisationStats:
    """Parse the original format: a header line and one row of three NumPy-printed vectors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "statistics file not found")
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"statistics file unreadable ({e.__class__.__name__})") from None
    if len(lines) != 2 or lines[0].replace(" ", "") != HEADER:
        raise InputError(path, f"statistics file malformed: expected header '{HEADER}' and one data row")
    cells = re.findall(r"\[([^\]]*)\]", lines[1])
    try:
        if len(cells) != 3:
            raise ValueError("expected three bracketed vectors")
        stats = NormalisationStats(*(_vec3(c.replace(",", " ").split()) for c in cells))
    except ValueError as e:
        raise InputError(path, f"statistics file malformed: {e}") from None
    if min(stats.median_spacing + stats.p10_spacing) <= 0:
        raise InputError(path, "statistics file malformed: spacings must be positive")
    return stats


def write_stats_csv(stats: NormalisationStats, path: Path) -> None:
    row = ",".join(str(np.asarray(v)) for v in (stats.median_spacing, stats.p10_spacing, stats.median_size))
    Path(path).write_text(f"{HEADER}\n{row}\n")
