"""``--preview`` and ``--report`` after a batch or cohort run: the pictures beside the masks, then
``OUT/report/``, from what the run wrote (its masks, its statistics files, a cohort's manifest)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .records import ReportCase, cases_from_batch, collect_cases
from .report import write_previews, write_report

log = logging.getLogger("panther_seg")


def after_run(out_dir: Path, preview: bool, report: bool, known: list[ReportCase] | None = None) -> None:
    start = time.perf_counter()
    cases = collect_cases(out_dir, known)
    if preview:
        written = write_previews(out_dir, cases)
        log.info("%d preview pictures (<case>_preview.png) in %s", len(written), out_dir)
    if report:
        index = write_report(out_dir, cases)
        log.info("report: %s", index)
    log.info("pictures and report %.2f s", time.perf_counter() - start)


def after_batch(pairs: list[tuple[Any, Any]], output: Path, preview: bool, report: bool, demonstration: bool) -> None:
    """For ``panther-seg -i ... -o OUT``: ``pairs`` are batch mode's (input, destination) cases."""
    out_dir = Path(output) if Path(output).is_dir() else Path(output).parent
    after_run(out_dir, preview, report, cases_from_batch(pairs, demonstration))
