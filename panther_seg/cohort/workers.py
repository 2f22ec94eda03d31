"""What runs on the cluster: a Ray task that reads and validates one image, and an actor that
holds the network (or ensemble) loaded once and segments and writes cases.

Reading is a separate task so an actor (a GPU) does not wait for file I/O and decompression;
it is batch mode's own ``read_case``, so DICOM series folders are read as batch mode reads them.
An ``sitk.Image`` does not pickle, so the task returns the voxels as a numpy array (which Ray's
object store shares without copying) with the geometry, and the actor rebuilds the image: the
same voxels, pixel type, spacing, origin and direction that ``read_image`` gave. The task also
preprocesses (resampling and z-score, the Segmenter's ``preparation``, which the workers hand to
the driver), so the actor only runs the network, post-processes and writes. Outputs are written by the actor, atomically, where the driver said: OUT must be
a folder every node sees (a shared file system). Refusals and errors come back as results, never
as exceptions: only a dying process reaches the driver as a Ray error, and the driver retries
that case elsewhere.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import SimpleITK as sitk

from ..errors import InputError
from ..batch import DicomCase
from ..batch import read_case as read_source
from ..batch import write_case_statistics
from ..inference.pipeline import Preparation
from ..results import Timings
from ..inference.preprocessing import Preprocessed
from ..io.outputs import OutputPaths, check_outputs, write_outputs
from ..io.files import sha256

log = logging.getLogger("panther_seg")


@dataclass
class ReadCase:
    """An image and its network input as plain data: picklable, and zero-copy through the object
    store."""

    voxels: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    prepared: Preprocessed
    seconds: dict[str, float]

    def image(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.voxels)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass
class Outcome:
    """What a case came to, as the driver records it."""

    status: str
    error: str = ""
    checksums: dict[str, str] = field(default_factory=dict)
    tumour_ml: float | None = None
    worker: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    worker_peak_gib: float | None = None  # the worker process's peak RSS so far (sizes --cpus-per-worker hosts)


def error_line(e: BaseException) -> str:
    """One line: the message an InputError carries, else the exception's type and message."""
    if isinstance(e, InputError):
        return str(e).splitlines()[0] if str(e) else "refused"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Reads hold no CPU reservation: the driver bounds how many are in flight, and a reservation
# would deadlock a cluster whose CPUs the actors hold. Retried if their process dies.
@ray.remote(num_cpus=0, max_retries=3)
def read_case(source: Path | DicomCase, preparation: Preparation) -> ReadCase | Outcome:
    """Batch mode's ``read_case`` (an image file or a DICOM series, with every check: header,
    memory limit, data length, voxels), then the Segmenter's preprocessing, as a task."""
    start = time.perf_counter()
    try:
        image, _ = read_source(source, preparation.budget)
        read_s = time.perf_counter() - start
        timings = Timings()
        named = source.folder if isinstance(source, DicomCase) else source
        try:
            prepared = preparation(image, timings, named)
        except InputError as e:
            raise InputError(named, e.problem) if e.path is None else e from None
        except MemoryError:
            raise InputError(named, "out of memory while preprocessing: lower --memory-limit") from None
        voxels = sitk.GetArrayFromImage(image)
        return ReadCase(voxels, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), prepared,
                        {"read": read_s, "preprocess": timings.seconds["preprocess"]})
    except InputError as e:
        return Outcome("refused", error_line(e), worker=worker_name(), seconds={"read": time.perf_counter() - start})
    except Exception as e:  # noqa: BLE001 - any failure is this case's, never the cohort's
        log.warning("%s", traceback.format_exc())
        return Outcome("failed", error_line(e), worker=worker_name(), seconds={"read": time.perf_counter() - start})


class CaseWorker:
    """One per GPU (or group of CPU cores): the Segmenter built once, then case after case.

    A bad checkpoint or statistics file is not raised from ``__init__`` (Ray would report it per
    call, with a traceback): ``ready`` returns it as one line and the driver stops there."""

    def __init__(self, checkpoints: list[str] | None, stats: str | None, device: str, options: dict[str, Any], threads: int):
        import torch

        from ..inference.pipeline import Segmenter
        from ..system.runtime import keep_freed_memory

        keep_freed_memory()
        torch.set_num_threads(max(1, threads))
        self.name = worker_name()
        self.problem: str | None = None
        try:
            self.segmenter = Segmenter.from_resources(checkpoints, stats, device, **options)
        except InputError as e:
            self.problem = error_line(e)

    def ready(self) -> tuple[str, str | None, str]:
        """This worker's name, the problem that stops it (None when ready), its device."""
        device = self.segmenter.settings.device if self.problem is None else "?"
        return self.name, self.problem, device

    def demonstration(self) -> bool:
        """The checkpoint says it is a demonstration (the driver warns once)."""
        return self.segmenter.resources.demonstration

    def preparation(self) -> Preparation:
        """The Segmenter's preprocessing, for the read tasks."""
        return self.segmenter.preparation

    def segment(self, case: ReadCase | Outcome, source: str, destination: OutputPaths, statistics: bool = False) -> Outcome:
        if isinstance(case, Outcome):  # refused or failed while reading
            return case
        timings = Timings()
        seconds = dict(case.seconds)
        try:
            check_outputs(destination)
            with self.segmenter.errors_named(Path(source)):
                output = self.segmenter.infer(case.prepared, timings, Path(source))
                segmentation = self.segmenter.finish(case.image(), case.prepared, output, timings, self.segmenter.extras)
            start = time.perf_counter()
            write_outputs(segmentation, destination)
            checksums = {path.name: sha256(path) for path in destination.chosen().values()}
            seconds["write"] = time.perf_counter() - start
            seconds["segment"] = sum(timings.seconds.values())
            if statistics:
                write_case_statistics(self.segmenter, Path(source), destination, segmentation, seconds)
            ml = segmentation.measurements.tumour_volume_ml
            return Outcome("done", checksums=checksums, tumour_ml=ml, worker=self.name, seconds=seconds, worker_peak_gib=peak_rss_gib())
        except InputError as e:
            return Outcome("refused", error_line(e), worker=self.name, seconds=seconds)
        except Exception as e:  # noqa: BLE001 - any failure is this case's, never the cohort's
            log.warning("%s", traceback.format_exc())
            return Outcome("failed", error_line(e), worker=self.name, seconds=seconds)


def start_workers(count: int, cpus: float, gpus: float, checkpoints: list[str] | None, stats: str | None,
                  device: str, options: dict[str, Any]) -> list[Any]:
    """``count`` actors; Ray restarts one whose process dies (the driver retries its cases)."""
    actor = ray.remote(CaseWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=0)
    device = "cuda" if gpus > 0 and device == "auto" else device
    return [actor.remote(checkpoints, stats, device, options, int(max(1, cpus))) for _ in range(count)]
