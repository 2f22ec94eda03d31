"""The per-case confidence from the 8 mirrorings: it changes no mask (bit for bit), its figures
are each mirroring's thresholded mask against the final mask, it is never invented without
mirroring, and --save-uncertainty writes the per-voxel disagreement on the input grid."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import PANTHER_STATS, blob_volume, write_image
from panther_seg.cli import main
from panther_seg.config import REVIEW_MEAN_DICE, TUMOUR_THRESHOLD
from panther_seg.contract.checkpoint import load_checkpoint
from panther_seg.contract.resources import Resources
from panther_seg.dice import dice
from panther_seg.inference.confidence import MirrorVotes, disagreement, mirror_confidence
from panther_seg.inference.geometry import to_input_grid
from panther_seg.inference.pipeline import Segmenter
from panther_seg.inference.postprocessing import postprocess
from panther_seg.inference.preprocessing import preprocess_image
from panther_seg.inference.sliding_window import InferenceSettings, predict_probabilities
from panther_seg.results import Extras


def small_image() -> sitk.Image:
    image = sitk.GetImageFromArray(blob_volume((24, 48, 52), seed=5))
    image.SetSpacing((1.1875, 1.1875, 3.0))
    return image


@pytest.fixture(scope="module")
def segmenter(tiny_window_checkpoint) -> Segmenter:
    loaded = load_checkpoint(tiny_window_checkpoint)
    return Segmenter(Resources([loaded], PANTHER_STATS, [tiny_window_checkpoint], "test"), InferenceSettings(),
                     extras=Extras(uncertainty=True))


def test_mirroring_record_changes_no_mask_and_its_figures_are_the_mirrorings_dice(segmenter):
    image = small_image()
    prep = preprocess_image(image, PANTHER_STATS)
    volume = torch.from_numpy(prep.volume)
    seen: list[torch.Tensor] = []
    votes = MirrorVotes(segmenter.contract.tumour_class)

    def hook(logits: list[torch.Tensor]) -> None:
        seen.append(logits[0].clone())
        votes.record(logits)

    plain = predict_probabilities(segmenter.models, volume, segmenter.settings)
    recorded = predict_probabilities(segmenter.models, volume, segmenter.settings, hook)
    assert torch.equal(plain, recorded)  # bit for bit

    out = segmenter.segment(image)
    tumour, pancreas = plain[segmenter.contract.tumour_class].numpy(), plain[segmenter.contract.pancreas_class].numpy()
    final = postprocess(tumour, pancreas, prep.grid.spacing[::-1])
    without = to_input_grid(final, prep.grid, image)
    assert np.array_equal(sitk.GetArrayViewFromImage(out.tumour), sitk.GetArrayViewFromImage(without))
    assert 0 < final.sum() < final.size  # the comparison means something

    assert len(seen) == len(votes) == 8
    own = [torch.softmax(logits[0], dim=0)[segmenter.contract.tumour_class].numpy() >= TUMOUR_THRESHOLD for logits in seen]
    scores = [float(dice(mask, final.astype(bool))) for mask in own]
    assert len({round(s, 9) for s in scores}) > 1  # the mirrorings do differ
    c = out.confidence
    assert c.computed and c.mirrorings == 8
    assert c.mean_dice == pytest.approx(np.mean(scores)) and c.min_dice == pytest.approx(min(scores))
    voxel_ml = float(np.prod(prep.grid.spacing)) / 1000
    assert c.volume_ml_min == pytest.approx(min(m.sum() for m in own) * voxel_ml)
    assert c.volume_ml_max == pytest.approx(max(m.sum() for m in own) * voxel_ml)
    assert c.review == (c.mean_dice < REVIEW_MEAN_DICE)

    count = sum((m != final.astype(bool)).astype(np.uint8) for m in own)
    assert np.array_equal(disagreement(votes, final), count)
    fraction = out.uncertainty
    assert fraction.GetSize() == image.GetSize() and fraction.GetPixelID() == sitk.sitkFloat32
    expected = sitk.GetArrayFromImage(to_input_grid(count, prep.grid, image)) / 8.0
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(fraction), expected.astype(np.float32))
    assert 0 < expected.max() <= 1

    m = out.measurements
    assert m.tumour_volume_ml == pytest.approx(np.count_nonzero(sitk.GetArrayViewFromImage(out.tumour)) * np.prod(image.GetSpacing()) / 1000)
    assert len(m.lesions) >= 1 and m.pancreas_volume_ml is not None


def test_no_confidence_is_invented_without_mirroring(segmenter):
    fast = Segmenter(segmenter.resources, replace(segmenter.settings, mirror_axes=()), extras=Extras(uncertainty=True))
    out = fast.segment(small_image())
    c = out.confidence
    assert not c.computed and c.mirrorings == 1 and "no mirroring" in c.reason
    assert (c.mean_dice, c.min_dice, c.volume_ml_min, c.volume_ml_max, c.review) == (None,) * 5
    assert out.uncertainty is None
    assert out.measurements is not None


def test_save_uncertainty_on_the_command_line(tiny_window_checkpoint, tmp_path, capsys):
    src = tmp_path / "in" / "case1.nii.gz"
    write_image(src, blob_volume((24, 48, 52), seed=5))
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_window_checkpoint),
                 "--device", "cpu", "--save-uncertainty"]) == 0
    written = sitk.ReadImage(str(tmp_path / "out" / "case1_uncertainty.nii.gz"))
    values = np.unique(sitk.GetArrayViewFromImage(written))
    assert set((values * 8).round(6)) <= set(range(9)) and values.max() > 0
    with pytest.raises(SystemExit) as exit_:
        main(["-i", str(src), "-o", str(tmp_path / "fast"), "--fast", "--save-uncertainty"])
    assert exit_.value.code == 2
    assert "--save-uncertainty needs the mirrorings" in capsys.readouterr().err
    assert not (tmp_path / "fast").exists()


def votes_of(masks: list[np.ndarray]) -> MirrorVotes:
    """Recorded mirrorings whose tumour probability is 1 inside each mask, 0 outside."""
    votes = MirrorVotes(tumour_class=1)
    for mask in masks:
        logits = torch.zeros((1, 3) + mask.shape)
        logits[0, 1][torch.from_numpy(mask)] = 20.0
        logits[0, 0][torch.from_numpy(~mask)] = 20.0
        votes.record([logits])
    return votes


def test_confidence_figures_and_the_review_rule():
    final = np.zeros((10, 12, 14), bool)
    final[2:6, 3:9, 4:10] = True  # 144 voxels
    shifted = np.roll(final, 2, axis=2)  # 96 of them shared
    c = mirror_confidence(votes_of([final] * 6 + [shifted, np.zeros_like(final)]), final.astype(np.uint8), voxel_ml=0.5)
    assert c.computed and c.mirrorings == 8
    assert c.mean_dice == pytest.approx((6 * 1.0 + 96 / 144 + 0.0) / 8) and c.min_dice == 0.0
    assert (c.volume_ml_min, c.volume_ml_max) == (0.0, 72.0)
    assert c.review is True and c.reason == f"mean mirrored Dice 0.833 < {REVIEW_MEAN_DICE}"
    good = mirror_confidence(votes_of([final] * 7 + [shifted]), final.astype(np.uint8), 0.5)
    assert good.mean_dice == pytest.approx((7 + 2 / 3) / 8) and good.review is False and good.reason == ""
    empty = np.zeros_like(final)
    missed = mirror_confidence(votes_of([empty] * 8), empty.astype(np.uint8), 0.5)
    assert missed.mean_dice == 1.0 and missed.review is True and "no tumour found" in missed.reason
