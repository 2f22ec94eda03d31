"""Validation that stays on the training device: sliding window, argmax and Dice as tensors.

The inference code offers ``predict_logits(model, volume, settings)`` (logits (C, z, y, x) on
the volume's device) once its sliding window runs on MONAI's ``sliding_window_inference``; until
that module provides it, the same computation runs here on MONAI directly (Gaussian weighting,
whole-volume mirroring, logits averaged over the mirrorings).
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable

import torch
from monai.inferers import sliding_window_inference

from model import SegFormer3D

from .. import sliding_window
from ..config import GAUSSIAN_SIGMA_SCALE
from ..sliding_window import InferenceSettings


def monai_logits(model: SegFormer3D, volume: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """Logits (C, z, y, x) of a (z, y, x) volume, on the volume's device."""
    x = volume[None, None].float()
    flips = [c for r in range(len(settings.mirror_axes) + 1) for c in combinations(settings.mirror_axes, r)]
    total: torch.Tensor | None = None
    for axes in flips:
        dims = [a + 2 for a in axes]
        out = sliding_window_inference(
            torch.flip(x, dims) if dims else x, settings.window, settings.batch_size, model.predict,
            overlap=settings.overlap, mode="gaussian", sigma_scale=GAUSSIAN_SIGMA_SCALE,
        )
        out = (torch.flip(out, dims) if dims else out).float()
        total = out if total is None else total + out
    assert total is not None
    return total[0] / len(flips)


predict_logits: Callable[[SegFormer3D, torch.Tensor, InferenceSettings], torch.Tensor] = getattr(
    sliding_window, "predict_logits", monai_logits
)


def dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice of two boolean masks (a 0-d float64 tensor on their device); 1 when both are empty."""
    total = pred.sum(dtype=torch.float64) + truth.sum(dtype=torch.float64)
    overlap = torch.logical_and(pred, truth).sum(dtype=torch.float64)
    return torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total))
