"""``<case>_preview.png``: a case at a glance. Axial, coronal and sagittal slices through the
largest lesion (else the pancreas, else the volume's centre), in the patient's axes with square
physical pixels whatever the scan's spacing and direction, the tumour and pancreas outlined over
the windowed image, orientation letters, a scale bar, and the measurements and confidence written
beneath.

Each slice is resampled on its own plane (three 2D grids, not the volume), so an oblique or
anisotropic scan costs no more than an axial one. Display follows the radiological convention:
axial and coronal seen with the patient's right on the picture's left, sagittal from the left.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

from ..io.files import atomic_path
from ..results import Confidence, Measurements
from ..overlay import (
    LETTER_RGB, PANCREAS_RGB, REFERENCE_RGB, TEXT_RGB, TUMOUR_RGB, draw_orientation, draw_outline, draw_scale_bar,
    draw_text, grey_to_rgb,
)

PREVIEW_SUFFIX = "_preview.png"
PANEL_PX = 320  # the longest side of the field of view in display pixels
GAP_PX = 8
MARGIN_PX = 24  # around each view: its orientation letters, name and scale bar
TEXT_PX = 15
LETTER_PX = 16
TITLE_PX = 18
LINE_PX = 22
OUTLINE_WIDTH_PX = 2
WINDOW_SAMPLE_VOXELS = 250_000  # the window's percentiles from at most this many voxels
DEMONSTRATION_RGB = (255, 150, 0)
BACKGROUND_RGB = (0, 0, 0)


@dataclass(frozen=True)
class View:
    """A plane in patient (LPS) axes: the direction of the picture's columns (left to right) and
    rows (top to bottom), and the letters at its left, right, top and bottom edges."""

    name: str
    across: tuple[float, float, float]
    down: tuple[float, float, float]
    letters: tuple[str, str, str, str]


VIEWS = (
    View("axial", (1, 0, 0), (0, 1, 0), ("R", "L", "A", "P")),
    View("coronal", (1, 0, 0), (0, 0, -1), ("R", "L", "S", "I")),
    View("sagittal", (0, 1, 0), (0, 0, -1), ("A", "P", "S", "I")),
)


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The LPS bounding box (mm) of the image's voxel centres."""
    size = image.GetSize()
    corners = [image.TransformContinuousIndexToPhysicalPoint([c * (s - 1) for c, s in zip(corner, size)])
               for corner in np.ndindex(2, 2, 2)]
    points = np.asarray(corners, dtype=np.float64)
    return points.min(axis=0), points.max(axis=0)


def display_spacing(image: sitk.Image) -> float:
    """mm per display pixel: the longest side of the field of view over ``PANEL_PX``."""
    low, high = physical_bounds(image)
    return float(max(high - low)) / PANEL_PX


def bounding_box(mask: sitk.Image) -> tuple[slice, slice, slice] | None:
    """The (z, y, x) slices of the box around ``mask``'s foreground, if any (numpy: much faster
    than ITK's shape statistics, which measure far more)."""
    array = sitk.GetArrayViewFromImage(mask)
    box = []
    for axis in range(3):
        hit = np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def largest_component_centroid(mask: sitk.Image) -> tuple[float, float, float] | None:
    """The LPS centroid of the largest face-connected component of ``mask``, if any (labelled
    within the mask's box only)."""
    box = bounding_box(mask)
    if box is None:
        return None
    z, y, x = box
    crop = sitk.Cast(mask[x, y, z] > 0, sitk.sitkUInt8)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(crop, False), sortByObjectSize=True)
    return mask_centroid(components == 1)


def mask_centroid(mask: sitk.Image) -> tuple[float, float, float] | None:
    """The LPS centroid of all of ``mask``'s foreground, if any (the mean voxel index mapped to
    patient space: the mapping is affine)."""
    voxels = np.argwhere(sitk.GetArrayViewFromImage(mask))
    if voxels.size == 0:
        return None
    z, y, x = voxels.mean(axis=0)
    return tuple(float(v) for v in mask.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))


def focus_point(image: sitk.Image, tumour: sitk.Image, pancreas: sitk.Image | None,
                measurements: Measurements | None) -> tuple[tuple[float, float, float], str]:
    """Where the three planes cross, and what it is: the largest lesion, the pancreas, or the
    volume's centre."""
    if measurements is not None and measurements.lesions:
        return tuple(measurements.lesions[0].centroid_lps_mm), "largest lesion"
    centre = largest_component_centroid(tumour)
    if centre is not None:
        return centre, "largest lesion"
    if pancreas is not None and (centre := mask_centroid(pancreas)) is not None:
        return centre, "pancreas"
    low, high = physical_bounds(image)
    return tuple(float(v) for v in (low + high) / 2), "volume centre"


def sample_plane(volume: sitk.Image, view: View, point: Sequence[float], low: np.ndarray, high: np.ndarray,
                 spacing: float, interpolator: int) -> np.ndarray:
    """The plane of ``view`` through ``point``, over the scan's LPS box, as a (rows, columns) array."""
    across, down = np.asarray(view.across, float), np.asarray(view.down, float)
    normal = np.cross(across, down)
    extent = high - low
    columns = max(1, int(round(float(np.abs(across) @ extent) / spacing)) + 1)
    rows = max(1, int(round(float(np.abs(down) @ extent) / spacing)) + 1)
    start = np.where(across > 0, low, high) * np.abs(across) + np.where(down > 0, low, high) * np.abs(down)
    origin = start + np.asarray(point, float) * np.abs(normal)
    grid = sitk.Image([columns, rows, 1], sitk.sitkUInt8)
    grid.SetSpacing([spacing] * 3)
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(np.column_stack([across, down, normal]).ravel().tolist())
    plane = sitk.Resample(volume, grid, sitk.Transform(), interpolator, 0.0, volume.GetPixelID())
    return sitk.GetArrayFromImage(plane)[0]


def window_of(image: sitk.Image) -> tuple[float, float]:
    """The display window (intensities at the 0.5th and 99.5th percentiles) of the whole scan."""
    voxels = sitk.GetArrayViewFromImage(image).ravel()
    step = max(1, voxels.size // WINDOW_SAMPLE_VOXELS)
    low, high = np.percentile(voxels[::step], (0.5, 99.5))
    return float(low), float(high)


def windowed(plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``plane`` mapped to 0..255 over ``window`` (the whole scan's)."""
    low, high = window
    if high <= low:
        return np.zeros(plane.shape, np.uint8)
    return (np.clip((plane.astype(np.float64) - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def panel(image: sitk.Image, window: tuple[float, float], masks: Sequence[tuple[sitk.Image | None, Sequence[int]]],
          view: View, point: Sequence[float], spacing: float) -> np.ndarray:
    """One view: the windowed slice with each mask's outline, as RGB."""
    low, high = physical_bounds(image)
    grey = windowed(sample_plane(image, view, point, low, high, spacing, sitk.sitkLinear), window)
    rgb = grey_to_rgb(grey)
    for mask, colour in masks:
        if mask is not None:
            plane = sample_plane(mask, view, point, low, high, spacing, sitk.sitkNearestNeighbor).astype(bool)
            rgb = draw_outline(rgb, plane, colour, OUTLINE_WIDTH_PX)
    return rgb


def framed(rgb: np.ndarray, view: View, spacing: float, height: int) -> Image.Image:
    """A view in a cell ``height`` pixels high, its letters, name and scale bar in the margins
    around it, so that they cover nothing of the image."""
    cell = Image.new("RGB", (rgb.shape[1] + 2 * MARGIN_PX, height + 2 * MARGIN_PX + 2 * TEXT_PX), BACKGROUND_RGB)
    top = MARGIN_PX + (height - rgb.shape[0]) // 2
    cell.paste(Image.fromarray(rgb), (MARGIN_PX, top))
    draw = ImageDraw.Draw(cell)
    box = (MARGIN_PX, top, MARGIN_PX + rgb.shape[1], top + rgb.shape[0])
    draw_orientation(draw, box, view.letters, LETTER_PX)
    below = box[3] + LETTER_PX + 6  # the row under the bottom letter
    draw_scale_bar(draw, (box[0], box[1], box[2], below), spacing, TEXT_PX - 2)
    draw_text(draw, (MARGIN_PX, below + 4), view.name, TEXT_PX - 2)
    return cell


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def summary_lines(measurements: Measurements | None, confidence: Confidence | None, focus: str,
                  reference: bool) -> list[tuple[str, Sequence[int]]]:
    """What the picture says in words, with the colour of each line."""
    lines: list[tuple[str, Sequence[int]]] = []
    if measurements is None:
        lines.append(("measurements: not computed (run with --statistics)", TEXT_RGB))
    else:
        lines.append((f"tumour {measurements.tumour_volume_ml:.2f} mL, {len(measurements.lesions)} lesion(s), "
                      f"longest diameter {_number(measurements.longest_diameter_mm, ' mm')}"
                      + (f" ({measurements.size_category})" if measurements.size_category else "")
                      + f"; pancreas {_number(measurements.pancreas_volume_ml, ' mL')}", TEXT_RGB))
        if measurements.lesions:
            lesion = measurements.lesions[0]
            x, y, z = lesion.centroid_lps_mm
            lines.append((f"largest lesion {lesion.volume_ml:.2f} mL: {lesion.longest_in_plane_mm:.1f} x "
                          f"{lesion.perpendicular_in_plane_mm:.1f} mm in plane, {lesion.longest_3d_mm:.1f} mm 3D, "
                          f"centre LPS ({x:.0f}, {y:.0f}, {z:.0f}) mm", TEXT_RGB))
    if confidence is None:
        lines.append(("confidence: not recorded", TEXT_RGB))
    elif not confidence.computed:
        lines.append((f"confidence: not computed ({confidence.reason or 'no mirroring'})", TEXT_RGB))
    else:
        flag = " - REVIEW: " + confidence.reason if confidence.review else ""
        lines.append((f"confidence: {confidence.mirrorings} mirrorings, tumour Dice mean {_number(confidence.mean_dice, '', 2)}, "
                      f"min {_number(confidence.min_dice, '', 2)}, volume {_number(confidence.volume_ml_min, '', 2)}-"
                      f"{_number(confidence.volume_ml_max, ' mL', 2)}{flag}",
                      DEMONSTRATION_RGB if confidence.review else TEXT_RGB))
    legend = f"slices through the {focus}; outlines: tumour (red), pancreas (blue)"
    lines.append((legend + (", reference (green)" if reference else ""), LETTER_RGB))
    return lines


def render_preview(image: sitk.Image, tumour: sitk.Image, pancreas: sitk.Image | None = None,
                   measurements: Measurements | None = None, confidence: Confidence | None = None,
                   title: str = "", demonstration: bool = False, reference: sitk.Image | None = None,
                   focus: tuple[tuple[float, float, float], str] | None = None,
                   window: tuple[float, float] | None = None) -> Image.Image:
    """The preview picture of one case: three views side by side, the words beneath (``focus``
    and ``window``: ``focus_point``'s and ``window_of``'s answers, where the caller has them)."""
    point, focus_name = focus or focus_point(image, tumour, pancreas, measurements)
    spacing = display_spacing(image)
    window = window or window_of(image)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    masks = [(pancreas, PANCREAS_RGB), (reference, REFERENCE_RGB), (tumour, TUMOUR_RGB)]
    views = [panel(image, window, masks, view, point, spacing) for view in VIEWS]
    tallest = max(v.shape[0] for v in views)
    panels = [framed(rgb, view, spacing, tallest) for rgb, view in zip(views, VIEWS)]
    lines = summary_lines(measurements, confidence, focus_name, reference is not None)
    header = [(title, TEXT_RGB)]
    if demonstration:
        header.append(("DEMONSTRATION MODEL (trained on synthetic data): not for real scans", DEMONSTRATION_RGB))
    top = GAP_PX + len(header) * (TITLE_PX + 6)
    height = top + max(p.height for p in panels) + GAP_PX + len(lines) * LINE_PX + GAP_PX
    width = sum(p.width for p in panels) + GAP_PX * 2
    canvas = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)
    for index, (text, colour) in enumerate(header):
        draw_text(draw, (GAP_PX, GAP_PX + index * (TITLE_PX + 6)), text, TITLE_PX, colour)
    left = GAP_PX
    for picture in panels:
        canvas.paste(picture, (left, top))
        left += picture.width
    y = top + max(p.height for p in panels) + GAP_PX
    for text, colour in lines:
        draw_text(draw, (GAP_PX, y), text, TEXT_PX, colour)
        y += LINE_PX
    return canvas


def write_png(picture: Image.Image, path: Path) -> None:
    """Atomically, so that a reader never sees half a picture."""
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def preview_path(out_dir: Path, case: str) -> Path:
    return Path(out_dir) / f"{case}{PREVIEW_SUFFIX}"
