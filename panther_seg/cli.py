"""Command line: grand-challenge mode (``/input`` -> ``/output``) and a batch mode for users.

Every failure the user can fix ends in one line ``error: <file>: <problem>`` on stderr and exit
status 1: bad images, checkpoints and statistics, file permissions, read-only or full output
locations, a case over the memory limit (``--memory-limit``). Masks are written atomically and
verified, so a failed run leaves no output file behind.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import (
    DICOM_SEG_SUFFIX, FAST_OVERLAP, GC_INPUT_ROOT, GC_OUTPUT_NAME, GC_OUTPUT_ROOT, GC_OUTPUT_SUBDIR, MEMORY_LIMIT_ENV,
    MEMORY_RESERVE_GIB, NORMALISATIONS, ORIENTATIONS, OVERLAP, RESAMPLINGS,
)
from .errors import InputError
from .io.dicomweb import location
from .system.logs import configure_logging
from .system.runtime import keep_freed_memory

if TYPE_CHECKING:
    from .inference.options import Options

log = logging.getLogger("panther_seg")

OUTPUT_FORMATS = ("image", "dicom-seg")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "process.py",
        description="Pancreatic tumour segmentation of T1 contrast-enhanced MRI (PANTHER Task 1).",
        epilog="Without -i: grand-challenge mode, the image of INPUT_ROOT/inputs.json's abdominal-t1-mri socket (without inputs.json: under INPUT_ROOT/images/*mri*/) -> "
        f"OUTPUT_ROOT/{GC_OUTPUT_SUBDIR}/{GC_OUTPUT_NAME}.",
    )
    p.add_argument("--input-root", type=Path, default=GC_INPUT_ROOT, help="grand-challenge input root (default /input)")
    p.add_argument("--output-root", type=Path, default=GC_OUTPUT_ROOT, help="grand-challenge output root (default /output)")
    p.add_argument("-i", "--input", "--batch", dest="inputs", nargs="+", type=location, metavar="PATH",
                   help="batch mode: image files and/or folders of images, or DICOMweb study or series URLs (docs/dicom.md)")
    p.add_argument("-o", "--output", "--output-dir", dest="output", type=location, metavar="PATH",
                   help="batch mode: a folder for the masks (<case>.<input format>), or the mask's file name for one input "
                   f"(a DICOM SEG when it ends in {DICOM_SEG_SUFFIX}), or a DICOMweb base URL to store each DICOM SEG on")
    p.add_argument("--series-uid", metavar="UID", help="the DICOM series to segment where an input folder holds several")
    p.add_argument("--phase", type=int, metavar="K", help="the time point (1-based, in time order) to segment of a dynamic "
                   "DICOM series (several time points at the same slice positions)")
    p.add_argument("--dicomweb-user", metavar="USER", help="DICOMweb user, the password in $PANTHER_DICOMWEB_PASSWORD "
                   "(default: the netrc file's entry for the server)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default="image",
                   help="batch mode: image (<case>.<input format>; .mha for DICOM input) or dicom-seg (<case>.dcm, "
                   "DICOM series inputs only; --save-pancreas adds a pancreas segment)")
    p.add_argument("--save-pancreas", action="store_true", help="also write the pancreas mask (probability >= 0.5) the post-processing uses")
    p.add_argument("--save-probabilities", action="store_true", help="also write the tumour and pancreas probability maps (float32, on the input grid)")
    p.add_argument("--preview", action="store_true", help="batch mode: also write <case>_preview.png (three views through the largest lesion, measurements written on it)")
    p.add_argument("--report", action="store_true", help="batch mode: also write OUT/report/index.html, a report of the cases that opens from disk in a browser")
    p.add_argument("--save-uncertainty", action="store_true", help="also write <case>_uncertainty: per voxel, the fraction of "
                   "the 8 mirrorings that disagree with the final tumour mask (float32, input grid; not with --fast or --no-tta)")
    p.add_argument("--statistics", action="store_true", help="batch mode: also write <case>_statistics.json beside each mask "
                   "(measurements, confidence, timings, the model's provenance; docs/statistics.md) and, for an output folder, statistics.csv")
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
                   help=f"refuse cases estimated to need more memory (default ${MEMORY_LIMIT_ENV}, else the container's memory limit or the RAM, less {MEMORY_RESERVE_GIB:g})")
    args = p.parse_args(argv)
    if args.inputs and args.output is None:
        p.error("-i/--input needs -o/--output")
    if args.output is not None and not args.inputs:
        p.error("-o/--output goes with -i/--input (grand-challenge mode writes under --output-root)")
    if args.series_uid is not None and not args.inputs:
        p.error("--series-uid goes with -i/--input (a DICOM series folder)")
    if args.phase is not None and not args.inputs:
        p.error("--phase goes with -i/--input (a DICOM series)")
    if args.phase is not None and args.phase < 1:
        p.error("--phase must be at least 1 (time points are numbered from 1)")
    if args.output_format != "image" and not args.inputs:
        p.error("--output-format goes with -i/--input (grand-challenge mode writes .mha)")
    if args.save_uncertainty and (args.fast or args.no_tta):
        p.error("--save-uncertainty needs the mirrorings: not with --fast or --no-tta")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        p.error("--overlap must be in [0, 1)")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    if args.memory_limit is not None and not 0 < args.memory_limit < float("inf"):
        p.error("--memory-limit must be a positive number of GiB")
    return args


def options_from(args: argparse.Namespace) -> Options:
    """The command line's options, under the same names the Python API takes."""
    from .inference.options import Options

    return Options.of(**{name: getattr(args, name) for name in Options.names() if hasattr(args, name)})


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    keep_freed_memory()
    args = parse_args(argv)
    if (args.preview or args.report) and not args.inputs:
        log.error("error: --preview and --report go with -i/--input (batch mode)")
        return 2
    start = time.perf_counter()
    batch_only = [flag for flag in ("statistics", "save_uncertainty") if getattr(args, flag)]
    if batch_only and not args.inputs:  # checked here, not in parse_args: the cohort parses batch options without -i
        log.error("error: --%s goes with -i/--input (batch mode)", batch_only[0].replace("_", "-"))
        return 2
    # the I/O stack (SimpleITK) loads only now, torch below: --help and argument errors answer without them
    from .batch import batch_cases, run_batch, segment_file
    from .io.grand_challenge import find_gc_input, gc_outputs
    from .results import Extras

    try:
        extras = Extras(probabilities=args.save_probabilities, pancreas=args.save_pancreas, uncertainty=args.save_uncertainty)
        cases = batch_cases(args.inputs, args.output, extras, args.output_format, args.series_uid, args.phase, args.dicomweb_user) if args.inputs else None  # bad inputs refused before the network loads
        # torch and the pipeline: only once the inputs are known good
        from .contract.provenance import DEMONSTRATION_WARNING
        from .inference.options import describe_departures
        from .inference.pipeline import Segmenter, peak_memory
        from .system.device import describe

        segmenter = Segmenter.from_resources(args.checkpoint, args.stats, args.device, **vars(options_from(args)))
        settings, preprocessing, resources = segmenter.settings, segmenter.preprocessing, segmenter.resources
        log.info(describe(settings.device))
        log.info(
            "checkpoint %s; statistics %s; target spacing %s mm (x, y, z)",
            resources.describe(), resources.stats_source, resources.stats.target_spacing(),
        )
        if resources.demonstration:
            log.warning(DEMONSTRATION_WARNING)
        log.info("window %s, overlap %s, mirrorings %d, batch %s, fp16 %s; preprocessing %s", settings.window,
                 settings.overlap, 2 ** len(settings.mirror_axes), settings.batch_size or "auto", settings.fp16, preprocessing.to_dict())
        log.info(describe_departures(settings, preprocessing))
        if args.fp16 and not settings.fp16:
            log.warning("WARNING: --fp16 applies on the GPU only; running fp32 on the %s", settings.device.upper())
        log.info(segmenter.budget.describe())
        if args.inputs:
            # the report's table is the cases' statistics: --report implies --statistics
            status = run_batch(segmenter, cases, args.output, statistics=args.statistics or args.report)
            if args.preview or args.report:
                from .reporting.run import after_batch

                after_batch(cases, args.output, args.preview, args.report, resources.demonstration)
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
