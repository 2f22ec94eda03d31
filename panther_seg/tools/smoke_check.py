"""Compare an output mask with the expected one (the Docker smoke test).

    python -m panther_seg.tools.smoke_check OUTPUT EXPECTED [--min-dice 0.99]

OUTPUT and EXPECTED are .mha files, or folders holding
images/pancreatic-tumor-segmentation/tumor_seg.mha. Passes (exit 0) when both lie on the same
voxel grid (size, spacing, origin, direction), the output is binary (0/1), and the Dice of the
two foregrounds is at least --min-dice (1.0 when both are empty). Otherwise prints one line
saying why and exits 1. Runs inside the inference image, so needs only numpy and SimpleITK.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import SimpleITK as sitk

from ..dice import dice

MASK_RELPATH = os.path.join("images", "pancreatic-tumor-segmentation", "tumor_seg.mha")
GEOMETRY_TOLERANCE = 1e-4


def _resolve(path: str) -> str:
    if os.path.isdir(path):
        return os.path.join(path, MASK_RELPATH)
    return path


def _close(a, b, tol: float = GEOMETRY_TOLERANCE) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=0.0, atol=tol))


def check(output_path: str, expected_path: str, min_dice: float = 0.99) -> tuple[bool, str]:
    """Returns (passed, one-line message)."""
    output_path = _resolve(output_path)
    expected_path = _resolve(expected_path)
    images = {}
    for name, path in (("output", output_path), ("expected", expected_path)):
        if not os.path.isfile(path):
            return False, f"{name} mask {path} does not exist"
        if not os.access(path, os.R_OK):
            return False, f"{name} mask {path} is not readable by uid {os.getuid()}"
        try:
            images[name] = sitk.ReadImage(path)
        except RuntimeError as e:
            return False, f"cannot read {name} mask {path}: {str(e).strip().splitlines()[-1]}"
    out, exp = images["output"], images["expected"]

    if out.GetDimension() != exp.GetDimension():
        return False, f"dimension {out.GetDimension()} != expected {exp.GetDimension()}"
    if out.GetNumberOfComponentsPerPixel() != 1:
        return False, f"output has {out.GetNumberOfComponentsPerPixel()} components per voxel"
    if out.GetSize() != exp.GetSize():
        return False, f"size {out.GetSize()} != expected {exp.GetSize()}"
    if not _close(out.GetSpacing(), exp.GetSpacing()):
        return False, f"spacing {out.GetSpacing()} != expected {exp.GetSpacing()}"
    if not _close(out.GetOrigin(), exp.GetOrigin()):
        return False, f"origin {out.GetOrigin()} != expected {exp.GetOrigin()}"
    if not _close(out.GetDirection(), exp.GetDirection()):
        return False, f"direction {out.GetDirection()} != expected {exp.GetDirection()}"

    out_arr = sitk.GetArrayViewFromImage(out)
    exp_arr = sitk.GetArrayViewFromImage(exp)
    values = np.unique(out_arr)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        return False, f"output is not binary: values {shown}"
    d = float(dice(out_arr > 0, exp_arr > 0))
    summary = (f"dice {d:.4f} (output {int((out_arr > 0).sum())} voxels, "
               f"expected {int((exp_arr > 0).sum())} voxels, size {out.GetSize()})")
    if d < min_dice:
        return False, f"{summary} < {min_dice}"
    return True, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="output mask (.mha) or output folder")
    parser.add_argument("expected", help="expected mask (.mha) or expected output folder")
    parser.add_argument("--min-dice", type=float, default=0.99)
    args = parser.parse_args(argv)
    passed, message = check(args.output, args.expected, args.min_dice)
    if passed:
        print(f"smoke_check: OK: {message}")
        return 0
    print(f"smoke_check: FAIL: {message}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
