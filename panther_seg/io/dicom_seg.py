"""Writing the masks as a DICOM SEG that references the source MR series (and reading one back).

A BINARY segmentation with one segment per mask, coded in SNOMED CT, made by highdicom from the
source series' headers. Each mask slice is matched to its source instance by position (not by
file or slice order), so the SEG's frames reference the right SOPInstanceUIDs.

Every frame is kept (``omit_empty_frames=False``): each segment has one frame per source slice,
so an empty tumour mask is an explicit all-zero segment (a valid SEG that says "no tumour" on
every slice) rather than a segment without frames, and readers need not fill in missing frames.
BINARY frames are stored at one bit per pixel, so the cost is small (rows x columns / 8 bytes per
slice and segment).
"""
from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..results import ModelProvenance
from .dicom import DicomSeries
from .dicom_algorithm import MANUFACTURER, algorithm_name, seg_algorithm
from .files import atomic_path

SEGMENT_ORDER = ("tumour", "pancreas")  # segment numbers 1, 2 when present
GRID_TOLERANCE = 1e-4
POSITION_TOLERANCE_MM = 0.01

MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
PANCREAS = Code("15776009", "SCT", "Pancreas")


def _segment(number: int, name: str, version: str, model: ModelProvenance | None) -> hd.seg.SegmentDescription:
    """Tumour: a neoplasm (morphologically altered structure) in the pancreas; pancreas: the organ."""
    if name == "tumour":
        category, kind, regions = MORPHOLOGICALLY_ALTERED_STRUCTURE, NEOPLASM, [PANCREAS]
    else:
        category, kind, regions = ANATOMICAL_STRUCTURE, PANCREAS, None
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=category, segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=seg_algorithm(version, model),
        tracking_uid=generate_uid(), tracking_id=f"PANTHER {name}", anatomic_regions=regions)


def _check_mask(name: str, mask: sitk.Image, reference: sitk.Image) -> np.ndarray:
    same = mask.GetSize() == reference.GetSize() and all(
        np.allclose(getattr(mask, g)(), getattr(reference, g)(), rtol=0, atol=GRID_TOLERANCE)
        for g in ("GetOrigin", "GetSpacing", "GetDirection"))
    if not same:
        raise ValueError(f"the {name} mask is not on the source series' grid (size, origin, spacing and direction must match)")
    array = sitk.GetArrayFromImage(mask)
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"the {name} mask holds values other than 0 and 1")
    return array.astype(np.uint8)


def _source_slice_indices(source: DicomSeries) -> list[int]:
    """For each source instance (or frame of a multi-frame source), the z index of the volume's
    slice at its position."""
    image = source.image
    indices = []
    for name, position in source.slice_positions():
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in position)))
        z = int(round(index[2]))
        offset = np.asarray(image.TransformIndexToPhysicalPoint((0, 0, z))) - position if 0 <= z < image.GetSize()[2] else None
        if offset is None or np.linalg.norm(offset) > POSITION_TOLERANCE_MM:
            raise ValueError(f"{name}: its ImagePositionPatient {tuple(position)} is no slice of the source volume")
        indices.append(z)
    if sorted(indices) != list(range(image.GetSize()[2])):
        raise ValueError("the source instances do not cover the volume's slices one to one")
    return indices


def _plane_positions(source: DicomSeries) -> list[hd.PlanePositionSequence] | None:
    """A multi-frame source's frames, one per SEG frame (highdicom finds the source frame of each
    by its position); None for single-frame sources, whose instances highdicom matches itself."""
    if not source.frame_numbers:
        return None
    return [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in position])
            for _, position in source.slice_positions()]


def _reference_frames_read(seg: hd.seg.Segmentation, source: DicomSeries) -> None:
    """Point each SEG frame at the source frame that was read at its position: highdicom takes
    the first source frame there, which in a dynamic multi-frame image may be another time point's."""
    if not source.frame_numbers:
        return
    positions = np.asarray([position for _, position in source.slice_positions()])
    for item in seg.PerFrameFunctionalGroupsSequence:
        position = np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        distances = np.linalg.norm(positions - position, axis=1)
        nearest = int(np.argmin(distances))
        if distances[nearest] > POSITION_TOLERANCE_MM:
            raise ValueError(f"SEG frame at {tuple(position)} matches no source frame that was read")
        for derivation in item.DerivationImageSequence:
            for reference in derivation.SourceImageSequence:
                reference.ReferencedFrameNumber = source.frame_numbers[nearest]


def write_dicom_seg(masks: dict[str, sitk.Image], source: DicomSeries, path: Path, algorithm_version: str,
                    model: ModelProvenance | None = None) -> hd.seg.Segmentation:
    """Write ``masks`` ('tumour', and optionally 'pancreas': uint8 {0, 1} on exactly the source
    volume's grid) as one BINARY DICOM SEG at ``path``, atomically (never a partial file); its
    algorithm identification names ``model``. Returns the SEG (an SR references it)."""
    if "tumour" not in masks:
        raise ValueError("a 'tumour' mask is required")
    unknown = sorted(set(masks) - set(SEGMENT_ORDER))
    if unknown:
        raise ValueError(f"unknown mask name(s) {unknown}; expected {list(SEGMENT_ORDER)}")
    names = [n for n in SEGMENT_ORDER if n in masks]
    stacked = np.stack([_check_mask(n, masks[n], source.image) for n in names], axis=-1)  # (z, rows, columns, segments)
    pixels = stacked[_source_slice_indices(source)]  # frame i is source.headers[i]'s (or frame_numbers[i]'s) slice
    first = source.headers[0]
    seg = hd.seg.Segmentation(
        source_images=list(source.headers),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(i + 1, n, algorithm_version, model) for i, n in enumerate(names)],
        series_instance_uid=generate_uid(),
        series_number=int(first.get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm_name(model),
        software_versions=algorithm_version,
        device_serial_number="0",
        content_label="PANTHER",
        content_description="Pancreatic tumour segmentation",
        series_description="PANTHER segmentation",
        omit_empty_frames=False,
        plane_positions=_plane_positions(source),
    )
    _reference_frames_read(seg, source)
    with atomic_path(Path(path)) as tmp:
        seg.save_as(tmp)
    return seg


def read_dicom_seg_masks(path: Path, reference: sitk.Image) -> dict[str, np.ndarray]:
    """A SEG's segments as uint8 arrays (z, y, x) on ``reference``'s grid, keyed by segment label.

    highdicom assembles the frames into a volume by their positions; the volume is then matched
    to the reference grid by axis permutations, flips, padding and cropping only (no resampling):
    a SEG on another grid is refused."""
    seg = hd.seg.segread(str(path))
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    target = hd.Volume.from_simpleitk(_empty_like(reference))
    masks = {}
    for number, label in labels.items():
        volume = seg.get_volume(segment_numbers=[number], combine_segments=True, relabel=True, dtype=np.uint8)
        try:
            matched = volume.match_geometry(target)
        except RuntimeError as e:
            raise ValueError(f"{path}: segment '{label}' is not on the reference grid: {str(e).splitlines()[0]}") from None
        masks[label] = sitk.GetArrayFromImage(matched.to_simpleitk())
    return masks


def _empty_like(reference: sitk.Image) -> sitk.Image:
    empty = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(reference)
    return empty
