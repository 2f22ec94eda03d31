"""The original inference protocol written out literally, step by step as docs/protocol.md words
it: slow and obvious, with no shortcut (whole-volume morphology, one window per pass, the MONAI
inferer object as the original built it). It is the oracle the tests hold the pipeline to, as
``model/reference.py`` is for the network; nothing in the container runs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import SlidingWindowInferer
from scipy import ndimage

from ..contract.stats import NormalisationStats

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ReferenceResult:
    volume: np.ndarray  # the network input (z, y, x)
    probabilities: np.ndarray  # (C, z, y, x) after the softmax
    network_mask: np.ndarray  # post-processed tumour mask on the network grid
    mask: sitk.Image  # on the input's grid


def ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    return x**2 + y**2 + z**2 <= radius**2


def reference_segment(
    image: sitk.Image, predictor: Predictor, stats: NormalisationStats, window: tuple[int, int, int] = (32, 160, 208)
) -> ReferenceResult:
    # Preprocessing 1: target spacing (median; 10th-percentile z when median z / median x >= 3)
    median, p10 = stats.median_spacing, stats.p10_spacing
    target = (median[0], median[1], p10[2] if median[2] / median[0] >= 3 else median[2])

    # Preprocessing 2: resample, always, in the input's pixel type
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputSpacing(target)
    resampler.SetSize([int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), target)])
    resampler.SetOutputOrigin(image.GetOrigin())
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetTransform(sitk.Transform())
    resampler.SetInterpolator(sitk.sitkBSpline)
    resampler.SetDefaultPixelValue(0)
    resampler.SetOutputPixelType(image.GetPixelID())
    resampled = resampler.Execute(image)

    # Preprocessing 3: the array as float32, in storage order
    volume = sitk.GetArrayFromImage(resampled).astype(np.float32)

    # Preprocessing 4: z-score over the voxels > 0
    positive = volume > 0
    if positive.any():
        mean = volume[positive].mean()
        std = volume[positive].std()
        volume = (volume - mean) / (std + 1e-6)

    # Inference: MONAI's inferer on the whole volume and each of its 8 mirrorings, logits averaged
    inferer = SlidingWindowInferer(roi_size=window, overlap=0.5, sw_batch_size=1, mode="gaussian")
    x = torch.from_numpy(volume)[None, None]
    all_logits = []
    for dims in ([], [2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4]):
        with torch.no_grad():
            if dims:
                logits = torch.flip(inferer(torch.flip(x, dims), predictor), dims)
            else:
                logits = inferer(x, predictor)
        all_logits.append(logits)
    logits = torch.stack(all_logits).mean(dim=0)
    probabilities = torch.softmax(logits, dim=1)[0].numpy()

    # Post-processing 1-2: threshold, opening then closing with the radius-1 ball
    cross = ball(1)
    tumour = probabilities[1] >= 0.45
    tumour = ndimage.binary_opening(tumour, structure=cross)
    tumour = ndimage.binary_closing(tumour, structure=cross)

    # Post-processing 3: connected components by volume
    labels, n = ndimage.label(tumour, structure=cross)
    kept: list[int] = []
    if n > 0:
        voxel_mm3 = target[0] * target[1] * target[2]
        volumes = {c: np.sum(labels == c) * voxel_mm3 for c in range(1, n + 1)}
        minimum = max(50.0, 0.0005 * sum(volumes.values()))
        by_size = sorted(volumes, key=lambda c: -volumes[c])
        survivors = [c for c in by_size if volumes[c] >= minimum]
        if not survivors:
            survivors = [by_size[0]]
        kept = [survivors[0]]
        if len(survivors) > 1 and volumes[survivors[1]] >= 0.2 * volumes[survivors[0]]:
            kept.append(survivors[1])

        # Post-processing 4: keep the components touching the dilated pancreas, unless none does
        pancreas = probabilities[2] >= 0.5
        if pancreas.any():
            radius = max(1, int(round(6 / np.mean(target))))
            near = ndimage.binary_dilation(pancreas, structure=ball(radius))
            touching = [c for c in kept if np.any(near & (labels == c))]
            if touching:
                kept = touching
    network_mask = np.isin(labels, kept).astype(np.uint8)

    # Post-processing 5: on the target spacing with the input's origin and direction, nearest
    # neighbour onto the input's own grid
    on_target = sitk.GetImageFromArray(network_mask)
    on_target.SetSpacing(target)
    on_target.SetOrigin(image.GetOrigin())
    on_target.SetDirection(image.GetDirection())
    back = sitk.ResampleImageFilter()
    back.SetReferenceImage(image)
    back.SetTransform(sitk.Transform())
    back.SetInterpolator(sitk.sitkNearestNeighbor)
    back.SetDefaultPixelValue(0)
    back.SetOutputPixelType(sitk.sitkUInt8)
    return ReferenceResult(volume, probabilities, network_mask, back.Execute(on_target))
