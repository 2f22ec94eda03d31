"""A case's results as data a person or a program reads: ``<case>_statistics.json`` beside its
mask and one row per case in ``statistics.csv``. The schema is docs/statistics.md
(``"schema": "panther-seg-statistics"``, ``"schema_version": 1``); the report and the DICOM SR
read the JSON, so this module is the one place that writes it. Batch mode and the cohort call it
after a case's outputs are written."""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from ..config import REVIEW_MEAN_DICE
from ..errors import InputError
from ..io.files import write_text_atomic
from ..io.images import case_id
from ..results import Confidence, Measurements, Segmentation

SCHEMA = "panther-seg-statistics"
SCHEMA_VERSION = 1
STATISTICS_SUFFIX = "_statistics.json"
CSV_NAME = "statistics.csv"
CSV_COLUMNS = (
    "case", "input", "status", "error", "tumour_volume_ml", "lesions", "longest_diameter_mm", "perpendicular_diameter_mm",
    "longest_3d_mm", "size_category", "pancreas_volume_ml", "tumour_mean_intensity", "tumour_median_intensity",
    "confidence_computed", "mean_dice", "min_dice", "volume_ml_min", "volume_ml_max", "review", "seconds", "model",
    "demonstration", "protocol",
)


def statistics_path(mask: Path) -> Path:
    """``<case>_statistics.json`` beside the mask (``case.nii.gz``, ``case.mha`` or ``case.dcm``)."""
    return mask.with_name(case_id(mask) + STATISTICS_SUFFIX)


def package_version() -> str:
    try:
        return metadata.version("panther-seg")
    except metadata.PackageNotFoundError:  # run from a clone without installing it
        return "unknown"


def finite(value: float | None, digits: int = 4) -> float | None:
    """A number JSON can hold (no NaN), rounded to what the measurement means."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def measurements_dict(m: Measurements) -> dict[str, Any]:
    longest = max(m.lesions, key=lambda lesion: lesion.longest_in_plane_mm, default=None)
    return {
        "tumour_volume_ml": finite(m.tumour_volume_ml),
        "lesion_count": len(m.lesions),
        "longest_diameter_mm": finite(m.longest_diameter_mm, 2),
        "perpendicular_diameter_mm": None if longest is None else finite(longest.perpendicular_in_plane_mm, 2),
        "size_category": m.size_category,
        "pancreas_volume_ml": finite(m.pancreas_volume_ml),
        "tumour_mean_intensity": finite(m.tumour_mean_intensity, 2),
        "tumour_median_intensity": finite(m.tumour_median_intensity, 2),
        "lesions": [
            {
                "volume_ml": finite(lesion.volume_ml),
                "centroid_lps_mm": [finite(c, 2) for c in lesion.centroid_lps_mm],
                "longest_in_plane_mm": finite(lesion.longest_in_plane_mm, 2),
                "perpendicular_in_plane_mm": finite(lesion.perpendicular_in_plane_mm, 2),
                "longest_3d_mm": finite(lesion.longest_3d_mm, 2),
                "size_category": lesion.size_category,
            }
            for lesion in m.lesions
        ],
    }


def confidence_dict(c: Confidence) -> dict[str, Any]:
    return {
        "computed": c.computed,
        "mirrorings": c.mirrorings,
        "mean_dice": finite(c.mean_dice),
        "min_dice": finite(c.min_dice),
        "volume_ml_min": finite(c.volume_ml_min),
        "volume_ml_max": finite(c.volume_ml_max),
        "review": c.review,
        "review_threshold_mean_dice": REVIEW_MEAN_DICE,
        "reason": c.reason,
    }


def to_json_dict(case: str, source: Path | str, status: str, model: dict[str, Any], protocol: dict[str, Any],
                 segmentation: Segmentation | None = None, seconds: dict[str, float] | None = None,
                 outputs: dict[str, Path] | None = None, error: str = "") -> dict[str, Any]:
    """The statistics of one case (schema version 1): ``model`` is ``Resources.provenance``,
    ``protocol`` what the run computed (``protocol_dict``)."""
    m = segmentation.measurements if segmentation is not None else None
    c = segmentation.confidence if segmentation is not None else None
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "case": case,
        "input": str(source),
        "status": status,
        "error": error,
        "outputs": {name: path.name for name, path in (outputs or {}).items()},
        "measurements": None if m is None else measurements_dict(m),
        "confidence": None if c is None else confidence_dict(c),
        "timings_s": {name: round(value, 3) for name, value in (seconds or {}).items()},
        "model": model,
        "protocol": protocol,
        "software": {"panther_seg": package_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def protocol_dict(description: str, settings: Any, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """What a run computed: the departures line (``describe_departures``), the sliding window's
    settings and the preprocessing."""
    return {
        "description": description,
        "device": settings.device,
        "window": list(settings.window),
        "overlap": settings.overlap,
        "mirrorings": 2 ** len(settings.mirror_axes),
        "fp16": settings.fp16,
        "preprocessing": preprocessing,
    }


def write_statistics_json(path: Path, data: dict[str, Any]) -> None:
    try:
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise InputError(path, f"cannot write the statistics: {e.strerror or e}") from None


def read_statistics(path: Path) -> dict[str, Any]:
    """A ``<case>_statistics.json``, its schema and version checked."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"is not JSON ({e.msg}, line {e.lineno})") from None
    except UnicodeDecodeError:
        raise InputError(path, "is not a text file") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(path, f"is not a {SCHEMA} file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(path, f"schema_version {data.get('schema_version')!r}; this version reads {SCHEMA_VERSION}")
    return data


def read_statistics_json(path: Path) -> dict[str, Any] | None:
    """``read_statistics``, or None where it would refuse the file (missing, unreadable, another schema)."""
    try:
        return read_statistics(path)
    except InputError:
        return None


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def statistics_row(data: dict[str, Any]) -> dict[str, str]:
    """One case's CSV row from its statistics (``to_json_dict``); a refused case has its
    status and error and empty measurements."""
    m = data.get("measurements") or {}
    c = data.get("confidence") or {}
    model = data.get("model") or {}
    row = {
        "case": data.get("case"), "input": data.get("input"), "status": data.get("status"), "error": data.get("error"),
        "tumour_volume_ml": m.get("tumour_volume_ml"), "lesions": m.get("lesion_count"),
        "longest_diameter_mm": m.get("longest_diameter_mm"), "perpendicular_diameter_mm": m.get("perpendicular_diameter_mm"),
        "longest_3d_mm": max((lesion["longest_3d_mm"] for lesion in m.get("lesions") or []), default=None),
        "size_category": m.get("size_category"), "pancreas_volume_ml": m.get("pancreas_volume_ml"),
        "tumour_mean_intensity": m.get("tumour_mean_intensity"), "tumour_median_intensity": m.get("tumour_median_intensity"),
        "confidence_computed": c.get("computed") if c else None, "mean_dice": c.get("mean_dice"), "min_dice": c.get("min_dice"),
        "volume_ml_min": c.get("volume_ml_min"), "volume_ml_max": c.get("volume_ml_max"), "review": c.get("review"),
        "seconds": round(sum((data.get("timings_s") or {}).values()), 2) if data.get("timings_s") else None,
        "model": ";".join(f"{ck.get('file')}:{str(ck.get('sha256', ''))[:12]}" for ck in model.get("checkpoints", [])),
        "demonstration": model.get("demonstration"),
        "protocol": (data.get("protocol") or {}).get("description"),
    }
    return {k: cell(row[k]) for k in CSV_COLUMNS}


def write_statistics_csv(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """``statistics.csv``: one row per case (``statistics_row``), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text_atomic(path, text.getvalue())
    except OSError as e:
        raise InputError(path, f"cannot write the statistics: {e.strerror or e}") from None
