"""Masks land exactly on the input grid whatever its orientation, spacing or size; with the
"training" orientation option, the same physical image stored flipped or permuted gives the
correspondingly flipped or permuted mask."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import PANTHER_STATS, blob_volume
from panther_seg.contract.checkpoint import load_checkpoint
from panther_seg.inference.geometry import closest_reorientation, reorient
from panther_seg.inference.pipeline import Segmenter
from panther_seg.inference.preprocessing import PreprocessingOptions, preprocess_image
from panther_seg.contract.resources import Resources
from panther_seg.inference.sliding_window import InferenceSettings

TRAINING_ORIENTATION = PreprocessingOptions(orientation="training")


@pytest.fixture(scope="module")
def segmenter(tiny_window_checkpoint) -> Segmenter:
    loaded = load_checkpoint(tiny_window_checkpoint)
    return Segmenter(Resources([loaded], PANTHER_STATS, [tiny_window_checkpoint], "test"), InferenceSettings(mirror_axes=(), overlap=0.25))


@pytest.fixture(scope="module")
def reorienting_segmenter(segmenter) -> Segmenter:
    return Segmenter(segmenter.resources, segmenter.settings, TRAINING_ORIENTATION)


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
    mask = segmenter.segment(image).tumour
    assert_same_grid(mask, image)
    assert mask.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(mask)
    assert set(np.unique(array)) <= {0, 1}
    return array


@pytest.mark.parametrize("perm, flips", [((0, 1, 2), (2,)), ((0, 1, 2), (0, 1)), ((1, 0, 2), ()), ((2, 1, 0), (0, 2))])
def test_with_the_training_orientation_flipped_or_permuted_storage_gives_the_flipped_or_permuted_mask(reorienting_segmenter, perm, flips):
    image = image_from(blob_volume((24, 70, 90)))
    reference = mask_array(reorienting_segmenter, image)
    assert 0 < reference.sum() < reference.size  # the check below means something
    stored = restored_storage(image, perm, flips)
    assert np.array_equal(preprocess_image(stored, PANTHER_STATS, TRAINING_ORIENTATION).volume,
                          preprocess_image(image, PANTHER_STATS, TRAINING_ORIENTATION).volume)
    expected = np.flip(np.transpose(reference, perm), flips)
    assert np.array_equal(mask_array(reorienting_segmenter, stored), expected)


@pytest.mark.parametrize("degrees", [20, 45, 70])
def test_oblique_input_gets_a_mask_on_its_own_grid(segmenter, reorienting_segmenter, degrees):
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image = image_from(blob_volume((20, 64, 80)), direction=rotation)
    prep = preprocess_image(image, PANTHER_STATS)
    assert prep.grid.direction == image.GetDirection()  # the original protocol keeps the direction
    assert mask_array(segmenter, image).sum() > 0
    assert mask_array(reorienting_segmenter, image).sum() > 0


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 4.5), (1.3125, 0.694, 3.5), (2.0, 2.0, 2.0)])
def test_anisotropic_and_unusual_spacings_map_back_exactly(segmenter, spacing):
    image = image_from(blob_volume((18, 60, 70)), spacing=spacing)
    prep = preprocess_image(image, PANTHER_STATS)
    assert prep.grid.spacing == (1.1875, 1.1875, 3.0) and prep.grid.origin == image.GetOrigin()
    expected = np.round(np.array(image.GetSize()) * np.array(spacing) / np.array(prep.grid.spacing))
    assert tuple(int(v) for v in expected) == prep.grid.size == prep.volume.shape[::-1]
    mask_array(segmenter, image)


@pytest.mark.parametrize("shape", [(5, 40, 50), (40, 30, 250), (3, 12, 100)])
def test_images_smaller_than_the_window_along_an_axis(segmenter, shape):
    mask_array(segmenter, image_from(blob_volume(shape)))


def test_reorientation_recognises_signed_permutations():
    d = np.array([[0, 0, -1.0], [1.0, 0, 0], [0, 1.0, 0]])
    r = closest_reorientation(d, np.eye(3))
    assert r.perm == (2, 0, 1) and r.flip == (True, False, False)
    image = image_from(np.arange(24, dtype=np.int16).reshape(2, 3, 4), direction=d)
    oriented = reorient(image, np.eye(3))
    assert np.allclose(np.asarray(oriented.GetDirection()).reshape(3, 3), np.eye(3))
    for index in ((0, 0, 0), (1, 3, 2), (0, 2, 1)):
        point = oriented.TransformIndexToPhysicalPoint(index)
        assert oriented[index] == image[image.TransformPhysicalPointToIndex(point)]
