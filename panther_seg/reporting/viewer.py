"""The volumes of a case page's interactive viewer (NiiVue), embedded in a script file.

A page opened from disk (file://) may not fetch or XHR the files beside it, but it may load a
``<script src>``: so each case's volumes are gzip-compressed NIfTI, base64 in
``cases/<case>.js``, which sets ``window.PANTHER_CASE``. The scan is cropped to the masks plus a
margin, and windowed to 8 bits (the preview's window: a display needs no more) and the masks are 0/1 bytes, which compress to almost
nothing; both keep the scan's geometry (NIfTI's qform/sform, written by ITK), so NiiVue shows
them in the patient's axes.
"""
from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .preview import bounding_box

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
NIIVUE_FILE = "niivue.umd.js"  # @niivue/niivue's UMD bundle (vendor/README.md: version, update)
NIIVUE_LICENCE = "LICENSE.niivue"
CASE_GLOBAL = "PANTHER_CASE"
VIEWER_MARGIN_MM = 30.0  # of context around the tumour and pancreas


def nifti_gz(image: sitk.Image) -> bytes:
    """``image`` as the bytes of a .nii.gz file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def windowed_uint8(image: sitk.Image, window: tuple[float, float]) -> sitk.Image:
    """The scan mapped to 0..255 over ``window``, on its own grid."""
    low, high = window
    voxels = sitk.GetArrayViewFromImage(image).astype(np.float32)
    scale = 255.0 / (high - low) if high > low else 0.0
    out = sitk.GetImageFromArray(np.clip((voxels - low) * scale, 0, 255).astype(np.uint8))
    out.CopyInformation(image)
    return out


def on_grid(mask: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """A 0/1 byte mask on ``grid`` (a mask on another grid is resampled, nearest)."""
    same = (mask.GetSize() == grid.GetSize() and np.allclose(mask.GetSpacing(), grid.GetSpacing())
            and np.allclose(mask.GetOrigin(), grid.GetOrigin()) and np.allclose(mask.GetDirection(), grid.GetDirection()))
    return mask if same else sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def region_of_interest(image: sitk.Image, masks: list[sitk.Image]) -> sitk.Image:
    """The scan cropped to its masks' box plus ``VIEWER_MARGIN_MM`` (the whole scan without any
    mask): what a reviewer looks at, at a fraction of the bytes."""
    boxes = [box for mask in masks if (box := bounding_box(mask)) is not None]
    if not boxes:
        return image
    low = np.array([min(b[axis].start for b in boxes) for axis in (2, 1, 0)])  # (x, y, z)
    high = np.array([max(b[axis].stop for b in boxes) for axis in (2, 1, 0)])
    margin = np.ceil(VIEWER_MARGIN_MM / np.asarray(image.GetSpacing())).astype(int)
    low = np.maximum(low - margin, 0)
    high = np.minimum(high + margin, image.GetSize())
    return sitk.RegionOfInterest(image, (high - low).tolist(), low.tolist())


def case_script(image: sitk.Image, window: tuple[float, float], masks: dict[str, sitk.Image | None]) -> str:
    """The JavaScript of ``cases/<case>.js``: the scan around the masks and each mask present
    (0/1 bytes on the scan's grid, as ``report`` reads them), base64 .nii.gz, on one grid."""
    masks = {name: on_grid(mask, image) for name, mask in masks.items() if mask is not None}
    image = region_of_interest(image, list(masks.values()))
    volumes = {"image": base64.b64encode(nifti_gz(windowed_uint8(image, window))).decode("ascii")}
    for name, mask in masks.items():
        if mask is not None:
            volumes[name] = base64.b64encode(nifti_gz(on_grid(mask, image))).decode("ascii")
    return f"window.{CASE_GLOBAL} = {json.dumps(volumes)};\n"
