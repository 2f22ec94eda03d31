"""Voxel grids: the optional reorientation to a training direction (exact axis permutations and
flips on the array, no interpolation), and bringing a mask back onto the input's grid exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """A voxel grid in SimpleITK terms: (x, y, z) size and spacing, origin, 3x3 direction."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Stamp this grid's geometry on an image with the same size."""
        assert image.GetSize() == tuple(self.size)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass(frozen=True)
class Reorientation:
    """Output index axis i is input axis ``perm[i]``, reversed where ``flip[i]``."""

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    def array_forward(self, array: np.ndarray) -> np.ndarray:
        """Apply to a (z, y, x) array: numpy axis a is index axis 2 - a."""
        out = np.transpose(array, [2 - self.perm[2 - a] for a in range(3)])
        flips = tuple(a for a in range(3) if self.flip[2 - a])
        return np.flip(out, flips) if flips else out


def closest_reorientation(direction: np.ndarray, target: np.ndarray) -> Reorientation:
    """The axis permutation and flips that bring ``direction`` closest to ``target``."""
    m = target.T @ direction  # m[i, j]: input axis j seen along target axis i
    perm = max(permutations(range(3)), key=lambda p: sum(abs(m[i, p[i]]) for i in range(3)))
    flip = tuple(bool(m[i, perm[i]] < 0) for i in range(3))
    return Reorientation(perm, flip)  # type: ignore[arg-type]


def reorient(image: sitk.Image, target_direction: np.ndarray) -> sitk.Image:
    """The same physical image with its axes permuted and flipped to follow the training
    direction as closely as a signed permutation can (oblique axes stay oblique)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    r = closest_reorientation(direction, target_direction)
    if r.is_identity:
        return image
    array = np.ascontiguousarray(r.array_forward(sitk.GetArrayViewFromImage(image)))
    size = image.GetSize()
    first = [0, 0, 0]
    for i in range(3):
        first[r.perm[i]] = size[r.perm[i]] - 1 if r.flip[i] else 0
    new_dir = np.stack([direction[:, r.perm[i]] * (-1 if r.flip[i] else 1) for i in range(3)], axis=1)
    out = sitk.GetImageFromArray(array)
    out.SetOrigin(image.TransformIndexToPhysicalPoint(first))
    out.SetSpacing(tuple(image.GetSpacing()[r.perm[i]] for i in range(3)))
    out.SetDirection(tuple(new_dir.ravel()))
    return out


def to_input_grid(array: np.ndarray, grid: Grid, reference: sitk.Image, interpolator: int = sitk.sitkNearestNeighbor) -> sitk.Image:
    """A (z, y, x) array on ``grid`` resampled onto exactly the grid of ``reference`` (the input
    image): same size, spacing, origin and direction; outside ``grid``, 0. Masks go by nearest
    neighbour as uint8 (where ``grid`` is the input's own grid, or a permutation of it, every
    voxel maps to itself: exact); probabilities linearly, as float32."""
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    dtype = np.uint8 if pixel == sitk.sitkUInt8 else np.float32
    on_grid = grid.apply(sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype)))
    return sitk.Resample(on_grid, reference, sitk.Transform(), interpolator, 0, pixel)
