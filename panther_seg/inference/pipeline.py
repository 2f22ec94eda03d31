"""The one place that wires the steps: preprocess -> network -> post-process -> input grid."""
from __future__ import annotations

import logging
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import SimpleITK as sitk
import torch

from ..config import PANCREAS_THRESHOLD
from ..errors import InputError
from .geometry import to_input_grid
from .postprocessing import postprocess
from .preprocessing import PreprocessingOptions, preprocess_image
from ..contract.resources import Resources
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


@dataclass(frozen=True)
class Extras:
    """What a run returns besides the tumour mask, when asked."""

    probabilities: bool = False  # tumour and pancreas probability maps (float32, input grid, linear)
    pancreas: bool = False  # the pancreas mask the post-processing uses (probability >= 0.5)


@dataclass
class Segmentation:
    """A case's outputs, each on exactly the input's grid."""

    tumour: sitk.Image
    pancreas: sitk.Image | None = None
    tumour_probability: sitk.Image | None = None
    pancreas_probability: sitk.Image | None = None


class Segmenter:
    """Holds the networks (one, or an ensemble) on their device; ``segment`` maps an image to its
    tumour mask.

    The checkpoints' contract decides the window, the classes and the preprocessing;
    ``preprocessing`` overrides the latter (a departure the user chose)."""

    def __init__(self, resources: Resources, settings: InferenceSettings, preprocessing: PreprocessingOptions | None = None):
        self.resources = resources
        self.contract = resources.contract
        self.preprocessing = preprocessing or self.contract.preprocessing
        self.settings = replace(settings, window=self.contract.window)
        self.models = [m.model.to(self.settings.device).eval() for m in resources.members]

    def segment(self, image: sitk.Image, timings: Timings | None = None, source: object = None, extras: Extras = Extras()) -> Segmentation:
        """The outputs on exactly the grid of ``image``; ``source`` names it in errors."""
        timings = timings or Timings()
        with timings.stage("preprocess"):
            prep = preprocess_image(image, self.resources.stats, self.preprocessing, self.contract.direction_matrix(), source,
                                    members=len(self.models))
        log.info("  network grid   %s voxels (z, y, x) at %s mm (x, y, z)", prep.volume.shape, tuple(round(s, 4) for s in prep.grid.spacing))
        with timings.stage("network"):
            probabilities = self.probabilities(torch.from_numpy(prep.volume))
            tumour = probabilities[self.contract.tumour_class].cpu().numpy()
            pancreas = probabilities[self.contract.pancreas_class].cpu().numpy()
            del probabilities
        if not (np.all(np.isfinite(tumour)) and np.all(np.isfinite(pancreas))):
            raise InputError(source, "the network's output is not finite (NaN or Inf) for this image; no mask written")
        with timings.stage("postprocess"):
            mask = postprocess(tumour, pancreas, prep.grid.spacing[::-1])
        with timings.stage("to input grid"):
            out = Segmentation(to_input_grid(mask, prep.grid, image))
            if extras.pancreas:
                out.pancreas = to_input_grid(pancreas >= PANCREAS_THRESHOLD, prep.grid, image)
            if extras.probabilities:
                out.tumour_probability = to_input_grid(tumour, prep.grid, image, sitk.sitkLinear)
                out.pancreas_probability = to_input_grid(pancreas, prep.grid, image, sitk.sitkLinear)
        log.info("  tumour voxels  %d", int(np.count_nonzero(sitk.GetArrayViewFromImage(out.tumour))))
        return out

    def probabilities(self, volume: torch.Tensor) -> torch.Tensor:
        """Class probabilities; out of GPU memory, retried with one window per pass, then on the
        CPU (as nnU-Net does), loudly, rather than losing the case."""
        try:
            return predict_probabilities(self.models, volume, self.settings)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
        if self.settings.batch_size > 1:
            log.warning("WARNING: out of GPU memory with %d windows per pass: retrying with 1", self.settings.batch_size)
            try:
                return predict_probabilities(self.models, volume, replace(self.settings, batch_size=1))
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
        log.warning("WARNING: out of GPU memory even with 1 window per pass: running this case on the CPU (much slower)")
        for model in self.models:
            model.to("cpu")
        try:
            return predict_probabilities(self.models, volume, replace(self.settings, batch_size=1, device="cpu", fp16=False))
        finally:
            for model in self.models:
                model.to(self.settings.device)
