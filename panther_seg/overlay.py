"""The one home for drawing overlays: a windowed MR slice, masks blended and outlined in colour,
orientation letters, a scale bar and text. The evaluation's pictures and the per-case preview both
draw with it, so a colour or a window means the same thing on every picture. Pillow only."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WINDOW_PERCENTILES = (0.5, 99.5)  # MRI has no fixed units: the robust range of the volume
OVERLAY_ALPHA = 0.45
TUMOUR_RGB = (255, 40, 40)
PANCREAS_RGB = (60, 200, 255)
REFERENCE_RGB = (0, 220, 0)
TEXT_RGB = (255, 255, 255)
LETTER_RGB = (255, 220, 0)
SCALE_BAR_STEPS_MM = (5, 10, 20, 50, 100, 200)
SCALE_BAR_MAX_FRACTION = 0.3  # of the panel's width


def window_to_uint8(image: np.ndarray, percentiles: Sequence[float] = WINDOW_PERCENTILES) -> np.ndarray:
    """Map the robust intensity range of the volume to 0..255."""
    low, high = np.percentile(image, percentiles)
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (np.asarray(image, dtype=np.float64) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Foreground pixels within ``width`` steps of a background 4-neighbour (the slice border
    counts as one)."""
    if width > 1:
        from scipy import ndimage

        return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
                         & mask[1:-1, :-2] & mask[1:-1, 2:])
    return mask & ~inner


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def blend(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int], alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``rgb`` with ``mask`` tinted in ``colour`` and outlined in it."""
    out = rgb.astype(np.float64)
    if mask.any():
        tint = np.asarray(colour, dtype=np.float64)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * tint
        out[outline(mask)] = tint
    return out.astype(np.uint8)


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int], width: int = 1) -> np.ndarray:
    """``rgb`` with the outline of ``mask``, ``width`` pixels wide, drawn in ``colour`` (the
    inside left as it is)."""
    out = rgb.copy()
    if mask.any():
        out[outline(mask, width)] = np.asarray(colour, dtype=np.uint8)
    return out


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (no system font needed)."""
    return ImageFont.load_default(size=size)


def text_width(text: str, size: int) -> int:
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int,
              fill: Sequence[int] = TEXT_RGB) -> None:
    """Text with a dark outline, readable over any part of an image."""
    draw.text(xy, text, fill=tuple(fill), font=font(size), stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))


def draw_orientation(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], letters: Sequence[str],
                     size: int) -> None:
    """Orientation letters (the patient's side at the left, right, top and bottom of the image in
    ``box``), just outside each edge's middle, where they hide nothing however thin the image is."""
    x0, y0, x1, y1 = box
    left, right, top, bottom = letters
    middle_x, middle_y = (x0 + x1) // 2, (y0 + y1) // 2
    pad = 4
    draw_text(draw, (x0 - pad - text_width(left, size), middle_y - size // 2), left, size, LETTER_RGB)
    draw_text(draw, (x1 + pad, middle_y - size // 2), right, size, LETTER_RGB)
    draw_text(draw, (middle_x - text_width(top, size) // 2, y0 - pad - size - 2), top, size, LETTER_RGB)
    draw_text(draw, (middle_x - text_width(bottom, size) // 2, y1 + pad), bottom, size, LETTER_RGB)


def scale_bar_mm(panel_width_px: int, mm_per_px: float) -> int:
    """The longest round length that fits in ``SCALE_BAR_MAX_FRACTION`` of the panel."""
    fitting = [step for step in SCALE_BAR_STEPS_MM if step / mm_per_px <= SCALE_BAR_MAX_FRACTION * panel_width_px]
    return fitting[-1] if fitting else SCALE_BAR_STEPS_MM[0]


def draw_scale_bar(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], mm_per_px: float, size: int) -> None:
    """A bar of a round length in mm under the bottom-right corner of the image in ``box``, its
    length written to its left."""
    x0, y0, x1, y1 = box
    length_mm = scale_bar_mm(x1 - x0, mm_per_px)
    length_px = max(1, round(length_mm / mm_per_px))
    top = y1 + 4 + size // 2
    draw.rectangle((x1 - length_px, top, x1, top + 3), fill=TEXT_RGB)
    label = f"{length_mm} mm"
    draw_text(draw, (x1 - length_px - 6 - text_width(label, size), y1 + 4), label, size)


def upscale(picture: Image.Image, factor: int) -> Image.Image:
    """Whole-pixel enlargement (nearest), so small volumes stay readable and voxels stay visible."""
    if factor <= 1:
        return picture
    return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
