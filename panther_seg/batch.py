"""Batch mode, shared by ``panther-seg -i ... -o ...`` and ``panther-seg-cohort``: what the inputs
are (image files, folders, DICOM series folders), where each case's outputs go, and running the
cases one after another or overlapped (read, network, write in three threads). Every failure a
user can fix is an ``InputError`` naming its file; one case's failure never stops the others.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import SimpleITK as sitk

from .errors import InputError
from .io.dicomweb import DicomWebCase, StoredSeg, check_store, is_url, read_dicomweb_series, resolve_case
from .io.dicom_files import is_dicom_file, is_dicom_folder
from .io.images import has_image_suffix, list_folder, read_image, validate_image
from .io.outputs import (
    DICOM_SEG_SUFFIX, DicomSegPaths, OutputPaths, batch_outputs, check_outputs, is_dicom_seg_path, is_mask_path,
    outputs_beside, write_outputs,
)
from .io.images import case_id
from .reporting.statistics import (
    CSV_NAME, protocol_dict, read_statistics_json, statistics_path, statistics_row, to_json_dict, write_statistics_csv,
    write_statistics_json,
)
from .results import Extras, ModelProvenance, Segmentation, Timings
from .system.memory import MemoryBudget

if TYPE_CHECKING:
    from .inference.pipeline import Segmenter
    from .io.dicom import DicomSeries

log = logging.getLogger("panther_seg")

DICOM_EXTRA = "pip install 'panther-seg[dicom]'"


@dataclass(frozen=True)
class DicomCase:
    """A folder that is a DICOM series, or a multi-frame DICOM file: one case, named after the
    folder or file (the SeriesInstanceUID is long and means nothing to a user); ``series_uid``
    picks one of several series in it, ``phase`` one time point of a dynamic series."""

    folder: Path
    series_uid: str | None = None
    phase: int | None = None

    @property
    def name(self) -> str:
        return self.folder.stem if self.folder.is_file() else self.folder.name

    def __str__(self) -> str:
        return str(self.folder)


Case = Path | DicomCase | DicomWebCase
Destination = OutputPaths | DicomSegPaths | StoredSeg
DICOM_CASES = (DicomCase, DicomWebCase)  # a DICOM SEG output references their series


def describe_image(path: Case, image: sitk.Image) -> str:
    series = f" (series {path.series_uid})" if isinstance(path, DicomCase) and path.series_uid else ""
    return (
        f"input {path.name}{series}: size {image.GetSize()} (x, y, z), spacing {tuple(round(s, 4) for s in image.GetSpacing())} mm, "
        f"{image.GetPixelIDTypeAsString()}, direction {tuple(round(d, 3) for d in image.GetDirection())}"
    )


def read_case(src: Case, budget: MemoryBudget) -> tuple[sitk.Image, DicomSeries | None]:
    """The case's image, read, verified and checked as ``read_image`` checks it (the memory budget
    applied from the headers first); for a DICOM case also its series, which a DICOM SEG output
    references."""
    if isinstance(src, DicomCase):
        try:
            from .io.dicom import read_dicom_series
        except ImportError:
            raise InputError(src.folder, f"DICOM input needs pydicom and highdicom ({DICOM_EXTRA})") from None
        series = read_dicom_series(src.folder, src.series_uid, budget, src.phase)
        validate_image(series.image, src.folder)
        return series.image, series
    if isinstance(src, DicomWebCase):
        series = read_dicomweb_series(src, budget)
        validate_image(series.image, src.url)
        return series.image, series
    return read_image(src, budget), None


def segment_file(segmenter: Segmenter, src: Case, dst: Destination, statistics: bool = False) -> dict[str, float]:
    timings = Timings()
    check_outputs(dst)
    with timings.stage("read"):
        image, series = read_case(src, segmenter.budget)
    log.info(describe_image(src, image))
    segmentation = segmenter.run(image, timings, case_source(src))
    with timings.stage("write"):
        written = write_case(segmentation, dst, series, segmenter.resources.model)
    log.info("wrote %s", written)
    if statistics:
        write_case_statistics(segmenter, src, dst, segmentation, timings.seconds)
    return timings.seconds


def write_case(segmentation: Segmentation, dst: Destination, series: DicomSeries | None, model: ModelProvenance | None) -> str:
    """The case's outputs written (to a DICOMweb server: written locally first, then stored);
    what was written, for the log."""
    if isinstance(dst, StoredSeg):
        return dst.store(lambda paths: write_outputs(segmentation, paths, series, model))
    return ", ".join(str(p) for p in write_outputs(segmentation, dst, series, model))


def case_statistics(segmenter: Segmenter, src: Case, dst: Destination, segmentation: Segmentation | None = None,
                    seconds: dict[str, float] | None = None, error: str = "", status: str = "done") -> dict[str, Any]:
    """A case's statistics (docs/statistics.md): a written case's, or a refused one's with its error."""
    from .inference.options import describe_departures  # torch: not for --help of the commands that import this module

    protocol = protocol_dict(describe_departures(segmenter.settings, segmenter.preprocessing), segmenter.settings,
                             segmenter.preprocessing.to_dict())
    source = case_source(src)  # absolute: the report finds the scan from wherever it is opened
    source = source.absolute() if isinstance(source, Path) else source
    return to_json_dict(case_id(dst.tumour), source, status, segmenter.resources.provenance, protocol,
                        segmentation, seconds, dst.chosen() if segmentation is not None else None, error)


def write_case_statistics(segmenter: Segmenter, src: Case, dst: Destination, segmentation: Segmentation,
                          seconds: dict[str, float]) -> None:
    path = statistics_path(dst.tumour)
    write_statistics_json(path, case_statistics(segmenter, src, dst, segmentation, seconds))
    log.info("wrote %s", path)


def write_batch_statistics(segmenter: Segmenter, cases: list[tuple[Case, Destination]], errors: dict[Case, str], folder: Path) -> Path:
    """``statistics.csv`` in the output folder: each written case's row from its statistics.json,
    each refused case's status and error."""
    rows = []
    for src, dst in cases:
        data = None if src in errors else read_statistics_json(statistics_path(dst.tumour))
        if data is None:
            data = case_statistics(segmenter, src, dst, error=errors.get(src, "no statistics written"), status="refused" if src in errors else "failed")
        rows.append(statistics_row(data))
    path = folder / CSV_NAME
    write_statistics_csv(path, rows)
    return path


def batch_inputs(paths: list[Path | str], series_uid: str | None = None, phase: int | None = None,
                 dicomweb_user: str | None = None) -> list[Case]:
    """Image files; a folder that is a DICOM series, or a DICOM file, is one case; any other
    folder gives its image files and its subfolders that are DICOM series; a DICOMweb study or
    series URL is one case."""
    files: list[Case] = []
    for path in paths:
        if is_url(path):
            files.append(resolve_case(path, series_uid, dicomweb_user))
        elif path.is_dir() and is_dicom_folder(path):
            files.append(DicomCase(path, series_uid, phase))
        elif path.is_dir():
            entries = sorted(list_folder(path))
            found: list[Case] = [p for p in entries if p.is_file() and has_image_suffix(p)]
            found += [DicomCase(p, series_uid, phase) for p in entries if p.is_dir() and is_dicom_folder(p)]
            if not found:
                raise InputError(path, "folder holds no image file (.mha, .nii, .nii.gz, .nrrd) and no DICOM series folder")
            files += found
        elif path.is_file() and is_dicom_file(path):
            files.append(DicomCase(path, series_uid, phase))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(path, "no such file or folder")
    return files


def batch_destinations(files: list[Case], output: Path | str, extras: Extras,
                       output_format: str = "image", dicomweb_user: str | None = None) -> list[Destination]:
    """One input and ``-o`` naming an image or .dcm file: that file; a DICOMweb URL: each SEG
    stored there; else ``-o`` is a folder. A DICOM SEG references its source series, so any
    other input is refused here, before any work."""
    if is_url(output):
        return _stored_destinations(files, output, extras, dicomweb_user)
    dicom_seg = output_format == "dicom-seg" or is_dicom_seg_path(output)
    if dicom_seg:
        if is_mask_path(output):
            raise InputError(output, "--output-format dicom-seg writes <case>.dcm: give a folder or a .dcm file")
        if extras.probabilities or extras.uncertainty:
            raise InputError(output, "a DICOM SEG holds masks only: --save-probabilities and --save-uncertainty need an image output")
        for f in files:
            if not isinstance(f, DICOM_CASES):
                raise InputError(f, "a DICOM SEG output needs a DICOM series input (a folder of DICOM files)")
    if is_mask_path(output) or is_dicom_seg_path(output):
        if len(files) != 1:
            raise InputError(output, f"names one mask file, but {len(files)} images were given: use a folder")
        return [DicomSegPaths(output, extras.pancreas) if dicom_seg else outputs_beside(output, extras)]
    return _distinct(output, [_batch_destination(f, output, extras, dicom_seg) for f in files])


def _distinct(output: Path | str, destinations: list[Destination]) -> list[Destination]:
    names = [d.tumour.name for d in destinations]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(output, f"two inputs would write the same mask ({', '.join(twice)})")
    return destinations


def _stored_destinations(files: list[Case], url: str, extras: Extras, dicomweb_user: str | None) -> list[Destination]:
    """``-o URL``: one DICOM SEG per DICOM series input, stored on that DICOMweb server (checked first)."""
    if extras.probabilities:
        raise InputError(url, "a DICOMweb server receives a DICOM SEG, which holds masks only: --save-probabilities needs an image output")
    for f in files:
        if not isinstance(f, DICOM_CASES):
            raise InputError(f, "a DICOMweb output receives a DICOM SEG, which needs a DICOM series input (a folder of DICOM files or a DICOMweb URL)")
    base = check_store(url, dicomweb_user)
    return _distinct(url, [StoredSeg(base, f.name, extras.pancreas, dicomweb_user) for f in files])


def _batch_destination(src: Case, out_dir: Path, extras: Extras, dicom_seg: bool) -> OutputPaths | DicomSegPaths:
    """``<case>.dcm`` for a DICOM SEG; a DICOM case's image outputs are .mha (grand-challenge's format)."""
    if isinstance(src, DICOM_CASES):
        if dicom_seg:
            return DicomSegPaths(out_dir / (src.name + DICOM_SEG_SUFFIX), extras.pancreas)
        return outputs_beside(out_dir / (src.name + ".mha"), extras)
    return batch_outputs(src, out_dir, extras)


def batch_cases(inputs: list[Path | str], output: Path | str, extras: Extras, output_format: str = "image",
                series_uid: str | None = None, phase: int | None = None,
                dicomweb_user: str | None = None) -> list[tuple[Case, Destination]]:
    """Batch mode's cases and where each one's outputs (``extras`` among them) go; bad inputs and
    output choices are refused here, before the network is loaded."""
    files = batch_inputs(inputs, series_uid, phase, dicomweb_user)
    return list(zip(files, batch_destinations(files, output, extras, output_format, dicomweb_user)))


def run_batch(segmenter: Segmenter, cases: list[tuple[Case, Destination]], output: Path,
              overlap: bool | None = None, statistics: bool = False) -> int:
    """Every case (from ``batch_cases``), each failure reported and counted, never stopping the
    others; ``output`` is named in the closing line. ``overlap`` (default: on a GPU) reads and preprocesses the next case and
    writes the previous one while the network runs (``overlapped_cases``); the outputs are the
    same either way. ``statistics``: each case's statistics.json and, when ``output`` is a folder,
    ``statistics.csv``."""
    from tqdm import tqdm

    failed = []
    errors: dict[Case, str] = {}
    progress = len(cases) > 1 and sys.stderr.isatty()  # no bar between the error lines of a log
    overlap = segmenter.settings.device == "cuda" if overlap is None else overlap
    with tqdm(total=len(cases), desc="cases", unit="case", file=sys.stderr, disable=not progress) as bar:
        for src, error in (overlapped_cases if overlap else sequential_cases)(segmenter, cases, statistics):
            if error is not None:
                log.error("error: %s", error)
                failed.append(src)
                errors[src] = str(error)
            bar.update()
    log.info("%d of %d cases written to %s", len(cases) - len(failed), len(cases), output)
    if statistics and output.is_dir():
        log.info("statistics of every case: %s", write_batch_statistics(segmenter, cases, errors, output))
    return 1 if failed else 0



def case_source(src: Case) -> Path:
    """The path that names a case in errors: the file, or the DICOM series' folder."""
    return src.folder if isinstance(src, DicomCase) else src


def sequential_cases(segmenter: Segmenter, cases: list[tuple[Case, Destination]],
                     statistics: bool = False) -> Iterator[tuple[Case, InputError | None]]:
    """Each case in turn: its source and its error, if any."""
    for src, dst in cases:
        try:
            segment_file(segmenter, src, dst, statistics)
        except InputError as e:
            yield src, e
        else:
            yield src, None


CASES_IN_FLIGHT = 3  # overlapped batch mode holds at most this many cases: one read, one in the network, one written


@dataclass
class InFlight:
    """One case on its way through the overlapped stages; ``error`` stops its later stages."""

    src: Case
    dst: Destination
    timings: Timings = field(default_factory=Timings)
    image: sitk.Image | None = None
    series: Any = None  # a DICOM case's series, which a DICOM SEG references
    prepared: Any = None
    probabilities: Any = None  # the network's output (inference.pipeline.NetworkOutput)
    error: BaseException | None = None


def overlapped_cases(segmenter: Segmenter, cases: list[tuple[Case, Destination]],
                     statistics: bool = False) -> Iterator[tuple[Case, InputError | None]]:
    """``sequential_cases`` with the stages in three threads, like nnU-Net's background workers:
    a reader (read, check, preprocess), the network, a writer (post-process, input grid, write).
    A semaphore holds at most ``CASES_IN_FLIGHT`` cases in memory. Results come back in order; an
    ``InputError`` fails its case only; any other error stops the run at that case, as
    sequentially (later cases are not written)."""
    slots = threading.Semaphore(CASES_IN_FLIGHT)
    stop = threading.Event()
    prepared: queue.Queue[InFlight | None] = queue.Queue()
    inferred: queue.Queue[InFlight | None] = queue.Queue()
    done: queue.Queue[InFlight | None] = queue.Queue()

    def stage(case: InFlight, work: Callable[[], None], named: bool = True) -> None:
        if case.error is None and not stop.is_set():
            try:
                if named:
                    with segmenter.errors_named(case_source(case.src)):
                        work()
                else:
                    work()
            except BaseException as e:  # carried to the consumer, in order
                case.error = e

    def read(case: InFlight) -> None:
        check_outputs(case.dst)
        with case.timings.stage("read"):
            case.image, case.series = read_case(case.src, segmenter.budget)
        log.info(describe_image(case.src, case.image))

    def prepare(case: InFlight) -> None:
        case.prepared = segmenter.prepare(case.image, case.timings, case_source(case.src))

    def infer(case: InFlight) -> None:
        case.probabilities = segmenter.infer(case.prepared, case.timings, case_source(case.src))
        case.prepared.volume = None  # the network's input is no longer needed

    def write(case: InFlight) -> None:
        segmentation = segmenter.finish(case.image, case.prepared, case.probabilities, case.timings, segmenter.extras)
        with case.timings.stage("write"):
            written = write_case(segmentation, case.dst, case.series, segmenter.resources.model)
        log.info("wrote %s", written)
        if statistics:
            write_case_statistics(segmenter, case.src, case.dst, segmentation, case.timings.seconds)

    def reader() -> None:
        for src, dst in cases:
            slots.acquire()
            if stop.is_set():
                break
            case = InFlight(src, dst)
            stage(case, lambda: read(case), named=False)
            stage(case, lambda: prepare(case))
            prepared.put(case)
        prepared.put(None)

    def network() -> None:
        while (case := prepared.get()) is not None:
            stage(case, lambda: infer(case))
            inferred.put(case)
        inferred.put(None)

    def writer() -> None:
        while (case := inferred.get()) is not None:
            stage(case, lambda: write(case))
            case.image = case.series = case.prepared = case.probabilities = None  # this case's memory, before its slot is freed
            if case.error is not None and not isinstance(case.error, InputError):
                stop.set()
            done.put(case)
            slots.release()
        done.put(None)

    threads = [threading.Thread(target=t, name=f"panther-{t.__name__}", daemon=True) for t in (reader, network, writer)]
    for t in threads:
        t.start()
    try:
        while (case := done.get()) is not None:
            if case.error is not None and not isinstance(case.error, InputError):
                raise case.error
            yield case.src, case.error
    finally:
        stop.set()
        for _ in range(CASES_IN_FLIGHT):
            slots.release()  # a reader waiting for a slot sees the stop
