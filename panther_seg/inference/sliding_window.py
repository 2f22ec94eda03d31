"""Sliding-window inference as the original ran it: MONAI's ``sliding_window_inference`` (window
32 x 160 x 208, overlap 0.5, Gaussian importance map with sigma 0.125 of the window, MONAI's
window placement and clamping, constant zero padding; the network's main head only), on the whole
volume and on each of its mirrorings (the volume flipped, the logits flipped back), the logit
maps averaged, then a softmax over the classes.

Several networks of one ensemble share every window: the predictor runs each member on it and
MONAI stitches each member's logits separately; the members' probabilities are then averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import torch
from monai.inferers import sliding_window_inference

from ..network import SegFormer3D

from ..config import GAUSSIAN_SIGMA_SCALE, OVERLAP, WINDOW

ALL_AXES = (0, 1, 2)  # spatial axes (z, y, x)


@dataclass(frozen=True)
class InferenceSettings:
    window: tuple[int, int, int] = WINDOW
    overlap: float = OVERLAP
    mirror_axes: tuple[int, ...] = ALL_AXES  # spatial axes (z, y, x) to mirror; () = no TTA
    batch_size: int = 1  # windows per forward pass (the original: 1); the same result up to rounding
    device: str = "cpu"
    fp16: bool = False  # fp16 autocast (CUDA only; a departure: the original runs fp32)


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """No flip, each single axis, each pair, ...: (), (z,), (y,), (x,), (z, y), (z, x), (y, x), (z, y, x)."""
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


def as_ensemble(models: SegFormer3D | Sequence[SegFormer3D]) -> list[SegFormer3D]:
    return [models] if isinstance(models, SegFormer3D) else list(models)


class WindowPredictor:
    """What MONAI calls on a batch of windows: each member's main-head logits, in fp32."""

    def __init__(self, models: Sequence[SegFormer3D], device: torch.device, fp16: bool):
        self.models = list(models)
        self.autocast = torch.autocast(device.type, dtype=torch.float16, enabled=fp16 and device.type == "cuda")

    def __call__(self, windows: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        with self.autocast:
            out = tuple(m.predict(windows).float() for m in self.models)
        return out[0] if len(out) == 1 else out


def flip(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Flip the spatial axes (z, y, x) of an (N, C, z, y, x) tensor."""
    return torch.flip(x, [a + 2 for a in axes]) if axes else x


@torch.inference_mode()
def predict_logits(
    models: SegFormer3D | Sequence[SegFormer3D], volume: torch.Tensor, settings: InferenceSettings
) -> list[torch.Tensor]:
    """Each member's (C, z, y, x) float32 logits for a preprocessed (z, y, x) volume, averaged
    over the mirrorings, on ``settings.device``."""
    device = torch.device(settings.device)
    members = as_ensemble(models)
    predictor = WindowPredictor(members, device, settings.fp16)
    x = volume.to(device, torch.float32)[None, None]
    flips = mirror_sets(settings.mirror_axes)
    sums: list[torch.Tensor] = []
    for axes in flips:
        out = sliding_window_inference(
            flip(x, axes), settings.window, settings.batch_size, predictor,
            overlap=settings.overlap, mode="gaussian", sigma_scale=GAUSSIAN_SIGMA_SCALE,
            padding_mode="constant", cval=0.0,
        )
        for i, logits in enumerate(out if isinstance(out, tuple) else (out,)):
            logits = flip(logits, axes)
            if len(sums) <= i:
                sums.append(logits)
            else:
                sums[i] += logits
    return [s[0] / len(flips) for s in sums]


def predict_probabilities(
    models: SegFormer3D | Sequence[SegFormer3D], volume: torch.Tensor, settings: InferenceSettings
) -> torch.Tensor:
    """(C, z, y, x) float32 class probabilities on ``settings.device``: the softmax of each
    member's mirroring-averaged logits, averaged over the members."""
    logits = predict_logits(models, volume, settings)
    probabilities = torch.softmax(logits[0], dim=0)
    for member in logits[1:]:
        probabilities += torch.softmax(member, dim=0)
    return probabilities / len(logits) if len(logits) > 1 else probabilities
