"""A case's measurements from its final masks on the input grid, in physical space.

Lesions are the tumour mask's face-connected components (the post-processing's connectivity).
Every length is between the centres of a lesion's surface voxels (voxels with a face neighbour
outside the lesion), mapped to physical space through the image's spacing and direction, so
that oblique and anisotropic grids measure the same object alike; a lesion's extent therefore
reads up to one voxel shorter than its outer boundary. The longest distance of a point set is
searched among its convex hull's vertices only (the farthest pair of a set is always two hull
vertices).

In-plane diameters are taken in the image's slice plane (the plane of its first two index axes,
the slices a viewer displays), as a radiologist measures (RECIST): in each slice the longest
diameter; the slice with the longest gives the lesion's ``longest_in_plane_mm``, and its
perpendicular diameter is the lesion's extent in that slice across the long axis (the width of
its voxel centres projected on the perpendicular, in the same slice).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..config import FACE_CONNECTIVITY, SIZE_CUTOFFS_MM
from ..results import SIZE_CATEGORIES, Lesion, Measurements

FACES = ndimage.generate_binary_structure(3, FACE_CONNECTIVITY)
PAIR_CHUNK = 2048  # points per block when searching the farthest pair (bounds the distance matrix)


def size_category(longest_mm: float) -> str:
    """``<=20 mm``, ``20-40 mm`` or ``>40 mm``: the AJCC T1/T2/T3 size cut-offs (size only)."""
    for cutoff, name in zip(SIZE_CUTOFFS_MM, SIZE_CATEGORIES):
        if longest_mm <= cutoff:
            return name
    return SIZE_CATEGORIES[-1]


def hull_points(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices of an (n, d) point set; all of them where the set is flat."""
    if len(points) <= points.shape[1] + 1:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # collinear or coplanar: no full-dimensional hull
        return points


def farthest_pair(points: np.ndarray) -> tuple[float, np.ndarray]:
    """The largest distance within a point set and the unit vector along it (zero for one point)."""
    candidates = hull_points(points)
    best, pair = 0.0, (0, 0)
    for start in range(0, len(candidates), PAIR_CHUNK):
        block = candidates[start:start + PAIR_CHUNK]
        d2 = ((block[:, None, :] - candidates[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        if d2[i, j] > best:
            best, pair = float(d2[i, j]), (start + int(i), int(j))
    vector = candidates[pair[1]] - candidates[pair[0]]
    length = float(np.sqrt(best))
    return length, (vector / length if length > 0 else vector)


def in_plane_diameters(index_xyz: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """RECIST-style: the longest diameter within one slice (index axis 2 fixed) over all slices,
    and the lesion's width perpendicular to it in that slice."""
    best = (-1.0, 0.0)
    for k in np.unique(index_xyz[:, 2]):
        plane = index_xyz[index_xyz[:, 2] == k][:, :2] * spacing[:2]  # orthonormal in-plane axes: mm
        length, unit = farthest_pair(plane)
        if length > best[0]:
            across = plane @ np.array([-unit[1], unit[0]])
            best = (length, float(across.max() - across.min()))
    return best


def surface(component: np.ndarray) -> np.ndarray:
    """The voxels of a (z, y, x) mask with a face neighbour outside it (the mask's edge counts as outside)."""
    inner = ndimage.binary_erosion(component, FACES, border_value=0)
    return component & ~inner


def to_physical(index_xyz: np.ndarray, image: sitk.Image) -> np.ndarray:
    """ITK's index-to-physical map (origin + direction . diag(spacing) . index), vectorised: LPS mm."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    scaled = index_xyz * np.asarray(image.GetSpacing(), dtype=float)
    return np.asarray(image.GetOrigin(), dtype=float) + scaled @ direction.T


def measure_lesion(component: np.ndarray, offset: np.ndarray, image: sitk.Image, voxel_ml: float) -> Lesion:
    """One lesion: ``component`` is its (z, y, x) mask inside its bounding box at ``offset`` (z, y, x)."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    inside = np.argwhere(component)[:, ::-1] + offset[::-1]  # index (x, y, z)
    edge = np.argwhere(surface(component))[:, ::-1] + offset[::-1]
    longest_3d, _ = farthest_pair(to_physical(edge.astype(float), image))
    longest, perpendicular = in_plane_diameters(edge.astype(float), spacing)
    centroid = to_physical(inside.mean(axis=0, keepdims=True), image)[0]
    return Lesion(
        volume_ml=len(inside) * voxel_ml,
        centroid_lps_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
        longest_in_plane_mm=longest,
        perpendicular_in_plane_mm=perpendicular,
        longest_3d_mm=longest_3d,
        size_category=size_category(longest),
    )


def measure(image: sitk.Image, tumour: sitk.Image, pancreas: sitk.Image | None = None) -> Measurements:
    """The measurements of a case: ``tumour`` (and ``pancreas``, when computed) are its final
    masks on the grid of ``image``, the input whose intensities are reported. Pure: reads only."""
    voxel_ml = float(np.prod(tumour.GetSpacing())) / 1000.0
    mask = sitk.GetArrayViewFromImage(tumour) > 0
    labels, count = ndimage.label(mask, FACES)
    lesions = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            offset = np.array([s.start for s in box])
            lesions.append(measure_lesion(labels[box] == index, offset, tumour, voxel_ml))
    lesions.sort(key=lambda lesion: lesion.volume_ml, reverse=True)
    values = sitk.GetArrayViewFromImage(image)[mask].astype(np.float64) if count else None
    pancreas_ml = None if pancreas is None else float(np.count_nonzero(sitk.GetArrayViewFromImage(pancreas))) * voxel_ml
    return Measurements(
        tumour_volume_ml=float(np.count_nonzero(mask)) * voxel_ml,
        lesions=tuple(lesions),
        pancreas_volume_ml=pancreas_ml,
        tumour_mean_intensity=None if values is None else float(values.mean()),
        tumour_median_intensity=None if values is None else float(np.median(values)),
    )
