"""Reading and validating input images, finding them in the grand-challenge layout, and writing
masks atomically (a temporary file in the same folder, then a rename: never a partial output)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .config import GC_IMAGES_SUBDIR, GC_INPUT_FALLBACK, IMAGE_SUFFIXES
from .errors import InputError


def has_image_suffix(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def case_id(path: Path) -> str:
    """File name without its image extension (``case.nii.gz`` -> ``case``)."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_image(path: Path) -> sitk.Image:
    """Read one 3D scalar image and reject what the pipeline cannot segment, naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[-1][:160] if str(e).strip() else "unknown reason"
        if "spacing" in detail.lower():
            raise InputError(path, f"invalid voxel spacing in the header (zero or negative): {detail}") from None
        raise InputError(path, f"cannot read image (unreadable or truncated file): {detail}") from None
    validate_image(image, path)
    return image


def validate_image(image: sitk.Image, path: Path | str) -> None:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"multi-component image ({image.GetNumberOfComponentsPerPixel()} components per voxel); expected a scalar 3D MRI")
    if image.GetDimension() != 3:
        raise InputError(path, f"{image.GetDimension()}D image; expected a 3D MRI")
    size = image.GetSize()
    if min(size) < 1 or (size[2] == 1):
        raise InputError(path, f"image of size {size} is a single slice; expected a 3D volume")
    spacing = np.asarray(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(path, f"invalid voxel spacing {tuple(spacing)}: must be positive")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputError(path, "invalid direction cosines: not an orthonormal matrix")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InputError(path, "image contains NaN or infinite voxels")
    if array.min() == array.max():
        raise InputError(path, f"image is constant (every voxel is {array.flat[0]}); nothing to segment")


def find_gc_input(input_root: Path) -> Path:
    """The single image of a grand-challenge job: the one folder under images/ whose name
    contains 'mri' (falling back to abdominal-t1-mri), holding exactly one image file."""
    input_root = Path(input_root)
    images = input_root / GC_IMAGES_SUBDIR
    if not input_root.is_dir():
        raise InputError(input_root, "input folder does not exist")
    if not images.is_dir():
        raise InputError(images, "no images/ folder in the input")
    mri_dirs = sorted(p for p in images.iterdir() if p.is_dir() and "mri" in p.name.lower())
    if len(mri_dirs) > 1:
        names = ", ".join(p.name for p in mri_dirs)
        raise InputError(images, f"several MRI folders ({names}); expected exactly one")
    folder = mri_dirs[0] if mri_dirs else images / GC_INPUT_FALLBACK
    if not folder.is_dir():
        raise InputError(images, f"no folder whose name contains 'mri' (nor {GC_INPUT_FALLBACK})")
    files = sorted(p for p in folder.iterdir() if p.is_file() and has_image_suffix(p))
    if not files:
        raise InputError(folder, "no image file (.mha, .nii, .nii.gz, .nrrd) in the input folder")
    if len(files) > 1:
        raise InputError(folder, f"{len(files)} image files; grand-challenge mode expects exactly one")
    return files[0]


def write_image_atomic(image: sitk.Image, path: Path) -> None:
    """Write compressed, to a hidden temporary file in the destination folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix="_" + path.name, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, useCompression=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a mask is an ordinary output file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
