"""Measurements on analytic shapes: ellipsoids with known axes on oblique, anisotropic grids.

Volume within 1 %, diameters within one voxel diagonal (they are measured between voxel centres),
lesion count exact; the masks are written to disk and read back, as the pipeline's outputs are."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from panther_seg.reporting.measurements import measure, size_category


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


OBLIQUE = rotation("z", 25) @ rotation("x", 35)  # direction cosines of a doubly oblique acquisition
SPACING = (0.8, 0.9, 2.0)  # (x, y, z) mm: anisotropic
SIZE = (80, 70, 30)  # (x, y, z)
DIAGONAL = math.hypot(*SPACING)


def grid(direction: np.ndarray = OBLIQUE, spacing=SPACING, size=SIZE, origin=(-30.0, 40.0, 12.5)) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(direction.ravel()))
    return image


def physical(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) LPS coordinates of every voxel centre."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in size[::-1]], indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.asarray(image.GetSpacing())
    return np.asarray(image.GetOrigin()) + index @ np.asarray(image.GetDirection()).reshape(3, 3).T


def ellipsoid(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, radii) -> np.ndarray:
    """Voxels inside an ellipsoid whose semi-axes ``radii`` run along the columns of ``axes``."""
    local = (points - centre) @ axes
    return (((local / np.asarray(radii)) ** 2).sum(axis=-1) <= 1.0).astype(np.uint8)


def as_image(array: np.ndarray, reference: sitk.Image, tmp: Path, name: str) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(tmp / name), useCompression=True)
    return sitk.ReadImage(str(tmp / name))


def centre_of(image: sitk.Image, index_xyz) -> np.ndarray:
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index_xyz]))


def test_ellipsoid_on_an_oblique_anisotropic_grid(tmp_path):
    """Semi-axes 16 and 10 mm in the slice plane (rotated 30 degrees within it, so that no
    diameter runs along an index axis) and 12 mm across the slices."""
    reference = grid()
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    in_plane = direction @ rotation("z", 30)  # its columns: two in-plane axes, then the slice normal
    centre = centre_of(reference, (40, 35, 14))
    radii = (16.0, 10.0, 12.0)
    mask = ellipsoid(physical(reference), centre, in_plane, radii)
    m = measure(as_image(np.full(mask.shape, 7, np.int16), reference, tmp_path, "image.nii.gz"),
                as_image(mask, reference, tmp_path, "mask.nii.gz"))
    assert len(m.lesions) == 1
    lesion = m.lesions[0]
    truth_ml = 4 / 3 * math.pi * np.prod(radii) / 1000
    assert m.tumour_volume_ml == pytest.approx(truth_ml, rel=0.01)
    assert lesion.volume_ml == m.tumour_volume_ml
    assert abs(lesion.longest_in_plane_mm - 32.0) <= DIAGONAL
    assert abs(lesion.perpendicular_in_plane_mm - 20.0) <= DIAGONAL
    assert abs(lesion.longest_3d_mm - 32.0) <= DIAGONAL
    assert lesion.longest_in_plane_mm <= 32.0 and lesion.longest_3d_mm <= 32.0  # between voxel centres, never beyond the shape
    assert np.linalg.norm(np.asarray(lesion.centroid_lps_mm) - centre) <= DIAGONAL / 2
    assert lesion.size_category == "20-40 mm" and m.size_category == "20-40 mm"
    assert m.tumour_mean_intensity == 7.0 and m.tumour_median_intensity == 7.0
    assert m.pancreas_volume_ml is None


def test_longest_3d_diameter_across_the_slices_differs_from_the_in_plane_one(tmp_path):
    """An ellipsoid elongated across the slices (on an axis-aligned grid): the in-plane diameter
    stays the in-plane axis, the 3D diameter is the long one."""
    reference = grid(np.eye(3), spacing=(1.0, 1.0, 1.5), size=(50, 50, 60))
    centre = centre_of(reference, (25, 25, 30))
    mask = ellipsoid(physical(reference), centre, np.eye(3), (8.0, 5.0, 30.0))
    m = measure(as_image(mask.astype(np.int16), reference, tmp_path, "i.nii.gz"), as_image(mask, reference, tmp_path, "m.nii.gz"))
    lesion = m.lesions[0]
    diagonal = math.hypot(1.0, 1.0, 1.5)
    assert abs(lesion.longest_in_plane_mm - 16.0) <= diagonal
    assert abs(lesion.perpendicular_in_plane_mm - 10.0) <= diagonal
    assert abs(lesion.longest_3d_mm - 60.0) <= diagonal
    assert lesion.size_category == "<=20 mm"


def test_two_lesions_with_known_axes_and_the_pancreas(tmp_path):
    reference = grid()
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    points = physical(reference)
    big_centre, small_centre = centre_of(reference, (22, 30, 14)), centre_of(reference, (62, 40, 15))
    big = ellipsoid(points, big_centre, direction, (14.0, 9.0, 9.0))
    small = ellipsoid(points, small_centre, direction @ rotation("z", -40), (8.0, 5.0, 7.0))
    assert not np.any(big & small)
    tumour = big | small
    pancreas = ellipsoid(points, centre_of(reference, (40, 35, 14)), direction, (30.0, 20.0, 20.0))
    intensities = np.where(big > 0, 100, 300).astype(np.int16)
    m = measure(as_image(intensities, reference, tmp_path, "i.nii.gz"), as_image(tumour, reference, tmp_path, "t.nii.gz"),
                as_image(pancreas, reference, tmp_path, "p.nii.gz"))
    assert len(m.lesions) == 2
    first, second = m.lesions  # largest first
    for lesion, radii, centre in ((first, (14.0, 9.0, 9.0), big_centre), (second, (8.0, 5.0, 7.0), small_centre)):
        assert lesion.volume_ml == pytest.approx(4 / 3 * math.pi * np.prod(radii) / 1000, rel=0.01)
        assert abs(lesion.longest_in_plane_mm - 2 * radii[0]) <= DIAGONAL
        assert abs(lesion.perpendicular_in_plane_mm - 2 * radii[1]) <= DIAGONAL
        assert abs(lesion.longest_3d_mm - 2 * max(radii)) <= DIAGONAL
        assert np.linalg.norm(np.asarray(lesion.centroid_lps_mm) - centre) <= DIAGONAL / 2
    assert m.tumour_volume_ml == pytest.approx(first.volume_ml + second.volume_ml)
    assert m.longest_diameter_mm == first.longest_in_plane_mm
    assert m.pancreas_volume_ml == pytest.approx(4 / 3 * math.pi * 30 * 20 * 20 / 1000, rel=0.01)
    count_big, count_small = int(big.sum()), int(small.sum())
    assert m.tumour_mean_intensity == pytest.approx((100 * count_big + 300 * count_small) / (count_big + count_small))
    assert m.tumour_median_intensity == 100.0  # most tumour voxels are the big lesion's


def test_lesions_are_face_connected_components(tmp_path):
    """Two voxels that share only an edge are two lesions, as the post-processing counts them."""
    reference = grid(np.eye(3), spacing=(1.0, 1.0, 1.0), size=(6, 6, 6))
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2, 2, 2] = mask[2, 3, 3] = 1  # edge neighbours
    mask[4, 1, 1] = mask[4, 1, 2] = 1  # face neighbours: one lesion
    m = measure(as_image(mask.astype(np.int16), reference, tmp_path, "i.nii.gz"), as_image(mask, reference, tmp_path, "m.nii.gz"))
    assert len(m.lesions) == 3
    assert m.lesions[0].volume_ml == pytest.approx(0.002)
    assert m.lesions[0].longest_in_plane_mm == pytest.approx(1.0)


def test_no_tumour():
    reference = grid(np.eye(3), size=(8, 8, 4))
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    m = measure(reference, mask, mask)
    assert m.lesions == () and m.tumour_volume_ml == 0.0 and m.pancreas_volume_ml == 0.0
    assert m.tumour_mean_intensity is None and m.longest_diameter_mm is None and m.size_category is None


@pytest.mark.parametrize("mm, category", [(0.0, "<=20 mm"), (20.0, "<=20 mm"), (20.01, "20-40 mm"), (40.0, "20-40 mm"), (40.5, ">40 mm")])
def test_size_categories_follow_the_ajcc_cutoffs(mm, category):
    assert size_category(mm) == category
