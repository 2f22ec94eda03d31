"""Score predicted tumour masks against references the way PANTHER Task 1 does.

    python -m panther_seg.evaluation PRED_DIR REF_DIR [--output-dir OUT] [--official]
                                   [--preview --images-dir IMG_DIR]

Writes OUT/metrics_per_case.csv and OUT/metrics_summary.json (OUT defaults to
PRED_DIR/../evaluation) and, with --preview, OUT/preview/<case>.png. Every input is checked
before anything is written, so a bad file leaves no output behind. See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image

from ..config import IMAGE_CHANNEL_SUFFIX
from ..io.files import write_bytes_atomic
from ..io.images import case_id
from .metrics import (
    HAUSDORFF_PERCENT,
    SPACING_ATOL,
    SURFACE_TOLERANCE_MM,
    CaseMetrics,
    EvaluationError,
    binarise_prediction,
    binarise_reference,
    case_metrics,
    tumour_burden_rmse,
)
from .preview import render_preview

MASK_SUFFIXES = (".nii.gz", ".mha", ".nii")
PER_CASE_FILE = "metrics_per_case.csv"
SUMMARY_FILE = "metrics_summary.json"
PREVIEW_DIR = "preview"
METRIC_FIELDS = ("dice", "surface_dice", "hd95_mm", "masd_mm", "pred_volume_mm3", "ref_volume_mm3")


@dataclass(frozen=True)
class CaseResult:
    case: str
    prediction: Path
    reference: Path
    metrics: CaseMetrics


def mask_case(path: Path) -> str | None:
    """The case id of a mask file (``image_io.case_id``), or None for files that are not masks."""
    return case_id(path) if path.name.lower().endswith(MASK_SUFFIXES) and case_id(path) else None


def list_cases(folder: Path) -> dict[str, Path]:
    """Mask files directly in `folder` by case id; two files for one case are ambiguous."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case = mask_case(path)
        if case is None or not path.is_file():
            continue
        if case in found:
            raise EvaluationError(f"{path}: case {case} also given as {found[case].name}")
        found[case] = path
    return found


def match_case(files: dict[str, Path], case: str) -> Path | None:
    """The file of `case`, named `<case>` like the reference or `<case>_0000` like the image."""
    return files.get(case) or files.get(case + IMAGE_CHANNEL_SUFFIX)


def pair_cases(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case, prediction, reference) for every reference; a missing prediction is an error."""
    references = list_cases(ref_dir)
    if not references:
        raise EvaluationError(f"{ref_dir}: no reference masks ({', '.join(MASK_SUFFIXES)})")
    predictions = list_cases(pred_dir)
    pairs = [(case, match_case(predictions, case), ref) for case, ref in references.items()]
    missing = [case for case, pred, _ in pairs if pred is None]
    if missing:
        raise EvaluationError(f"{pred_dir}: no prediction for {len(missing)} reference case(s): "
                              + ", ".join(missing))
    return [(case, pred, ref) for case, pred, ref in pairs if pred is not None]


def read_volume(path: Path) -> sitk.Image:
    """A scalar 3D image, or an EvaluationError naming the file."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise EvaluationError(f"{path}: cannot be read as an image") from None
    if image.GetDimension() != 3:
        raise EvaluationError(f"{path}: is {image.GetDimension()}D, expected 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise EvaluationError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components "
                              "per voxel, expected 1")
    return image


def check_same_grid(pred: sitk.Image, ref: sitk.Image, pred_path: Path) -> None:
    """The challenge's geometry rule: same shape, same spacing within 1e-4 mm."""
    if pred.GetSize() != ref.GetSize():
        raise EvaluationError(f"{pred_path}: shape {pred.GetSize()[::-1]} differs from the "
                              f"reference's {ref.GetSize()[::-1]} (z, y, x)")
    if not np.allclose(pred.GetSpacing(), ref.GetSpacing(), rtol=0.0, atol=SPACING_ATOL):
        raise EvaluationError(f"{pred_path}: spacing {pred.GetSpacing()} differs from the "
                              f"reference's {ref.GetSpacing()} (x, y, z, mm)")


def distance_spacing(spacing_xyz: Sequence[float], official: bool) -> tuple[float, ...]:
    """Spacing handed to the distance metrics together with the (z, y, x) array.

    Physically correct: reversed to (z, y, x). Official quirk: SimpleITK's (x, y, z) as is.
    """
    spacing = tuple(float(v) for v in spacing_xyz)
    return spacing if official else spacing[::-1]


def find_images(images_dir: Path, cases: Sequence[str]) -> dict[str, Path]:
    """The image of every case, for the previews; a missing one is an error."""
    images = list_cases(images_dir)
    found = {case: match_case(images, case) for case in cases}
    missing = [case for case, path in found.items() if path is None]
    if missing:
        raise EvaluationError(f"{images_dir}: no image for {len(missing)} case(s): "
                              + ", ".join(missing)
                              + f" (<case>{IMAGE_CHANNEL_SUFFIX}.mha expected)")
    return {case: path for case, path in found.items() if path is not None}


def evaluate_case(case: str, pred_path: Path, ref_path: Path, official: bool,
                  image_path: Path | None) -> tuple[CaseResult, Image.Image | None]:
    """Metrics of one case, and its preview picture when `image_path` is given."""
    pred_image, ref_image = read_volume(pred_path), read_volume(ref_path)
    check_same_grid(pred_image, ref_image, pred_path)
    try:
        pred = binarise_prediction(sitk.GetArrayViewFromImage(pred_image))
    except EvaluationError as error:
        raise EvaluationError(f"{pred_path}: {error}") from None
    ref = binarise_reference(sitk.GetArrayViewFromImage(ref_image))
    spacing = distance_spacing(ref_image.GetSpacing(), official)
    result = CaseResult(case, pred_path, ref_path, case_metrics(pred, ref, spacing))
    picture = None
    if image_path is not None:
        image = read_volume(image_path)
        if image.GetSize() != ref_image.GetSize():
            raise EvaluationError(f"{image_path}: shape {image.GetSize()[::-1]} differs from the "
                                  f"reference's {ref_image.GetSize()[::-1]} (z, y, x)")
        picture = render_preview(sitk.GetArrayViewFromImage(image), ref, pred,
                                 ref_image.GetSpacing()[::-1], case)
    return result, picture


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/NaN: an undefined mean is written as null."""
    return value if math.isfinite(value) else None


def summarise(results: Sequence[CaseResult], official: bool) -> dict[str, Any]:
    """Means over cases and the tumour-burden RMSE, plus the settings that produced them."""
    summary: dict[str, Any] = {
        "mode": "official" if official else "physical",
        "distance_spacing_order": "x,y,z with a z,y,x array (official quirk)" if official
        else "z,y,x (physically correct)",
        "surface_dice_tolerance_mm": SURFACE_TOLERANCE_MM,
        "hausdorff_percentile": HAUSDORFF_PERCENT,
        "n_cases": len(results),
        "n_uniform_predictions": sum(r.metrics.uniform_prediction for r in results),
    }
    for field in METRIC_FIELDS:
        values = [getattr(r.metrics, field) for r in results]
        summary[f"mean_{field}"] = _finite_or_none(float(np.mean(values)))
    rmse = tumour_burden_rmse([r.metrics.pred_volume_mm3 for r in results],
                              [r.metrics.ref_volume_mm3 for r in results])
    summary["tumour_burden_rmse_mm3"] = _finite_or_none(rmse)
    return summary


def per_case_csv(results: Sequence[CaseResult]) -> str:
    """One row per case; inf and nan written as such (see docs/evaluation.md)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("case", *METRIC_FIELDS, "uniform_prediction", "prediction", "reference"))
    for r in results:
        metrics = asdict(r.metrics)
        writer.writerow((r.case, *(repr(float(metrics[f])) for f in METRIC_FIELDS),
                         r.metrics.uniform_prediction, r.prediction.name, r.reference.name))
    return buffer.getvalue()


TABLE_COLUMNS = (  # (field, heading, width, decimals)
    ("dice", "Dice", 6, 3), ("surface_dice", "SDice5", 6, 3), ("hd95_mm", "HD95", 8, 2),
    ("masd_mm", "MASD", 8, 2), ("pred_volume_mm3", "Vpred mm3", 11, 0),
    ("ref_volume_mm3", "Vref mm3", 11, 0))


def _cell(value: float | None, width: int, decimals: int) -> str:
    return f"{'-' if value is None else f'{value:.{decimals}f}':>{width}}"


def format_table(results: Sequence[CaseResult], summary: dict[str, Any]) -> str:
    """A short human-readable table: cases, means, RMSE; undefined means show as '-'."""
    width = max([len("mean"), *(len(r.case) for r in results)])
    rows = [(r.case, asdict(r.metrics)) for r in results]
    rows.append(("mean", {f: summary[f"mean_{f}"] for f in METRIC_FIELDS}))
    header = f"{'case':<{width}}" + "".join(f"  {h:>{w}}" for _, h, w, _ in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for name, values in rows:
        lines.append(f"{name:<{width}}" + "".join(f"  {_cell(values[f], w, d)}"
                                                  for f, _, w, d in TABLE_COLUMNS))
    rmse = _cell(summary["tumour_burden_rmse_mm3"], 0, 1)
    lines.append(f"tumour-burden RMSE: {rmse} mm3   mode: {summary['mode']}")
    return "\n".join(lines)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m panther_seg.evaluation",
        description="Score tumour masks against references with the PANTHER Task 1 metrics.")
    parser.add_argument("pred_dir", type=Path, help="predicted masks (.mha, .nii.gz, .nii)")
    parser.add_argument("ref_dir", type=Path, help="reference masks; label 1 is the tumour")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help="where the CSV/JSON (and previews) go; default PRED_DIR/../evaluation")
    parser.add_argument("--official", action="store_true",
                        help="reproduce the leaderboard's (x, y, z) spacing with a (z, y, x) array")
    parser.add_argument("--preview", action="store_true",
                        help="also write OUT/preview/<case>.png overlays (needs --images-dir)")
    parser.add_argument("--images-dir", type=Path, default=None,
                        help="images by case id (<case>_0000.mha or <case>.mha), for --preview")
    args = parser.parse_args(argv)
    if args.preview != (args.images_dir is not None):
        parser.error("--preview and --images-dir go together")
    if args.output_dir is None:
        args.output_dir = args.pred_dir.resolve().parent / "evaluation"
    return args


def run(args: argparse.Namespace) -> str:
    """Evaluate everything first, then write all outputs; returns the table to print."""
    pairs = pair_cases(args.pred_dir, args.ref_dir)
    images = find_images(args.images_dir, [case for case, _, _ in pairs]) if args.preview else {}
    results: list[CaseResult] = []
    pictures: dict[str, Image.Image] = {}
    for case, pred_path, ref_path in pairs:
        result, picture = evaluate_case(case, pred_path, ref_path, args.official, images.get(case))
        results.append(result)
        if picture is not None:
            pictures[case] = picture
    summary = summarise(results, args.official)
    for case, picture in pictures.items():
        write_bytes_atomic(args.output_dir / PREVIEW_DIR / f"{case}.png", png_bytes(picture))
    write_bytes_atomic(args.output_dir / PER_CASE_FILE, per_case_csv(results).encode())
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(args.output_dir / SUMMARY_FILE, text.encode())
    return format_table(results, summary)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        table = run(args)
    except EvaluationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(table)
    print(f"wrote {args.output_dir / PER_CASE_FILE} and {args.output_dir / SUMMARY_FILE}")
    return 0
