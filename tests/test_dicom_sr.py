"""Measurements in DICOM: the TID 1500 Structured Report written beside a SEG, read back with
highdicom (the figures and the references it holds must be the inputs), both files checked by
dicom3tools' ``dciodvfy``, and the model's provenance in both files' algorithm identification.
Series are written with the DICOM series builder of test_dicom (a cropped smoke case)."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("pydicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")
hd = pytest.importorskip("highdicom", reason="DICOM support needs requirements-dicom.txt (pip install -e '.[dicom]')")

from conftest import ROOT  # noqa: E402
from test_cli_dicom import files_under, run  # noqa: E402
from test_dicom import smoke_volume, write_mr_series  # noqa: E402
from panther_seg.contract.resources import resolve_resources  # noqa: E402
from panther_seg.errors import InputError  # noqa: E402
from panther_seg.inference.pipeline import Segmenter  # noqa: E402
from panther_seg.io import dicom_sr  # noqa: E402
from panther_seg.io.dicom import read_dicom_series  # noqa: E402
from panther_seg.io.dicom_algorithm import ALGORITHM_NAME, DEMONSTRATION_NAME  # noqa: E402
from panther_seg.io.dicom_seg import read_dicom_seg_masks, write_dicom_seg  # noqa: E402
from panther_seg.io.dicom_sr import build_measurement_report, measurement_report_path, write_measurement_report  # noqa: E402
from panther_seg.io.outputs import DicomSegPaths, write_outputs  # noqa: E402
from panther_seg.results import Confidence, Lesion, Measurements, ModelProvenance, Segmentation  # noqa: E402

DEMO = ModelProvenance(("fold0.pt",), "fold 0 of splits_final.json: 19 training cases, 5 validation cases",
                       "2026-11-26T17:21:35+00:00", "314d84a7", True, "DEMONSTRATION ONLY: synthetic cases, x=1")
CONFIDENCE = Confidence(True, 8, mean_dice=0.91, min_dice=0.83, volume_ml_min=0.52, volume_ml_max=0.61, review=False)


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for ``path`` (warnings allowed), or skip where dicom3tools is absent."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("needs dciodvfy (Debian's dicom3tools) to validate the DICOM files")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.lower().startswith("error")]


def two_lesions(image: sitk.Image) -> sitk.Image:
    """A 6 x 5 x 3-voxel box and, apart from it, a 2 x 2 x 2 cube (face-connected components)."""
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[3:6, 10:15, 8:14] = 1
    array[7:9, 25:27, 30:32] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def box_lesion(image: sitk.Image, array: np.ndarray, label_slices: tuple[slice, slice, slice]) -> Lesion:
    """The box's figures, computed from the voxels: volume, centroid (LPS), in-plane extents."""
    sx, sy, sz = image.GetSpacing()
    part = np.zeros_like(array)
    part[label_slices] = array[label_slices]
    zyx = np.argwhere(part)
    nz, ny, nx = zyx.max(axis=0) - zyx.min(axis=0) + 1
    volume_ml = len(zyx) * sx * sy * sz / 1000.0
    centroid = image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx.mean(axis=0)[::-1]))
    long_axis, short_axis = sorted((nx * sx, ny * sy), reverse=True)
    diagonal_3d = float(np.sqrt((nx * sx) ** 2 + (ny * sy) ** 2 + (nz * sz) ** 2))
    return Lesion(volume_ml, tuple(centroid), long_axis, short_axis, diagonal_3d, "<=20 mm")


@pytest.fixture
def case(tmp_path):
    """A series, its SEG (tumour with two lesions, pancreas) and the measurements of the mask."""
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    tumour = two_lesions(series.image)
    array = sitk.GetArrayFromImage(tumour)
    pancreas = sitk.BinaryDilate(tumour, (3, 3, 1))
    seg = write_dicom_seg({"tumour": tumour, "pancreas": pancreas}, series, tmp_path / "out" / "case.dcm", "1.2.3", DEMO)
    lesions = (box_lesion(series.image, array, np.s_[3:6, 10:15, 8:14]), box_lesion(series.image, array, np.s_[7:9, 25:27, 30:32]))
    voxel_ml = np.prod(series.image.GetSpacing()) / 1000.0
    measurements = Measurements(
        tumour_volume_ml=float(array.sum() * voxel_ml), lesions=lesions,
        pancreas_volume_ml=float(sitk.GetArrayViewFromImage(pancreas).sum() * voxel_ml),
        tumour_mean_intensity=412.5, tumour_median_intensity=400.0)
    return series, seg, measurements


def groups_by_tracking_id(report) -> dict[str, list]:
    content = report.content
    groups: dict[str, list] = {}
    for group in [*content.get_volumetric_roi_measurement_groups(), *content.get_planar_roi_measurement_groups(),
                  *content.get_image_measurement_groups()]:
        groups.setdefault(group.tracking_identifier, []).append(group)
    return groups


def text_items(node, found: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Every TEXT (and CODE: its code value) content item's value under ``node``, by its concept name's code value."""
    found = {} if found is None else found
    for item in node.get("ContentSequence", []):
        if item.ValueType in ("TEXT", "CODE"):
            value = item.TextValue if item.ValueType == "TEXT" else item.ConceptCodeSequence[0].CodeValue
            found.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(str(value))
        text_items(item, found)
    return found


def figures(group) -> dict[tuple[str, str | None], float]:
    """Each measurement's value by (concept meaning, derivation meaning), with its unit checked."""
    out = {}
    for item in group.get_measurements():
        derivation = None if item.derivation is None else item.derivation.meaning
        out[(item.name.meaning, derivation)] = (item.value, item.unit.value)
    return out


def test_report_holds_each_lesion_the_tumour_and_the_pancreas_referencing_the_seg(case, tmp_path):
    series, seg, measurements = case
    path = measurement_report_path(tmp_path / "out" / "case.dcm")
    assert path == tmp_path / "out" / "case_sr.dcm"
    write_measurement_report(build_measurement_report(seg, series.headers, measurements, CONFIDENCE, DEMO), path)
    report = hd.sr.srread(path)
    assert report.Modality == "SR" and report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert report.StudyInstanceUID == seg.StudyInstanceUID and report.SeriesInstanceUID not in (seg.SeriesInstanceUID, series.uid)
    evidence = {s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
                for study in report.CurrentRequestedProcedureEvidenceSequence for s in study.ReferencedSeriesSequence}
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}
    assert evidence[series.uid] == {ds.SOPInstanceUID for ds in series.headers}

    groups = groups_by_tracking_id(report)
    assert set(groups) == {"Tumour", "Lesion 1", "Lesion 2", "Pancreas"}
    numbers = {item.SegmentLabel: int(item.SegmentNumber) for item in seg.SegmentSequence}
    for name, segment in (("Tumour", "tumour"), ("Lesion 1", "tumour"), ("Lesion 2", "tumour"), ("Pancreas", "pancreas")):
        referenced = groups[name][0].referenced_segment
        assert referenced.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert referenced.referenced_segment_numbers == [numbers[segment]]
        assert referenced.source_series_for_segmentation.value == series.uid

    tumour = figures(groups["Tumour"][0])
    assert tumour[("Volume", None)] == (pytest.approx(measurements.tumour_volume_ml), "mL")
    assert tumour[("Number of lesions (observable entity)", None)][0] == 2
    assert tumour[("Long axis", None)] == (pytest.approx(measurements.longest_diameter_mm), "mm")
    assert tumour[("MR signal intensity", "Mean")][0] == pytest.approx(412.5)
    assert tumour[("MR signal intensity", "Median")][0] == pytest.approx(400.0)
    assert tumour[(dicom_sr.MEAN_AGREEMENT.meaning, None)][0] == pytest.approx(0.91)
    assert tumour[(dicom_sr.MIN_AGREEMENT.meaning, None)][0] == pytest.approx(0.83)
    assert tumour[("Volume", "Minimum")][0] == pytest.approx(0.52) and tumour[("Volume", "Maximum")][0] == pytest.approx(0.61)
    evaluations = {e.name.meaning: e.value.meaning for e in groups["Tumour"][0].get_qualitative_evaluations()}
    assert evaluations == {"Size Descriptor": dicom_sr.SIZE_CODES["<=20 mm"].meaning, "Flagged for review": "No"}

    for index, lesion in enumerate(measurements.lesions):
        by_reference = {g.reference_type.meaning: g for g in groups[f"Lesion {index + 1}"]}
        measured, centroid = by_reference["Referenced Segment"], by_reference["Image Region"]  # the centroid: a point
        values = figures(measured)
        assert values[("Volume", None)] == (pytest.approx(lesion.volume_ml), "mL")
        assert values[("Long axis", None)] == (pytest.approx(lesion.longest_in_plane_mm), "mm")
        assert values[("Short axis", None)] == (pytest.approx(lesion.perpendicular_in_plane_mm), "mm")
        assert values[("Maximum 3D Diameter of a Mesh", None)] == (pytest.approx(lesion.longest_3d_mm), "mm")
        assert [e.value.meaning for e in measured.get_qualitative_evaluations()] == [dicom_sr.SIZE_CODES[lesion.size_category].meaning]
        assert centroid.tracking_uid == measured.tracking_uid
        assert centroid.roi.value.ravel().tolist() == pytest.approx(list(lesion.centroid_lps_mm), abs=1e-3)
        assert centroid.roi.frame_of_reference_uid == seg.FrameOfReferenceUID and centroid.roi.graphic_type.value == "POINT"
    assert figures(groups["Pancreas"][0])[("Volume", None)] == (pytest.approx(measurements.pancreas_volume_ml), "mL")

    texts = text_items(report)
    assert set(texts["111001"]) == {DEMONSTRATION_NAME}  # Algorithm Name, in every group
    assert len(texts["111001"]) == len(groups["Tumour"] + groups["Lesion 1"] + groups["Lesion 2"] + groups["Pancreas"])
    assert texts["121013"] == [DEMONSTRATION_NAME]  # Device Observer Name
    assert texts["130400"] == ["128138", "128138"]  # Geometric purpose of region: Center of Mass, one per lesion
    parameters = set(texts["111002"])  # Algorithm Parameters
    assert {"trained_on=fold 0 of splits_final.json: 19 training cases; 5 validation cases", "training_code=314d84a7",
            "trained=2026-11-26T17:21:35+00:00", "checkpoint=fold0.pt"} <= parameters
    assert dciodvfy_errors(path) == []
    assert dciodvfy_errors(tmp_path / "out" / "case.dcm") == []


def test_a_case_without_confidence_or_tumour_invents_nothing(tmp_path):
    write_mr_series(smoke_volume(), tmp_path / "series")
    series = read_dicom_series(tmp_path / "series")
    empty = sitk.Image(series.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(series.image)
    seg = write_dicom_seg({"tumour": empty}, series, tmp_path / "case.dcm", "1.2.3")
    measurements = Measurements(0.0, (), pancreas_volume_ml=55.0, tumour_mean_intensity=None, tumour_median_intensity=None)
    report = build_measurement_report(seg, series.headers, measurements, Confidence(False, 1, reason="--fast"), None)
    write_measurement_report(report, tmp_path / "case_sr.dcm")
    groups = groups_by_tracking_id(hd.sr.srread(tmp_path / "case_sr.dcm"))
    assert set(groups) == {"Tumour", "Pancreas"}
    assert figures(groups["Tumour"][0]) == {("Volume", None): (0.0, "mL"), ("Number of lesions (observable entity)", None): (0.0, "{lesions}")}
    assert groups["Tumour"][0].get_qualitative_evaluations() == []
    assert figures(groups["Pancreas"][0]) == {("Volume", None): (55.0, "mL")}  # no pancreas segment: a group without a region
    assert set(text_items(report)["111001"]) == {ALGORITHM_NAME} and "111002" not in text_items(report)  # no model: no parameters
    assert dciodvfy_errors(tmp_path / "case_sr.dcm") == []


def test_provenance_names_the_baked_demonstration_and_a_test_checkpoint(small_checkpoint):
    baked = resolve_resources(resources_dir=ROOT / "resources", model_dir=ROOT / "no-model-here").model
    assert baked.demonstration and baked.checkpoints == ("segformer3d.pt",)
    assert baked.trained_on.startswith("fold 0 of ") and "training cases" in baked.trained_on and baked.code_revision != "unknown"
    test_model = resolve_resources([small_checkpoint]).model
    assert not test_model.demonstration and test_model.trained_on == "unknown" and test_model.note == "test network"


def test_write_outputs_writes_seg_and_sr_or_neither(case, tmp_path, monkeypatch):
    series, _, measurements = case
    tumour = two_lesions(series.image)
    segmentation = Segmentation(tumour, measurements=measurements, confidence=CONFIDENCE)
    paths = DicomSegPaths(tmp_path / "w" / "x.dcm")
    assert write_outputs(segmentation, paths, series, DEMO) == [tmp_path / "w" / "x.dcm", tmp_path / "w" / "x_sr.dcm"]
    seg = hd.seg.segread(tmp_path / "w" / "x.dcm")
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == DEMONSTRATION_NAME and "demonstration=yes" in algorithm.AlgorithmParameters
    assert "training_code=314d84a7" in algorithm.AlgorithmParameters and "x:1" in algorithm.AlgorithmParameters
    referenced = groups_by_tracking_id(hd.sr.srread(tmp_path / "w" / "x_sr.dcm"))["Tumour"][0].referenced_segment
    assert referenced.referenced_sop_instance_uid == seg.SOPInstanceUID

    def broken(*args, **kwargs):
        raise ValueError("no room for the report")

    monkeypatch.setattr(dicom_sr, "build_measurement_report", broken)
    with pytest.raises(InputError, match="y_sr.dcm: cannot write the DICOM SR: no room for the report"):
        write_outputs(segmentation, DicomSegPaths(tmp_path / "v" / "y.dcm"), series, DEMO)
    assert files_under(tmp_path / "v") == []  # the SEG is removed: a case gets all its outputs or none


def measured(mask: sitk.Image) -> Measurements:
    """Until the pipeline measures: the tumour's volume and one figure per face-connected lesion,
    from the mask (a test's stand-in, checked only for being carried to the SR unchanged)."""
    voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
    labels = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(mask, False)))
    lesions = []
    for label in range(1, int(labels.max()) + 1):
        zyx = np.argwhere(labels == label)
        extent = (zyx.max(axis=0) - zyx.min(axis=0) + 1)[::-1] * np.asarray(mask.GetSpacing())
        centroid = mask.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx.mean(axis=0)[::-1]))
        lesions.append(Lesion(len(zyx) * voxel_ml, tuple(centroid), float(max(extent[:2])), float(min(extent[:2])),
                              float(np.linalg.norm(extent)), "<=20 mm"))
    return Measurements(float((labels > 0).sum() * voxel_ml), tuple(lesions), None, None, None)


def test_a_series_through_the_command_line_gives_a_seg_and_its_sr(tmp_path, tiny_window_checkpoint, capsys, monkeypatch):
    real_finish = Segmenter.finish

    def finish_and_measure(self, *args, **kwargs):
        segmentation = real_finish(self, *args, **kwargs)
        if segmentation.measurements is None:
            segmentation.measurements = measured(segmentation.tumour)
        return segmentation

    monkeypatch.setattr(Segmenter, "finish", finish_and_measure)
    write_mr_series(smoke_volume(), tmp_path / "series")
    code, _, err = run(["-i", tmp_path / "series", "-o", tmp_path / "out" / "seg.dcm", "--save-pancreas",
                        "--checkpoint", tiny_window_checkpoint, "--fast"], capsys)
    assert code == 0, err
    assert sorted(files_under(tmp_path / "out")) == [tmp_path / "out" / "seg.dcm", tmp_path / "out" / "seg_sr.dcm"]
    series = read_dicom_series(tmp_path / "series")
    tumour = read_dicom_seg_masks(tmp_path / "out" / "seg.dcm", series.image)["tumour"]
    assert tumour.any()
    report = hd.sr.srread(tmp_path / "out" / "seg_sr.dcm")
    groups = groups_by_tracking_id(report)
    volume_ml = tumour.sum() * np.prod(series.image.GetSpacing()) / 1000.0
    assert figures(groups["Tumour"][0])[("Volume", None)][0] == pytest.approx(volume_ml)
    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    assert groups["Tumour"][0].referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == ALGORITHM_NAME
    assert "checkpoint=tiny_window.pt" in seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert dciodvfy_errors(tmp_path / "out" / "seg.dcm") == [] and dciodvfy_errors(tmp_path / "out" / "seg_sr.dcm") == []


def test_a_size_category_the_report_cannot_code_is_refused_with_no_file(case, tmp_path):
    series, _, measurements = case
    odd = Measurements(measurements.tumour_volume_ml, (replace(measurements.lesions[0], size_category="huge"),), None, None, None)
    with pytest.raises(InputError, match="z_sr.dcm: cannot write the DICOM SR: unknown size category 'huge'"):
        write_outputs(Segmentation(two_lesions(series.image), measurements=odd), DicomSegPaths(tmp_path / "u" / "z.dcm"), series)
    assert files_under(tmp_path / "u") == []
