"""How far each departure from the original protocol moves the mask.

``python -m panther_seg.tools.departures [--checkpoint PATH] [--device auto] [--json departures.json]``

Runs the pipeline with the original protocol (the default) and with each named departure on the
same cases, and reports the Dice between each departure's tumour mask and the default's, with
both masks' voxel counts (two empty masks count as Dice 1). Cases: a synthetic PANTHER-like scan
at the target spacing, one at another spacing with non-positive voxels, the smoke case stored
with flipped x and y axes, and the real MRI of ``../shared/data/real-mri`` when present. fp16 is
measured only on a GPU. Prints the table and the machine, and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from ..config import FAST_OVERLAP, PROJECT_ROOT
from ..io.grand_challenge import GC_INPUT_FALLBACK
from ..dice import dice
from ..io.images import read_image
from ..inference.pipeline import Segmenter
from ..system.machine import machine
from ..system.runtime import keep_freed_memory
from .synthetic import make_case

REAL_MRI = PROJECT_ROOT.parent / "shared" / "data" / "real-mri" / "example_mr_sm.nii.gz"
SMOKE_CASE = PROJECT_ROOT / "test" / "input" / "images" / GC_INPUT_FALLBACK


@dataclass(frozen=True)
class Departure:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # as Segmenter.from_resources takes them
    gpu_only: bool = False


DEPARTURES = (
    Departure(f"--fast (no mirroring, overlap {FAST_OVERLAP})", {"fast": True}),
    Departure("--no-tta (no mirroring)", {"no_tta": True}),
    Departure("--orientation training", {"orientation": "training"}),
    Departure("--resample if-needed", {"resample": "if-needed"}),
    Departure("--normalise nonzero", {"normalise": "nonzero"}),
    Departure("all three (the project's preprocessing before the protocol became the default)",
              {"orientation": "training", "resample": "if-needed", "normalise": "nonzero"}),
    Departure("--fp16", {"fp16": True}, gpu_only=True),
    Departure("--batch-size 4 (not a departure: rounding only)", {"batch_size": 4}),
)


def flipped_xy(image: sitk.Image) -> sitk.Image:
    """The same physical image stored with its x and y axes reversed (header adjusted)."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)[:, ::-1, ::-1]))
    size = image.GetSize()
    out.SetOrigin(image.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, 0)))
    out.SetSpacing(image.GetSpacing())
    d = np.asarray(image.GetDirection()).reshape(3, 3) * np.array([-1.0, -1.0, 1.0])
    out.SetDirection(tuple(d.ravel()))
    return out


def cases() -> dict[str, Callable[[], sitk.Image]]:
    found: dict[str, Callable[[], sitk.Image]] = {
        "synthetic 56x200x240, target spacing": lambda: make_case(11, (56, 200, 240), (1.1875, 1.1875, 3.0))[0],
        "synthetic 60x180x220 at 1.3x1.3x3.5 mm, shifted to have voxels <= 0": lambda: shifted(make_case(12, (60, 180, 220), (1.3, 1.3, 3.5))[0]),
        "smoke case stored with flipped x and y": lambda: flipped_xy(read_image(next(SMOKE_CASE.iterdir()))),
    }
    if REAL_MRI.is_file():
        found["real MRI (../shared/data/real-mri)"] = lambda: read_image(REAL_MRI)
    return found


def shifted(image: sitk.Image, by: int = 100) -> sitk.Image:
    """The image minus a constant: the darkest tissues fall to 0 or below (as in scanners whose
    background is not clipped at zero), where the choice of z-score voxels matters."""
    return sitk.Cast(image, sitk.sitkInt16) - by


def measure(checkpoint: Path | None, device: str) -> dict[str, Any]:
    """Each departure's Dice against the default protocol, every segmenter built as a user builds
    one (``Segmenter.from_resources``), one window per pass unless the departure says otherwise."""
    default = Segmenter.from_resources(checkpoint, device=device, batch_size=1)
    rows = []
    for case_name, load in cases().items():
        image = load()
        start = time.perf_counter()
        reference = sitk.GetArrayFromImage(default.segment(image).tumour)
        default_s = time.perf_counter() - start
        print(f"{case_name}: default {int(reference.sum())} voxels ({default_s:.0f} s)", flush=True)
        for d in DEPARTURES:
            if d.gpu_only and device != "cuda":
                continue
            departed = Segmenter.from_resources(checkpoint, device=device, **{"batch_size": 1, **d.options})
            start = time.perf_counter()
            mask = sitk.GetArrayFromImage(departed.segment(image).tumour)
            row = {"case": case_name, "departure": d.name, "dice": round(float(dice(reference > 0, mask > 0)), 4),
                   "voxels": int(mask.sum()), "default_voxels": int(reference.sum()),
                   "seconds": round(time.perf_counter() - start, 1), "default_seconds": round(default_s, 1)}
            rows.append(row)
            print(f"  {d.name}: Dice {row['dice']} ({row['voxels']} voxels, {row['seconds']} s)", flush=True)
    return {"machine": machine(), "device": device, "date": time.strftime("%Y-%m-%d %H:%M"),
            "checkpoint": default.resources.describe(), "rows": rows}


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{'departure':52} {'case':62} {'Dice':>7} {'voxels':>8} {'default':>8}")
    for r in report["rows"]:
        print(f"{r['departure']:52} {r['case']:62} {r['dice']:7.4f} {r['voxels']:8d} {r['default_voxels']:8d}")
    m = report["machine"]
    print(f"machine: {m['cpu']} ({m['cpu_cores']} cores), GPU {m['gpu']}, torch {m['torch']}; checkpoint {report['checkpoint']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.tools.departures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="default: the baked resources")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", type=Path, default=Path("departures.json"))
    args = p.parse_args(argv)
    keep_freed_memory()
    report = measure(args.checkpoint, args.device)
    print_table(report)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
