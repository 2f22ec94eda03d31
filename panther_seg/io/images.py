"""Reading and validating input images, and writing
masks atomically (a temporary file in the same folder, then a rename: never a partial output)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..config import DIRECTION_TOLERANCE, IMAGE_SUFFIXES, SPACING_RANGE_MM
from ..errors import InputError
from .files import atomic_path, is_temporary
from .integrity import CapturedStderr, DamagedData, native_stderr, verify_voxel_data
from ..system.memory import MemoryBudget


def has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def case_id(path: Path) -> str:
    """File name without its image extension (``case.nii.gz`` -> ``case``)."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class Header:
    """What an image header declares, read before any voxel is."""

    dimension: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    components: int
    component_bytes: int

    @classmethod
    def of(cls, source: sitk.ImageFileReader | sitk.Image) -> "Header":
        if isinstance(source, sitk.Image):
            components, component_bytes = source.GetNumberOfComponentsPerPixel(), source.GetSizeOfPixelComponent()
            return cls(source.GetDimension(), source.GetSize(), source.GetSpacing(), source.GetDirection(),
                       components, component_bytes)
        component_bytes = sitk.Image([1, 1], source.GetPixelID()).GetSizeOfPixelComponent()
        # The header's own values; reading the voxels then turns a negative spacing into a flipped
        # axis (ITK's ImageFileReader does), so do the same here to judge what will be read.
        spacing = np.asarray(source.GetSpacing(), dtype=float)
        direction = np.asarray(source.GetDirection(), dtype=float).reshape(len(spacing), len(spacing))
        direction[:, spacing < 0] *= -1
        return cls(source.GetDimension(), source.GetSize(), tuple(float(s) for s in np.abs(spacing)),
                   tuple(float(d) for d in direction.ravel()), source.GetNumberOfComponents(), component_bytes)

    @property
    def bytes_per_voxel(self) -> int:
        return self.components * self.component_bytes

    @property
    def data_bytes(self) -> int:
        return math.prod(self.size) * self.bytes_per_voxel


def _itk_problem(e: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    last = lines[-1].removeprefix("Reason: ") if lines else "unknown reason"
    return last[:160]


def _refuse_warnings(path: Path, captured: CapturedStderr, stage: str) -> None:
    if captured.text.strip():
        raise InputError(path, f"the reader reported a problem while reading the {stage}: {captured.first_line}")


def read_image(path: Path, budget: MemoryBudget | None = None) -> sitk.Image:
    """Read one 3D scalar image, proving on the way that it is whole and fits in memory.

    Header first (size, type, geometry checked and the memory budget applied before anything
    is allocated), then the voxel data's length and checksums (``integrity``), then ITK reads
    the voxels with its warnings captured as failures; finally the voxels themselves."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with native_stderr() as captured:
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            detail = _itk_problem(e).replace(f'"{path}"', path.name).replace(str(path), path.name)
            if "spacing" in detail.lower():
                raise InputError(path, f"invalid voxel spacing in the header (zero or negative): {detail}") from None
            try:  # damaged data explains it better than ITK does; an unknown format is ITK's to name
                verify_voxel_data(path, 0)
            except DamagedData:
                raise
            except InputError:
                pass
            raise InputError(path, f"cannot read image (unreadable or truncated file): {detail}") from None
    _refuse_warnings(path, captured, "header")
    header = Header.of(reader)
    validate_header(header, path)
    (budget or MemoryBudget.resolve()).check_image_size(path, header.size, header.bytes_per_voxel)
    verify_voxel_data(path, header.data_bytes)
    with native_stderr() as captured:
        try:
            image = reader.Execute()
        except RuntimeError as e:
            raise InputError(path, f"cannot read image (unreadable or truncated file): {_itk_problem(e)}") from None
    _refuse_warnings(path, captured, "voxels")
    read = Header.of(image)
    if (read.size, read.components) != (header.size, header.components):
        raise InputError(path, f"read {read.size} voxels x {read.components} components where the header declares "
                               f"{header.size} x {header.components}")
    validate_voxels(image, path)
    return image


def validate_header(header: Header, path: Path | str) -> None:
    """Shape, spacing and direction checks that need no voxel: refuse before reading them."""
    if header.components != 1:
        raise InputError(path, f"multi-component image ({header.components} components per voxel); expected a scalar 3D MRI")
    if header.dimension != 3:
        raise InputError(path, f"{header.dimension}D image; expected a 3D MRI")
    size = header.size
    if min(size) < 1 or (size[2] == 1):
        raise InputError(path, f"image of size {size} is a single slice; expected a 3D volume")
    spacing = np.asarray(header.spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(path, f"invalid voxel spacing {tuple(float(s) for s in spacing)}: must be positive")
    low, high = SPACING_RANGE_MM
    if np.any(spacing < low) or np.any(spacing > high):
        raise InputError(path, f"implausible voxel spacing {tuple(float(s) for s in spacing)} mm: accepted is {low} to {high} mm "
                               "per axis (a header in metres or micrometres?)")
    direction = np.asarray(header.direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)):
        raise InputError(path, "invalid direction cosines: not finite")
    error = float(np.abs(direction.T @ direction - np.eye(3)).max())
    if error > DIRECTION_TOLERANCE:
        raise InputError(path, f"invalid direction cosines: not orthonormal (max |D^T D - I| = {error:.3g}, tolerance "
                               f"{DIRECTION_TOLERANCE:g}; a sheared or scaled matrix?)")


def validate_voxels(image: sitk.Image, path: Path | str) -> None:
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputError(path, "image contains NaN or infinite voxels")
    if array.min() == array.max():
        raise InputError(path, f"image is constant (every voxel is {array.flat[0]}); nothing to segment")


def validate_image(image: sitk.Image, path: Path | str) -> None:
    """Every check that ``read_image`` makes on an image already in memory."""
    validate_header(Header.of(image), path)
    validate_voxels(image, path)


def list_folder(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise InputError(folder, f"cannot list the folder: {e.strerror or e}") from None


def check_output_location(path: Path) -> None:
    """Fail before the work, not after it: the nearest existing folder above ``path`` must be a
    writable folder (``access`` also reports a read-only file system, for root too)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "output path is a folder")
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink() or folder == folder.parent:
            raise InputError(path.parent, "output folder cannot be created (a broken link or no such root)")
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(folder, "is not a folder: the output cannot be written under it")
    effective = os.access in os.supports_effective_ids  # judge as the effective user, as open() does
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=effective):
        problem = "read-only file system" if _read_only_fs(folder) else "permission denied"
        raise InputError(folder, f"output location is not writable ({problem})")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _same_image(a: sitk.Image, b: sitk.Image) -> bool:
    """Same voxels exactly; same geometry to the precision of the format (NIfTI stores float32,
    so an oblique or far-off grid comes back a few micrometres or 1e-7 of a cosine off)."""
    return (
        a.GetSize() == b.GetSize() and a.GetPixelID() == b.GetPixelID()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6, atol=1e-6)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=1e-6, atol=1e-4)
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-5)
        and np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    )


def write_image_atomic(image: sitk.Image, path: Path, what: str = "mask") -> None:
    """Write compressed under a temporary name, flush it to disk, read it back and compare, then
    rename (``files.atomic_path``): a full disk or any other write error leaves nothing, and what
    appears under the final name is exactly ``image``."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with native_stderr() as captured:
                sitk.WriteImage(image, str(tmp), useCompression=True)
            with native_stderr() as captured_back:
                back = sitk.ReadImage(str(tmp))
            if captured.text.strip() or captured_back.text.strip() or not _same_image(image, back):
                detail = (captured.first_line or captured_back.first_line or f"the file read back differs from the {what}")
                raise InputError(path, f"cannot write the {what}: {detail}")
    except OSError as e:
        where = e.filename if e.filename is not None and not is_temporary(e.filename) else path
        raise InputError(where, f"cannot write the {what}: {e.strerror or e}") from None
    except RuntimeError as e:  # ITK's writer or reader
        raise InputError(path, f"cannot write the {what}: {_itk_problem(e)}") from None
