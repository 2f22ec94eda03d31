"""Reading one MR volume from DICOM: a folder of single-frame images, or one enhanced multi-frame
image (Enhanced MR, Legacy Converted Enhanced MR) given as its folder or as the file itself;
refusing what would give a wrong volume.

Both kinds go through one route: every slice (a single-frame file, or one frame of a multi-frame
file, its geometry and time taken from the per-frame over the shared functional groups) is
checked by the same code. Voxels come from the field's readers: GDCM through SimpleITK for a
single-frame series, highdicom (frame by frame, its modality transform applied) for a
multi-frame image, stacked here in the order checked (ITK reads an enhanced file as one
"series" in storage order and ignores the functional groups). ITK's grid is then checked against
the DICOM patient coordinates: a series with a missing slice, uneven spacing, a gantry tilt,
mixed orientations or pixel sizes, several stacks, or more dimensions than space and time is
refused, as is anything GDCM warns about.

Several time points at the same slice positions (a dynamic series) are told apart by
TemporalPositionIdentifier (TemporalPositionIndex in a multi-frame image), TriggerTime or
AcquisitionTime, whichever first splits them into time points; ``phase`` picks one (1-based, in
time order), else the refusal lists them.

Slice-position tolerance: every slice must lie within ``max(0.01 mm, 1 % of the slice step)``
of the regular grid that starts at the first slice and steps the average step along the normal
of ImageOrientationPatient, both along the normal (else missing slice or uneven spacing) and
across it (else tilt / slices not stacked along their normal). The bound is on each slice's
absolute position, so errors cannot accumulate along the series.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import InputError
from ..system.memory import MemoryBudget
from .dicom_files import has_dicom_preamble, is_dicom_file, is_dicom_folder  # noqa: F401 (this module's readers' names)
from .integrity import native_stderr

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTI_FRAME_MR = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}
# Objects that may sit beside the images and are not part of any image volume.
NON_IMAGE_MODALITIES = {"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "KO", "REG", "DOC", "PLAN", "FID"}
SLICE_TOLERANCE_MM = 0.01
SLICE_TOLERANCE_FRACTION = 0.01
GEOMETRY_TOLERANCE = 1e-4  # ITK's image against the DICOM patient coordinates
ORIENTATION_TOLERANCE = 1e-4  # between slices' ImageOrientationPatient / PixelSpacing
# What tells the time points of a dynamic series apart, in the order tried.
TEMPORAL_KEYWORDS = ("TemporalPositionIdentifier", "TemporalPositionIndex", "TriggerTime", "AcquisitionTime",
                     "FrameAcquisitionDateTime")
# A slice's own attributes: for a frame, found in its functional groups (per-frame over shared).
SLICE_KEYWORDS = ("ImageOrientationPatient", "PixelSpacing", "ImagePositionPatient", "RescaleSlope", "RescaleIntercept",
                  "StackID", "DimensionIndexValues", *TEMPORAL_KEYWORDS)
# Dimensions of a multi-frame image that may vary across its frames: space (one stack), time, and
# the source's InstanceNumber (a Legacy Converted image's frame order; positions are what is checked).
SPATIAL_DIMENSIONS = {"StackID", "InStackPositionNumber", "ImagePositionPatient", "InstanceNumber"}
TEMPORAL_DIMENSIONS = {"TemporalPositionIndex", "TemporalPositionIdentifier", "TriggerTime", "TriggerDelayTime",
                       "FrameAcquisitionDateTime", "FrameReferenceDateTime", "AcquisitionTime"}


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found in a folder, as listed to a user who must choose one."""

    uid: str
    modality: str
    description: str
    files: int

    def describe(self) -> str:
        return f"{self.uid} ({self.modality}, '{self.description}', {self.files} files)"


@dataclass(frozen=True)
class DicomSeries:
    """A read series: the volume and, slice for slice in the volume's z order, the files and
    their headers (without pixel data), which a DICOM SEG writer references. A multi-frame image
    is one file and one header, and ``frame_numbers`` gives the frame (1-based) of each slice."""

    image: sitk.Image
    uid: str
    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]
    frame_numbers: tuple[int, ...] = ()

    def slice_positions(self) -> list[tuple[str, np.ndarray]]:
        """Each referenced instance (single-frame) or frame (multi-frame) and its
        ImagePositionPatient, in the order of ``headers`` or ``frame_numbers``."""
        if self.frame_numbers:
            header = self.headers[0]
            return [(f"{self.files[0].name} frame {n}", _position(_frame_attributes(header, n), self.files[0]))
                    for n in self.frame_numbers]
        return [(path.name, _position(ds, path)) for path, ds in zip(self.files, self.headers)]


@dataclass(frozen=True)
class _Slice:
    """One 2D image: a single-frame file, or one frame of a multi-frame file."""

    path: Path
    header: Dataset
    frame: int | None  # 1-based; None for a single-frame file
    attributes: Dataset  # the header itself, or the frame's functional groups flattened

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame}"


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and has_dicom_preamble(p))


def _is_image(ds: Dataset) -> bool:
    return "Rows" in ds and "Columns" in ds and str(ds.get("Modality", "")).upper() not in NON_IMAGE_MODALITIES


def _is_multi_frame(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in MULTI_FRAME_MR or int(ds.get("NumberOfFrames", 1) or 1) > 1


def _image_headers(path: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of the image objects in a folder (or of one file), by SeriesInstanceUID; SEG, SR
    and the like ignored."""
    path = Path(path)
    if path.is_file():
        if not has_dicom_preamble(path):
            raise InputError(path, "not a DICOM file (no 'DICM' at byte 128)")
        files = [path]
    elif path.is_dir():
        files = _dicom_files(path)
        if not files:
            raise InputError(path, "no DICOM files in the folder (none has 'DICM' at byte 128)")
    else:
        raise InputError(path, "not a folder of DICOM files")
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as e:
            raise InputError(file, f"unreadable DICOM header: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
        if not _is_image(ds):
            continue
        if "SeriesInstanceUID" not in ds:
            raise InputError(file, "DICOM image without a SeriesInstanceUID")
        series[str(ds.SeriesInstanceUID)].append((file, ds))
    if not series:
        where = "file is not" if path.is_file() else "folder holds only non-image objects such as SEG or SR, no"
        raise InputError(path, f"no DICOM image: the {where} an image")
    return dict(series)


def _info(uid: str, members: list[tuple[Path, Dataset]]) -> SeriesInfo:
    first = members[0][1]
    return SeriesInfo(uid, str(first.get("Modality", "?")), str(first.get("SeriesDescription", "")), len(members))


def list_series(folder: Path) -> list[SeriesInfo]:
    """The image series in a folder (non-recursive), in UID order."""
    return [_info(uid, members) for uid, members in sorted(_image_headers(folder).items())]


def _vector(ds: Dataset, path: Path, keyword: str, length: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != length:
        raise InputError(path, f"missing or malformed {keyword}")
    vector = np.asarray([float(v) for v in value], dtype=float)
    if not np.all(np.isfinite(vector)):
        raise InputError(path, f"{keyword} is not finite")
    return vector


def _position(attributes: Dataset, path: Path) -> np.ndarray:
    return _vector(attributes, path, "ImagePositionPatient", 3)


def _frame_attributes(ds: Dataset, frame: int) -> Dataset:
    """Frame ``frame`` (1-based)'s own attributes (SLICE_KEYWORDS): the top level's, overridden
    by those in the shared functional groups, overridden by the frame's (each functional group
    is a sequence of one item; Legacy Converted images keep unassigned attributes the same way)."""
    view = Dataset()
    groups = [ds.SharedFunctionalGroupsSequence[0]] if ds.get("SharedFunctionalGroupsSequence") else []
    groups.append(ds.PerFrameFunctionalGroupsSequence[frame - 1])
    items = [ds] + [element.value[0] for group in groups for element in group if element.VR == "SQ" and len(element.value)]
    for item in items:
        for keyword in SLICE_KEYWORDS:
            if keyword in item:
                view[keyword] = item[keyword]
    return view


def _check_dimensions(where: Path, path: Path, ds: Dataset, frames: list[_Slice]) -> None:
    """One stack, and no dimension but space and time varying across the frames."""
    stacks = sorted({str(f.attributes.get("StackID", "")) for f in frames})
    if len(stacks) > 1:
        raise InputError(where, f"{path.name} holds {len(stacks)} stacks (StackID {', '.join(stacks)}): one volume per image is read")
    pointers = [keyword_for_tag(item.DimensionIndexPointer) or str(item.DimensionIndexPointer)
                for item in ds.get("DimensionIndexSequence", [])]
    for i, keyword in enumerate(pointers):
        if keyword in SPATIAL_DIMENSIONS or keyword in TEMPORAL_DIMENSIONS:
            continue
        values = {tuple(np.atleast_1d(f.attributes.get("DimensionIndexValues", ())).tolist())[i:i + 1] for f in frames}
        if len(values) > 1:
            raise InputError(where, f"{path.name} varies along the dimension {keyword} ({len(values)} values): several echoes, "
                                    "b-values or contrasts in one image are not a volume")


def _slices(uid: str, where: Path, members: list[tuple[Path, Dataset]]) -> list[_Slice]:
    """The series' 2D images: its files, or the frames of its one multi-frame image."""
    multi = [(path, ds) for path, ds in members if _is_multi_frame(ds)]
    if not multi:
        return [_Slice(path, ds, None, ds) for path, ds in members]
    if len(members) > 1:
        kind = MULTI_FRAME_MR.get(str(multi[0][1].get("SOPClassUID", "")), "multi-frame")
        raise InputError(where, f"series {uid} has {len(members)} instances, {len(multi)} of them {kind}: "
                                "a series is read as one multi-frame image or as single-frame images only")
    path, ds = multi[0]
    count = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != count:
        raise InputError(path, f"NumberOfFrames is {count} but the per-frame functional groups describe "
                               f"{0 if per_frame is None else len(per_frame)} frames")
    frames = [_Slice(path, ds, n, _frame_attributes(ds, n)) for n in range(1, count + 1)]
    _check_dimensions(where, path, ds, frames)
    return frames


def _time_value(value: object) -> float | str:
    try:
        return float(str(value))
    except ValueError:
        return str(value)


def _time_points(slices: list[_Slice], normal: np.ndarray) -> tuple[str, list[list[_Slice]]] | None:
    """The slices split into time points by the first TEMPORAL_KEYWORDS attribute that leaves no
    two slices of one time point at one position, in time order; None where none does."""
    heights = [round(float(_position(s.attributes, s.path) @ normal) / SLICE_TOLERANCE_MM) for s in slices]
    for keyword in TEMPORAL_KEYWORDS:
        if not all(keyword in s.attributes for s in slices):
            continue
        groups: dict[object, list[int]] = defaultdict(list)
        for i, s in enumerate(slices):
            groups[str(s.attributes[keyword].value)].append(i)
        if len(groups) < 2 or any(len({heights[i] for i in g}) != len(g) for g in groups.values()):
            continue
        ordered = sorted(groups.items(), key=lambda kv: (isinstance(_time_value(kv[0]), str), _time_value(kv[0])))
        return keyword, [[slices[i] for i in g] for _, g in ordered]
    return None


def _describe_time_point(number: int, phase: list[_Slice]) -> str:
    first = phase[0].attributes
    present = [f"{k} {first[k].value}" for k in TEMPORAL_KEYWORDS if k in first and str(first[k].value) != ""]
    return f"{number}: {', '.join(present)}, {len(phase)} slices"


def _select_time_point(uid: str, where: Path, slices: list[_Slice], phase: int | None) -> list[_Slice]:
    """A dynamic series' time point ``phase`` (the refusal lists them where none is chosen);
    a series of one time point as it is (``phase`` 1 or None)."""
    first = slices[0]
    orientation = _vector(first.attributes, first.path, "ImageOrientationPatient", 6)
    normal = np.cross(orientation[:3], orientation[3:])
    heights = [round(float(_position(s.attributes, s.path) @ normal) / SLICE_TOLERANCE_MM) for s in slices]
    split = _time_points(slices, normal) if len(set(heights)) < len(heights) else None
    if split is None:
        if phase not in (None, 1):
            raise InputError(where, f"series {uid} has one time point: --phase {phase} does not exist")
        return slices
    keyword, phases = split
    listed = "; ".join(_describe_time_point(k + 1, p) for k, p in enumerate(phases))
    if phase is None:
        raise InputError(where, f"series {uid} is dynamic: {len(phases)} time points at the same slice positions "
                                f"(by {keyword}): {listed}; pass --phase K to segment time point K")
    if not 1 <= phase <= len(phases):
        raise InputError(where, f"series {uid} has {len(phases)} time points ({listed}): --phase {phase} does not exist")
    return phases[phase - 1]


@dataclass(frozen=True)
class _Geometry:
    origin: np.ndarray
    direction: np.ndarray  # columns: row direction, column direction, slice normal
    spacing: np.ndarray
    size: tuple[int, int, int]


def _direction(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """The volume's direction matrix from ImageOrientationPatient's cosines (stored to a few
    decimals, so not exactly orthonormal), made orthonormal as GDCM and ITK do it: the column
    cosine and the slice normal normalised, the row direction their cross product. One matrix
    for single-frame and multi-frame images alike, so that both give the same grid to the bit."""
    col = col / np.linalg.norm(col)
    normal = np.cross(row / np.linalg.norm(row), col)
    normal = normal / np.linalg.norm(normal)
    return np.column_stack([np.cross(col, normal), col, normal])


def _place(image: sitk.Image, geometry: _Geometry) -> sitk.Image:
    """The volume on the grid the DICOM patient coordinates give (checked, for a reader's own grid, first)."""
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing))
    image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    return image


def _check_geometry(uid: str, where: Path, slices: list[_Slice]) -> tuple[list[_Slice], _Geometry]:
    """The slices sorted along the normal, and the grid they form; refuse any irregularity."""
    label = f"series {uid}"
    first = slices[0]
    orientation = _vector(first.attributes, first.path, "ImageOrientationPatient", 6)
    pixel_spacing = _vector(first.attributes, first.path, "PixelSpacing", 2)
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(first.path, f"ImageOrientationPatient {tuple(orientation)} is not two orthogonal unit vectors")
    if np.any(pixel_spacing <= 0):
        raise InputError(first.path, f"PixelSpacing {tuple(pixel_spacing)} is not positive")
    direction = _direction(row, col)
    normal = direction[:, 2]
    size = (int(first.header.Rows), int(first.header.Columns))
    positions = []
    for s in slices:
        if (int(s.header.Rows), int(s.header.Columns)) != size:
            raise InputError(where, f"{label} mixes slice sizes: {s.name} is {s.header.Rows}x{s.header.Columns}, "
                                    f"{first.name} {size[0]}x{size[1]}")
        if np.abs(_vector(s.attributes, s.path, "ImageOrientationPatient", 6) - orientation).max() > ORIENTATION_TOLERANCE:
            raise InputError(where, f"{label} mixes orientations: {s.name} and {first.name} differ in ImageOrientationPatient")
        if np.abs(_vector(s.attributes, s.path, "PixelSpacing", 2) - pixel_spacing).max() > ORIENTATION_TOLERANCE:
            raise InputError(where, f"{label} mixes pixel sizes: {s.name} and {first.name} differ in PixelSpacing")
        positions.append(_position(s.attributes, s.path))
    if len(slices) < 2:
        hint = " (give the folder of a single-frame series)" if where.is_file() else ""
        raise InputError(where, f"{label} has {len(slices)} slice; a volume needs at least 2{hint}")
    heights = np.asarray([p @ normal for p in positions])
    order = np.argsort(heights, kind="stable")
    slices = [slices[i] for i in order]
    positions = np.asarray([positions[i] for i in order])
    heights = heights[order]
    steps = np.diff(heights)
    if np.any(steps < SLICE_TOLERANCE_MM):
        i = int(np.argmin(steps))
        raise InputError(where, f"{label} has two slices at the same position ({slices[i].name} and {slices[i + 1].name}): "
                                "several echoes, phases or time points in one series are not a volume")
    step = float((heights[-1] - heights[0]) / (len(heights) - 1))
    tolerance = max(SLICE_TOLERANCE_MM, SLICE_TOLERANCE_FRACTION * step)
    median = float(np.median(steps))
    for i, s in enumerate(steps):
        if abs(s - median) > tolerance:
            ratio = s / median
            if round(ratio) >= 2 and abs(s - round(ratio) * median) <= tolerance:
                raise InputError(where, f"{label} is missing {round(ratio) - 1} slice(s) between {slices[i].name} and "
                                        f"{slices[i + 1].name} (a gap of {s:.3f} mm where the series steps {median:.3f} mm)")
            raise InputError(where, f"{label} has uneven slice spacing (steps from {steps.min():.3f} to {steps.max():.3f} mm)")
    off_grid = np.abs(heights - (heights[0] + step * np.arange(len(heights)))).max()
    if off_grid > tolerance:
        raise InputError(where, f"{label} has uneven slice spacing (a slice {off_grid:.3f} mm off the regular grid)")
    lateral = positions - positions[0] - np.outer(heights - heights[0], normal)
    drift = float(np.linalg.norm(lateral, axis=1).max())
    if drift > tolerance:
        raise InputError(where, f"{label} is tilted: slices are not stacked along their normal (a slice is {drift:.3f} mm "
                                "sideways of the first one's normal; gantry tilt?)")
    geometry = _Geometry(origin=positions[0], direction=direction,
                         spacing=np.asarray([pixel_spacing[1], pixel_spacing[0], step]),
                         size=(int(first.header.Columns), int(first.header.Rows), len(slices)))
    return slices, geometry


def _check_series(uid: str, where: Path, members: list[tuple[Path, Dataset]]) -> None:
    for path, ds in members:
        modality = str(ds.get("Modality", "?"))
        if modality != "MR":
            raise InputError(where, f"series {uid} is {modality}, not MR")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, f"series {uid} is not greyscale (SamplesPerPixel {ds.SamplesPerPixel})")


def _itk_problem(e: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "unknown reason")[:160]


def _read_with_gdcm(uid: str, folder: Path, files: list[Path], series_files: list[Path], varying_rescale: bool) -> sitk.Image:
    """GDCM's series reader, over exactly the files checked here (``files``: one time point of
    ``series_files`` in a dynamic series, else all of them); any warning is a refusal."""
    with native_stderr() as captured:
        try:
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
            gdcm_files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) if uid in ids else ()
        except RuntimeError as e:
            raise InputError(folder, f"GDCM cannot list the series: {_itk_problem(e)}") from None
    if captured.text.strip():
        raise InputError(folder, f"GDCM reported a problem while listing the series: {captured.first_line}")
    if {Path(f).resolve() for f in gdcm_files} != {f.resolve() for f in series_files}:
        raise InputError(folder, f"GDCM groups series {uid} differently ({len(gdcm_files)} files where the headers give {len(series_files)})")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])  # in the order checked here, along the normal
    if varying_rescale:  # each slice rescaled on its own: a common type that holds all of them
        reader.SetOutputPixelType(sitk.sitkFloat32)
    with native_stderr() as captured:
        try:
            image = reader.Execute()
        except RuntimeError as e:
            raise InputError(folder, f"cannot read series {uid}: {_itk_problem(e)}") from None
    if captured.text.strip():
        raise InputError(folder, f"the reader reported a problem while reading series {uid}: {captured.first_line}")
    return image


def _read_frames(uid: str, path: Path, slices: list[_Slice], geometry: _Geometry, pixel_type: int) -> sitk.Image:
    """A multi-frame image's frames, decoded by highdicom with their modality transform (the
    Pixel Value Transformation of their functional groups, as GDCM applies a single-frame
    file's rescale), stacked in the order checked here, on the checked grid."""
    import highdicom as hd

    try:
        image = hd.imread(str(path))
        frames = [image.get_frame(s.frame, dtype=np.float64, apply_real_world_transform=False, apply_voi_transform=False,
                                  apply_presentation_lut=False) for s in slices]
    except (ValueError, TypeError, AttributeError, KeyError, NotImplementedError, RuntimeError, OSError) as e:
        raise InputError(path, f"cannot read series {uid}'s frames: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
    return _place(sitk.Cast(sitk.GetImageFromArray(np.stack(frames)), pixel_type), geometry)


def _verify_image(uid: str, where: Path, image: sitk.Image, geometry: _Geometry) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(where, f"series {uid} did not read as a 3D scalar volume")
    if tuple(image.GetSize()) != geometry.size:
        raise InputError(where, f"series {uid} read as {image.GetSize()} voxels where the headers give {geometry.size}")
    checks = {
        "origin": (np.asarray(image.GetOrigin()), geometry.origin),
        "spacing": (np.asarray(image.GetSpacing()), geometry.spacing),
        "direction": (np.asarray(image.GetDirection()).reshape(3, 3), geometry.direction),
    }
    for name, (read, expected) in checks.items():
        if np.abs(read - expected).max() > GEOMETRY_TOLERANCE:
            raise InputError(where, f"series {uid} read with {name} {tuple(np.round(read.ravel(), 6))} where the DICOM "
                                     f"patient coordinates give {tuple(np.round(expected.ravel(), 6))}")


def _rescale(s: _Slice) -> tuple[float, float]:
    return float(s.attributes.get("RescaleSlope", 1) or 1), float(s.attributes.get("RescaleIntercept", 0) or 0)


def _pixel_type(slices: list[_Slice]) -> int:
    """The voxel type GDCM gives a single-frame series, for multi-frame images too: float32 where
    the rescale varies between slices (set here), float64 for a fractional one, else a 32-bit integer."""
    rescales = {_rescale(s) for s in slices}
    if len(rescales) > 1:
        return sitk.sitkFloat32
    slope, intercept = next(iter(rescales))
    if not (slope.is_integer() and intercept.is_integer()):
        return sitk.sitkFloat64
    return sitk.sitkInt32 if int(slices[0].header.get("BitsAllocated", 16)) <= 16 else sitk.sitkFloat64


def _bytes_per_voxel(slices: list[_Slice]) -> int:
    """What the reader allocates per voxel, an upper bound for GDCM (a rescaled integer may
    widen to 32 bits, a fractional slope or intercept gives float64)."""
    return sitk.Image([1, 1], _pixel_type(slices)).GetSizeOfPixelComponent()


def read_dicom_series(path: Path, series_uid: str | None = None, budget: MemoryBudget | None = None,
                      phase: int | None = None) -> DicomSeries:
    """The MR volume of one series in the folder ``path`` (the only image series, or
    ``series_uid``), or of the multi-frame image ``path``; of a dynamic series, time point
    ``phase`` (1-based, in time order).

    The volume's geometry is the DICOM patient coordinates' (origin: ImagePositionPatient of
    the first slice along the normal; direction: ImageOrientationPatient's row and column
    cosines and their cross product; spacing: PixelSpacing and the measured slice step),
    checked against what ITK built to within 1e-4. Voxels are rescaled by
    RescaleSlope/Intercept as SimpleITK does (float32 where the rescale varies between slices).
    ``budget`` refuses a series too large for memory from its headers, before any voxel is read.
    """
    where = Path(path)
    series = _image_headers(where)
    if series_uid is None:
        if len(series) > 1:
            listed = "; ".join(_info(uid, m).describe() for uid, m in sorted(series.items()))
            raise InputError(where, f"{len(series)} image series in the folder: {listed}; pass --series-uid to choose one")
        series_uid = next(iter(series))
    elif series_uid not in series:
        listed = "; ".join(_info(uid, m).describe() for uid, m in sorted(series.items()))
        raise InputError(where, f"no image series {series_uid} in the folder (found: {listed})")
    members = series[series_uid]
    _check_series(series_uid, where, members)
    slices = _select_time_point(series_uid, where, _slices(series_uid, where, members), phase)
    slices, geometry = _check_geometry(series_uid, where, slices)
    if budget is not None:
        budget.check_image_size(where, geometry.size, _bytes_per_voxel(slices))
    multi_frame = slices[0].frame is not None
    if multi_frame:
        image = _read_frames(series_uid, slices[0].path, slices, geometry, _pixel_type(slices))
    else:
        varying = len({_rescale(s) for s in slices}) > 1
        image = _read_with_gdcm(series_uid, where, [s.path for s in slices], [p for p, _ in members], varying_rescale=varying)
    _verify_image(series_uid, where, image, geometry)
    image = _place(image, geometry)
    if multi_frame:
        return DicomSeries(image=image, uid=series_uid, files=(slices[0].path,), headers=(slices[0].header,),
                           frame_numbers=tuple(int(s.frame) for s in slices))
    return DicomSeries(image=image, uid=series_uid, files=tuple(s.path for s in slices), headers=tuple(s.header for s in slices))
