"""Reading one MR series from a folder of DICOM files, refusing what would give a wrong volume.

SimpleITK's series reader (GDCM) reads the voxels; every header is also read with pydicom
(without pixels) so that the geometry can be checked slice by slice before and after: ITK
builds a regular grid from the first slice's position and an average slice step, and silently
produces a distorted volume from a series with a missing slice, uneven spacing, a gantry tilt,
mixed orientations or pixel sizes. Those are refused here, as is anything GDCM warns about.

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
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import InputError
from ..system.memory import MemoryBudget
from .integrity import native_stderr

PREAMBLE_OFFSET = 128
MAGIC = b"DICM"
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
    their headers (without pixel data), which a DICOM SEG writer references."""

    image: sitk.Image
    uid: str
    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]


def has_dicom_preamble(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' at byte 128 (files without the preamble are not accepted)."""
    try:
        with open(path, "rb") as f:
            f.seek(PREAMBLE_OFFSET)
            return f.read(4) == MAGIC
    except OSError:
        return False


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and has_dicom_preamble(p))


def is_dicom_folder(path: Path) -> bool:
    """A folder with at least one DICOM file in it (other files are tolerated)."""
    path = Path(path)
    return path.is_dir() and any(p.is_file() and has_dicom_preamble(p) for p in path.iterdir())


def _is_image(ds: Dataset) -> bool:
    return "Rows" in ds and "Columns" in ds and str(ds.get("Modality", "")).upper() not in NON_IMAGE_MODALITIES


def _image_headers(folder: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of the folder's image objects, by SeriesInstanceUID; SEG, SR and the like ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of DICOM files")
    files = _dicom_files(folder)
    if not files:
        raise InputError(folder, "no DICOM files in the folder (none has 'DICM' at byte 128)")
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as e:
            raise InputError(path, f"unreadable DICOM header: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
        if not _is_image(ds):
            continue
        if "SeriesInstanceUID" not in ds:
            raise InputError(path, "DICOM image without a SeriesInstanceUID")
        series[str(ds.SeriesInstanceUID)].append((path, ds))
    if not series:
        raise InputError(folder, "no DICOM image in the folder (only non-image objects such as SEG or SR)")
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


@dataclass(frozen=True)
class _Geometry:
    origin: np.ndarray
    direction: np.ndarray  # columns: row direction, column direction, slice normal
    spacing: np.ndarray
    size: tuple[int, int, int]


def _check_geometry(uid: str, folder: Path, members: list[tuple[Path, Dataset]]) -> tuple[list[tuple[Path, Dataset]], _Geometry]:
    """The slices sorted along the normal, and the grid they form; refuse any irregularity."""
    where = f"series {uid}"
    first_path, first = members[0]
    orientation = _vector(first, first_path, "ImageOrientationPatient", 6)
    pixel_spacing = _vector(first, first_path, "PixelSpacing", 2)
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(first_path, f"ImageOrientationPatient {tuple(orientation)} is not two orthogonal unit vectors")
    if np.any(pixel_spacing <= 0):
        raise InputError(first_path, f"PixelSpacing {tuple(pixel_spacing)} is not positive")
    normal = np.cross(row, col)
    positions = []
    for path, ds in members:
        if (int(ds.Rows), int(ds.Columns)) != (int(first.Rows), int(first.Columns)):
            raise InputError(folder, f"{where} mixes slice sizes: {path.name} is {ds.Rows}x{ds.Columns}, "
                                     f"{first_path.name} {first.Rows}x{first.Columns}")
        if np.abs(_vector(ds, path, "ImageOrientationPatient", 6) - orientation).max() > ORIENTATION_TOLERANCE:
            raise InputError(folder, f"{where} mixes orientations: {path.name} and {first_path.name} differ in ImageOrientationPatient")
        if np.abs(_vector(ds, path, "PixelSpacing", 2) - pixel_spacing).max() > ORIENTATION_TOLERANCE:
            raise InputError(folder, f"{where} mixes pixel sizes: {path.name} and {first_path.name} differ in PixelSpacing")
        positions.append(_vector(ds, path, "ImagePositionPatient", 3))
    heights = np.asarray([p @ normal for p in positions])
    order = np.argsort(heights, kind="stable")
    members = [members[i] for i in order]
    positions = np.asarray([positions[i] for i in order])
    heights = heights[order]
    steps = np.diff(heights)
    if np.any(steps < SLICE_TOLERANCE_MM):
        i = int(np.argmin(steps))
        raise InputError(folder, f"{where} has two slices at the same position ({members[i][0].name} and {members[i + 1][0].name}): "
                                 "several echoes, phases or time points in one series are not a volume")
    step = float((heights[-1] - heights[0]) / (len(heights) - 1))
    tolerance = max(SLICE_TOLERANCE_MM, SLICE_TOLERANCE_FRACTION * step)
    median = float(np.median(steps))
    for i, s in enumerate(steps):
        if abs(s - median) > tolerance:
            ratio = s / median
            if round(ratio) >= 2 and abs(s - round(ratio) * median) <= tolerance:
                raise InputError(folder, f"{where} is missing {round(ratio) - 1} slice(s) between {members[i][0].name} and "
                                         f"{members[i + 1][0].name} (a gap of {s:.3f} mm where the series steps {median:.3f} mm)")
            raise InputError(folder, f"{where} has uneven slice spacing (steps from {steps.min():.3f} to {steps.max():.3f} mm)")
    off_grid = np.abs(heights - (heights[0] + step * np.arange(len(heights)))).max()
    if off_grid > tolerance:
        raise InputError(folder, f"{where} has uneven slice spacing (a slice {off_grid:.3f} mm off the regular grid)")
    lateral = positions - positions[0] - np.outer(heights - heights[0], normal)
    drift = float(np.linalg.norm(lateral, axis=1).max())
    if drift > tolerance:
        raise InputError(folder, f"{where} is tilted: slices are not stacked along their normal (a slice is {drift:.3f} mm "
                                 "sideways of the first one's normal; gantry tilt?)")
    geometry = _Geometry(origin=positions[0], direction=np.column_stack([row, col, normal]),
                         spacing=np.asarray([pixel_spacing[1], pixel_spacing[0], step]),
                         size=(int(first.Columns), int(first.Rows), len(members)))
    return members, geometry


def _check_series(uid: str, folder: Path, members: list[tuple[Path, Dataset]]) -> None:
    info = _info(uid, members)
    for path, ds in members:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class in MULTI_FRAME_MR or int(ds.get("NumberOfFrames", 1) or 1) > 1:
            name = MULTI_FRAME_MR.get(sop_class, "a multi-frame image")
            raise InputError(path, f"series {uid} is {name}: multi-frame (enhanced) DICOM is not supported; "
                                   "export the series as single-frame MR images")
        modality = str(ds.get("Modality", "?"))
        if modality != "MR":
            raise InputError(folder, f"series {uid} is {modality}, not MR")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, f"series {uid} is not greyscale (SamplesPerPixel {ds.SamplesPerPixel})")
    if info.files < 2:
        raise InputError(folder, f"series {uid} has {info.files} slice; a volume needs at least 2")


def _itk_problem(e: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "unknown reason")[:160]


def _read_with_gdcm(uid: str, folder: Path, files: list[Path], varying_rescale: bool) -> sitk.Image:
    """GDCM's series reader, over exactly the files checked here; any warning is a refusal."""
    with native_stderr() as captured:
        try:
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
            gdcm_files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) if uid in ids else ()
        except RuntimeError as e:
            raise InputError(folder, f"GDCM cannot list the series: {_itk_problem(e)}") from None
    if captured.text.strip():
        raise InputError(folder, f"GDCM reported a problem while listing the series: {captured.first_line}")
    if {Path(f).resolve() for f in gdcm_files} != {f.resolve() for f in files}:
        raise InputError(folder, f"GDCM groups series {uid} differently ({len(gdcm_files)} files where the headers give {len(files)})")
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


def _verify_image(uid: str, folder: Path, image: sitk.Image, geometry: _Geometry) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(folder, f"series {uid} did not read as a 3D scalar volume")
    if tuple(image.GetSize()) != geometry.size:
        raise InputError(folder, f"series {uid} read as {image.GetSize()} voxels where the headers give {geometry.size}")
    checks = {
        "origin": (np.asarray(image.GetOrigin()), geometry.origin),
        "spacing": (np.asarray(image.GetSpacing()), geometry.spacing),
        "direction": (np.asarray(image.GetDirection()).reshape(3, 3), geometry.direction),
    }
    for name, (read, expected) in checks.items():
        if np.abs(read - expected).max() > GEOMETRY_TOLERANCE:
            raise InputError(folder, f"series {uid} read with {name} {tuple(np.round(read.ravel(), 6))} where the DICOM "
                                     f"patient coordinates give {tuple(np.round(expected.ravel(), 6))}")


def _bytes_per_voxel(members: list[tuple[Path, Dataset]], varying_rescale: bool) -> int:
    """An upper bound of what GDCM allocates per voxel: a rescaled integer may widen to 32 bits,
    a fractional slope or intercept gives float64, a varying rescale float32 (set here)."""
    if varying_rescale:
        return 4
    ds = members[0][1]
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if not (slope.is_integer() and intercept.is_integer()):
        return 8
    return max(4, int(ds.get("BitsAllocated", 16)) // 8)


def read_dicom_series(folder: Path, series_uid: str | None = None, budget: MemoryBudget | None = None) -> DicomSeries:
    """The MR volume of one series in ``folder``: the only image series, or ``series_uid``.

    The volume's geometry is the DICOM patient coordinates' (origin: ImagePositionPatient of
    the first slice along the normal; direction: ImageOrientationPatient's row and column
    cosines and their cross product; spacing: PixelSpacing and the measured slice step),
    checked against what ITK built to within 1e-4. Voxels are rescaled by
    RescaleSlope/Intercept as SimpleITK does (float32 where the rescale varies between slices).
    ``budget`` refuses a series too large for memory from its headers, before any voxel is read.
    """
    folder = Path(folder)
    series = _image_headers(folder)
    if series_uid is None:
        if len(series) > 1:
            listed = "; ".join(_info(uid, m).describe() for uid, m in sorted(series.items()))
            raise InputError(folder, f"{len(series)} image series in the folder: {listed}; pass --series-uid to choose one")
        series_uid = next(iter(series))
    elif series_uid not in series:
        listed = "; ".join(_info(uid, m).describe() for uid, m in sorted(series.items()))
        raise InputError(folder, f"no image series {series_uid} in the folder (found: {listed})")
    members = series[series_uid]
    _check_series(series_uid, folder, members)
    members, geometry = _check_geometry(series_uid, folder, members)
    rescales = {(float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)) for _, ds in members}
    files = [path for path, _ in members]
    if budget is not None:
        budget.check_image_size(folder, geometry.size, _bytes_per_voxel(members, len(rescales) > 1))
    image = _read_with_gdcm(series_uid, folder, files, varying_rescale=len(rescales) > 1)
    _verify_image(series_uid, folder, image, geometry)
    return DicomSeries(image=image, uid=series_uid, files=tuple(files), headers=tuple(ds for _, ds in members))
