"""The one place that wires the steps: read -> preprocess -> network -> post-process -> input grid."""
from __future__ import annotations

import logging
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import SimpleITK as sitk
import torch

from .geometry import mask_to_input_grid
from .postprocessing import postprocess
from .preprocessing import preprocess_image
from .resources import Resources
from .sliding_window import InferenceSettings, predict_probabilities

log = logging.getLogger("panther_seg")


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        log.info("  %-14s %7.2f s", name, self.seconds[name])


def peak_memory() -> str:
    text = f"peak host RAM {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        text += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return text


class Segmenter:
    """Holds the network on its device; ``segment`` maps an image to its tumour mask."""

    def __init__(self, resources: Resources, settings: InferenceSettings):
        self.resources = resources
        self.settings = settings
        self.model = resources.loaded.model.to(settings.device).eval()

    def segment(self, image: sitk.Image, timings: Timings | None = None) -> sitk.Image:
        timings = timings or Timings()
        loaded = self.resources.loaded
        with timings.stage("preprocess"):
            prep = preprocess_image(image, self.resources.stats, loaded.training_direction)
        log.info("  network grid   %s voxels (z, y, x) at %s mm (x, y, z)", prep.volume.shape, tuple(round(s, 4) for s in prep.grid.spacing))
        with timings.stage("network"):
            probabilities = predict_probabilities(self.model, prep.volume, self.settings)
        with timings.stage("postprocess"):
            mask = postprocess(probabilities, prep.grid.spacing[::-1])
        del probabilities
        with timings.stage("to input grid"):
            out = mask_to_input_grid(mask, prep.grid, prep.reorientation, image, prep.resampled)
        log.info("  tumour voxels  %d", int(np.count_nonzero(sitk.GetArrayViewFromImage(out))))
        return out
