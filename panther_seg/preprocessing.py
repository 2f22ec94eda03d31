"""Preprocessing shared by training and inference (nnU-Net's MRI strategy): reorient to the
training direction, resample to the target spacing (3rd-order B-spline; labels nearest
neighbour), z-score over the non-zero voxels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .geometry import Grid, Reorientation, reorient, resample, target_grid
from .limits import check_target_grid
from .stats import NormalisationStats

IDENTITY = np.eye(3)


@dataclass
class Preprocessed:
    """A network-ready (z, y, x) float32 volume and how it relates to the input grid."""

    volume: np.ndarray
    grid: Grid
    reorientation: Reorientation
    resampled: bool


def zscore_nonzero(volume: np.ndarray) -> np.ndarray:
    """Z-score with the mean and std of the non-zero voxels; all-zero volumes stay as they are."""
    nonzero = volume[volume != 0]
    if nonzero.size == 0:
        return volume
    mean = float(nonzero.mean(dtype=np.float64))
    std = float(nonzero.std(dtype=np.float64))
    volume -= mean
    volume /= max(std, 1e-8)
    return volume


def training_direction(direction: np.ndarray | None) -> np.ndarray:
    """The training orientation as a 3x3 matrix; checkpoints that record none mean identity."""
    return IDENTITY if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)


def to_training_grid(
    image: sitk.Image, stats: NormalisationStats, direction: np.ndarray | None = None
) -> tuple[sitk.Image, Grid, Reorientation, bool]:
    """Reorient (exactly) and compute the target grid; returns whether resampling is needed."""
    direction = training_direction(direction)
    oriented, reorientation = reorient(image, direction)
    grid = target_grid(oriented, stats.target_spacing(), direction)
    return oriented, grid, reorientation, grid != Grid.of(oriented)


def preprocess_image(
    image: sitk.Image, stats: NormalisationStats, direction: np.ndarray | None = None
) -> Preprocessed:
    """The image as the network sees it. ``direction``: the training orientation (identity if None)."""
    oriented, grid, reorientation, resampled = to_training_grid(image, stats, direction)
    check_target_grid(None, grid.size, image.GetSize(), image.GetSizeOfPixelComponent())
    if resampled:
        oriented = resample(sitk.Cast(oriented, sitk.sitkFloat32), grid, sitk.sitkBSpline, sitk.sitkFloat32)
    volume = sitk.GetArrayFromImage(oriented).astype(np.float32, copy=False)
    return Preprocessed(zscore_nonzero(volume), grid, reorientation, resampled)


def preprocess_label(
    label: sitk.Image, image: sitk.Image, stats: NormalisationStats, direction: np.ndarray | None = None
) -> np.ndarray:
    """A label map on the grid of ``preprocess_image(image)``: nearest neighbour, uint8, negative
    values set to 0. The label takes the image's geometry, so its own reorientation gives the
    same grid (the image is not reoriented a second time). The caller checks that label and
    image share their geometry."""
    label = sitk.Cast(label, sitk.sitkInt16)
    label.CopyInformation(image)
    oriented, grid, _, resampled = to_training_grid(label, stats, direction)
    if resampled:
        oriented = resample(oriented, grid, sitk.sitkNearestNeighbor, sitk.sitkInt16)
    return np.clip(sitk.GetArrayFromImage(oriented), 0, None).astype(np.uint8)
