"""Ensembles: several checkpoints of one network run as one model, their softmax probabilities
averaged before post-processing, every window read and mirrored once for all members; members
that disagree are refused in one line; a resources folder holds an ensemble, each member listed
in its SHA-256 sums."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import PANTHER_STATS, SMALL_CONFIG, TINY_WINDOW, blob_volume, small_model, write_image
from test_sliding_window import naive_logits
from panther_seg.network import SegFormer3D
from panther_seg.contract.checkpoint import ModelContract, save_resource
from panther_seg.cli import main
from panther_seg.errors import InputError
from panther_seg.inference.preprocessing import PreprocessingOptions
from panther_seg.contract.resources import bake, resolve_resources
from panther_seg.inference.sliding_window import InferenceSettings, predict_probabilities
from panther_seg.contract.stats import NormalisationStats

SETTINGS = InferenceSettings(window=TINY_WINDOW, overlap=0.5, mirror_axes=(0, 2))
VOLUME = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 44, 36)).astype(np.float32))


class Recording:
    """A member that records the windows it is given."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return self.model.predict(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def test_the_ensemble_averages_the_members_softmax_probabilities():
    """Against an independent oracle: each member's logits from the naive sliding-window loop,
    softmax in NumPy, averaged."""
    a, b = small_model(1), small_model(2, bias=(0.0, 0.1, 0.3))
    both = predict_probabilities([a, b], VOLUME, SETTINGS).numpy()
    with torch.no_grad():
        single = [softmax(naive_logits(m, VOLUME.numpy(), TINY_WINDOW, SETTINGS.overlap, SETTINGS.mirror_axes)) for m in (a, b)]
    np.testing.assert_allclose(both, (single[0] + single[1]) / 2, atol=2e-5)
    assert np.abs(single[0] - single[1]).max() > 1e-3  # the members do differ
    np.testing.assert_allclose(predict_probabilities([a], VOLUME, SETTINGS).numpy(), single[0], atol=2e-5)


def test_members_share_every_window():
    a, b = Recording(small_model(1)), Recording(small_model(2))
    predict_probabilities([a, b], VOLUME, SETTINGS)
    windows_per_pass = 2 * 2 * 2  # 40, 44, 36 voxels, a 32^3 window moving by 16
    assert len(a.seen) == len(b.seen) == windows_per_pass * 4  # 4 mirrorings of (z, x)
    assert all(x is y for x, y in zip(a.seen, b.seen))  # the very same window tensor, read once


def save(path, model, contract=ModelContract(window=TINY_WINDOW), stats=PANTHER_STATS, config=SMALL_CONFIG):
    save_resource(path, model, config, stats, contract)
    return path


def test_two_identical_checkpoints_give_the_single_models_mask(tmp_path, tiny_window_checkpoint, capsys):
    image = tmp_path / "case.nii.gz"
    write_image(image, blob_volume((40, 60, 64)))
    twin = shutil.copy(tiny_window_checkpoint, tmp_path / "twin.pt")
    common = ["-i", str(image), "--fast", "--device", "cpu"]
    assert main([*common, "-o", str(tmp_path / "one.nii.gz"), "--checkpoint", str(tiny_window_checkpoint)]) == 0
    assert main([*common, "-o", str(tmp_path / "two.nii.gz"), "--checkpoint", str(tiny_window_checkpoint), "--checkpoint", str(twin)]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    one, two = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / n))) for n in ("one.nii.gz", "two.nii.gz"))
    assert one.any() and np.array_equal(one, two)


@pytest.mark.parametrize("change, what", [
    (dict(config={**SMALL_CONFIG, "decoder_C": 8}), "network configuration"),
    (dict(contract=ModelContract(window=(32, 64, 64))), "window"),
    (dict(contract=ModelContract(window=TINY_WINDOW, preprocessing=PreprocessingOptions(normalise="nonzero"))), "preprocessing"),
    (dict(stats=NormalisationStats((1.0, 1.0, 3.0), (1.0, 1.0, 3.0), (320.0, 260.0, 72.0))), "statistics"),
])
def test_members_that_disagree_are_refused_in_one_line(tmp_path, change, what):
    first = save(tmp_path / "a.pt", small_model(1))
    config = change.get("config", SMALL_CONFIG)
    other = save(tmp_path / "b.pt", SegFormer3D(**config), change.get("contract", ModelContract(window=TINY_WINDOW)),
                 change.get("stats", PANTHER_STATS), config)
    with pytest.raises(InputError) as e:
        resolve_resources([first, other])
    assert str(e.value).startswith(f"{other}: ensemble member differs from a.pt in its {what}: ") and "\n" not in str(e.value)


def test_a_resources_folder_holds_an_ensemble_each_member_verified(tmp_path):
    members = [save(tmp_path / f"fold{k}.pt", small_model(k)) for k in range(3)]
    folder = tmp_path / "resources"
    assert [p.name for p in bake(members, None, folder)] == ["fold0.pt", "fold1.pt", "fold2.pt"]
    found = resolve_resources(model_dir=tmp_path / "none", resources_dir=folder)
    assert [p.name for p in found.checkpoint_paths] == ["fold0.pt", "fold1.pt", "fold2.pt"] and len(found.members) == 3
    shutil.copy(members[0], folder / "stray.pt")  # a checkpoint the sums do not list
    with pytest.raises(InputError, match="SHA256SUMS: does not list stray.pt"):
        resolve_resources(model_dir=tmp_path / "none", resources_dir=folder)


def test_baking_replaces_the_whole_ensemble(tmp_path):
    folder = tmp_path / "resources"
    bake([save(tmp_path / f"fold{k}.pt", small_model(k)) for k in range(3)], None, folder)
    bake([save(tmp_path / "single.pt", small_model(5))], None, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "single.pt"]
