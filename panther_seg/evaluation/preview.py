"""Overlay pictures of a case, to see at a glance where a prediction goes wrong.

Each row is one axial slice through the tumour: the image, the image with the reference
(green) and the image with the prediction (red) under the reference outline. Pillow only,
no plotting library.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

REFERENCE_RGB = (0, 220, 0)
PREDICTION_RGB = (255, 40, 40)
OVERLAY_ALPHA = 0.45
GAP_PX = 4
LABEL_PX = 12
WINDOW_PERCENTILES = (0.5, 99.5)


def preview_slices(ref: np.ndarray, pred: np.ndarray) -> list[int]:
    """Axial (first-axis) slices worth showing: largest reference area, then largest prediction.

    Falls back to the middle slice when both masks are empty.
    """
    picks: list[int] = []
    for mask in (ref, pred):
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        if areas.any():
            best = int(np.argmax(areas))
            if best not in picks:
                picks.append(best)
    return picks or [ref.shape[0] // 2]


def window_to_uint8(image: np.ndarray) -> np.ndarray:
    """Map the robust intensity range of the volume to 0..255 (MRI has no fixed units)."""
    low, high = np.percentile(image, WINDOW_PERCENTILES)
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (np.asarray(image, dtype=np.float64) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a background 4-neighbour (the slice border counts as one)."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
                         & mask[1:-1, :-2] & mask[1:-1, 2:])
    return mask & ~inner


def overlay(grey: np.ndarray, mask: np.ndarray | None, rgb: Sequence[int],
            contour: np.ndarray | None = None) -> np.ndarray:
    """RGB slice with `mask` blended in `rgb` and outlined, and `contour`'s outline in green.

    The reference outline on the prediction panel shows where the two disagree.
    """
    out = np.repeat(grey[..., None], 3, axis=2).astype(np.float64)
    if mask is not None and mask.any():
        colour = np.asarray(rgb, dtype=np.float64)
        out[mask] = (1.0 - OVERLAY_ALPHA) * out[mask] + OVERLAY_ALPHA * colour
        out[outline(mask)] = colour
    if contour is not None and contour.any():
        out[outline(contour)] = REFERENCE_RGB
    return out.astype(np.uint8)


def _panel(rgb: np.ndarray, spacing_yx: Sequence[float]) -> Image.Image:
    """One slice as a picture with square physical pixels (rows may be stretched)."""
    picture = Image.fromarray(rgb)
    sy, sx = (float(v) for v in spacing_yx)
    height = max(1, round(rgb.shape[0] * sy / sx))
    if height == rgb.shape[0]:
        return picture
    return picture.resize((rgb.shape[1], height), Image.Resampling.NEAREST)


def render_preview(image: np.ndarray, ref: np.ndarray, pred: np.ndarray,
                   spacing_zyx: Sequence[float], title: str) -> Image.Image:
    """Grid of slices (rows) by image / reference / prediction (columns) for one case;
    the prediction panel also carries the reference outline.

    Arrays are in (z, y, x) order, as SimpleITK returns them; `spacing_zyx` matches.
    """
    grey = window_to_uint8(image)
    rows = []
    for z in preview_slices(ref, pred):
        panels = [overlay(grey[z], None, REFERENCE_RGB),
                  overlay(grey[z], ref[z], REFERENCE_RGB),
                  overlay(grey[z], pred[z], PREDICTION_RGB, contour=ref[z])]
        rows.append((z, [_panel(p, spacing_zyx[1:]) for p in panels]))
    width = 3 * rows[0][1][0].width + 2 * GAP_PX
    row_height = rows[0][1][0].height + LABEL_PX
    canvas = Image.new("RGB", (width, len(rows) * (row_height + GAP_PX)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, (z, panels) in enumerate(rows):
        top = index * (row_height + GAP_PX)
        draw.text((2, top), f"{title}  z={z}  image | reference | prediction (+ reference outline)",
                  fill=(255, 255, 255))
        for column, panel in enumerate(panels):
            canvas.paste(panel, (column * (panel.width + GAP_PX), top + LABEL_PX))
    return canvas
