"""Regenerate the smoke case: a small synthetic PANTHER-like MRI in grand-challenge layout and
the mask the container must produce for it (the default protocol, the baked checkpoint).

Run after changing the checkpoint or the method: ``.venv/bin/python test/make_smoke_case.py``.
The case is resampled on the way in (1.25 mm in-plane) so that the smoke test crosses the whole
geometry path, and fits one sliding window so that it runs in seconds on a CPU.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import SimpleITK as sitk

from panther_seg.cli import main
from panther_seg.io.grand_challenge import GC_INPUT_FALLBACK, GC_OUTPUT_SUBDIR
from panther_seg.tools.synthetic import make_case

HERE = Path(__file__).resolve().parent

CASE = "7c3e8a52-1f4b-4d2e-9a61-0b5d3c2e9f10.mha"  # grand-challenge names inputs by UUID
SHAPE_ZYX = (30, 150, 190)
SPACING_XYZ = (1.25, 1.25, 3.0)
SEED = 2024


def build() -> int:
    for folder in ("input", "expected_output"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
    image, _ = make_case(SEED, SHAPE_ZYX, SPACING_XYZ)
    target = HERE / "input" / "images" / GC_INPUT_FALLBACK / CASE
    target.parent.mkdir(parents=True)
    sitk.WriteImage(image, str(target), useCompression=True)
    status = main(["--input-root", str(HERE / "input"), "--output-root", str(HERE / "expected_output"), "--device", "cpu"])
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(HERE / "expected_output" / GC_OUTPUT_SUBDIR / "tumor_seg.mha")))
    print(f"expected output: {int(mask.sum())} tumour voxels")
    return status


if __name__ == "__main__":
    raise SystemExit(build())
