"""DICOM through the command line: a series folder in, a DICOM SEG (or an image) out, the SEG
equal voxel for voxel to the mask the .mha route gives for the same scan, and bad series or
output choices refused in one line with no output file."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("pydicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
hd = pytest.importorskip("highdicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")

from conftest import requires_shared  # noqa: E402
from dicom_validation import assert_valid_dicom  # noqa: E402
from test_dicom import (  # noqa: E402
    NON_SQUARE_SPACING, rotation, smoke_volume, write_enhanced, write_mr_series, write_two_phases,
)
from panther_seg.cli import main  # noqa: E402
from panther_seg.errors import InputError  # noqa: E402
from panther_seg.io import dicom  # noqa: E402
from panther_seg.io.dicom import read_dicom_series  # noqa: E402
from panther_seg.io.dicom_seg import read_dicom_seg_masks  # noqa: E402
from panther_seg.system.memory import MemoryBudget  # noqa: E402


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def mha_route(series_folder: Path, tmp_path: Path, checkpoint: Path, capsys) -> tuple[sitk.Image, sitk.Image]:
    """The series as the DICOM reader gives it, written as .mha and segmented as a file: the reference."""
    image = read_dicom_series(series_folder).image
    sitk.WriteImage(image, str(tmp_path / "scan.mha"))
    code, _, err = run(["-i", tmp_path / "scan.mha", "-o", tmp_path / "mask.mha", "--save-pancreas",
                        "--checkpoint", checkpoint, "--fast"], capsys)
    assert code == 0, err
    return sitk.ReadImage(str(tmp_path / "mask.mha")), sitk.ReadImage(str(tmp_path / "mask_pancreas.mha"))


def assert_seg_matches(seg_path: Path, series_folder: Path, tumour: sitk.Image, pancreas: sitk.Image) -> None:
    masks = read_dicom_seg_masks(seg_path, tumour)
    assert set(masks) == {"tumour", "pancreas"}
    assert np.array_equal(masks["tumour"], sitk.GetArrayFromImage(tumour))
    assert np.array_equal(masks["pancreas"], sitk.GetArrayFromImage(pancreas))
    seg = hd.seg.segread(str(seg_path))
    version = metadata.version("panther-seg")
    assert all(item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == version for item in seg.SegmentSequence)
    source_uid = read_dicom_series(series_folder).uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
    assert_valid_dicom(seg_path, "Segmentation")


@pytest.mark.parametrize("direction", [None, rotation(20, 0) @ rotation(10, 2)], ids=["axial", "oblique"])
def test_a_series_gives_a_seg_equal_to_the_mha_route(tmp_path, tiny_window_checkpoint, capsys, direction):
    write_mr_series(smoke_volume(direction), tmp_path / "series")
    tumour, pancreas = mha_route(tmp_path / "series", tmp_path, tiny_window_checkpoint, capsys)
    assert sitk.GetArrayViewFromImage(tumour).any()  # a real comparison, not two empty masks
    code, out, err = run(["-i", tmp_path / "series", "-o", tmp_path / "out" / "seg.dcm", "--save-pancreas",
                          "--checkpoint", tiny_window_checkpoint, "--fast"], capsys)
    assert code == 0, err
    assert "input series:" in out
    assert files_under(tmp_path / "out") == [tmp_path / "out" / "seg.dcm", tmp_path / "out" / "seg_sr.dcm"]  # the SEG and its SR
    assert_seg_matches(tmp_path / "out" / "seg.dcm", tmp_path / "series", tumour, pancreas)


def test_batch_mode_writes_case_dcm_for_the_real_mri(tmp_path, tiny_window_checkpoint, capsys):
    source = sitk.ReadImage(str(requires_shared("data", "real-mri", "example_mr_sm.nii.gz")))
    write_mr_series(source, tmp_path / "cases" / "patient7")
    tumour, pancreas = mha_route(tmp_path / "cases" / "patient7", tmp_path, tiny_window_checkpoint, capsys)
    code, out, err = run(["-i", tmp_path / "cases", "-o", tmp_path / "segs", "--output-format", "dicom-seg", "--save-pancreas",
                          "--checkpoint", tiny_window_checkpoint, "--fast"], capsys)
    assert code == 0, err
    assert files_under(tmp_path / "segs") == [tmp_path / "segs" / "patient7.dcm", tmp_path / "segs" / "patient7_sr.dcm"]
    assert_seg_matches(tmp_path / "segs" / "patient7.dcm", tmp_path / "cases" / "patient7", tumour, pancreas)


def test_a_series_folder_gives_an_mha_named_after_the_folder(tmp_path, small_checkpoint, capsys):
    write_mr_series(smoke_volume(), tmp_path / "caseA")
    code, _, err = run(["-i", tmp_path / "caseA", "-o", tmp_path / "masks", "--checkpoint", small_checkpoint, "--fast"], capsys)
    assert code == 0, err
    mask = sitk.ReadImage(str(tmp_path / "masks" / "caseA.mha"))
    assert mask.GetSize() == read_dicom_series(tmp_path / "caseA").image.GetSize()


def test_series_uid_chooses_among_several(tmp_path, small_checkpoint, capsys):
    write_mr_series(smoke_volume(), tmp_path / "two", "1.2.3.1", prefix="A")
    write_mr_series(smoke_volume(np.diag([1.0, 1.0, 1.0])), tmp_path / "two", "1.2.3.2", prefix="B")
    args = ["-i", tmp_path / "two", "-o", tmp_path / "o" / "s.dcm", "--checkpoint", small_checkpoint, "--fast"]
    code, _, err = run(args, capsys)
    assert code == 1 and "2 image series in the folder" in one_error_line(err) and "--series-uid" in err
    assert files_under(tmp_path / "o") == []
    code, _, err = run(args + ["--series-uid", "1.2.3.2"], capsys)
    assert code == 0, err
    assert hd.seg.segread(str(tmp_path / "o" / "s.dcm")).ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3.2"


@pytest.mark.parametrize("fault, expected", [({"drop_slice": 5}, "missing 1 slice"), ({"tilt": True}, "is tilted")])
def test_bad_series_are_refused_in_one_line(tmp_path, small_checkpoint, capsys, fault, expected):
    write_mr_series(smoke_volume(), tmp_path / "bad", **fault)
    code, _, err = run(["-i", tmp_path / "bad", "-o", tmp_path / "o" / "s.dcm", "--checkpoint", small_checkpoint, "--fast"], capsys)
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: {tmp_path / 'bad'}: ") and expected in line
    assert files_under(tmp_path / "o") == []


def test_dicom_seg_for_a_non_dicom_input_is_refused_before_any_work(tmp_path, capsys):
    sitk.WriteImage(smoke_volume(), str(tmp_path / "scan.mha"))
    missing = tmp_path / "no-such-checkpoint.pt"  # loading it would fail: the refusal comes first
    for argv in (["-i", tmp_path / "scan.mha", "-o", tmp_path / "o" / "s.dcm"],
                 ["-i", tmp_path / "scan.mha", "-o", tmp_path / "o", "--output-format", "dicom-seg"]):
        code, _, err = run(argv + ["--checkpoint", missing], capsys)
        assert code == 1
        assert one_error_line(err) == (f"error: {tmp_path / 'scan.mha'}: a DICOM SEG output needs a DICOM series input "
                                       "(a folder of DICOM files)")
    write_mr_series(smoke_volume(), tmp_path / "series")
    code, _, err = run(["-i", tmp_path / "series", "-o", tmp_path / "o", "--output-format", "dicom-seg",
                        "--save-probabilities", "--checkpoint", missing], capsys)
    assert code == 1 and "a DICOM SEG holds masks only: --save-probabilities" in one_error_line(err)
    assert files_under(tmp_path / "o") == []


def test_the_memory_budget_applies_before_the_voxels_are_read(tmp_path, monkeypatch):
    write_mr_series(smoke_volume(), tmp_path / "series")

    def no_reading(*_args, **_kwargs):
        raise AssertionError("voxels read before the memory check")

    monkeypatch.setattr(dicom, "_read_with_gdcm", no_reading)
    with pytest.raises(InputError, match="over the limit of 2 GiB") as caught:
        read_dicom_series(tmp_path / "series", budget=MemoryBudget(2.0, "--memory-limit"))
    assert caught.value.path == tmp_path / "series"


def segment(argv: list, capsys) -> None:
    code, _, err = run(argv, capsys)
    assert code == 0, err


@pytest.mark.slow  # three runs of the network: about 25 s on two cores
def test_an_enhanced_image_gives_the_single_frame_series_mask_through_its_folder_and_its_file(tmp_path, tiny_window_checkpoint, capsys):
    files = write_mr_series(smoke_volume(rotation(20, 0)), tmp_path / "series")
    enhanced = write_enhanced(files, tmp_path / "enhanced" / "scan.dcm")
    common = ["--save-pancreas", "--checkpoint", tiny_window_checkpoint, "--fast"]
    segment(["-i", tmp_path / "series", "-o", tmp_path / "single.dcm", *common], capsys)
    segment(["-i", tmp_path / "enhanced", "-o", tmp_path / "by-folder.dcm", *common], capsys)
    segment(["-i", enhanced, "-o", tmp_path / "by-file", "--output-format", "dicom-seg", *common], capsys)
    grid = read_dicom_series(tmp_path / "series").image
    single = read_dicom_seg_masks(tmp_path / "single.dcm", grid)
    assert single["tumour"].any() and not single["tumour"].all()
    for seg_path in (tmp_path / "by-folder.dcm", tmp_path / "by-file" / "scan.dcm"):  # a file's case is named after it
        masks = read_dicom_seg_masks(seg_path, grid)  # on the single-frame series' physical grid, or refused
        assert all(np.array_equal(masks[name], single[name]) for name in ("tumour", "pancreas"))
        seg = hd.seg.segread(str(seg_path))
        assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
            hd.imread(str(enhanced)).SOPInstanceUID
        assert_valid_dicom(seg_path, "Segmentation")
    code, _, err = run(["-i", files[0], "-o", tmp_path / "o.dcm", *common], capsys)
    assert code == 1 and "give the folder of a single-frame series" in one_error_line(err) and not (tmp_path / "o.dcm").exists()


def test_phase_segments_one_time_point_of_a_dynamic_series(tmp_path, tiny_window_checkpoint, capsys):
    _, arterial, _, second = write_two_phases(tmp_path / "dynamic")
    common = ["--checkpoint", tiny_window_checkpoint, "--fast"]
    code, _, err = run(["-i", tmp_path / "dynamic", "-o", tmp_path / "o" / "seg.dcm", *common], capsys)
    line = one_error_line(err)
    assert code == 1 and "2 time points" in line and "--phase K" in line and files_under(tmp_path / "o") == []
    sitk.WriteImage(arterial, str(tmp_path / "arterial.mha"))
    segment(["-i", tmp_path / "arterial.mha", "-o", tmp_path / "arterial_mask.mha", *common], capsys)
    segment(["-i", tmp_path / "dynamic", "-o", tmp_path / "o" / "seg.dcm", "--phase", "2", *common], capsys)
    expected = sitk.ReadImage(str(tmp_path / "arterial_mask.mha"))
    assert sitk.GetArrayViewFromImage(expected).any()
    assert np.array_equal(read_dicom_seg_masks(tmp_path / "o" / "seg.dcm", expected)["tumour"], sitk.GetArrayFromImage(expected))
    seg = hd.seg.segread(str(tmp_path / "o" / "seg.dcm"))
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {hd.imread(str(f)).SOPInstanceUID for f in second}
    assert_valid_dicom(tmp_path / "o" / "seg.dcm", "Segmentation")
    code, _, err = run(["-i", tmp_path / "dynamic", "-o", tmp_path / "p" / "seg.dcm", "--phase", "3", *common], capsys)
    assert code == 1 and "--phase 3 does not exist" in one_error_line(err) and files_under(tmp_path / "p") == []
    with pytest.raises(SystemExit):
        main(["-i", str(tmp_path / "dynamic"), "-o", str(tmp_path / "q.dcm"), "--phase", "0"])
    assert "--phase must be at least 1" in capsys.readouterr().err


def test_non_square_pixels_through_the_whole_route(tmp_path, tiny_window_checkpoint, capsys):
    """The scan written as .mha straight from the source volume (no DICOM reader) is the
    reference: a PixelSpacing swapped on reading or in the SEG puts the mask on another grid."""
    source = smoke_volume(spacing=NON_SQUARE_SPACING)
    source.SetOrigin((-31.25, -25.0, -79.0))  # exact in the DICOM files, as the spacing is
    write_mr_series(source, tmp_path / "series")
    sitk.WriteImage(source, str(tmp_path / "scan.mha"))
    common = ["--save-pancreas", "--checkpoint", tiny_window_checkpoint, "--fast"]
    segment(["-i", tmp_path / "scan.mha", "-o", tmp_path / "mask.mha", *common], capsys)
    segment(["-i", tmp_path / "series", "-o", tmp_path / "seg.dcm", *common], capsys)
    tumour = sitk.ReadImage(str(tmp_path / "mask.mha"))
    np.testing.assert_allclose(tumour.GetSpacing(), NON_SQUARE_SPACING, atol=1e-6)
    assert sitk.GetArrayViewFromImage(tumour).any()
    masks = read_dicom_seg_masks(tmp_path / "seg.dcm", tumour)
    assert np.array_equal(masks["tumour"], sitk.GetArrayFromImage(tumour))
    assert np.array_equal(masks["pancreas"], sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask_pancreas.mha"))))
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")
