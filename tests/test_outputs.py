"""Optional outputs (--save-probabilities, --save-pancreas) and the -i/-o command line: named
like nnU-Net's outputs, each on exactly the input's grid, the tumour mask being the post-processed
probability map, and a case gets all its outputs or none."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import PANTHER_STATS, SMALL_CONFIG, TINY_WINDOW, blob_volume, gc_input, small_model, write_image
from panther_seg.contract.checkpoint import ModelContract, save_resource
from panther_seg.io import outputs
from panther_seg.cli import main
from panther_seg.config import PANCREAS_THRESHOLD
from panther_seg.errors import InputError
from panther_seg.inference.postprocessing import postprocess

EXTRAS = ["--save-probabilities", "--save-pancreas"]


def read(path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return all(getattr(a, g)() == getattr(b, g)() for g in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"))


@pytest.fixture(scope="module")
def both_classes(tmp_path_factory):
    """The small network, biased to predict both tumour and pancreas in places."""
    path = tmp_path_factory.mktemp("ckpt") / "both.pt"
    save_resource(path, small_model(3, bias=(0.0, 0.3, 0.6)), SMALL_CONFIG, PANTHER_STATS, ModelContract(window=TINY_WINDOW))
    return path


def test_batch_outputs_are_named_like_nnunet_and_the_mask_is_the_post_processed_probabilities(tmp_path, both_classes, capsys):
    """At the target spacing the network grid is the input's grid: post-processing the saved
    probability maps gives the saved mask exactly, and the pancreas mask is the pancreas map >= 0.5."""
    src = tmp_path / "in" / "case7.nii.gz"
    image = write_image(src, blob_volume((40, 60, 64)).astype("float32") / 7, spacing=(1.1875, 1.1875, 3.0))
    assert main(["-i", str(src.parent), "-o", str(tmp_path / "out"), "--checkpoint", str(both_classes), "--no-tta", *EXTRAS]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["case7.nii.gz", "case7_pancreas.nii.gz", "case7_pancreas_probability.nii.gz", "case7_tumour_probability.nii.gz"]
    mask, mask_array = read(tmp_path / "out" / "case7.nii.gz")
    tumour, tumour_p = read(tmp_path / "out" / "case7_tumour_probability.nii.gz")
    pancreas, pancreas_p = read(tmp_path / "out" / "case7_pancreas_probability.nii.gz")
    pancreas_mask, pancreas_array = read(tmp_path / "out" / "case7_pancreas.nii.gz")
    for out in (mask, tumour, pancreas, pancreas_mask):
        assert same_grid(out, image)
    assert tumour.GetPixelID() == pancreas.GetPixelID() == sitk.sitkFloat32
    assert mask.GetPixelID() == pancreas_mask.GetPixelID() == sitk.sitkUInt8
    assert 0 <= tumour_p.min() and tumour_p.max() <= 1 and np.all(tumour_p + pancreas_p <= 1 + 1e-6)
    assert mask_array.any() and pancreas_array.any()
    assert np.array_equal(postprocess(tumour_p, pancreas_p, image.GetSpacing()[::-1]), mask_array)
    assert np.array_equal(pancreas_array, (pancreas_p >= PANCREAS_THRESHOLD).astype(np.uint8))


def test_probabilities_of_a_resampled_case_lie_on_the_input_grid(tmp_path, tiny_window_checkpoint):
    src = tmp_path / "scan.mha"
    image = write_image(src, blob_volume((20, 50, 60)), spacing=(0.9, 1.4, 3.6), direction=np.diag([1.0, -1.0, 1.0]))
    assert main(["-i", str(src), "-o", str(tmp_path / "seg.mha"), "--checkpoint", str(tiny_window_checkpoint), "--fast", *EXTRAS]) == 0
    for name in ("seg.mha", "seg_pancreas.mha", "seg_tumour_probability.mha", "seg_pancreas_probability.mha"):
        assert same_grid(sitk.ReadImage(str(tmp_path / name)), image), name


def test_grand_challenge_mode_writes_the_optional_outputs_only_when_asked(tmp_path, tiny_window_checkpoint):
    inp = gc_input(tmp_path / "input", blob_volume((20, 50, 60)))
    assert main(["--input-root", str(inp), "--output-root", str(tmp_path / "plain"), "--checkpoint", str(tiny_window_checkpoint), "--fast"]) == 0
    assert [p.relative_to(tmp_path / "plain").as_posix() for p in (tmp_path / "plain").rglob("*.mha")] == [
        "images/pancreatic-tumor-segmentation/tumor_seg.mha"]
    assert main(["--input-root", str(inp), "--output-root", str(tmp_path / "all"), "--checkpoint", str(tiny_window_checkpoint), "--fast", *EXTRAS]) == 0
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.mha")) == [
        "images/pancreas-probability/pancreas_probability.mha", "images/pancreas-segmentation/pancreas_seg.mha",
        "images/pancreatic-tumor-probability/tumor_probability.mha", "images/pancreatic-tumor-segmentation/tumor_seg.mha"]


def test_a_case_gets_all_its_outputs_or_none(tmp_path, tiny_window_checkpoint, monkeypatch, capsys):
    real = outputs.write_image_atomic

    def failing(image, path, what="mask"):
        if "pancreas_probability" in path.name:
            raise InputError(path, "cannot write the pancreas probability map: No space left on device")
        real(image, path, what)

    monkeypatch.setattr(outputs, "write_image_atomic", failing)
    src = tmp_path / "case.nii.gz"
    write_image(src, blob_volume((20, 50, 60)))
    code = main(["-i", str(src), "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_window_checkpoint), "--fast", *EXTRAS])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: ") and "No space left" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("output, files", [("seg.nii.gz", 2), ("masks", 2)])
def test_one_mask_file_needs_one_input(tmp_path, tiny_window_checkpoint, capsys, output, files):
    for name in ("a.nii.gz", "b.nii.gz")[:files]:
        write_image(tmp_path / "in" / name, blob_volume((16, 40, 40)))
    code = main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / output), "--checkpoint", str(tiny_window_checkpoint), "--fast"])
    if output.endswith(".nii.gz"):
        assert code == 1 and "names one mask file, but 2 images were given" in capsys.readouterr().err
    else:
        assert code == 0 and sorted(p.name for p in (tmp_path / output).iterdir()) == ["a.nii.gz", "b.nii.gz"]
