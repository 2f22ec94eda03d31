"""A case's measurements as a DICOM Structured Report beside its SEG: a TID 1500 Measurement
Report (highdicom's ``Comprehensive3DSR``) that PACS viewers (OHIF, 3D Slicer's Quantitative
Reporting) list with the segmentation.

One measurement group per finding, each naming the algorithm (TID 4019: the model's provenance,
``dicom_algorithm``), the pancreas as finding site, and the SEG's segment it measures (the SEG's
SOPInstanceUID and segment number, and the source series):

- "Tumour" (TID 1411, the SEG's tumour segment): volume, number of lesions, longest diameter and
  size category of the case, mean and median MR signal intensity inside it, and, when the
  mirrored predictions were compared, their agreement and whether the case is flagged for review;
- "Lesion 1", "Lesion 2", ... (largest first, as ``Measurements.lesions``; the SEG holds all of
  them in its one tumour segment, so each group references that segment and the tracking
  identifier tells the lesions apart): volume, the longest diameter in the slice plane (SCT Long
  Axis), the longest perpendicular to it in that plane (SCT Short Axis, as RECIST's bidimensional
  measurement), the longest 3D diameter, the size category;
- each lesion's centroid: a TID 1410 group with the same tracking identifier, a SCOORD3D point in
  patient coordinates and the geometric purpose "Center of Mass" (CID 219);
- "Pancreas": its volume (TID 1411 on the SEG's pancreas segment; TID 1501 without one).

The size categories and the agreement figures have no standard code: they use the private coding
scheme ``99PANTHER``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..results import SIZE_CATEGORIES, Confidence, Lesion, Measurements, ModelProvenance
from .dicom_algorithm import MANUFACTURER, device_observer, sr_algorithm
from .files import atomic_path

PRIVATE_SCHEME = "99PANTHER"
MILLILITRE = Code("mL", "UCUM", "milliliter")
MILLIMETRE = codes.UCUM.Millimeter
NO_UNITS = codes.UCUM.NoUnits
ARBITRARY_UNITS = Code("[arb'U]", "UCUM", "arbitrary unit")
LESIONS = Code("{lesions}", "UCUM", "lesions")

VOLUME = codes.SCT.Volume
LONG_AXIS = codes.SCT.LongAxis  # the longest diameter in the slice plane
SHORT_AXIS = codes.SCT.ShortAxis  # the longest diameter perpendicular to it, in that plane
MAXIMUM_3D_DIAMETER = codes.IBSI.Maximum3DDiameterOfAMesh  # CID 7470 Linear Measurements
NUMBER_OF_LESIONS = codes.SCT.NumberOfLesions
MR_SIGNAL_INTENSITY = codes.DCM.MRSignalIntensity
SIZE_DESCRIPTOR = codes.DCM.SizeDescriptor
CENTER_OF_MASS = codes.DCM.CenterOfMass
NEOPLASM = codes.SCT.Neoplasm
PANCREAS = codes.SCT.Pancreas
PROCEDURE = codes.LN.MRIUnspecifiedBodyRegion  # CID 100 has no MR of the abdomen
MEAN_AGREEMENT = Code("agree-mean-dice", PRIVATE_SCHEME, "Mirrored predictions: mean Dice with the final mask")
MIN_AGREEMENT = Code("agree-min-dice", PRIVATE_SCHEME, "Mirrored predictions: minimum Dice with the final mask")
REVIEW = Code("review", PRIVATE_SCHEME, "Flagged for review")
SIZE_CODES = {category: Code(f"size-{i + 1}", PRIVATE_SCHEME, f"longest diameter {category} (AJCC T{i + 1} size only)")
              for i, category in enumerate(SIZE_CATEGORIES)}
TUMOUR_TRACKING = "Tumour"
PANCREAS_TRACKING = "Pancreas"
SR_SERIES_OFFSET = 1  # the SR's series number: the SEG's plus this


def lesion_tracking_id(index: int) -> str:
    """'Lesion 1' for the largest lesion: the order of ``Measurements.lesions``."""
    return f"Lesion {index + 1}"


def _segment_numbers(seg: Dataset) -> dict[str, int]:
    return {str(item.SegmentLabel): int(item.SegmentNumber) for item in seg.SegmentSequence}


def _referenced_segment(seg: Dataset, number: int) -> hd.sr.ReferencedSegment:
    return hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
                                   source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))


def _size(category: str) -> hd.sr.QualitativeEvaluation:
    if category not in SIZE_CODES:
        raise ValueError(f"unknown size category {category!r} (expected one of {', '.join(SIZE_CATEGORIES)})")
    return hd.sr.QualitativeEvaluation(SIZE_DESCRIPTOR, SIZE_CODES[category])


def _mm(name: Code, value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=MILLIMETRE)


def _volume(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=VOLUME, value=float(value), unit=MILLILITRE)


def _confidence(confidence: Confidence | None) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """The mirrored predictions' agreement, only when it was computed: never invented."""
    if confidence is None or not confidence.computed:
        return [], []
    numbers = [hd.sr.Measurement(name=code, value=float(value), unit=NO_UNITS)
               for code, value in ((MEAN_AGREEMENT, confidence.mean_dice), (MIN_AGREEMENT, confidence.min_dice)) if value is not None]
    numbers += [hd.sr.Measurement(name=VOLUME, value=float(value), unit=MILLILITRE, derivation=derivation)
                for derivation, value in ((codes.SCT.Minimum, confidence.volume_ml_min), (codes.SCT.Maximum, confidence.volume_ml_max))
                if value is not None]
    flags = [] if confidence.review is None else [
        hd.sr.QualitativeEvaluation(REVIEW, codes.SCT.Yes if confidence.review else codes.SCT.No)]
    return numbers, flags


def _tumour_group(seg: Dataset, number: int, measurements: Measurements, confidence: Confidence | None,
                  algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    numbers = [_volume(measurements.tumour_volume_ml),
               hd.sr.Measurement(name=NUMBER_OF_LESIONS, value=float(len(measurements.lesions)), unit=LESIONS)]
    if measurements.longest_diameter_mm is not None:
        numbers.append(_mm(LONG_AXIS, measurements.longest_diameter_mm))
    numbers += [hd.sr.Measurement(name=MR_SIGNAL_INTENSITY, value=float(value), unit=ARBITRARY_UNITS, derivation=derivation)
                for derivation, value in ((codes.SCT.Mean, measurements.tumour_mean_intensity),
                                          (codes.SCT.Median, measurements.tumour_median_intensity)) if value is not None]
    agreement, flags = _confidence(confidence)
    size = [] if measurements.size_category is None else [_size(measurements.size_category)]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=TUMOUR_TRACKING),
        referenced_segment=_referenced_segment(seg, number), finding_type=NEOPLASM, algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(PANCREAS)], measurements=numbers + agreement, qualitative_evaluations=size + flags)


def _lesion_groups(seg: Dataset, number: int, index: int, lesion: Lesion, algorithm: hd.sr.AlgorithmIdentification) -> list:
    """The lesion's measurements on the tumour segment, and its centroid as a point."""
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=lesion_tracking_id(index))
    measured = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_segment=_referenced_segment(seg, number), finding_type=NEOPLASM,
        algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(PANCREAS)],
        measurements=[_volume(lesion.volume_ml), _mm(LONG_AXIS, lesion.longest_in_plane_mm),
                      _mm(SHORT_AXIS, lesion.perpendicular_in_plane_mm), _mm(MAXIMUM_3D_DIAMETER, lesion.longest_3d_mm)],
        qualitative_evaluations=[_size(lesion.size_category)])
    centroid = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=NEOPLASM, algorithm_id=algorithm, geometric_purpose=CENTER_OF_MASS,
        referenced_region=hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POINT, np.array([lesion.centroid_lps_mm], dtype=float),
                                              seg.FrameOfReferenceUID))
    return [measured, centroid]


def _pancreas_group(seg: Dataset, numbers: dict[str, int], volume_ml: float, algorithm: hd.sr.AlgorithmIdentification):
    """On the SEG's pancreas segment when it has one; else a group with no region (TID 1501)."""
    common = dict(tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=PANCREAS_TRACKING),
                  finding_type=PANCREAS, algorithm_id=algorithm, measurements=[_volume(volume_ml)])
    if "pancreas" in numbers:
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=_referenced_segment(seg, numbers["pancreas"]), **common)
    return hd.sr.MeasurementsAndQualitativeEvaluations(**common)


def build_measurement_report(seg_dataset: Dataset, source_series_datasets: Sequence[Dataset], measurements: Measurements,
                             confidence: Confidence | None, provenance: ModelProvenance | None) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of ``measurements`` on the SEG ``seg_dataset`` (which holds a 'tumour'
    segment, and a 'pancreas' one when asked) of ``source_series_datasets``; the algorithm's
    version is the SEG's SoftwareVersions. Pure: builds, writes nothing."""
    numbers = _segment_numbers(seg_dataset)
    if "tumour" not in numbers:
        raise ValueError("the SEG has no 'tumour' segment to reference")
    version = str(seg_dataset.get("SoftwareVersions", "unknown"))
    algorithm = sr_algorithm(version, provenance)
    groups: list = [_tumour_group(seg_dataset, numbers["tumour"], measurements, confidence, algorithm)]
    for index, lesion in enumerate(measurements.lesions):
        groups += _lesion_groups(seg_dataset, numbers["tumour"], index, lesion, algorithm)
    if measurements.pancreas_volume_ml is not None:
        groups.append(_pancreas_group(seg_dataset, numbers, measurements.pancreas_volume_ml, algorithm))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_observer(version, provenance)),
        procedure_reported=PROCEDURE, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg_dataset, *source_series_datasets], content=report[0],
        series_instance_uid=generate_uid(), series_number=int(seg_dataset.SeriesNumber) + SR_SERIES_OFFSET,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description="PANTHER measurements")


def measurement_report_path(seg_path: Path) -> Path:
    """``<seg stem>_sr.dcm`` beside the SEG (``case.dcm`` gives ``case_sr.dcm``)."""
    seg_path = Path(seg_path)
    return seg_path.with_name(f"{seg_path.stem}_sr.dcm")


def write_measurement_report(report: Dataset, path: Path) -> None:
    """Atomically: a temporary file, then a rename (never a partial report)."""
    with atomic_path(Path(path)) as tmp:
        report.save_as(tmp, enforce_file_format=True)
