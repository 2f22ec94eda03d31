"""Preprocessing shared by training and inference: the original protocol (docs/protocol.md,
"Preprocessing") and its named departures.

The original protocol, step by step:

1. resample with SimpleITK to the target spacing, **always** (even when the spacing already
   matches): ``round(size * spacing / target)`` voxels, the input's origin and direction, identity
   transform, B-spline (labels: nearest neighbour), default value 0, the input's pixel type;
2. the array in storage order (z, y, x): the direction matrix is not used;
3. z-score with the mean and standard deviation (ddof 0) of the voxels > 0:
   ``(v - mean) / (std + 1e-6)``, unchanged when no voxel is > 0.

Departures (``PreprocessingOptions``), each chosen knowingly or recorded by a checkpoint trained
with it: reorient the array to the training direction first (exact axis permutations and flips),
skip the resampling when the size would not change, normalise over the non-zero voxels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..config import NORMALISATIONS, RESAMPLINGS, ZSCORE_EPSILON
from ..errors import InputError
from .geometry import Grid, reorient
from ..system.memory import MemoryBudget
from ..contract.preprocessing_options import PreprocessingOptions
from ..contract.stats import NormalisationStats

IDENTITY = np.eye(3)
MIN_INTENSITY_SPREAD = 1e3 * ZSCORE_EPSILON  # below this std the epsilon changes the z-score by > 0.1 %


@dataclass
class Preprocessed:
    """A network-ready (z, y, x) float32 volume and the grid it lies on (physical space)."""

    volume: np.ndarray
    grid: Grid


def protocol_size(size: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, int, int]:
    """``round(size * spacing / target)`` per axis (the original's rule), at least one voxel."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(size, spacing, target))  # type: ignore[return-value]


def network_grid(image: sitk.Image, target_spacing: tuple[float, float, float], resample: str = RESAMPLINGS[0]) -> Grid:
    """The grid the network sees: target spacing, rounded size, the image's origin and direction.
    With ``resample="if-needed"`` an image whose size would not change keeps its own grid."""
    size = protocol_size(image.GetSize(), image.GetSpacing(), target_spacing)
    if resample == "if-needed" and size == image.GetSize():
        return Grid.of(image)
    return Grid(size, tuple(float(s) for s in target_spacing), image.GetOrigin(), image.GetDirection())  # type: ignore[arg-type]


def resample_onto(image: sitk.Image, grid: Grid, interpolator: int) -> sitk.Image:
    """SimpleITK resampling onto ``grid`` in the image's own pixel type (outside: 0).
    Returns the image itself when ``grid`` is its own grid and nothing needs interpolating."""
    if grid == Grid.of(image) and interpolator == sitk.sitkNearestNeighbor:
        return image
    return sitk.Resample(
        image, grid.size, sitk.Transform(), interpolator, grid.origin, grid.spacing, grid.direction, 0, image.GetPixelID()
    )


def zscore(volume: np.ndarray, over: str = NORMALISATIONS[0], source: object = None) -> np.ndarray:
    """float32 ``(v - mean) / (std + 1e-6)`` with the statistics (ddof 0) of the voxels > 0
    (``over="nonzero"``: != 0); unchanged when no voxel qualifies.

    Computed in float64, so that an image and any rescaled copy of it (float64 values near 1e300
    included) give the same network input; an intensity spread so small that the epsilon would
    distort it, or a volume that float32 cannot hold, is refused instead of segmented wrongly."""
    v = np.asarray(volume, dtype=np.float64)
    selected = v[v > 0] if over == "positive" else v[v != 0]
    if selected.size:
        scale = power_of_two_scale(selected)  # exact division: squares of 1e300 would overflow
        scaled = selected / scale
        mean, std = float(scaled.mean()), float(scaled.std())
        if std * scale < MIN_INTENSITY_SPREAD:
            raise InputError(source, f"intensity spread too small to normalise (std {std * scale:.3g} of the voxels used; at least {MIN_INTENSITY_SPREAD:g} needed): rescale the image")
        v = (v / scale - mean) / (std + ZSCORE_EPSILON / scale)
    with np.errstate(over="ignore"):  # checked on the next line
        out = v.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(source, "intensities outside the float32 range and nothing to normalise them by (no voxel > 0)")
    return out


def power_of_two_scale(values: np.ndarray) -> float:
    """The power of two nearest the largest magnitude: dividing by it is exact."""
    peak = float(np.max(np.abs(values)))
    return 2.0 ** int(np.floor(np.log2(peak))) if 0 < peak < np.inf else 1.0


def training_direction(direction: np.ndarray | None) -> np.ndarray:
    """The training orientation as a 3x3 matrix; checkpoints that record none mean identity."""
    return IDENTITY if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)


def oriented(image: sitk.Image, options: PreprocessingOptions, direction: np.ndarray | None) -> sitk.Image:
    """The image in storage order (original), or permuted and flipped to the training direction."""
    if options.orientation == "storage":
        return image
    return reorient(image, training_direction(direction))


def preprocess_image(
    image: sitk.Image,
    stats: NormalisationStats,
    options: PreprocessingOptions = PreprocessingOptions(),
    direction: np.ndarray | None = None,
    source: object = None,
    members: int = 1,
    budget: MemoryBudget | None = None,
) -> Preprocessed:
    """The image as the network sees it. ``direction``: the training orientation, used only with
    ``options.orientation == "training"``; ``source`` names the image in error messages;
    ``members``: the networks that will run on it (``budget``, the memory budget, counts their
    outputs; default: the environment's or the default limit)."""
    image = oriented(image, options, direction)
    grid = network_grid(image, stats.target_spacing(), options.resample)
    (budget or MemoryBudget.resolve()).check_target_grid(source, grid.size, image.GetSize(), image.GetSizeOfPixelComponent(), members)
    if grid != Grid.of(image) or options.resample == "always":
        image = resample_onto(image, grid, sitk.sitkBSpline)
    volume = sitk.GetArrayViewFromImage(image)
    return Preprocessed(zscore(volume, options.normalise, source), grid)


def preprocess_label(
    label: sitk.Image,
    image: sitk.Image,
    stats: NormalisationStats,
    options: PreprocessingOptions = PreprocessingOptions(),
    direction: np.ndarray | None = None,
) -> np.ndarray:
    """A label map on the grid of ``preprocess_image(image)``: nearest neighbour, uint8, negative
    values set to 0. The label takes the image's geometry (the caller checks they share it), so
    it goes through exactly the image's orientation and grid."""
    label = sitk.Cast(label, sitk.sitkInt16)
    label.CopyInformation(image)
    label = oriented(label, options, direction)
    grid = network_grid(label, stats.target_spacing(), options.resample)
    return np.clip(sitk.GetArrayFromImage(resample_onto(label, grid, sitk.sitkNearestNeighbor)), 0, None).astype(np.uint8)
