"""``python -m panther_seg.tools.report_benchmark [--cases 100]``: how long ``OUT/report/`` takes
for a run of PANTHER-median cases, and how many bytes it holds per case.

One synthetic median case (72 x 258 x 318 voxels, 1.1875 x 1.1875 x 3 mm) with its label's tumour
and pancreas as the masks, and a statistics file per case naming it; the report is then written as
``panther-seg-report`` writes it: each case's preview, thumbnail and viewer volumes (no preview
beside the masks: the report draws each one)."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import SimpleITK as sitk

from ..reporting.measurements import measure as measure_case
from ..reporting.records import collect_cases
from ..reporting.statistics import to_json_dict, write_statistics_json
from ..results import Confidence, Segmentation
from ..reporting.report import CASES_DIR, REPORT_DIR, write_report
from ..system.machine import summary
from .synthetic import make_case

MEDIAN_SHAPE, MEDIAN_SPACING = (72, 258, 318), (1.1875, 1.1875, 3.0)


def write_run(out: Path, cases: int, shape: Sequence[int] = MEDIAN_SHAPE) -> None:
    """A run's output folder: one scan and its masks (the label's tumour and pancreas), measured,
    and ``cases`` statistics files naming them, written as batch mode writes them."""
    image, label = make_case(7, shape, MEDIAN_SPACING)
    inputs = out.parent / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    tumour, pancreas = sitk.Cast(label == 1, sitk.sitkUInt8), sitk.Cast(label == 2, sitk.sitkUInt8)
    sitk.WriteImage(image, str(inputs / "scan.mha"), useCompression=True)
    sitk.WriteImage(tumour, str(out / "mask.mha"), useCompression=True)
    sitk.WriteImage(pancreas, str(out / "mask_pancreas.mha"), useCompression=True)
    segmentation = Segmentation(tumour, pancreas, measurements=measure_case(image, tumour, pancreas),
                                confidence=Confidence(False, 1, reason="no mirroring (--fast)"))
    outputs = {"tumour": out / "mask.mha", "pancreas": out / "mask_pancreas.mha"}
    for index in range(cases):
        name = f"case{index:03d}"
        write_statistics_json(out / f"{name}_statistics.json", to_json_dict(
            name, inputs / "scan.mha", "done", {"demonstration": True}, {}, segmentation, {"network": 1.0}, outputs))


def measure(cases: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        out.mkdir()
        write_run(out, cases)
        start, cpu = time.perf_counter(), time.process_time()
        write_report(out, collect_cases(out))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        report = out / REPORT_DIR
        per_case = sum(p.stat().st_size for p in (report / CASES_DIR).glob("case000*"))
        total = sum(p.stat().st_size for p in report.rglob("*") if p.is_file())
    return {"cases": cases, "seconds": seconds, "cpu_seconds": cpu, "load_average": os.getloadavg()[0], "bytes_per_case": per_case, "bytes_total": total}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.tools.report_benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100)
    args = p.parse_args(argv)
    print(describe(measure(args.cases)))
    return 0


def describe(result: dict[str, Any]) -> str:
    return (f"report of {result['cases']} PANTHER-median cases: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU "
          f"(load average {result['load_average']:.1f} at the end); "
          f"{result['bytes_per_case'] / 1e6:.2f} MB per case (viewer volumes, preview, thumbnail, page), "
          f"{result['bytes_total'] / 1e6:.1f} MB in all; {summary()}, Python {platform.python_version()}")


if __name__ == "__main__":
    sys.exit(main())
