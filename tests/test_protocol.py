"""The pipeline computes the original protocol: on cases spanning 3 or more windows per axis, with
non-positive voxels, integer and float input, a flipped direction and a volume thinner than the
window, its mask equals, voxel for voxel, the mask of the literal implementation of
docs/protocol.md (panther_seg/tools/reference_protocol.py), and its network input and probabilities agree
within 1e-5 (float32 rounding: the pipeline normalises in float64, batches windows, and
post-processes inside a bounding box)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import PANTHER_STATS, SMALL_CONFIG, TINY_WINDOW, blob_volume, small_model
from panther_seg.contract.checkpoint import ModelContract, load_checkpoint, save_resource
from panther_seg.inference.pipeline import Segmenter
from panther_seg.inference.preprocessing import preprocess_image
from panther_seg.tools.reference_protocol import reference_segment
from panther_seg.contract.resources import Resources
from panther_seg.inference.sliding_window import InferenceSettings, predict_probabilities

TOLERANCE = 1e-5
FLIP_XZ = np.diag([-1.0, 1.0, -1.0])


def image_from(array: np.ndarray, spacing, direction=np.eye(3), origin=(12.5, -40.0, 7.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    return image


CASES = {
    "int16, non-positive voxels, resampled": lambda: image_from(blob_volume((52, 56, 60), seed=1) - 200, (1.25, 1.25, 3.0)),
    "float32, spacing already the target": lambda: image_from(blob_volume((50, 60, 64), seed=2).astype(np.float32) / 7, (1.1875, 1.1875, 3.0)),
    "float64, flipped direction, anisotropic": lambda: image_from(blob_volume((42, 70, 58), seed=3).astype(np.float64) - 150.5, (1.0, 1.3, 3.6), FLIP_XZ),
    "uint8, thinner than the window in z": lambda: image_from((blob_volume((20, 64, 72), seed=4) - 100).clip(0, 255).astype(np.uint8), (1.1875, 1.1875, 3.0)),
}


@pytest.fixture(scope="module")
def segmenter(tiny_window_checkpoint) -> Segmenter:
    loaded = load_checkpoint(tiny_window_checkpoint)
    return Segmenter(Resources([loaded], PANTHER_STATS, [tiny_window_checkpoint], "test"), InferenceSettings())


def windows_per_axis(shape: tuple[int, ...], window=TINY_WINDOW, overlap: float = 0.5) -> list[int]:
    counts = []
    for n, w in zip(shape, window):
        step = int(w * (1 - overlap))
        counts.append(1 if n <= w else next(d for d in range(n) if d * step + w >= n) + 1)
    return counts


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_equals_the_literal_protocol(segmenter, case):
    image = CASES[case]()
    reference = reference_segment(image, segmenter.models[0].predict, PANTHER_STATS, TINY_WINDOW)
    prep = preprocess_image(image, PANTHER_STATS)
    assert prep.volume.shape == reference.volume.shape
    np.testing.assert_allclose(prep.volume, reference.volume, atol=TOLERANCE, rtol=0)
    probabilities = predict_probabilities(segmenter.models, torch.from_numpy(prep.volume), segmenter.settings).numpy()
    np.testing.assert_allclose(probabilities, reference.probabilities, atol=TOLERANCE, rtol=0)
    mask = segmenter.segment(image).tumour
    for attribute in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(mask, attribute)() == getattr(image, attribute)()
    assert np.array_equal(sitk.GetArrayViewFromImage(mask), sitk.GetArrayViewFromImage(reference.mask))
    # the comparison means something: a non-empty mask that is not everything
    assert 0 < reference.network_mask.sum() < reference.network_mask.size
    if "thinner" not in case:
        assert min(windows_per_axis(prep.volume.shape)) >= 3


def test_windows_batched_together_give_the_same_mask(segmenter):
    image = CASES["int16, non-positive voxels, resampled"]()
    batched = Segmenter(segmenter.resources, replace(segmenter.settings, batch_size=5))
    assert np.array_equal(sitk.GetArrayViewFromImage(batched.segment(image).tumour), sitk.GetArrayViewFromImage(segmenter.segment(image).tumour))


def test_the_network_sees_the_array_in_storage_order(segmenter):
    """The direction matrix is not used: a scan stored with flipped axes is fed as stored (the
    original weights saw arrays in storage order), so its mask is not simply the flipped mask.
    (float32: resampling an integer image truncates B-spline values like 99.999999 to 99, which
    is not symmetric under flips.)"""
    array = blob_volume((50, 60, 64), seed=2).astype(np.float32)
    image = image_from(array, (1.1875, 1.1875, 3.0))
    flipped = image_from(np.ascontiguousarray(array[:, ::-1, ::-1]), (1.1875, 1.1875, 3.0), np.diag([-1.0, -1.0, 1.0]))
    prep, prep_flipped = preprocess_image(image, PANTHER_STATS), preprocess_image(flipped, PANTHER_STATS)
    np.testing.assert_allclose(prep_flipped.volume, prep.volume[:, ::-1, ::-1], atol=TOLERANCE)


def test_the_classes_recorded_in_the_checkpoint_are_the_ones_post_processed(segmenter, tmp_path):
    """Weights recorded with tumour and pancreas swapped give the mask the original protocol
    computes from the network's outputs with those two channels swapped."""
    model = small_model(3, bias=(0.0, 0.3, 0.6))
    swapped = ModelContract(window=TINY_WINDOW, class_names=("background", "pancreas", "tumour"), tumour_class=2, pancreas_class=1)
    save_resource(tmp_path / "swapped.pt", model, SMALL_CONFIG, PANTHER_STATS, swapped)
    loaded = load_checkpoint(tmp_path / "swapped.pt")
    image = CASES["float32, spacing already the target"]()
    mask = Segmenter(Resources([loaded], PANTHER_STATS, [tmp_path / "swapped.pt"], "test"), segmenter.settings).segment(image).tumour
    as_recorded = reference_segment(image, lambda x: model.predict(x)[:, [0, 2, 1]], PANTHER_STATS, TINY_WINDOW)
    as_if_default = reference_segment(image, model.predict, PANTHER_STATS, TINY_WINDOW)
    assert as_recorded.network_mask.any() and not np.array_equal(as_recorded.network_mask, as_if_default.network_mask)
    assert np.array_equal(sitk.GetArrayViewFromImage(mask), sitk.GetArrayViewFromImage(as_recorded.mask))
