"""``panther-seg-report OUT/ [--reference DIR]``: the browser report of a finished run, from its
``<case>_statistics.json`` files (and a cohort's ``manifest.csv``), as ``--report`` writes it.
With ``--reference``, each case's challenge metrics against the reference mask and its outline on
the pictures, so that a validation fold is reviewed in one place."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from ..config import IMAGE_CHANNEL_SUFFIX
from ..errors import InputError
from .cli import list_cases, match_case, read_volume
from .metrics import EvaluationError, binarise_prediction, binarise_reference, case_metrics
from ..reporting.records import ReportCase, collect_cases
from ..reporting.report import write_report

log = logging.getLogger("panther_seg")


def reference_metrics(cases: Sequence[ReportCase], reference_dir: Path) -> tuple[dict[str, dict[str, float]], dict[str, Path]]:
    """Each case's challenge metrics (physical spacing) against its reference mask in
    ``reference_dir`` (``<case>.mha`` and the other names ``panther-seg-evaluate`` accepts)."""
    references = list_cases(reference_dir)
    metrics: dict[str, dict[str, float]] = {}
    found: dict[str, Path] = {}
    for case in cases:
        ref_path = match_case(references, case.name) or match_case(references, case.name.removesuffix(IMAGE_CHANNEL_SUFFIX))
        if ref_path is None or case.status != "ok" or case.tumour is None or not Path(case.tumour).is_file():
            continue
        pred_image, ref_image = read_volume(Path(case.tumour)), read_volume(ref_path)
        if pred_image.GetSize() != ref_image.GetSize():
            raise InputError(ref_path, f"size {ref_image.GetSize()} differs from the mask's {pred_image.GetSize()}")
        scores = case_metrics(binarise_prediction(sitk.GetArrayViewFromImage(pred_image)),
                              binarise_reference(sitk.GetArrayViewFromImage(ref_image)), ref_image.GetSpacing()[::-1])
        metrics[case.name] = {"dice": scores.dice, "surface_dice": scores.surface_dice, "hd95_mm": scores.hd95_mm,
                              "masd_mm": scores.masd_mm}
        found[case.name] = ref_path
    if not found:
        raise InputError(reference_dir, "holds no reference mask of any segmented case (<case>.mha expected)")
    return metrics, found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="panther-seg-report",
        description="Write OUT/report/index.html: a report of a run's cases that opens from disk in a browser "
        "(sortable table, previews, an interactive viewer of each scan with its masks; no server, no network).",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="a run's output folder: its <case>_statistics.json files "
                   "(panther-seg --statistics) or a cohort's manifest.csv")
    p.add_argument("--reference", type=Path, metavar="DIR",
                   help="reference masks (<case>.mha, label 1 tumour): adds the challenge's metrics and the reference outline")
    p.add_argument("--title", default="panther-seg report", help="the index page's title")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from ..system.logs import configure_logging

    configure_logging()
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if not args.out.is_dir():
            raise InputError(args.out, "no such folder")
        cases = collect_cases(args.out)
        metrics, references = reference_metrics(cases, args.reference) if args.reference else ({}, {})
        index = write_report(args.out, cases, metrics, references, args.title)
    except InputError as e:
        log.error("error: %s", e)
        return 1
    except EvaluationError as e:
        log.error("error: %s", e)
        return 1
    log.info("report of %d cases: %s (%.1f s)", len(cases), index, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
