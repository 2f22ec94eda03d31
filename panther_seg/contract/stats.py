"""The normalisation statistics file ``mri_statistics.csv`` of the original code, and the target
spacing it implies. Vectors are in SimpleITK (x, y, z) order, as in the file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import ANISOTROPY_RATIO, SPACING_RANGE_MM
from ..errors import FieldError, InputError
from ..io.files import write_text_atomic

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
    def from_dict(cls, d: Any) -> "NormalisationStats":
        """From the dict a checkpoint records; every field validated (``FieldError`` names it)."""
        if not isinstance(d, dict):
            raise FieldError("statistics", f"expected a dict of {', '.join(FIELDS)}, got a {type(d).__name__}")
        unknown = sorted(set(map(str, d)) - set(FIELDS))
        if unknown:
            raise FieldError(f"statistics.{unknown[0]}", f"unknown field (expected {', '.join(FIELDS)})")
        values = []
        for name, check in FIELDS.items():
            if name not in d:
                raise FieldError(f"statistics.{name}", "missing")
            try:
                values.append(check(_vec3(d[name])))
            except ValueError as e:
                raise FieldError(f"statistics.{name}", str(e)) from None
        return cls(*values)


def _vec3(values: Any) -> Vec3:
    try:
        v = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ValueError(f"expected 3 finite numbers, got {values!r}"[:200]) from None
    if len(v) != 3 or not all(np.isfinite(v)):
        raise ValueError(f"expected 3 finite numbers, got {list(v)}"[:200])
    return v  # type: ignore[return-value]


def check_spacing(v: Vec3) -> Vec3:
    """A spacing in mm within the plausible range (the same one images are held to)."""
    low, high = SPACING_RANGE_MM
    if not all(low <= x <= high for x in v):
        raise ValueError(f"spacing {list(v)} mm is outside the plausible {low} to {high} mm")
    return v


def check_size(v: Vec3) -> Vec3:
    """A median image size in voxels: at least one voxel per axis."""
    if not all(x >= 1 for x in v):
        raise ValueError(f"size {list(v)} voxels: every axis needs at least 1")
    return v


FIELDS: dict[str, Callable[[Vec3], Vec3]] = {
    "median_spacing": check_spacing,
    "p10_spacing": check_spacing,
    "median_size": check_size,
}
CSV_COLUMNS = dict(zip(HEADER.split(","), FIELDS))  # file column -> field


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
    except OSError as e:
        raise InputError(path, f"statistics file unreadable: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(path, "statistics file unreadable: not text") from None
    if len(lines) != 2 or lines[0].replace(" ", "") != HEADER:
        raise InputError(path, f"statistics file malformed: expected header '{HEADER}' and one data row")
    cells = re.findall(r"\[([^\]]*)\]", lines[1])
    if len(cells) != 3:
        raise InputError(path, "statistics file malformed: expected three bracketed vectors")
    values = []
    for (column, name), cell in zip(CSV_COLUMNS.items(), cells):
        try:
            values.append(FIELDS[name](_vec3(cell.replace(",", " ").split())))
        except ValueError as e:
            raise InputError(path, f"statistics file malformed: field '{column}': {e}") from None
    return NormalisationStats(*values)


def write_stats_csv(stats: NormalisationStats, path: Path) -> None:
    row = ",".join(str(np.asarray(v)) for v in (stats.median_spacing, stats.p10_spacing, stats.median_size))
    write_text_atomic(Path(path), f"{HEADER}\n{row}\n")
