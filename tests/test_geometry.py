"""Masks land exactly on the input grid whatever its orientation, spacing or size, and the same
physical image stored flipped or permuted gives the correspondingly flipped mask."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import PANTHER_STATS, blob_volume
from panther_seg.checkpoint import load_checkpoint
from panther_seg.geometry import closest_reorientation, reorient
from panther_seg.pipeline import Segmenter
from panther_seg.preprocessing import preprocess_image, preprocess_label
from panther_seg.resources import Resources
from panther_seg.sliding_window import InferenceSettings


@pytest.fixture(scope="module")
def segmenter(small_checkpoint) -> Segmenter:
    loaded = load_checkpoint(small_checkpoint)
    return Segmenter(Resources(loaded, PANTHER_STATS, small_checkpoint, "test"), InferenceSettings(mirror_axes=(), overlap=0.25))


def image_from(array: np.ndarray, spacing=(1.1875, 1.1875, 3.0), origin=(10.0, -20.0, 30.0), direction=np.eye(3)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    return image


def restored_storage(image: sitk.Image, perm_zyx: tuple[int, int, int], flips_zyx: tuple[int, ...]) -> sitk.Image:
    """The same physical image with its array axes permuted and flipped (header adjusted)."""
    array = sitk.GetArrayFromImage(image)
    new = np.flip(np.transpose(array, perm_zyx), flips_zyx).copy()
    index_perm = [2 - perm_zyx[2 - i] for i in range(3)]  # output index axis i <- input index axis
    flips_idx = {2 - a for a in flips_zyx}
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    sp = image.GetSpacing()
    first = [0, 0, 0]
    for i in range(3):
        if i in flips_idx:
            first[index_perm[i]] = image.GetSize()[index_perm[i]] - 1
    out = sitk.GetImageFromArray(new)
    out.SetSpacing([sp[index_perm[i]] for i in range(3)])
    out.SetDirection(tuple(np.stack([d[:, index_perm[i]] * (-1 if i in flips_idx else 1) for i in range(3)], 1).ravel()))
    out.SetOrigin(image.TransformIndexToPhysicalPoint(first))
    return out


def assert_same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == b.GetSpacing()
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetDirection() == b.GetDirection()


def mask_array(segmenter: Segmenter, image: sitk.Image) -> np.ndarray:
    mask = segmenter.segment(image)
    assert_same_grid(mask, image)
    assert mask.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(mask)
    assert set(np.unique(array)) <= {0, 1}
    return array


@pytest.mark.parametrize("perm, flips", [((0, 1, 2), (2,)), ((0, 1, 2), (0, 1)), ((1, 0, 2), ()), ((2, 1, 0), (0, 2))])
def test_flipped_or_permuted_storage_gives_the_flipped_or_permuted_mask(segmenter, perm, flips):
    image = image_from(blob_volume((24, 70, 90)))
    reference = mask_array(segmenter, image)
    assert 0 < reference.sum() < reference.size  # the check below means something
    stored = restored_storage(image, perm, flips)
    assert np.array_equal(preprocess_image(stored, PANTHER_STATS).volume, preprocess_image(image, PANTHER_STATS).volume)
    expected = np.flip(np.transpose(reference, perm), flips)
    assert np.array_equal(mask_array(segmenter, stored), expected)


def test_oblique_input_gets_a_mask_on_its_own_grid(segmenter):
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image = image_from(blob_volume((20, 64, 80)), direction=rotation)
    prep = preprocess_image(image, PANTHER_STATS)
    assert prep.resampled and np.allclose(np.asarray(prep.grid.direction).reshape(3, 3), np.eye(3))
    assert mask_array(segmenter, image).sum() > 0


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 4.5), (1.3125, 0.694, 3.5), (2.0, 2.0, 2.0)])
def test_anisotropic_and_unusual_spacings_map_back_exactly(segmenter, spacing):
    image = image_from(blob_volume((18, 60, 70)), spacing=spacing)
    prep = preprocess_image(image, PANTHER_STATS)
    assert prep.resampled and prep.grid.spacing == (1.1875, 1.1875, 3.0)
    expected = np.round(np.array(image.GetSize()) * np.array(spacing) / np.array(prep.grid.spacing))
    assert tuple(int(v) for v in expected) == prep.grid.size
    mask_array(segmenter, image)


@pytest.mark.parametrize("shape", [(5, 40, 50), (40, 30, 250), (1 + 2, 12, 300)])
def test_images_smaller_than_the_window_along_an_axis(segmenter, shape):
    mask_array(segmenter, image_from(blob_volume(shape)))


def test_integer_and_float_pixel_types_give_the_same_mask(segmenter):
    array = blob_volume((16, 48, 64))
    as_int = mask_array(segmenter, image_from(array))
    as_float = mask_array(segmenter, image_from(array.astype(np.float32)))
    assert np.array_equal(as_int, as_float)


def test_reorientation_recognises_signed_permutations():
    d = np.array([[0, 0, -1.0], [1.0, 0, 0], [0, 1.0, 0]])
    r = closest_reorientation(d, np.eye(3))
    assert r.perm == (2, 0, 1) and r.flip == (True, False, False)
    image = image_from(np.arange(24, dtype=np.int16).reshape(2, 3, 4), direction=d)
    oriented, _ = reorient(image, np.eye(3))
    assert np.allclose(np.asarray(oriented.GetDirection()).reshape(3, 3), np.eye(3))
    for index in ((0, 0, 0), (1, 3, 2), (0, 2, 1)):
        point = oriented.TransformIndexToPhysicalPoint(index)
        assert oriented[index] == image[image.TransformPhysicalPointToIndex(point)]


def test_label_preprocessing_matches_the_image_grid():
    array = blob_volume((12, 40, 50))
    image = image_from(array, spacing=(0.9, 0.9, 4.0), direction=np.diag([1.0, -1.0, 1.0]))
    label = sitk.GetImageFromArray(((array > 250).astype(np.int16) * 2 - (array < 170)).astype(np.int16))
    label.CopyInformation(image)
    prep = preprocess_image(image, PANTHER_STATS)
    out = preprocess_label(label, image, PANTHER_STATS)
    assert out.shape == prep.volume.shape and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 2} and (out == 2).any()
