"""Sliding-window inference as the original ran it: MONAI's ``sliding_window_inference`` (window
32 x 160 x 208, overlap 0.5, Gaussian importance map with sigma 0.125 of the window, MONAI's
window placement and clamping, constant zero padding; the network's main head only), on the whole
volume and on each of its mirrorings (the volume flipped, the logits flipped back), the logit
maps averaged, then a softmax over the classes. MONAI's function runs as ``monai_window``
reproduces it (bit-identical), so a case does not pay for importing all of MONAI.

Several networks of one ensemble share every window: the predictor runs each member on it and
MONAI stitches each member's logits separately; the members' probabilities are then averaged.

On a GPU the volume, the importance map (computed once per case, not once per mirroring) and the
stitched logits stay on the GPU; with ``stitch_device="cpu"`` only the windows visit the GPU (the
fallback when the GPU is short of memory, as nnU-Net's ``perform_everything_on_device=False``).
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ..config import GAUSSIAN_SIGMA_SCALE, OVERLAP, WINDOW
from ..network import SegFormer3D
from .batching import NetworkWidths, free_gpu_bytes, gpu_batch_size, stitching_bytes
from .monai_window import compute_importance_map, dense_patch_slices, scan_interval, sliding_window_inference

log = logging.getLogger("panther_seg")

ALL_AXES = (0, 1, 2)  # spatial axes (z, y, x)


@dataclass(frozen=True)
class InferenceSettings:
    window: tuple[int, int, int] = WINDOW
    overlap: float = OVERLAP
    mirror_axes: tuple[int, ...] = ALL_AXES  # spatial axes (z, y, x) to mirror; () = no TTA
    batch_size: int | None = 1  # windows per forward pass (the original: 1; None: from free GPU memory); the same result up to rounding
    device: str = "cpu"
    fp16: bool = False  # fp16 autocast (CUDA only; a departure: the original runs fp32)
    stitch_device: str | None = None  # where the stitched logits live (None: ``device``; "cpu" when the GPU is short)
    progress: bool | None = False  # a bar on stderr (None: when stderr is a terminal); else one log line per mirroring


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """No flip, each single axis, each pair, ...: (), (z,), (y,), (x,), (z, y), (z, x), (y, x), (z, y, x)."""
    return [c for r in range(len(axes) + 1) for c in combinations(axes, r)]


def as_ensemble(models: SegFormer3D | Sequence[SegFormer3D]) -> list[SegFormer3D]:
    return [models] if isinstance(models, SegFormer3D) else list(models)


def window_count(shape: Sequence[int], window: Sequence[int], overlap: float) -> int:
    """Windows MONAI places on a volume of ``shape`` (z, y, x): its own placement, after its padding
    of axes shorter than the window."""
    size = tuple(max(n, w) for n, w in zip(shape, window))
    return len(dense_patch_slices(size, tuple(window), scan_interval(size, tuple(window), overlap)))


class Progress:
    """Windows done over all mirrorings: a tqdm bar on stderr, or one log line per mirroring
    (logs of long runs stay readable; nnU-Net's predictor shows a bar the same way)."""

    def __init__(self, windows: int, mirrorings: int, members: int, bar: bool | None):
        self.windows, self.mirrorings, self.members = windows, mirrorings, members
        self.done_windows = 0
        self.done_mirrorings = 0
        show = sys.stderr.isatty() if bar is None else bar
        self.bar = tqdm(total=windows * mirrorings * members, desc="windows" + (f" x {members} networks" if members > 1 else ""),
                        unit="pass", file=sys.stderr, leave=False) if show else None

    def windows_done(self, count: int) -> None:
        self.done_windows += count
        if self.bar is not None:
            self.bar.update(count * self.members)

    def mirroring_done(self) -> None:
        self.done_mirrorings += 1
        if self.bar is None:
            log.info("  mirroring %d/%d done (%d/%d windows)", self.done_mirrorings, self.mirrorings,
                     self.done_windows, self.windows * self.mirrorings)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class WindowPredictor:
    """What MONAI calls on a batch of windows: each member's main-head logits, in fp32. Windows
    that come from the host (stitching there) go to the network's device here."""

    def __init__(self, models: Sequence[SegFormer3D], device: torch.device, fp16: bool, progress: Progress | None = None):
        self.models = list(models)
        self.device = device
        self.progress = progress
        self.autocast = torch.autocast(device.type, dtype=torch.float16, enabled=fp16 and device.type == "cuda")

    def __call__(self, windows: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        windows = windows.to(self.device, non_blocking=True)
        with self.autocast:
            out = tuple(m.predict(windows).float() for m in self.models)
        if self.progress is not None:
            self.progress.windows_done(windows.shape[0])
        return out[0] if len(out) == 1 else out


def flip(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Flip the spatial axes (z, y, x) of an (N, C, z, y, x) tensor."""
    return torch.flip(x, [a + 2 for a in axes]) if axes else x


def importance_map(window: Sequence[int], device: torch.device) -> torch.Tensor:
    """The (1, 1, *window) Gaussian weight of a window, as MONAI computes it inside
    ``sliding_window_inference`` (same function, arguments and dtype), once per case instead of
    once per mirroring."""
    return compute_importance_map(tuple(window), mode="gaussian", sigma_scale=GAUSSIAN_SIGMA_SCALE,
                                  device=device, dtype=torch.float32)[None, None]


def to_device(volume: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The volume on ``device``: through pinned memory and a non-blocking copy to a GPU."""
    if device.type == "cuda" and volume.device.type == "cpu":
        return volume.to(torch.float32).pin_memory().to(device, non_blocking=True)
    return volume.to(device, torch.float32)


def batch_size_for(settings: InferenceSettings, members: Sequence[SegFormer3D], shape: Sequence[int]) -> int:
    """The settings' batch size, or (None) what the GPU's free memory allows for this case."""
    if settings.batch_size is not None:
        return settings.batch_size
    device = torch.device(settings.device)
    if device.type != "cuda":
        return 1
    widths = NetworkWidths.of(members[0])
    stitched = settings.stitch_device in (None, settings.device)
    stitch = stitching_bytes(math.prod(shape), widths.classes, len(members)) if stitched else 0
    chosen = gpu_batch_size(free_gpu_bytes(device), settings.window, len(members), widths, stitch)
    log.info("  batch          %d windows per pass (from free GPU memory)", chosen)
    return chosen


MirroringHook = Callable[[list[torch.Tensor]], None]  # one mirroring's (1, C, z, y, x) logits per member, flipped back


@torch.inference_mode()
def predict_logits(
    models: SegFormer3D | Sequence[SegFormer3D], volume: torch.Tensor, settings: InferenceSettings,
    on_mirroring: MirroringHook | None = None,
) -> list[torch.Tensor]:
    """Each member's (C, z, y, x) float32 logits for a preprocessed (z, y, x) volume, averaged
    over the mirrorings, on ``settings.stitch_device`` (default ``settings.device``): the network
    runs on ``settings.device``, the volume and the stitched logits live on the stitching device.
    ``on_mirroring`` sees each mirroring's logits before they join the sum (it must not change
    them): the confidence's record of the mirrorings."""
    device = torch.device(settings.device)
    stitch_device = torch.device(settings.stitch_device or settings.device)
    members = as_ensemble(models)
    flips = mirror_sets(settings.mirror_axes)
    batch_size = batch_size_for(settings, members, volume.shape)
    progress = Progress(window_count(volume.shape, settings.window, settings.overlap), len(flips), len(members), settings.progress)
    predictor = WindowPredictor(members, device, settings.fp16, progress)
    x = to_device(volume, stitch_device)[None, None]
    weight = importance_map(settings.window, device)
    sums: list[torch.Tensor] = []
    try:
        for axes in flips:
            out = sliding_window_inference(
                flip(x, axes), settings.window, batch_size, predictor,
                overlap=settings.overlap, mode="gaussian", sigma_scale=GAUSSIAN_SIGMA_SCALE,
                padding_mode="constant", cval=0.0, sw_device=device, device=stitch_device, roi_weight_map=weight,
            )
            unflipped = list(out if isinstance(out, tuple) else (out,))
            del out
            flipped = []
            while unflipped:  # each member's stitched logits freed as its flipped copy is made: the peak as before
                flipped.append(flip(unflipped.pop(0), axes))
            if on_mirroring is not None:
                on_mirroring(flipped)
            for i, logits in enumerate(flipped):
                if len(sums) <= i:
                    sums.append(logits)
                else:
                    sums[i] += logits
            progress.mirroring_done()
    finally:
        progress.close()
    return [s[0] / len(flips) for s in sums]


def predict_probabilities(
    models: SegFormer3D | Sequence[SegFormer3D], volume: torch.Tensor, settings: InferenceSettings,
    on_mirroring: MirroringHook | None = None,
) -> torch.Tensor:
    """(C, z, y, x) float32 class probabilities on ``settings.device``: the softmax of each
    member's mirroring-averaged logits, averaged over the members."""
    logits = predict_logits(models, volume, settings, on_mirroring)
    probabilities = torch.softmax(logits[0], dim=0)
    for member in logits[1:]:
        probabilities += torch.softmax(member, dim=0)
    return probabilities / len(logits) if len(logits) > 1 else probabilities
