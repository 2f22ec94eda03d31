"""Overlay pictures of a case, to see at a glance where a prediction goes wrong.

Each row is one axial slice through the tumour: the image, the image with the reference
(green) and the image with the prediction (red) under the reference outline. Pillow only,
no plotting library; the drawing is ``panther_seg.overlay``'s.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..overlay import REFERENCE_RGB, TUMOUR_RGB as PREDICTION_RGB, blend, draw_outline, grey_to_rgb, window_to_uint8

GAP_PX = 4
LABEL_PX = 12


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


def overlay(grey: np.ndarray, mask: np.ndarray | None, rgb: Sequence[int],
            contour: np.ndarray | None = None) -> np.ndarray:
    """RGB slice with `mask` blended in `rgb` and outlined, and `contour`'s outline in green.

    The reference outline on the prediction panel shows where the two disagree.
    """
    out = grey_to_rgb(grey)
    if mask is not None:
        out = blend(out, mask, rgb)
    if contour is not None:
        out = draw_outline(out, contour, REFERENCE_RGB)
    return out


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
