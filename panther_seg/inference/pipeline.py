"""The one place that wires the steps: read and validate -> preprocess -> network -> post-process
-> input grid. ``Segmenter`` is also the Python API (``panther_seg.Segmenter``)::

    segmenter = Segmenter.from_resources(fast=True)          # the network(s) loaded once
    outputs = segmenter.segment("scan.nii.gz")               # a path or a SimpleITK image
    sitk.WriteImage(outputs.tumour, "mask.nii.gz")
"""
from __future__ import annotations

import json
import logging
import resource
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..config import MEMORY_LIMIT_ENV, PANCREAS_THRESHOLD
from ..contract.network_config import check_model_config, check_pipeline_config
from ..contract.resources import Resources, resolve_resources
from ..contract.stats import NormalisationStats
from ..errors import FieldError, InputError
from ..io.images import read_image, validate_image
from ..system.device import select_device
from ..system.memory import MemoryBudget
from ..reporting.measurements import measure
from ..results import Extras, Segmentation, Timings
from .confidence import MirrorVotes, disagreement, mirror_confidence
from .geometry import to_input_grid
from .options import Options
from .postprocessing import postprocess
from .preprocessing import Preprocessed, PreprocessingOptions, preprocess_image
from .sliding_window import InferenceSettings, predict_probabilities

log = logging.getLogger("panther_seg")


def peak_memory() -> str:
    text = f"peak host RAM {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        text += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return text


class NetworkOutput(NamedTuple):
    """Stage 2's result on the network's grid: the tumour and pancreas probabilities, and each
    mirroring's thresholded tumour mask (None without mirroring), which the confidence reads."""

    tumour: np.ndarray
    pancreas: np.ndarray
    votes: MirrorVotes | None


@dataclass(frozen=True)
class Preparation:
    """Stage 1 of a Segmenter (preprocessing) as plain, picklable data: a cohort's read tasks
    preprocess in their own processes, so that a GPU does not wait for the resampling."""

    stats: NormalisationStats
    preprocessing: PreprocessingOptions
    training_direction: tuple[float, ...] | None
    members: int
    budget: MemoryBudget

    def __call__(self, image: sitk.Image, timings: Timings, source: object) -> Preprocessed:
        direction = None if self.training_direction is None else np.asarray(self.training_direction, dtype=float).reshape(3, 3)
        with timings.stage("preprocess"):
            prep = preprocess_image(image, self.stats, self.preprocessing, direction, source, members=self.members, budget=self.budget)
        log.info("  network grid   %s voxels (z, y, x) at %s mm (x, y, z)", prep.volume.shape, tuple(round(s, 4) for s in prep.grid.spacing))
        return prep


class Segmenter:
    """Holds the networks (one, or an ensemble) on their device; ``segment`` maps an image to its
    outputs on the input's grid.

    The checkpoints' contract decides the window, the classes and the preprocessing;
    ``preprocessing`` overrides the latter (a departure the user chose). ``from_resources`` builds
    one as the command line does."""

    def __init__(self, resources: Resources, settings: InferenceSettings, preprocessing: PreprocessingOptions | None = None,
                 budget: MemoryBudget | None = None, extras: Extras = Extras()):
        self.resources = resources
        self.contract = resources.contract
        self.preprocessing = preprocessing or self.contract.preprocessing
        self.settings = replace(settings, window=self.contract.window)
        self.budget = budget or MemoryBudget.resolve()
        self.extras = extras
        self.models = [m.model.to(self.settings.device).eval() for m in resources.members]

    @classmethod
    def from_resources(cls, checkpoints: Sequence[Path | str] | Path | str | None = None, stats: Path | str | None = None,
                       device: str = "auto", **options: Any) -> "Segmenter":
        """The networks and statistics with the command line's precedence (``checkpoints``, else
        ``/opt/ml/model``, else the baked ``resources/``; ``stats``, else the checkpoint's, else
        the CSV beside it), on ``device`` (auto: the GPU when CUDA works). ``options`` are the
        command line's long options (``fast=True``, ``overlap=0.5``, ``fp16=True``,
        ``save_pancreas=True``, ...; see ``Options``). Bad resources raise ``InputError``."""
        checkpoint = options.pop("checkpoint", None)  # the command line's singular name
        if checkpoint is not None:
            if checkpoints is not None:
                raise TypeError("give checkpoints or checkpoint, not both")
            checkpoints = checkpoint
        opts = Options.of(**options)
        if isinstance(checkpoints, (str, Path)):
            checkpoints = [checkpoints]
        budget = MemoryBudget.resolve(opts.memory_limit)
        chosen = select_device(device)
        config = model_config(opts.model_config, budget)
        resources = resolve_resources([Path(c) for c in checkpoints] if checkpoints else None,
                                      Path(stats) if stats is not None else None, config)
        extras = Extras(probabilities=opts.save_probabilities, pancreas=opts.save_pancreas, uncertainty=opts.save_uncertainty)
        return cls(resources, opts.settings(chosen), opts.preprocessing(resources.contract.preprocessing), budget, extras)

    def segment(self, image: sitk.Image | Path | str, timings: Timings | None = None, source: object = None,
                extras: Extras | None = None) -> Segmentation:
        """The outputs on exactly the grid of ``image`` (a path is read and verified first; an
        image in memory gets the same checks); ``source`` names it in errors."""
        timings = timings or Timings()
        if isinstance(image, (str, Path)):
            source = source or Path(image)
            with timings.stage("read"):
                image = read_image(Path(image), self.budget)
        else:
            source = source or "image"
            self.check(image, source)
        return self.run(image, timings, source, extras)

    def check(self, image: sitk.Image, source: object) -> None:
        """An image in memory gets the checks a path's reading makes, and the memory budget's."""
        validate_image(image, source)
        self.budget.check_image_size(source, image.GetSize(), image.GetSizeOfPixelComponent())

    @contextmanager
    def errors_named(self, source: object) -> Iterator[None]:
        """A stage's failures as ``InputError`` naming ``source`` (so batch mode's stages, run
        apart, report exactly as ``segment`` does)."""
        try:
            yield
        except InputError as e:
            if e.path is None:  # raised where the image is not known
                raise InputError(source, e.problem) from None
            raise
        except MemoryError:
            raise InputError(source, "out of memory while segmenting: lower --memory-limit (or "
                                     f"${MEMORY_LIMIT_ENV}) to the memory this machine has") from None

    def run(self, image: sitk.Image, timings: Timings, source: object, extras: Extras | None = None) -> Segmentation:
        """The three stages on an image already read and checked (``read_image``, ``check``), so
        that the command line does not check it twice; failures name ``source``."""
        extras = self.extras if extras is None else extras
        with self.errors_named(source):
            prepared = self.prepare(image, timings, source)
            return self.finish(image, prepared, self.infer(prepared, timings, source), timings, extras)

    @property
    def preparation(self) -> "Preparation":
        """Stage 1 without the networks: what another process needs to preprocess for this one."""
        return Preparation(self.resources.stats, self.preprocessing, self.contract.training_direction, len(self.models), self.budget)

    def prepare(self, image: sitk.Image, timings: Timings, source: object) -> Preprocessed:
        """Stage 1 (host): the image on the network's grid (``preprocess_image``'s result)."""
        return self.preparation(image, timings, source)

    def infer(self, prepared: Preprocessed, timings: Timings, source: object) -> NetworkOutput:
        """Stage 2 (the device): the tumour and pancreas probabilities on the network's grid."""
        with timings.stage("network"):
            probabilities, votes = self.probabilities(torch.from_numpy(prepared.volume))
            tumour = probabilities[self.contract.tumour_class].cpu().numpy()
            pancreas = probabilities[self.contract.pancreas_class].cpu().numpy()
            del probabilities
        if not (np.all(np.isfinite(tumour)) and np.all(np.isfinite(pancreas))):
            raise InputError(source, "the network's output is not finite (NaN or Inf) for this image; no mask written")
        return NetworkOutput(tumour, pancreas, votes)

    def finish(self, image: sitk.Image, prepared: Preprocessed, output: NetworkOutput, timings: Timings,
               extras: Extras) -> Segmentation:
        """Stage 3 (host): post-processing, the outputs on the input's grid, the measurements
        (always: they are cheap) and the confidence."""
        tumour, pancreas, votes = output
        with timings.stage("postprocess"):
            mask = postprocess(tumour, pancreas, prepared.grid.spacing[::-1])
        with timings.stage("to input grid"):
            out = Segmentation(to_input_grid(mask, prepared.grid, image))
            if extras.pancreas:
                out.pancreas = to_input_grid(pancreas >= PANCREAS_THRESHOLD, prepared.grid, image)
            if extras.probabilities:
                out.tumour_probability = to_input_grid(tumour, prepared.grid, image, sitk.sitkLinear)
                out.pancreas_probability = to_input_grid(pancreas, prepared.grid, image, sitk.sitkLinear)
        with timings.stage("measure"):  # all that measuring adds to a run, the pancreas on the input grid included
            pancreas_mask = out.pancreas if out.pancreas is not None else to_input_grid(pancreas >= PANCREAS_THRESHOLD, prepared.grid, image)
            out.measurements = measure(image, out.tumour, pancreas_mask)
            out.confidence = mirror_confidence(votes, mask, float(np.prod(prepared.grid.spacing)) / 1000.0)
            if extras.uncertainty and votes is not None and out.confidence.computed:
                out.uncertainty = uncertainty_image(disagreement(votes, mask), len(votes), prepared, image)
        log.info("  tumour voxels  %d", int(np.count_nonzero(sitk.GetArrayViewFromImage(out.tumour))))
        return out

    def probabilities(self, volume: torch.Tensor) -> tuple[torch.Tensor, MirrorVotes | None]:
        """Class probabilities. Out of GPU memory, loudly rather than losing the case (as nnU-Net
        does): the stitching moves to the host while the network stays on the GPU, then one
        window per pass, then the whole case on the CPU."""
        for settings, warning in gpu_fallbacks(self.settings):
            if warning:
                log.warning("WARNING: out of GPU memory %s", warning)
            votes = self.new_votes()
            try:
                return predict_probabilities(self.models, volume, settings, None if votes is None else votes.record), votes
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
        log.warning("WARNING: out of GPU memory even with 1 window per pass: running this case on the CPU (much slower)")
        for model in self.models:
            model.to("cpu")
        try:
            votes = self.new_votes()
            cpu = replace(self.settings, batch_size=1, device="cpu", stitch_device=None, fp16=False)
            return predict_probabilities(self.models, volume, cpu, None if votes is None else votes.record), votes
        finally:
            for model in self.models:
                model.to(self.settings.device)


    def new_votes(self) -> MirrorVotes | None:
        """A fresh record of the mirrorings (each attempt starts one), None without mirroring."""
        return MirrorVotes(self.contract.tumour_class) if self.settings.mirror_axes else None


def uncertainty_image(count: np.ndarray, mirrorings: int, prepared: Preprocessed, image: sitk.Image) -> sitk.Image:
    """The fraction of mirrorings that disagree with the final mask, on the input's grid (float32;
    the counts go by nearest neighbour, as the mask does, so that each voxel's fraction is exact)."""
    on_input = to_input_grid(count, prepared.grid, image)
    fraction = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(on_input).astype(np.float32) / np.float32(mirrorings))
    fraction.CopyInformation(on_input)
    return fraction


def model_config(value: Path | str | dict[str, Any] | None, budget: MemoryBudget | None = None) -> dict[str, Any] | None:
    """``--model-config``: SegFormer3D constructor arguments, as a dict or a JSON file, checked
    by building and running the network once."""
    if value is None:
        return None
    if isinstance(value, dict):
        config, where = value, "model_config"
    else:
        where = Path(value)
        try:
            config = json.loads(where.read_text())
        except OSError as e:
            raise InputError(where, f"cannot read: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(where, f"not valid JSON: {e}") from None
    try:
        check_pipeline_config(check_model_config(config, run=True, budget=budget))
        return dict(config)
    except FieldError as e:
        raise InputError(where, e.problem) from None


def segment(image: sitk.Image | Path | str, **options: Any) -> sitk.Image:
    """One call: the tumour mask of ``image`` on its grid, with the baked (or given) weights;
    ``options`` as ``Segmenter.from_resources`` takes them (``checkpoints=``, ``device=``,
    ``fast=True``, ...). For many images, build one ``Segmenter`` and reuse it."""
    keys = ("checkpoints", "stats", "device")
    segmenter = Segmenter.from_resources(**{k: options.pop(k) for k in keys if k in options}, **options)
    return segmenter.segment(image).tumour


def gpu_fallbacks(settings: InferenceSettings) -> list[tuple[InferenceSettings, str]]:
    """The attempts before the CPU, each with the warning that announces it: as chosen; the
    stitched logits on the host (the network and its windows stay on the GPU); that with one
    window per pass."""
    host = replace(settings, stitch_device="cpu")
    attempts = [(settings, "")]
    if settings.stitch_device != "cpu":
        attempts.append((host, "with the stitching on the GPU: stitching on the host, the network still on the GPU"))
    if settings.batch_size != 1:
        attempts.append((replace(host, batch_size=1), "with several windows per pass: retrying with 1"))
    return attempts
