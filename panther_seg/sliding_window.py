"""Sliding-window inference with Gaussian weighting and mirror test-time augmentation.

Windows are batched; the logits of each window are averaged over its mirrorings (each
un-mirrored first), weighted by a Gaussian importance map, accumulated on the device, and
turned into class probabilities with a softmax at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, product
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model import SegFormer3D

from .config import GAUSSIAN_SIGMA_SCALE, OVERLAP, WINDOW

Slices = tuple[slice, slice, slice]


@dataclass(frozen=True)
class InferenceSettings:
    window: tuple[int, int, int] = WINDOW
    overlap: float = OVERLAP
    mirror_axes: tuple[int, ...] = (0, 1, 2)  # spatial axes (z, y, x) to mirror; () = no TTA
    batch_size: int = 2
    device: str = "cpu"
    amp: bool = False  # fp16 autocast (CUDA only: the T4 has no bf16)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Evenly spaced starts, nnU-Net style: the fewest steps no longer than window * (1 - overlap)."""
    if size <= window:
        return [0]
    n = int(np.ceil((size - window) / (window * (1 - overlap)))) + 1
    step = (size - window) / (n - 1)
    return [int(round(step * i)) for i in range(n)]


def gaussian_importance(window: Sequence[int], sigma_scale: float = GAUSSIAN_SIGMA_SCALE) -> torch.Tensor:
    """Separable Gaussian centred on the window (centre voxels trusted most), min clamped > 0."""
    g = None
    for n in window:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        k = torch.exp(-0.5 * (x / (n * sigma_scale)) ** 2)
        g = k if g is None else g[..., None] * k
    assert g is not None
    g = g / g.max()
    return g.clamp_min(g[g > 0].min()).float()


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """No flip, each single axis, each pair, ...: the 2**len(axes) mirrorings."""
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


def windows(shape: Sequence[int], settings: InferenceSettings) -> list[Slices]:
    starts = [window_starts(s, w, settings.overlap) for s, w in zip(shape, settings.window)]
    return [
        tuple(slice(s, s + w) for s, w in zip(corner, settings.window))  # type: ignore[misc]
        for corner in product(*starts)
    ]


def batched(items: list[Slices], n: int) -> Iterator[list[Slices]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def pad_to_window(volume: torch.Tensor, window: Sequence[int]) -> tuple[torch.Tensor, Slices]:
    """Zero-pad (centred) along axes shorter than the window; return the slices that undo it."""
    pads, crop = [], []
    for size, w in zip(volume.shape, window):
        total = max(w - size, 0)
        pads.append((total // 2, total - total // 2))
        crop.append(slice(total // 2, total // 2 + size))
    flat = [p for pair in reversed(pads) for p in pair]
    return (F.pad(volume, flat) if any(flat) else volume), tuple(crop)  # type: ignore[return-value]


@torch.inference_mode()
def predict_probabilities(model: SegFormer3D, volume: np.ndarray, settings: InferenceSettings) -> np.ndarray:
    """Class probabilities (C, z, y, x) float32 for a preprocessed (z, y, x) volume."""
    device = torch.device(settings.device)
    x, crop = pad_to_window(torch.from_numpy(volume).to(device, torch.float32), settings.window)
    num_classes = model.decoder.cls.out_channels
    logits = torch.zeros((num_classes, *x.shape), dtype=torch.float32, device=device)
    weights = torch.zeros(x.shape, dtype=torch.float32, device=device)
    importance = gaussian_importance(settings.window).to(device)
    flips = mirror_sets(settings.mirror_axes)
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=settings.amp and device.type == "cuda")
    for batch in batched(windows(x.shape, settings), settings.batch_size):
        patch = torch.stack([x[s] for s in batch])[:, None]
        summed = torch.zeros((len(batch), num_classes, *settings.window), dtype=torch.float32, device=device)
        for axes in flips:
            dims = [a + 2 for a in axes]
            with autocast:
                out = model.predict(torch.flip(patch, dims) if dims else patch)
            summed += torch.flip(out.float(), dims) if dims else out.float()
        summed *= importance / len(flips)
        for s, window_logits in zip(batch, summed):
            logits[(slice(None), *s)] += window_logits
            weights[s] += importance
    logits /= weights
    probabilities = torch.softmax(logits[(slice(None), *crop)], dim=0)
    return probabilities.cpu().numpy()
