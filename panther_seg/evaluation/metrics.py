"""Segmentation metrics of PANTHER Task 1, computed the way the challenge defines them.

The challenge scores with DeepMind's `surface-distance` library: surfaces are made of
marching-cubes surface elements ("surfels") placed on the voxel-corner grid, each weighted by
its area in mm^2. This module reimplements that definition with numpy/scipy so that the
project does not depend on an unmaintained package (and so the tests can check one against the
other). Only the 256-entry table of surfel normals comes from MONAI, which ships its own copy of
the marching-cubes table.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..dice import dice

TUMOUR_LABEL = 1  # reference masks hold 0 background, 1 tumour, 2 pancreas
SURFACE_TOLERANCE_MM = 5.0
HAUSDORFF_PERCENT = 95.0
SPACING_ATOL = 1e-4

Spacing = Sequence[float]


class EvaluationError(ValueError):
    """An input the challenge would refuse: the message names the problem in one line."""


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances from each surfel of one surface to the other surface, sorted ascending.

    `areas_*` hold the matching surfel areas (mm^2); an empty mask has no surfels, and the
    distances to an empty mask are infinite.
    """

    gt_to_pred: np.ndarray
    pred_to_gt: np.ndarray
    areas_gt: np.ndarray
    areas_pred: np.ndarray


@dataclass(frozen=True)
class CaseMetrics:
    """Per-case scores; `uniform_prediction` marks the challenge's penalty case."""

    dice: float
    surface_dice: float
    hd95_mm: float
    masd_mm: float
    pred_volume_mm3: float
    ref_volume_mm3: float
    uniform_prediction: bool


@functools.lru_cache(maxsize=1)
def _surfel_normals() -> np.ndarray:
    """(256, 4, 3) marching-cubes triangle normals; their length is the triangle's unit area.

    Imported lazily because MONAI pulls in torch, which only the distance metrics need.
    """
    from monai.metrics.utils import _get_neighbour_code_to_normals_table

    return _get_neighbour_code_to_normals_table().numpy().astype(np.float64)


def surfel_area_table(spacing: Spacing) -> np.ndarray:
    """Area in mm^2 of the surface inside a 2x2x2 neighbourhood, for each of its 256 codes.

    A triangle's normal scales with the product of the two spacings spanning its plane.
    """
    s0, s1, s2 = (float(v) for v in spacing)
    scaled = _surfel_normals() * np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.linalg.norm(scaled, axis=-1).sum(axis=-1)


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """8-bit code of every voxel corner: which of the 8 voxels around it are foreground.

    The mask is padded by one background voxel on each side, so the result has one more
    corner than voxels along each axis. Bit order matches the marching-cubes table:
    voxel offset (a, b, c) sets bit 7 - (4a + 2b + c).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    n0, n1, n2 = (size + 1 for size in mask.shape)
    codes = np.zeros((n0, n1, n2), dtype=np.uint8)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                codes |= padded[a : a + n0, b : b + n1, c : c + n2] << (7 - (4 * a + 2 * b + c))
    return codes


def _crop_to_union(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union: distances do not change, time does."""
    coords = np.nonzero(gt | pred)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    return gt[box], pred[box]


def _distances_to(borders: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Distance in mm from every corner to the nearest border corner (inf without border)."""
    if not borders.any():
        return np.full(borders.shape, np.inf)
    return ndimage.distance_transform_edt(~borders, sampling=[float(v) for v in spacing])


def _sorted_by_distance(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(distances, kind="stable")
    return distances[order], areas[order]


def surface_distances(gt: np.ndarray, pred: np.ndarray, spacing: Spacing) -> SurfaceDistances:
    """Surfel-to-surface distances both ways, with `spacing` given in the arrays' axis order."""
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 3 or len(spacing) != 3:
        raise ValueError(f"need two 3D masks of one shape and 3 spacings, got {gt.shape}, "
                         f"{pred.shape}, {tuple(spacing)}")
    if not (gt.any() or pred.any()):
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    gt, pred = _crop_to_union(gt, pred)
    areas_of_code = surfel_area_table(spacing)
    codes_gt, codes_pred = neighbour_codes(gt), neighbour_codes(pred)
    borders_gt = (codes_gt != 0) & (codes_gt != 255)
    borders_pred = (codes_pred != 0) & (codes_pred != 255)
    gt_to_pred, areas_gt = _sorted_by_distance(
        _distances_to(borders_pred, spacing)[borders_gt], areas_of_code[codes_gt[borders_gt]])
    pred_to_gt, areas_pred = _sorted_by_distance(
        _distances_to(borders_gt, spacing)[borders_pred], areas_of_code[codes_pred[borders_pred]])
    return SurfaceDistances(gt_to_pred, pred_to_gt, areas_gt, areas_pred)


def _area_weighted_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """Smallest distance whose cumulative surfel-area share reaches `percent` (inf if none)."""
    if distances.size == 0:
        return math.inf
    share = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(share, percent / 100.0))
    return float(distances[min(index, distances.size - 1)])


def robust_hausdorff(sd: SurfaceDistances, percent: float = HAUSDORFF_PERCENT) -> float:
    """Symmetric Hausdorff distance at a percentile of surface area (HD95 by default)."""
    return max(_area_weighted_percentile(sd.gt_to_pred, sd.areas_gt, percent),
               _area_weighted_percentile(sd.pred_to_gt, sd.areas_pred, percent))


def _area_weighted_mean(distances: np.ndarray, areas: np.ndarray) -> float:
    total = float(np.sum(areas))
    if total == 0.0:
        return math.nan
    return float(np.sum(distances * areas)) / total


def average_surface_distances(sd: SurfaceDistances) -> tuple[float, float]:
    """Directed mean distances (reference to prediction, prediction to reference) in mm."""
    return (_area_weighted_mean(sd.gt_to_pred, sd.areas_gt),
            _area_weighted_mean(sd.pred_to_gt, sd.areas_pred))


def mean_average_surface_distance(sd: SurfaceDistances) -> float:
    """MASD: the mean of the two directed average surface distances."""
    return float(np.mean(average_surface_distances(sd)))


def surface_dice(sd: SurfaceDistances, tolerance_mm: float = SURFACE_TOLERANCE_MM) -> float:
    """Share of both surfaces' area lying within `tolerance_mm` of the other surface."""
    total = float(np.sum(sd.areas_gt) + np.sum(sd.areas_pred))
    if total == 0.0:
        return math.nan
    close = np.sum(sd.areas_gt[sd.gt_to_pred <= tolerance_mm]) + np.sum(
        sd.areas_pred[sd.pred_to_gt <= tolerance_mm])
    return float(close) / total


def volume_mm3(mask: np.ndarray, spacing: Spacing) -> float:
    """Foreground voxel count times the voxel volume.

    The spacings are multiplied in sorted order so both spacing modes give the same bits.
    """
    return int(np.count_nonzero(mask)) * math.prod(sorted(float(v) for v in spacing))


def diagonal_mm(shape: Sequence[int], spacing: Spacing) -> float:
    """Length of the volume's diagonal: the challenge's distance for a uniform prediction."""
    return float(np.linalg.norm(np.asarray(shape, dtype=float) * np.asarray(spacing, dtype=float)))


def binarise_prediction(values: np.ndarray) -> np.ndarray:
    """Apply the challenge's rule: {0}, {1}, {0, 1} or {0, v} are accepted, anything else not.

    Raises EvaluationError naming the offending values.
    """
    nonzero = values != 0
    foreground = values[nonzero]
    if foreground.size:
        first = foreground.flat[0]
        if not np.all(foreground == first):
            found = np.unique(values)
            shown = ", ".join(str(v) for v in found[:5]) + (", ..." if found.size > 5 else "")
            raise EvaluationError(f"prediction is not binary: values {{{shown}}}")
        if foreground.size == values.size and first != 1:
            raise EvaluationError(f"prediction is not binary: single value {{{first}}}")
    return nonzero


def binarise_reference(labels: np.ndarray) -> np.ndarray:
    """Tumour = label 1; label 2 (pancreas) and anything else is background."""
    return labels == TUMOUR_LABEL


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Spacing) -> CaseMetrics:
    """All per-case scores for a binary prediction and reference.

    `spacing` is what the distance metrics receive: in array axis order for physically
    correct distances, or in SimpleITK's order to reproduce the official quirk. The volumes
    only use its product, so they are the same either way.
    """
    ref_volume = volume_mm3(ref, spacing)
    if not pred.any() or pred.all():
        diagonal = diagonal_mm(pred.shape, spacing)
        return CaseMetrics(0.0, 0.0, diagonal, diagonal, 0.0, ref_volume, True)
    sd = surface_distances(ref, pred, spacing)
    return CaseMetrics(
        dice=float(dice(ref, pred)),
        surface_dice=surface_dice(sd),
        hd95_mm=robust_hausdorff(sd),
        masd_mm=mean_average_surface_distance(sd),
        pred_volume_mm3=volume_mm3(pred, spacing),
        ref_volume_mm3=ref_volume,
        uniform_prediction=False,
    )


def tumour_burden_rmse(pred_volumes: Sequence[float], ref_volumes: Sequence[float]) -> float:
    """Root mean squared error of the predicted tumour volumes, in mm^3."""
    diff = np.asarray(pred_volumes, dtype=float) - np.asarray(ref_volumes, dtype=float)
    return float(np.sqrt(np.mean(diff**2))) if diff.size else math.nan
