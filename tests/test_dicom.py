"""DICOM series in, DICOM SEG out: series written here with pydicom from known volumes (the smoke
case, cropped, and the real MRI in ../shared), read back through ``panther_seg.io.dicom``, and
masks written as DICOM SEG through ``panther_seg.io.dicom_seg`` and read back with highdicom."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
hd = pytest.importorskip("highdicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")

from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from conftest import ROOT, requires_shared  # noqa: E402
from dicom_validation import assert_valid_dicom  # noqa: E402
from panther_seg.errors import InputError  # noqa: E402
from panther_seg.io.dicom import DicomSeries, is_dicom_folder, list_series, read_dicom_series  # noqa: E402
from panther_seg.io.dicom_seg import read_dicom_seg_masks, write_dicom_seg  # noqa: E402

SMOKE = next((ROOT / "test" / "input" / "images" / "abdominal-t1-mri").glob("*.mha"))
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def rotation(degrees: float, axis: int) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


NON_SQUARE_SPACING = (0.8, 1.25, 3.0)  # x (column spacing), y (row spacing), z: a swapped PixelSpacing shows


def smoke_volume(direction: np.ndarray | None = None, spacing: tuple[float, float, float] | None = None) -> sitk.Image:
    """The smoke case cropped to 48 x 40 x 12 voxels (fast), optionally re-oriented or with
    other voxel sizes (such as non-square pixels)."""
    image = sitk.ReadImage(str(SMOKE))[70:118, 55:95, 9:21]
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    if spacing is not None:
        image.SetSpacing(spacing)
    return image


def write_mr_series(image: sitk.Image, folder: Path, series_uid: str | None = None, *, tilt: bool = False,
                    drop_slice: int | None = None, uneven_from: int | None = None, modality: str = "MR",
                    description: str = "t1 vibe", prefix: str = "IM", slope: float = 1.0, intercept: float = -1024.0,
                    extra: dict[str, object] | None = None) -> list[Path]:
    """One single-frame MR file per z-slice of ``image`` (int16 stored values, rescaled), with
    the image's geometry (PixelSpacing is row spacing (y), then column spacing (x): give the
    image non-square pixels to tell them apart); file names in a shuffled order so that no
    reader can rely on them.

    ``tilt`` shifts each slice sideways (a gantry tilt), ``drop_slice`` leaves one slice out,
    ``uneven_from`` moves the slices from that index on by half a slice step; ``extra`` sets
    more attributes on every slice (a time point's TemporalPositionIdentifier, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image)
    stored = np.round((array.astype(np.float64) - intercept) / slope).astype(np.int16)
    assert np.array_equal(stored * slope + intercept, array), "the volume must be exactly representable"
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    series_uid = series_uid or generate_uid()
    study_uid, frame_of_reference = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    names = np.random.default_rng(len(folder.name)).permutation(array.shape[0])
    written = []
    for k in range(array.shape[0]):
        if k == drop_slice:
            continue
        position = np.asarray(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=float)
        if tilt:
            position += 0.2 * k * direction[:, 1]
        if uneven_from is not None and k >= uneven_from:
            position += 0.5 * spacing[2] * direction[:, 2]
        sop_class = MR_STORAGE if modality == "MR" else CT_STORAGE
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{names[k]:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesDescription, ds.Manufacturer = modality, description, "test"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "P1", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_of_reference
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20240101", "120000", "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.PositionReferenceIndicator = 1, k + 1, ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]  # rows (y), columns (x)
        ds.SliceThickness = f"{spacing[2]:g}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        if modality == "MR":
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 2.0, 4.0, 1, 1.5
        ds.WindowCenter, ds.WindowWidth = "400", "800"
        for keyword, value in (extra or {}).items():
            setattr(ds, keyword, value)
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def write_enhanced(files: list[Path], path: Path) -> Path:
    """The single-frame ``files`` as one Legacy Converted Enhanced MR image (highdicom's
    converter: what a PACS or dcm2dcm makes of a series; frames in its own order)."""
    datasets = [pydicom.dcmread(f) for f in files]
    image = hd.legacy.LegacyConvertedEnhancedMRImage(datasets, generate_uid(), 2, generate_uid(), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(path, enforce_file_format=True)
    return path


def physical_slices(image: sitk.Image) -> dict[tuple[float, float, float], np.ndarray]:
    """Each z-slice keyed by its rounded position: compares volumes whatever their slice order."""
    array = sitk.GetArrayFromImage(image)
    return {tuple(np.round(image.TransformIndexToPhysicalPoint((0, 0, k)), 3)): array[k] for k in range(array.shape[0])}


ORIENTATIONS = {
    "axial": None,
    "oblique 20 degrees": rotation(20, 0) @ rotation(10, 2),
    "flipped slice order": np.diag([1.0, 1.0, -1.0]),
}


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_series_reads_back_with_the_exact_geometry_and_voxels(tmp_path, name):
    source = smoke_volume(ORIENTATIONS[name])
    write_mr_series(source, tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    assert is_dicom_folder(tmp_path / "series") and not is_dicom_folder(tmp_path)
    series = read_dicom_series(tmp_path / "series")
    image = series.image
    assert image.GetSize() == source.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), source.GetSpacing(), atol=1e-6)
    direction = np.asarray(source.GetDirection()).reshape(3, 3)
    if np.linalg.det(direction) < 0:  # DICOM's slice axis is row x column: the volume reads z-flipped
        direction[:, 2] *= -1
        origin = source.TransformIndexToPhysicalPoint((0, 0, source.GetSize()[2] - 1))
        expected = sitk.GetArrayFromImage(source)[::-1]
    else:
        origin, expected = source.GetOrigin(), sitk.GetArrayFromImage(source)
    np.testing.assert_allclose(image.GetDirection(), direction.ravel(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-5)
    array = sitk.GetArrayFromImage(image)
    assert np.array_equal(array, expected) and np.array_equal(array.astype(np.int16), expected)
    assert len(series.files) == len(series.headers) == source.GetSize()[2]
    for k, ds in enumerate(series.headers):  # files and headers follow the volume's z order
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-5)
        assert pydicom.dcmread(series.files[k], stop_before_pixels=True).SOPInstanceUID == ds.SOPInstanceUID


def test_the_real_mri_reads_back_exactly(tmp_path):
    source = sitk.ReadImage(str(requires_shared("data", "real-mri", "example_mr_sm.nii.gz")))
    write_mr_series(source, tmp_path / "series")
    image = read_dicom_series(tmp_path / "series").image
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(image.GetOrigin(), source.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), source.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-6)


def test_the_real_mri_pancreas_goes_through_a_seg_unchanged(tmp_path):
    source = sitk.ReadImage(str(requires_shared("data", "real-mri", "example_mr_sm.nii.gz")))
    labels = sitk.ReadImage(str(requires_shared("data", "real-mri", "example_seg_mr.nii.gz")))
    write_mr_series(source, tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    pancreas = sitk.Cast(labels == 7, sitk.sitkUInt8)
    pancreas.CopyInformation(series.image)
    tumour = blob_mask(series.image, tuple(int(v) for v in np.argwhere(sitk.GetArrayFromImage(pancreas))[0][::-1]), 3)
    write_dicom_seg({"tumour": tumour, "pancreas": pancreas}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    masks = read_dicom_seg_masks(tmp_path / "seg.dcm", series.image)
    assert masks["pancreas"].sum() == 1176
    assert np.array_equal(masks["pancreas"], sitk.GetArrayFromImage(pancreas))
    assert np.array_equal(masks["tumour"], sitk.GetArrayFromImage(tumour))
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    source = smoke_volume()
    source = sitk.Cast(source, sitk.sitkInt16) * 2 + 7  # odd values: slope 2, intercept 7 is exact
    write_mr_series(source, tmp_path / "series", slope=2.0, intercept=7.0)
    assert np.array_equal(sitk.GetArrayFromImage(read_dicom_series(tmp_path / "series").image), sitk.GetArrayFromImage(source))


def test_a_rescale_that_varies_between_slices_reads_as_float(tmp_path):
    source = smoke_volume()
    files = write_mr_series(source, tmp_path / "series")
    ds = pydicom.dcmread(files[0])
    values = ds.pixel_array.astype(np.int32) - 1024
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "0"
    ds.PixelData = (values * 2).astype(np.int16).tobytes()
    ds.save_as(files[0])
    image = read_dicom_series(tmp_path / "series").image
    assert image.GetPixelID() == sitk.sitkFloat32
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(source).astype(np.float32))


def test_seg_and_other_non_image_objects_beside_the_series_are_ignored(tmp_path):
    source = smoke_volume()
    write_mr_series(source, tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    write_dicom_seg({"tumour": blob_mask(series.image, (20, 18, 5), 6)}, series, tmp_path / "series" / "seg.dcm", algorithm_version="1.0.0")
    assert [s.uid for s in list_series(tmp_path / "series")] == [series.uid]
    again = read_dicom_series(tmp_path / "series")
    assert np.array_equal(sitk.GetArrayFromImage(again.image), sitk.GetArrayFromImage(source)) and len(again.files) == 12


def test_two_slices_at_one_position_are_refused(tmp_path):
    write_mr_series(smoke_volume(), tmp_path / "series", "1.2.3.4", prefix="E1_")
    write_mr_series(smoke_volume(), tmp_path / "series", "1.2.3.4", prefix="E2_")
    with pytest.raises(InputError, match="two slices at the same position"):
        read_dicom_series(tmp_path / "series")


def test_several_series_are_listed_and_one_is_chosen_by_uid(tmp_path):
    folder = tmp_path / "study"
    write_mr_series(smoke_volume(), folder, "1.2.3.1", description="t1 pre", prefix="A")
    write_mr_series(smoke_volume()[:, :, :8], folder, "1.2.3.2", description="t1 arterial", prefix="B")
    assert [(s.uid, s.description, s.files) for s in list_series(folder)] == [("1.2.3.1", "t1 pre", 12), ("1.2.3.2", "t1 arterial", 8)]
    with pytest.raises(InputError) as refused:
        read_dicom_series(folder)
    message = str(refused.value)
    assert "\n" not in message and "--series-uid" in message
    assert "1.2.3.1 (MR, 't1 pre', 12 files)" in message and "1.2.3.2 (MR, 't1 arterial', 8 files)" in message
    assert read_dicom_series(folder, "1.2.3.2").image.GetSize()[2] == 8
    with pytest.raises(InputError, match="no image series 9.9.9"):
        read_dicom_series(folder, "9.9.9")


def refusal(tmp_path: Path, **kw) -> str:
    write_mr_series(kw.pop("image", None) or smoke_volume(), tmp_path / "series", **kw)
    with pytest.raises(InputError) as refused:
        read_dicom_series(tmp_path / "series")
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "series") in message
    return message


@pytest.mark.parametrize("kw, expected", [
    (dict(drop_slice=5), "missing 1 slice(s)"),
    (dict(uneven_from=6), "uneven slice spacing"),
    (dict(tilt=True), "is tilted"),
    (dict(modality="CT"), "is CT, not MR"),
    (dict(image=smoke_volume()[:, :, :1]), "has 1 slice"),
], ids=["missing slice", "uneven spacing", "tilt", "CT", "one slice"])
def test_irregular_series_are_refused_by_name(tmp_path, kw, expected):
    assert expected in refusal(tmp_path, **kw)


def test_oblique_missing_slice_and_tilt_are_refused(tmp_path):
    oblique = smoke_volume(rotation(20, 0))
    assert "missing" in refusal(tmp_path / "a", image=oblique, drop_slice=3)
    assert "tilted" in refusal(tmp_path / "b", image=oblique, tilt=True)


def test_mixed_orientations_and_pixel_sizes_are_refused(tmp_path):
    files = write_mr_series(smoke_volume(), tmp_path / "o")
    ds = pydicom.dcmread(files[0])
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([rotation(5, 2)[:, 0], rotation(5, 2)[:, 1]])]
    ds.save_as(files[0])
    with pytest.raises(InputError, match="mixes orientations"):
        read_dicom_series(tmp_path / "o")
    files = write_mr_series(smoke_volume(), tmp_path / "p")
    ds = pydicom.dcmread(files[0])
    ds.PixelSpacing = ["1.3", "1.25"]
    ds.save_as(files[0])
    with pytest.raises(InputError, match="mixes pixel sizes"):
        read_dicom_series(tmp_path / "p")


def test_folders_without_images_and_multi_frame_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM files"):
        read_dicom_series(tmp_path / "empty")
    files = write_mr_series(smoke_volume(), tmp_path / "enhanced")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
        ds.save_as(path)
    with pytest.raises(InputError, match="12 instances, 12 of them Enhanced MR Image Storage: a series is read as one multi-frame"):
        read_dicom_series(tmp_path / "enhanced")


def blob_mask(image: sitk.Image, centre: tuple[int, int, int], radius: float) -> sitk.Image:
    size = image.GetSize()
    z, y, x = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    cz, cy, cx = centre[::-1]
    array = (((z - cz) * 2.5) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2).astype(np.uint8)
    array[cz, cy, :cx] = 1  # asymmetric: a flipped or transposed mask would not match
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


@pytest.fixture(params=["axial", "oblique 20 degrees", "flipped slice order"])
def series(request, tmp_path) -> DicomSeries:
    write_mr_series(smoke_volume(ORIENTATIONS[request.param]), tmp_path / "series")
    return read_dicom_series(tmp_path / "series")


def test_seg_reads_back_voxel_for_voxel_with_its_concepts_and_references(series, tmp_path):
    tumour = blob_mask(series.image, (20, 18, 5), 6)
    pancreas = blob_mask(series.image, (28, 20, 7), 9)
    path = tmp_path / "out" / "seg.dcm"
    write_dicom_seg({"tumour": tumour, "pancreas": pancreas}, series, path, algorithm_version="1.0.0")
    masks = read_dicom_seg_masks(path, series.image)
    assert np.array_equal(masks["tumour"], sitk.GetArrayFromImage(tumour))
    assert np.array_equal(masks["pancreas"], sitk.GetArrayFromImage(pancreas))
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert seg.SeriesInstanceUID != series.uid and seg.FrameOfReferenceUID == series.headers[0].FrameOfReferenceUID
    first, second = seg.SegmentSequence
    assert (first.SegmentLabel, first.SegmentAlgorithmType, first.SegmentAlgorithmName) == ("tumour", "AUTOMATIC", "PANTHER SegFormer3D")
    assert first.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert first.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert first.AnatomicRegionSequence[0].CodeValue == "15776009"
    assert (second.SegmentLabel, second.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            second.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("pancreas", "123037004", "15776009")
    algorithm = first.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion, algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning) == \
        ("PANTHER SegFormer3D", "1.0.0", "Artificial Intelligence")
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in series.headers}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    assert sorted(p.name for p in path.parent.iterdir()) == ["seg.dcm"]
    tumour_slices = sitk.GetArrayFromImage(tumour).any(axis=(1, 2))
    assert tumour_slices.any() and not tumour_slices.all()  # a tumour on some slices, none on others
    assert_valid_dicom(path, "Segmentation")


def test_empty_tumour_mask_gives_a_valid_seg(tmp_path):
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    empty = sitk.Image(series.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(series.image)
    write_dicom_seg({"tumour": empty}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert len(seg.SegmentSequence) == 1 and int(seg.NumberOfFrames) == series.image.GetSize()[2]
    masks = read_dicom_seg_masks(tmp_path / "seg.dcm", series.image)
    assert masks["tumour"].shape == sitk.GetArrayFromImage(series.image).shape and not masks["tumour"].any()
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")


def test_masks_off_the_source_grid_are_refused(tmp_path):
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    shifted = blob_mask(series.image, (20, 18, 5), 6)
    shifted.SetOrigin(tuple(np.asarray(shifted.GetOrigin()) + 1.0))
    with pytest.raises(ValueError, match="grid"):
        write_dicom_seg({"tumour": shifted}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    with pytest.raises(ValueError, match="tumour"):
        write_dicom_seg({"pancreas": blob_mask(series.image, (20, 18, 5), 6)}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_failed_write_leaves_no_partial_file(tmp_path):
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(OSError):
            write_dicom_seg({"tumour": blob_mask(series.image, (20, 18, 5), 6)}, series, out / "seg.dcm", algorithm_version="1.0.0")
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_a_failure_while_encoding_leaves_no_partial_file(tmp_path, monkeypatch):
    """Runs as root too: the writer fails after the temporary file exists."""
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    out = tmp_path / "out"
    out.mkdir()

    def fail(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", fail)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_seg({"tumour": blob_mask(series.image, (20, 18, 5), 6)}, series, out / "seg.dcm", algorithm_version="1.0.0")
    assert list(out.iterdir()) == []


def test_a_volume_read_off_the_dicom_geometry_is_refused(tmp_path, monkeypatch):
    """ITK's grid is checked against the DICOM patient coordinates, not trusted."""
    import panther_seg.io.dicom as dicom

    write_mr_series(smoke_volume(), tmp_path / "series")
    read = dicom._read_with_gdcm

    def shifted(*args, **kwargs):
        image = read(*args, **kwargs)
        image.SetOrigin(tuple(np.asarray(image.GetOrigin()) + (0, 0, 0.001)))
        return image

    monkeypatch.setattr(dicom, "_read_with_gdcm", shifted)
    with pytest.raises(InputError, match="read with origin"):
        read_dicom_series(tmp_path / "series")


def test_a_reader_warning_is_a_refusal(tmp_path, monkeypatch):
    write_mr_series(smoke_volume(), tmp_path / "series")
    execute = sitk.ImageSeriesReader.Execute

    def warn(self, *args):
        os.write(2, b"WARNING: In gdcm: a slice could not be decoded properly\n")
        return execute(self, *args)

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", warn)
    with pytest.raises(InputError, match="reported a problem while reading series .*a slice could not be decoded"):
        read_dicom_series(tmp_path / "series")


def test_seg_frames_follow_the_instances_positions_not_their_order(tmp_path):
    """Headers given in another order than the volume's slices still get their own slice."""
    import dataclasses

    write_mr_series(smoke_volume(ORIENTATIONS["oblique 20 degrees"]), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    order = np.random.default_rng(1).permutation(len(series.headers))
    shuffled = dataclasses.replace(series, files=tuple(series.files[i] for i in order), headers=tuple(series.headers[i] for i in order))
    tumour = blob_mask(series.image, (20, 18, 5), 6)
    write_dicom_seg({"tumour": tumour}, shuffled, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    assert np.array_equal(read_dicom_seg_masks(tmp_path / "seg.dcm", series.image)["tumour"], sitk.GetArrayFromImage(tumour))
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    by_instance = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in series.headers], segment_numbers=[1])
    assert np.array_equal(by_instance[..., 0], sitk.GetArrayFromImage(tumour))


# Enhanced multi-frame MR: the same volume as the single-frame series, through its folder and its file.

def seg_frame_sources(path: Path) -> list[tuple[str, int | None, np.ndarray]]:
    """Each SEG frame's referenced source (SOPInstanceUID, frame number or None) and position."""
    seg = pydicom.dcmread(path)
    frames = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame = int(source.ReferencedFrameNumber) if "ReferencedFrameNumber" in source else None
        frames.append((str(source.ReferencedSOPInstanceUID), frame,
                       np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])))
    return frames


def frame_position(ds, frame: int) -> np.ndarray:
    return np.asarray([float(v) for v in ds.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0].ImagePositionPatient])


@pytest.mark.parametrize("name", [*ORIENTATIONS, "non-square pixels"])
def test_an_enhanced_image_reads_as_its_single_frame_series_from_its_folder_and_its_file(tmp_path, name):
    source = smoke_volume(spacing=NON_SQUARE_SPACING) if name == "non-square pixels" else smoke_volume(ORIENTATIONS[name])
    files = write_mr_series(source, tmp_path / "series")
    enhanced = write_enhanced(files, tmp_path / "enhanced" / "scan.dcm")
    single = read_dicom_series(tmp_path / "series")
    for given in (tmp_path / "enhanced", enhanced):
        read = read_dicom_series(given)
        assert read.files == (enhanced,) and read.uid == pydicom.dcmread(enhanced).SeriesInstanceUID
        assert sorted(read.frame_numbers) == list(range(1, 13))
        assert read.image.GetSize() == single.image.GetSize() and read.image.GetPixelID() == single.image.GetPixelID()
        np.testing.assert_allclose(read.image.GetOrigin(), single.image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(read.image.GetSpacing(), single.image.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(read.image.GetDirection(), single.image.GetDirection(), atol=1e-6)
        assert np.array_equal(sitk.GetArrayFromImage(read.image), sitk.GetArrayFromImage(single.image))
        for k, frame in enumerate(read.frame_numbers):  # each slice is its frame's, by position
            np.testing.assert_allclose(frame_position(read.headers[0], frame), read.image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-5)


def test_a_seg_of_an_enhanced_image_references_its_frames(tmp_path):
    files = write_mr_series(smoke_volume(ORIENTATIONS["oblique 20 degrees"]), tmp_path / "series")
    enhanced = write_enhanced(files, tmp_path / "enhanced" / "scan.dcm")
    series = read_dicom_series(enhanced)
    tumour = blob_mask(series.image, (20, 18, 5), 6)
    write_dicom_seg({"tumour": tumour}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    assert np.array_equal(read_dicom_seg_masks(tmp_path / "seg.dcm", series.image)["tumour"], sitk.GetArrayFromImage(tumour))
    source = pydicom.dcmread(enhanced)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert [i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence] == [source.SOPInstanceUID]
    frames = seg_frame_sources(tmp_path / "seg.dcm")
    assert sorted(frame for _, frame, _ in frames) == list(range(1, 13))
    for uid, frame, position in frames:
        assert uid == source.SOPInstanceUID
        np.testing.assert_allclose(position, frame_position(source, frame), atol=1e-4)
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")


def enhanced_refusal(tmp_path: Path, edit=None, **kw) -> str:
    files = write_mr_series(smoke_volume(), tmp_path / "series", **kw)
    enhanced = write_enhanced(files, tmp_path / "enhanced" / "scan.dcm")
    if edit is not None:
        ds = pydicom.dcmread(enhanced)
        edit(ds)
        ds.save_as(enhanced)
    with pytest.raises(InputError) as refused:
        read_dicom_series(enhanced)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{enhanced}: ")
    return message


def rotate_frame_3(ds) -> None:
    r = rotation(5, 2)
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = [pydicom.Dataset()]
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence[0].ImageOrientationPatient = \
        [f"{v:.8f}" for v in np.concatenate([r[:, 0], r[:, 1]])]


def two_stacks(ds) -> None:
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item.FrameContentSequence[0].StackID = str(1 + k % 2)


def an_echo_dimension(ds) -> None:
    dimension = pydicom.Dataset()
    dimension.DimensionIndexPointer = pydicom.tag.Tag("EffectiveEchoTime")
    dimension.FunctionalGroupPointer = pydicom.tag.Tag("MREchoSequence")
    ds.DimensionIndexSequence.append(dimension)
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        item.FrameContentSequence[0].DimensionIndexValues = [k + 1, 1 + k % 2]


@pytest.mark.parametrize("kw, expected", [
    (dict(drop_slice=5), "is missing 1 slice(s) between scan.dcm frame"),
    (dict(uneven_from=6), "uneven slice spacing"),
    (dict(tilt=True), "is tilted"),
    (dict(edit=rotate_frame_3), "mixes orientations: scan.dcm frame 3"),
    (dict(edit=two_stacks), "holds 2 stacks (StackID 1, 2)"),
    (dict(edit=an_echo_dimension), "varies along the dimension EffectiveEchoTime (2 values)"),
], ids=["missing frame", "uneven spacing", "tilt", "mixed orientation", "two stacks", "echo dimension"])
def test_irregular_enhanced_images_are_refused_by_name(tmp_path, kw, expected):
    assert expected in enhanced_refusal(tmp_path, **kw)


def test_a_single_frame_file_given_alone_is_refused_with_a_hint(tmp_path):
    files = write_mr_series(smoke_volume(), tmp_path / "series")
    with pytest.raises(InputError, match=r"has 1 slice; a volume needs at least 2 \(give the folder of a single-frame series\)"):
        read_dicom_series(files[0])


# Dynamic series: several time points at the same slice positions.

def write_two_phases(folder: Path) -> tuple[sitk.Image, sitk.Image, list[Path], list[Path]]:
    """A synthetic dynamic series: a pre-contrast and a brighter arterial time point, one series."""
    pre = smoke_volume()
    pre.SetOrigin((-31.25, -25.0, -79.0))  # exact in the DICOM files: a reference .mha is on the very same grid
    arterial = sitk.Cast(pre, sitk.sitkInt16) + 150
    uid = generate_uid()
    first = write_mr_series(pre, folder, uid, prefix="T1_", extra=dict(TemporalPositionIdentifier=1, AcquisitionTime="120000",
                                                                       NumberOfTemporalPositions=2))
    second = write_mr_series(arterial, folder, uid, prefix="T2_", extra=dict(TemporalPositionIdentifier=2, AcquisitionTime="120030",
                                                                             NumberOfTemporalPositions=2))
    return pre, arterial, first, second


def test_a_dynamic_series_is_refused_with_its_time_points_and_one_is_chosen(tmp_path):
    pre, arterial, first, second = write_two_phases(tmp_path / "dynamic")
    with pytest.raises(InputError) as refused:
        read_dicom_series(tmp_path / "dynamic")
    message = str(refused.value)
    assert "\n" not in message and "is dynamic: 2 time points at the same slice positions (by TemporalPositionIdentifier)" in message
    assert ("1: TemporalPositionIdentifier 1, AcquisitionTime 120000, 12 slices; "
            "2: TemporalPositionIdentifier 2, AcquisitionTime 120030, 12 slices; pass --phase K") in message
    for phase, volume, files in ((1, pre, first), (2, arterial, second)):
        series = read_dicom_series(tmp_path / "dynamic", phase=phase)
        assert np.array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(volume))
        assert set(series.files) == set(files)
    with pytest.raises(InputError, match="has 2 time points .*--phase 3 does not exist"):
        read_dicom_series(tmp_path / "dynamic", phase=3)
    write_mr_series(smoke_volume(), tmp_path / "static")
    assert read_dicom_series(tmp_path / "static", phase=1).image.GetSize() == pre.GetSize()
    with pytest.raises(InputError, match="has one time point: --phase 2 does not exist"):
        read_dicom_series(tmp_path / "static", phase=2)


def test_a_seg_of_one_time_point_references_only_its_instances(tmp_path):
    *_, second = write_two_phases(tmp_path / "dynamic")
    series = read_dicom_series(tmp_path / "dynamic", phase=2)
    write_dicom_seg({"tumour": blob_mask(series.image, (20, 18, 5), 6)}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in second}
    assert {uid for uid, _, _ in seg_frame_sources(tmp_path / "seg.dcm")} == referenced
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")


def test_an_enhanced_dynamic_image_gives_one_time_point_and_a_seg_of_its_frames(tmp_path):
    _, arterial, first, second = write_two_phases(tmp_path / "dynamic")
    enhanced = write_enhanced(first + second, tmp_path / "enhanced" / "dynamic.dcm")
    with pytest.raises(InputError, match="is dynamic: 2 time points .*; pass --phase K"):
        read_dicom_series(enhanced)
    series = read_dicom_series(enhanced, phase=2)
    assert np.array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(arterial))
    source = pydicom.dcmread(enhanced)
    arterial_frames = {n for n in range(1, 25) if
                       int(source.PerFrameFunctionalGroupsSequence[n - 1].UnassignedPerFrameConvertedAttributesSequence[0]
                           .TemporalPositionIdentifier) == 2}
    assert set(series.frame_numbers) == arterial_frames and len(arterial_frames) == 12
    tumour = blob_mask(series.image, (20, 18, 5), 6)
    write_dicom_seg({"tumour": tumour}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    assert np.array_equal(read_dicom_seg_masks(tmp_path / "seg.dcm", series.image)["tumour"], sitk.GetArrayFromImage(tumour))
    assert {frame for _, frame, _ in seg_frame_sources(tmp_path / "seg.dcm")} == arterial_frames
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")


# Non-square pixels: PixelSpacing is (row spacing, column spacing) = (y, x); swapped, these fail.

def test_non_square_pixels_keep_their_row_and_column_spacing_into_the_seg(tmp_path):
    source = smoke_volume(ORIENTATIONS["oblique 20 degrees"], spacing=NON_SQUARE_SPACING)
    files = write_mr_series(source, tmp_path / "series")
    assert [float(v) for v in pydicom.dcmread(files[0]).PixelSpacing] == [1.25, 0.8]
    series = read_dicom_series(tmp_path / "series")
    np.testing.assert_allclose(series.image.GetSpacing(), NON_SQUARE_SPACING, atol=1e-6)
    np.testing.assert_allclose(series.image.GetOrigin(), source.GetOrigin(), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(series.image), sitk.GetArrayFromImage(source))
    tumour = blob_mask(source, (30, 12, 5), 6)  # on the source's own grid, not the one read
    write_dicom_seg({"tumour": tumour}, series, tmp_path / "seg.dcm", algorithm_version="1.0.0")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing] == [1.25, 0.8]
    assert np.array_equal(read_dicom_seg_masks(tmp_path / "seg.dcm", source)["tumour"], sitk.GetArrayFromImage(tumour))
    assert_valid_dicom(tmp_path / "seg.dcm", "Segmentation")
