"""Preprocessing as the original protocol runs it, step by step, and each named departure:
the size rule, resampling always and in the input's pixel type, the z-score over the voxels > 0,
intensities that survive any scale, and labels that stay aligned with their image under flips,
permutations and resampling (training uses these very functions)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import PANTHER_STATS, blob_volume
from panther_seg.errors import InputError
from panther_seg.inference.preprocessing import PreprocessingOptions, network_grid, preprocess_image, preprocess_label, protocol_size, zscore
from test_geometry import image_from, restored_storage

IF_NEEDED = PreprocessingOptions(resample="if-needed")


def test_size_is_rounded_like_the_original():
    assert protocol_size((101, 50, 7), (0.7, 1.3, 3.6), (1.1875, 1.1875, 3.0)) == (60, 55, 8)
    assert protocol_size((5, 7, 3), (0.5, 0.5, 1.0), (1.0, 1.0, 1.0)) == (2, 4, 3)  # round half to even, as Python's round
    assert protocol_size((3, 3, 3), (0.01, 1.0, 1.0), (1.0, 1.0, 1.0)) == (1, 3, 3)


def test_the_network_grid_keeps_the_inputs_origin_and_direction():
    image = image_from(blob_volume((10, 30, 40)), spacing=(0.8, 0.9, 4.0), direction=np.diag([1.0, -1.0, -1.0]))
    grid = network_grid(image, (1.1875, 1.1875, 3.0))
    assert grid.origin == image.GetOrigin() and grid.direction == image.GetDirection()
    assert grid.size == protocol_size(image.GetSize(), image.GetSpacing(), (1.1875, 1.1875, 3.0))


def test_resampling_happens_always_and_in_the_inputs_pixel_type():
    """An int16 image already at the target spacing is still resampled by B-spline and cast back to
    int16 (values like 99.999999 become 99), as the original did; "if-needed" skips it."""
    array = blob_volume((12, 40, 48))
    image = image_from(array)
    resampled = sitk.GetArrayFromImage(sitk.Resample(image, image, sitk.Transform(), sitk.sitkBSpline, 0, sitk.sitkInt16))
    assert not np.array_equal(resampled, array)  # the cast to int16 changes voxels
    assert np.array_equal(preprocess_image(image, PANTHER_STATS).volume, zscore(resampled))
    assert np.array_equal(preprocess_image(image, PANTHER_STATS, IF_NEEDED).volume, zscore(array))


def test_zscore_uses_the_voxels_above_zero():
    volume = np.array([-5.0, 0.0, 2.0, 4.0, 2.0, 4.0], dtype=np.float32)
    np.testing.assert_allclose(zscore(volume), (volume - 3.0) / (1.0 + 1e-6), rtol=1e-6)
    nonzero = volume[volume != 0]
    np.testing.assert_allclose(zscore(volume, "nonzero"), (volume - nonzero.mean()) / (nonzero.std() + 1e-6), rtol=1e-6)


def test_zscore_leaves_a_volume_without_positive_voxels_as_it_is():
    volume = np.array([-5.0, 0.0, -2.0], dtype=np.float32)
    assert np.array_equal(zscore(volume), volume)


@pytest.mark.parametrize("dtype, scale, offset", [(np.float64, 1e300, -150), (np.float64, 0.1, -150),
                                                  (np.float32, 1e30, -150), (np.int32, 1e5, -150), (np.uint16, 100, 0)])
def test_any_scale_of_an_image_gives_the_same_network_input(dtype, scale, offset):
    """Normalisation in float64 after an exact power-of-two scaling: float64 values near 1e300 do
    not overflow; the epsilon alone makes scales differ (by < 1e-4). (Scales so small that the
    epsilon would distort the z-score are refused: the test below.)"""
    array = blob_volume((10, 30, 36)).astype(np.float64) + offset
    image = image_from((array * scale).astype(dtype))
    expected = preprocess_image(image_from(array.astype(np.float32)), PANTHER_STATS, IF_NEEDED).volume
    np.testing.assert_allclose(preprocess_image(image, PANTHER_STATS, IF_NEEDED).volume, expected, atol=1e-4, rtol=0)


def test_an_intensity_spread_the_epsilon_would_distort_is_refused():
    image = image_from(blob_volume((10, 30, 36)).astype(np.float64) * 1e-8)
    with pytest.raises(InputError, match="intensity spread too small"):
        preprocess_image(image, PANTHER_STATS, source="tiny.mha")


def test_values_float32_cannot_hold_without_positive_voxels_are_refused():
    image = image_from(-np.abs(blob_volume((10, 30, 36)).astype(np.float64)) * 1e300)
    with pytest.raises(InputError, match="float32"):
        preprocess_image(image, PANTHER_STATS, source="huge.mha")


def labelled_pair(spacing, direction=np.eye(3)) -> tuple[sitk.Image, sitk.Image]:
    """A float image whose intensity encodes its label (0 background, 1 tumour, 2 pancreas)."""
    z, y, x = np.indices((14, 44, 52))
    label = np.zeros(z.shape, np.int16)
    label[(abs(y - 14) < 6) & (abs(x - 16) < 8) & (z > 3)] = 2  # off-centre in every axis
    label[(abs(y - 14) < 3) & (abs(x - 12) < 3) & (z > 5)] = 1
    intensity = 100.0 + 300.0 * (label == 2) + 600.0 * (label == 1)
    image = image_from(intensity.astype(np.float32), spacing=spacing, direction=direction)
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(image)
    return image, label_image


STORAGE, TRAINING = PreprocessingOptions(), PreprocessingOptions(orientation="training")


@pytest.mark.parametrize("options, perm, flips", [
    (STORAGE, (0, 1, 2), ()), (STORAGE, (0, 1, 2), (1,)), (STORAGE, (0, 2, 1), (0, 2)),
    (TRAINING, (0, 1, 2), (1,)), (TRAINING, (0, 2, 1), (2,)), (TRAINING, (2, 1, 0), (0, 1)), (TRAINING, (1, 2, 0), (0,)),
])
def test_labels_stay_aligned_with_their_image_under_flips_and_permutations(options, perm, flips):
    """Without interpolation to blur edges (the spacing stays the target's, in storage order
    only flips and in-plane swaps keep it) the preprocessed label equals the label read off the
    preprocessed image's intensities, voxel for voxel."""
    image, label = labelled_pair((1.1875, 1.1875, 3.0))
    image, label = restored_storage(image, perm, flips), restored_storage(label, perm, flips)
    volume = preprocess_image(image, PANTHER_STATS, options).volume
    out = preprocess_label(label, image, PANTHER_STATS, options)
    low, mid, high = np.unique(np.round(volume, 3))
    assert out.dtype == np.uint8 and out.shape == volume.shape
    assert np.array_equal(out, np.select([np.isclose(volume, high, atol=1e-3), np.isclose(volume, mid, atol=1e-3)], [1, 2], 0))


def physical_centre(mask: np.ndarray, origin, spacing, direction) -> np.ndarray:
    """Centre of mass of a (z, y, x) mask in physical coordinates (mm)."""
    index_xyz = np.argwhere(mask)[:, ::-1].mean(axis=0)
    return np.asarray(origin) + np.asarray(direction).reshape(3, 3) @ (np.asarray(spacing) * index_xyz)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, -1.0, 1.0]), np.diag([-1.0, 1.0, -1.0])])
def test_resampled_labels_stay_on_their_structure(direction):
    """With resampling, each structure's centre in the preprocessed label, in the preprocessed
    image (its brightest voxels, as many as the label marks) and in the input agree within half a
    target voxel along each axis, in physical space."""
    image, label = labelled_pair((0.9, 0.8, 3.6), direction)
    prep = preprocess_image(image, PANTHER_STATS)
    out = preprocess_label(label, image, PANTHER_STATS)
    grid = (prep.grid.origin, prep.grid.spacing, prep.grid.direction)
    source = sitk.GetArrayFromImage(label)
    geometry = (image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    for structure in ((1, 2), (1,)):
        marked = np.isin(out, structure)
        brightest = prep.volume >= np.sort(prep.volume, axis=None)[-int(marked.sum())]
        expected = physical_centre(np.isin(source, structure), *geometry)
        half_voxel = np.asarray(prep.grid.spacing) / 2
        assert np.all(np.abs(physical_centre(marked, *grid) - expected) < half_voxel)
        assert np.all(np.abs(physical_centre(brightest, *grid) - expected) < half_voxel)


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="normalise"):
        PreprocessingOptions(normalise="minmax")
