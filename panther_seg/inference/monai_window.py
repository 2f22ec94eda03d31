"""MONAI's ``sliding_window_inference`` (monai 1.6.1, ``monai/inferers/utils.py``) and the helpers
it calls, reproduced for the one path this pipeline takes, operation for operation.

Why a copy: importing any ``monai`` module runs ``monai/__init__.py``, which imports every MONAI
subpackage (transforms, scipy.signal, scipy.stats, ...): about 2 s of every case's start-up for
the forty lines used here. The path kept: plain tensors, no buffering, no ``process_fn``, no
coordinates, outputs of the window's size (a tensor, or a tuple of tensors for an ensemble),
Gaussian or constant blending, ``F.pad`` padding. Windows are placed, weighted, summed and divided
in MONAI's order and dtype, so the result is bit-identical (tests/test_monai_window.py compares
it with MONAI's own function). MONAI is Copyright (c) MONAI Consortium, Apache License 2.0.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

BLEND_MODES = ("constant", "gaussian")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def compute_importance_map(patch_size: Sequence[int], mode: str = "constant", sigma_scale: float = 0.125,
                           device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A window's blending weight (``monai.data.utils.compute_importance_map``): ones, or the
    product of 1-D Gaussians with sigma ``sigma_scale`` x the window's side, floored at its
    minimum (at least 1e-3)."""
    if mode not in BLEND_MODES:
        raise ValueError(f"mode must be one of {BLEND_MODES}, not {mode!r}")
    patch_size = tuple(patch_size)
    device = torch.device(device)
    if mode == "constant":
        importance_map = torch.ones(patch_size, device=device, dtype=torch.float)
    else:
        sigmas = [i * sigma_scale for i in patch_size]
        for i in range(len(patch_size)):
            x = torch.arange(
                start=-(patch_size[i] - 1) / 2.0, end=(patch_size[i] - 1) / 2.0 + 1, dtype=torch.float, device=device
            )
            x = torch.exp(x**2 / (-2 * sigmas[i] ** 2))
            importance_map = importance_map.unsqueeze(-1) * x[(None,) * i] if i > 0 else x
    min_non_zero = max(torch.min(importance_map).item(), 1e-3)
    return torch.clamp_(importance_map.to(torch.float), min=min_non_zero).to(dtype)


def scan_interval(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> tuple[int, ...]:
    """The step between windows per axis (``monai.inferers.utils._get_scan_interval``)."""
    steps = []
    for size, roi in zip(image_size, roi_size):
        step = int(roi) if roi == size else int(roi * (1 - overlap))
        steps.append(step if step > 0 else 1)
    return tuple(steps)


def dense_patch_slices(image_size: Sequence[int], patch_size: Sequence[int], interval: Sequence[int]) -> list[tuple[slice, ...]]:
    """Every window, the last one on each axis moved back inside the image, first axis slowest
    (``monai.data.utils.dense_patch_slices``)."""
    patch_size = tuple(min(size, p or size) for size, p in zip(image_size, patch_size))
    starts = []
    for size, patch, step in zip(image_size, patch_size, interval):
        if step == 0:
            count = 1
        else:
            last = next((d for d in range(math.ceil(float(size) / step)) if d * step + patch >= size), None)
            count = last + 1 if last is not None else 1
        starts.append([i * step - max(i * step + patch - size, 0) for i in range(count)])
    return [tuple(slice(s, s + p) for s, p in zip(start, patch_size)) for start in itertools.product(*starts)]


def sliding_window_inference(
    inputs: torch.Tensor,
    roi_size: Sequence[int],
    sw_batch_size: int,
    predictor: Callable[[torch.Tensor], Outputs],
    overlap: float = 0.25,
    mode: str = "constant",
    sigma_scale: float = 0.125,
    padding_mode: str = "constant",
    cval: float = 0.0,
    sw_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
    roi_weight_map: torch.Tensor | None = None,
) -> Outputs:
    """``predictor``'s outputs over (N, C, *spatial) ``inputs``, window by window, blended with
    the importance map and divided by the summed weights, as MONAI's function with the same
    arguments returns them. Axes shorter than the window are padded and cropped back."""
    spatial = inputs.ndim - 2
    if len(roi_size) != spatial:
        raise ValueError(f"inputs of shape {tuple(inputs.shape)} do not match a {len(roi_size)}-D window")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be >= 0 and < 1, got {overlap}")
    if padding_mode not in PAD_MODES:
        raise ValueError(f"padding_mode must be one of {PAD_MODES}, not {padding_mode!r}")
    compute_dtype = inputs.dtype
    batch_size, _, *image_size_ = inputs.shape
    device = device or inputs.device
    sw_device = sw_device or inputs.device
    inputs = inputs.to(memory_format=torch.contiguous_format)
    roi_size = tuple(r if r and r > 0 else s for r, s in zip(roi_size, image_size_))
    image_size = tuple(max(image_size_[i], roi_size[i]) for i in range(spatial))
    pad_size: list[int] = []
    for k in range(inputs.ndim - 1, 1, -1):
        diff = max(roi_size[k - 2] - inputs.shape[k], 0)
        pad_size.extend([diff // 2, diff - diff // 2])
    if any(pad_size):
        inputs = F.pad(inputs, pad=pad_size, mode=padding_mode, value=cval)

    slices = dense_patch_slices(image_size, roi_size, scan_interval(image_size, roi_size, overlap))
    num_win = len(slices)
    total_slices = num_win * batch_size
    if roi_weight_map is not None:  # the window never exceeds the padded image, so MONAI takes it as given
        importance_map = roi_weight_map
    else:
        importance_map = compute_importance_map(roi_size, mode=mode, sigma_scale=sigma_scale, device=sw_device,
                                                dtype=compute_dtype)[None, None]
    importance_map = importance_map.to(dtype=compute_dtype, device=sw_device, memory_format=torch.contiguous_format)
    if importance_map.ndim == spatial:
        importance_map = importance_map[None, None]

    outputs: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    tuple_output = False
    for first in range(0, total_slices, sw_batch_size):
        windows = [
            (slice(i // num_win, i // num_win + 1), slice(None), *slices[i % num_win])
            for i in range(first, min(first + sw_batch_size, total_slices))
        ]
        if sw_batch_size > 1:
            data = torch.cat([inputs[w] for w in windows]).to(sw_device)
        else:
            data = inputs[windows[0]].to(sw_device)
        out = predictor(data)
        tuple_output = not isinstance(out, torch.Tensor)
        results = list(out) if tuple_output else [out]
        weight = importance_map.to(dtype=compute_dtype, device=sw_device)
        for j, result in enumerate(results):
            channels, shape = result.shape[1], tuple(result.shape[2:])
            if shape != roi_size:
                raise ValueError(f"the predictor returned windows of {shape}, not the window's {roi_size}")
            if len(outputs) <= j:
                outputs.append(torch.zeros([batch_size, channels, *image_size], dtype=compute_dtype, device=device))
                counts.append(torch.zeros([1, 1, *image_size], dtype=compute_dtype, device=device))
                weight_on_output = weight.to(device)
                for s in slices:
                    counts[-1][(slice(None), slice(None), *s)] += weight_on_output
            result *= weight
            result = result.to(device)
            for window, patch in zip(windows, result):
                outputs[j][window] += patch

    for j in range(len(outputs)):
        outputs[j] /= counts[j]
    if any(pad_size):
        crop = [slice(pad_size[(spatial - 1 - d) * 2], pad_size[(spatial - 1 - d) * 2] + image_size_[d]) for d in range(spatial)]
        outputs = [o[(slice(None), slice(None), *crop)] for o in outputs]
    outputs = [o.to(dtype=inputs.dtype, device=device, memory_format=torch.contiguous_format) for o in outputs]
    return tuple(outputs) if tuple_output and len(outputs) > 1 else outputs[0]
