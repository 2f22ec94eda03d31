"""From class probabilities to the tumour mask, on the network's grid (docs/protocol.md,
"Post-processing"): threshold, opening then closing, connected components by volume, and
proximity to the predicted pancreas. Morphology runs inside the bounding box of the candidate
voxels (grown by a margin), which gives the same result as on the whole volume for a fraction of
the time."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..config import (
    FACE_CONNECTIVITY,
    MIN_COMPONENT_FRACTION,
    MIN_COMPONENT_MM3,
    PANCREAS_MARGIN_MM,
    PANCREAS_THRESHOLD,
    SECOND_COMPONENT_RATIO,
    TUMOUR_THRESHOLD,
)

CROSS = ndimage.generate_binary_structure(3, FACE_CONNECTIVITY)  # radius-1 ball = face connectivity


def bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels grown by ``margin`` (clamped), or None if empty."""
    coords = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if any(c.size == 0 for c in coords):
        return None
    return tuple(slice(max(c[0] - margin, 0), min(c[-1] + margin + 1, n)) for c, n in zip(coords, mask.shape))


def ball(radius: int) -> np.ndarray:
    """``x^2 + y^2 + z^2 <= r^2`` in voxel units."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= radius**2


def select_components(labels: np.ndarray, n: int, voxel_mm3: float) -> list[int]:
    """Components large enough (max(50 mm^3, 0.05 % of the total)), else the largest; of those
    the largest, and the second if it is at least 20 % of it."""
    volumes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * voxel_mm3
    minimum = max(MIN_COMPONENT_MM3, MIN_COMPONENT_FRACTION * volumes.sum())
    order = [int(i) for i in np.argsort(-volumes, kind="stable")]
    survivors = [i for i in order if volumes[i] >= minimum] or order[:1]
    kept = survivors[:1]
    if len(survivors) > 1 and volumes[survivors[1]] >= SECOND_COMPONENT_RATIO * volumes[survivors[0]]:
        kept.append(survivors[1])
    return [i + 1 for i in kept]


def pancreas_margin_radius(spacing_zyx: Sequence[float]) -> int:
    """``round(6 mm / mean(spacing))`` voxels, at least 1: 3 voxels for PANTHER's 3 x 1.1875 x 1.1875 mm."""
    return max(1, int(round(PANCREAS_MARGIN_MM / float(np.mean(spacing_zyx)))))


def touching_pancreas(labels: np.ndarray, kept: list[int], pancreas: np.ndarray, radius: int, box: tuple[slice, ...]) -> list[int]:
    """The kept components that touch the pancreas dilated by ``radius`` voxels (all if none do)."""
    grown = tuple(slice(max(s.start - radius, 0), min(s.stop + radius, n)) for s, n in zip(box, pancreas.shape))
    dilated = ndimage.binary_dilation(pancreas[grown], structure=ball(radius))
    inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))
    near = dilated[inner]
    touching = [c for c in kept if np.any(near[labels == c])]
    return touching or kept


def postprocess(tumour: np.ndarray, pancreas: np.ndarray, spacing_zyx: Sequence[float]) -> np.ndarray:
    """Tumour mask (uint8 0/1) from the (z, y, x) tumour and pancreas probability maps: threshold,
    opening then closing, component filtering, and pancreas proximity."""
    candidate = tumour >= TUMOUR_THRESHOLD
    out = np.zeros(candidate.shape, dtype=np.uint8)
    box = bbox(candidate, margin=3)
    if box is None:
        return out
    candidate = ndimage.binary_closing(ndimage.binary_opening(candidate[box], CROSS), CROSS)
    labels, n = ndimage.label(candidate, CROSS)
    if n == 0:
        return out
    kept = select_components(labels, n, float(np.prod(spacing_zyx)))
    predicted_pancreas = pancreas >= PANCREAS_THRESHOLD
    if predicted_pancreas.any():
        kept = touching_pancreas(labels, kept, predicted_pancreas, pancreas_margin_radius(spacing_zyx), box)
    out[box] = np.isin(labels, kept)
    return out
