"""Command line: grand-challenge mode (``/input`` -> ``/output``) and a batch mode for users.

Every failure the user can fix ends in one line ``error: <file>: <problem>`` on stderr and exit
status 1: bad images, checkpoints and statistics, file permissions, read-only or full output
locations, a case over the memory limit (``--memory-limit``). Masks are written atomically and
verified, so a failed run leaves no output file behind.
"""
from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import SimpleITK as sitk

from .config import FAST_OVERLAP, MEMORY_LIMIT_ENV, MEMORY_LIMIT_GIB, NORMALISATIONS, ORIENTATIONS, OVERLAP, RESAMPLINGS
from .system.device import describe
from .errors import InputError
from .io.grand_challenge import GC_INPUT_ROOT, GC_OUTPUT_NAME, GC_OUTPUT_ROOT, GC_OUTPUT_SUBDIR, find_gc_input, gc_outputs
from .io.images import has_image_suffix, list_folder, read_image, validate_image
from .io.outputs import (
    DICOM_SEG_SUFFIX, DicomSegPaths, OutputPaths, batch_outputs, check_outputs, is_dicom_seg_path, is_mask_path,
    outputs_beside, write_outputs,
)
from .inference.options import Options, describe_departures
from .inference.pipeline import Extras, Segmenter, Timings, peak_memory
from .system.memory import MemoryBudget
from .system.runtime import keep_freed_memory

if TYPE_CHECKING:
    from .io.dicom import DicomSeries

log = logging.getLogger("panther_seg")

OUTPUT_FORMATS = ("image", "dicom-seg")
DICOM_EXTRA = "pip install 'panther-seg[dicom]'"


@dataclass(frozen=True)
class DicomCase:
    """A folder that is a DICOM series: one case, named after the folder (the SeriesInstanceUID
    is long and means nothing to a user); ``series_uid`` picks one of several series in it."""

    folder: Path
    series_uid: str | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    def __str__(self) -> str:
        return str(self.folder)


Case = Path | DicomCase


def is_dicom_folder(path: Path) -> bool:
    """A folder holding DICOM files (False, with the image files' rules, where pydicom is missing)."""
    try:
        from .io.dicom import is_dicom_folder as detect
    except ImportError:
        return False
    return detect(path)


def configure_logging() -> None:
    """Progress to stdout; warnings and errors to stderr (grand-challenge shows them as warnings)."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "process.py",
        description="Pancreatic tumour segmentation of T1 contrast-enhanced MRI (PANTHER Task 1).",
        epilog="Without -i: grand-challenge mode, the image of INPUT_ROOT/inputs.json's abdominal-t1-mri socket (without inputs.json: under INPUT_ROOT/images/*mri*/) -> "
        f"OUTPUT_ROOT/{GC_OUTPUT_SUBDIR}/{GC_OUTPUT_NAME}.",
    )
    p.add_argument("--input-root", type=Path, default=GC_INPUT_ROOT, help="grand-challenge input root (default /input)")
    p.add_argument("--output-root", type=Path, default=GC_OUTPUT_ROOT, help="grand-challenge output root (default /output)")
    p.add_argument("-i", "--input", "--batch", dest="inputs", nargs="+", type=Path, metavar="PATH",
                   help="batch mode: image files and/or folders of images")
    p.add_argument("-o", "--output", "--output-dir", dest="output", type=Path, metavar="PATH",
                   help="batch mode: a folder for the masks (<case>.<input format>), or the mask's file name for one input "
                   f"(a DICOM SEG when it ends in {DICOM_SEG_SUFFIX})")
    p.add_argument("--series-uid", metavar="UID", help="the DICOM series to segment where an input folder holds several")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default="image",
                   help="batch mode: image (<case>.<input format>; .mha for DICOM input) or dicom-seg (<case>.dcm, "
                   "DICOM series inputs only; --save-pancreas adds a pancreas segment)")
    p.add_argument("--save-pancreas", action="store_true", help="also write the pancreas mask (probability >= 0.5) the post-processing uses")
    p.add_argument("--save-probabilities", action="store_true", help="also write the tumour and pancreas probability maps (float32, on the input grid)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    departures = p.add_argument_group(
        "departures from the original protocol (docs/protocol.md gives each one's measured effect on the mask)"
    )
    departures.add_argument("--fast", action="store_true", help=f"no mirroring, overlap {FAST_OVERLAP} (for CPUs)")
    departures.add_argument("--overlap", type=float, help=f"sliding-window overlap (default {OVERLAP}, {FAST_OVERLAP} with --fast)")
    departures.add_argument("--no-tta", action="store_true", help="no mirror test-time augmentation")
    departures.add_argument("--fp16", action="store_true", help="fp16 autocast on the GPU (the original runs fp32)")
    departures.add_argument("--orientation", choices=ORIENTATIONS, help="storage: the array as stored (original); training: "
                            "permuted and flipped to the checkpoint's training direction first (default: the checkpoint's)")
    departures.add_argument("--resample", choices=RESAMPLINGS, help="always (original) | if-needed: skip resampling "
                            "when the size would not change (default: the checkpoint's)")
    departures.add_argument("--normalise", choices=NORMALISATIONS, help="z-score over the voxels > 0 (positive, original) "
                            "or != 0 (nonzero) (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: from free GPU memory, at most 8, on GPU; 1 on CPU; the same result up to rounding)")
    p.add_argument("--checkpoint", type=Path, action="append", help="checkpoint to use instead of /opt/ml/model or resources/; repeat for an ensemble")
    p.add_argument("--stats", type=Path, help="mri_statistics.csv to use instead of the checkpoint's")
    p.add_argument("--model-config", type=Path, help="JSON of SegFormer3D constructor arguments, for checkpoints that record none")
    p.add_argument("--memory-limit", type=float, metavar="GIB",
                   help=f"refuse cases estimated to need more memory (default ${MEMORY_LIMIT_ENV}, else {MEMORY_LIMIT_GIB:g})")
    args = p.parse_args(argv)
    if args.inputs and args.output is None:
        p.error("-i/--input needs -o/--output")
    if args.output is not None and not args.inputs:
        p.error("-o/--output goes with -i/--input (grand-challenge mode writes under --output-root)")
    if args.series_uid is not None and not args.inputs:
        p.error("--series-uid goes with -i/--input (a DICOM series folder)")
    if args.output_format != "image" and not args.inputs:
        p.error("--output-format goes with -i/--input (grand-challenge mode writes .mha)")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        p.error("--overlap must be in [0, 1)")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.memory_limit is not None and not 0 < args.memory_limit < float("inf"):
        p.error("--memory-limit must be a positive number of GiB")
    return args


def options_from(args: argparse.Namespace) -> Options:
    """The command line's options, under the same names the Python API takes."""
    return Options.of(**{name: getattr(args, name) for name in Options.names() if hasattr(args, name)})


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
        series = read_dicom_series(src.folder, src.series_uid, budget)
        validate_image(series.image, src.folder)
        return series.image, series
    return read_image(src, budget), None


def segment_file(segmenter: Segmenter, src: Case, dst: OutputPaths | DicomSegPaths) -> dict[str, float]:
    timings = Timings()
    check_outputs(dst)
    with timings.stage("read"):
        image, series = read_case(src, segmenter.budget)
    log.info(describe_image(src, image))
    segmentation = segmenter.run(image, timings, case_source(src))
    with timings.stage("write"):
        write_outputs(segmentation, dst, series)
    log.info("wrote %s", ", ".join(str(p) for p in dst.chosen().values()))
    return timings.seconds


def batch_inputs(paths: list[Path], series_uid: str | None = None) -> list[Case]:
    """Image files; a folder that is a DICOM series is one case; any other folder gives its image
    files and its subfolders that are DICOM series."""
    files: list[Case] = []
    for path in paths:
        if path.is_dir() and is_dicom_folder(path):
            files.append(DicomCase(path, series_uid))
        elif path.is_dir():
            entries = sorted(list_folder(path))
            found: list[Case] = [p for p in entries if p.is_file() and has_image_suffix(p)]
            found += [DicomCase(p, series_uid) for p in entries if p.is_dir() and is_dicom_folder(p)]
            if not found:
                raise InputError(path, "folder holds no image file (.mha, .nii, .nii.gz, .nrrd) and no DICOM series folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(path, "no such file or folder")
    return files


def batch_destinations(files: list[Case], output: Path, extras: Extras,
                       output_format: str = "image") -> list[OutputPaths | DicomSegPaths]:
    """One input and ``-o`` naming an image or .dcm file: that file; else ``-o`` is a folder.
    A DICOM SEG references its source series, so any other input is refused here, before any work."""
    dicom_seg = output_format == "dicom-seg" or is_dicom_seg_path(output)
    if dicom_seg:
        if is_mask_path(output):
            raise InputError(output, "--output-format dicom-seg writes <case>.dcm: give a folder or a .dcm file")
        if extras.probabilities:
            raise InputError(output, "a DICOM SEG holds masks only: --save-probabilities needs an image output")
        for f in files:
            if not isinstance(f, DicomCase):
                raise InputError(f, "a DICOM SEG output needs a DICOM series input (a folder of DICOM files)")
    if is_mask_path(output) or is_dicom_seg_path(output):
        if len(files) != 1:
            raise InputError(output, f"names one mask file, but {len(files)} images were given: use a folder")
        return [DicomSegPaths(output, extras.pancreas) if dicom_seg else outputs_beside(output, extras)]
    destinations = [_batch_destination(f, output, extras, dicom_seg) for f in files]
    names = [d.tumour.name for d in destinations]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(output, f"two inputs would write the same mask ({', '.join(twice)})")
    return destinations


def _batch_destination(src: Case, out_dir: Path, extras: Extras, dicom_seg: bool) -> OutputPaths | DicomSegPaths:
    """``<case>.dcm`` for a DICOM SEG; a DICOM case's image outputs are .mha (grand-challenge's format)."""
    if isinstance(src, DicomCase):
        if dicom_seg:
            return DicomSegPaths(out_dir / (src.name + DICOM_SEG_SUFFIX), extras.pancreas)
        return outputs_beside(out_dir / (src.name + ".mha"), extras)
    return batch_outputs(src, out_dir, extras)


def batch_cases(args: argparse.Namespace, extras: Extras) -> list[tuple[Case, Destination]]:
    """Batch mode's cases and where each one's outputs (``extras`` among them) go; bad inputs and
    output choices are refused here, before the network is loaded."""
    files = batch_inputs(args.inputs, args.series_uid)
    return list(zip(files, batch_destinations(files, args.output, extras, args.output_format)))


def run_batch(segmenter: Segmenter, args: argparse.Namespace, overlap: bool | None = None,
              cases: list[tuple[Case, Destination]] | None = None) -> int:
    """Every case (``batch_cases``, unless given), each failure reported and counted, never
    stopping the others. ``overlap`` (default: on a GPU) reads and preprocesses the next case and
    writes the previous one while the network runs (``overlapped_cases``); the outputs are the
    same either way."""
    from tqdm import tqdm

    cases = batch_cases(args, segmenter.extras) if cases is None else cases
    failed = []
    progress = len(cases) > 1 and sys.stderr.isatty()  # no bar between the error lines of a log
    overlap = segmenter.settings.device == "cuda" if overlap is None else overlap
    with tqdm(total=len(cases), desc="cases", unit="case", file=sys.stderr, disable=not progress) as bar:
        for src, error in (overlapped_cases if overlap else sequential_cases)(segmenter, cases):
            if error is not None:
                log.error("error: %s", error)
                failed.append(src)
            bar.update()
    log.info("%d of %d cases written to %s", len(cases) - len(failed), len(cases), args.output)
    return 1 if failed else 0


Destination = OutputPaths | DicomSegPaths


def case_source(src: Case) -> Path:
    """The path that names a case in errors: the file, or the DICOM series' folder."""
    return src.folder if isinstance(src, DicomCase) else src


def sequential_cases(segmenter: Segmenter, cases: list[tuple[Case, Destination]]) -> Iterator[tuple[Case, InputError | None]]:
    """Each case in turn: its source and its error, if any."""
    for src, dst in cases:
        try:
            segment_file(segmenter, src, dst)
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
    probabilities: tuple[Any, Any] | None = None
    error: BaseException | None = None


def overlapped_cases(segmenter: Segmenter, cases: list[tuple[Case, Destination]]) -> Iterator[tuple[Case, InputError | None]]:
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
        segmentation = segmenter.finish(case.image, case.prepared, *case.probabilities, case.timings, segmenter.extras)
        with case.timings.stage("write"):
            write_outputs(segmentation, case.dst, case.series)
        log.info("wrote %s", ", ".join(str(p) for p in case.dst.chosen().values()))

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


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    keep_freed_memory()
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        extras = Extras(probabilities=args.save_probabilities, pancreas=args.save_pancreas)
        cases = batch_cases(args, extras) if args.inputs else None  # bad inputs refused before the network loads
        segmenter = Segmenter.from_resources(args.checkpoint, args.stats, args.device, **vars(options_from(args)))
        settings, preprocessing, resources = segmenter.settings, segmenter.preprocessing, segmenter.resources
        log.info(describe(settings.device))
        log.info(
            "checkpoint %s; statistics %s; target spacing %s mm (x, y, z)",
            resources.describe(), resources.stats_source, resources.stats.target_spacing(),
        )
        log.info("window %s, overlap %s, mirrorings %d, batch %s, fp16 %s; preprocessing %s", settings.window,
                 settings.overlap, 2 ** len(settings.mirror_axes), settings.batch_size or "auto", settings.fp16, preprocessing.to_dict())
        log.info(describe_departures(settings, preprocessing))
        if args.fp16 and not settings.fp16:
            log.warning("WARNING: --fp16 applies on the GPU only; running fp32 on the %s", settings.device.upper())
        log.info(segmenter.budget.describe())
        if args.inputs:
            status = run_batch(segmenter, args, cases=cases)
        else:
            src = find_gc_input(args.input_root)
            segment_file(segmenter, src, gc_outputs(args.output_root, segmenter.extras))
            status = 0
    except InputError as e:
        log.error("error: %s", e)
        return 1
    except OSError as e:  # not met above: name the file all the same
        log.error("error: %s: %s", e.filename or "?", e.strerror or e)
        return 1
    log.info("total %.2f s; %s", time.perf_counter() - start, peak_memory())
    return status
