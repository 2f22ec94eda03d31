"""Voxel grids: bringing an image into the training orientation and spacing, and a mask back
onto the input's grid exactly.

Axis permutations and flips are done on the array (exact, no interpolation), so a mirrored input
gives the mirrored mask. Only spacing changes (and oblique directions) interpolate.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
import SimpleITK as sitk

ALIGNED_TOLERANCE = 1e-4  # direction cosines closer than this to the training ones count as aligned


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

    def array_backward(self, array: np.ndarray) -> np.ndarray:
        flips = tuple(a for a in range(3) if self.flip[2 - a])
        array = np.flip(array, flips) if flips else array
        return np.transpose(array, np.argsort([2 - self.perm[2 - a] for a in range(3)]))


def closest_reorientation(direction: np.ndarray, target: np.ndarray) -> Reorientation:
    """The axis permutation and flips that bring ``direction`` closest to ``target``."""
    m = target.T @ direction  # m[i, j]: input axis j seen along target axis i
    perm = max(permutations(range(3)), key=lambda p: sum(abs(m[i, p[i]]) for i in range(3)))
    flip = tuple(bool(m[i, perm[i]] < 0) for i in range(3))
    return Reorientation(perm, flip)  # type: ignore[arg-type]


def reorient(image: sitk.Image, target_direction: np.ndarray) -> tuple[sitk.Image, Reorientation]:
    """Permute and flip the image's axes so that they follow the training direction."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    r = closest_reorientation(direction, target_direction)
    if r.is_identity:
        return image, r
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
    return out, r


def target_grid(image: sitk.Image, spacing: tuple[float, float, float], direction: np.ndarray) -> Grid:
    """The grid at the target spacing in the training direction that covers ``image``.

    Aligned images keep their origin and get ``round(size * spacing / target)`` voxels, as in
    nnU-Net; oblique ones get the bounding box of their voxel centres in the training frame.
    """
    size = np.asarray(image.GetSize())
    old_spacing = np.asarray(image.GetSpacing())
    new_spacing = np.asarray(spacing, dtype=float)
    own = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.abs(own - direction).max() < ALIGNED_TOLERANCE:
        new_size = np.maximum(np.round(size * old_spacing / new_spacing), 1).astype(int)
        if np.array_equal(new_size, size):  # nothing to resample: keep the grid exactly
            return Grid.of(image)
        return Grid(tuple(int(s) for s in new_size), tuple(float(s) for s in new_spacing), image.GetOrigin(), tuple(float(d) for d in direction.ravel()))
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    points = np.array([image.TransformIndexToPhysicalPoint([int(c) for c in corner]) for corner in corners])
    local = points @ direction  # coordinates along the training axes
    low, high = local.min(axis=0), local.max(axis=0)
    new_size = np.floor((high - low) / new_spacing + 1e-6).astype(int) + 1
    return Grid(
        tuple(int(s) for s in new_size), tuple(float(s) for s in new_spacing),
        tuple(float(o) for o in direction @ low), tuple(float(d) for d in direction.ravel()),
    )


def resample(image: sitk.Image, grid: Grid, interpolator: int, pixel_type: int) -> sitk.Image:
    """Resample onto ``grid`` (identity transform in physical space; outside is 0)."""
    return sitk.Resample(
        image, grid.size, sitk.Transform(), interpolator, grid.origin, grid.spacing, grid.direction, 0, pixel_type
    )


def mask_to_input_grid(
    mask: np.ndarray, grid: Grid, reorientation: Reorientation, reference: sitk.Image, resampled: bool
) -> sitk.Image:
    """Bring a (z, y, x) mask on ``grid`` back to exactly the grid of ``reference``.

    When nothing was interpolated on the way in, the reorientation is undone on the array
    (exact); otherwise the mask is resampled with nearest neighbour onto the reference grid.
    """
    if not resampled:
        out = sitk.GetImageFromArray(np.ascontiguousarray(reorientation.array_backward(mask), dtype=np.uint8))
        out.CopyInformation(reference)
        return out
    on_grid = grid.apply(sitk.GetImageFromArray(mask.astype(np.uint8)))
    return sitk.Resample(on_grid, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
