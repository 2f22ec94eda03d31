"""The cases a report shows: read from each ``<case>_statistics.json`` (the measurements' schema,
``panther-seg-statistics`` version 1), from a cohort's ``manifest.csv``, or from a batch run's list
of cases, whichever are at hand. Reading the statistics file is one function,
``statistics.read_statistics``, so that its schema has one reader."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.images import case_id
from ..results import Confidence, Lesion, Measurements
from .statistics import STATISTICS_SUFFIX, read_statistics
MANIFEST_NAME = "manifest.csv"  # the cohort's (panther_seg.cohort.manifest)


@dataclass
class ReportCase:
    """One row of the report and what its page shows."""

    name: str
    status: str  # ok | refused | failed
    error: str | None = None
    image: Path | None = None  # the input (an image file or a DICOM series folder)
    tumour: Path | None = None  # the masks written
    pancreas: Path | None = None
    measurements: Measurements | None = None
    confidence: Confidence | None = None
    seconds: float | None = None
    tumour_ml: float | None = None  # where no measurements were recorded (a cohort's manifest has it)
    demonstration: bool = False
    model: dict[str, Any] = field(default_factory=dict)


def measurements_from(data: dict[str, Any]) -> Measurements | None:
    """The ``Measurements`` a statistics file records (None for a case that was not segmented)."""
    found = data.get("measurements")
    if not found:
        return None
    lesions = tuple(
        Lesion(float(l["volume_ml"]), tuple(float(v) for v in l["centroid_lps_mm"]), float(l["longest_in_plane_mm"]),
               float(l["perpendicular_in_plane_mm"]), float(l["longest_3d_mm"]), str(l["size_category"]))
        for l in found.get("lesions", [])
    )
    pancreas = found.get("pancreas_volume_ml")
    return Measurements(float(found["tumour_volume_ml"]), lesions, None if pancreas is None else float(pancreas),
                        found.get("tumour_mean_intensity"), found.get("tumour_median_intensity"))


def confidence_from(data: dict[str, Any]) -> Confidence | None:
    found = data.get("confidence")
    if not found:
        return None
    return Confidence(bool(found.get("computed")), int(found.get("mirrorings") or 0), found.get("mean_dice"),
                      found.get("min_dice"), found.get("volume_ml_min"), found.get("volume_ml_max"),
                      found.get("review"), str(found.get("reason") or ""))


def _path(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path


def case_from_statistics(path: Path) -> ReportCase:
    data = read_statistics(path)
    outputs = data.get("outputs") or {}
    model = data.get("model") or {}
    return ReportCase(
        name=str(data.get("case") or path.name[: -len(STATISTICS_SUFFIX)]),
        status="ok" if data.get("status") == "done" else str(data.get("status") or "failed"), error=data.get("error") or None,
        image=_path(data.get("input"), path.parent),
        tumour=_path(outputs.get("tumour"), path.parent), pancreas=_path(outputs.get("pancreas"), path.parent),
        measurements=measurements_from(data), confidence=confidence_from(data),
        seconds=sum((data.get("timings_s") or {}).values()) or None,
        demonstration=bool(model.get("demonstration")), model=model,
    )


def cases_from_manifest(out_dir: Path) -> list[ReportCase]:
    """A cohort's cases from its manifest: status, error, time and the mask beside it."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cases = []
    for row in rows:
        names = [item.rsplit(":", 1)[0] for item in (row.get("outputs") or "").split(";") if ":" in item]
        outputs = {case_id(Path(name)): path.parent / name for name in names}  # the file names batch mode gives
        status = "ok" if row.get("status") == "done" else str(row.get("status") or "failed")
        name = case_id(Path(row["case"]))  # the manifest's key is the input's file name
        cases.append(ReportCase(
            name=name, status=status, error=row.get("error") or None, image=_path(row.get("input"), path.parent),
            tumour=outputs.get(name), pancreas=outputs.get(name + "_pancreas"),
            seconds=float(row["wall_s"]) if row.get("wall_s") else None,
            tumour_ml=float(row["tumour_ml"]) if row.get("tumour_ml") else None,
        ))
    return cases


def merged(*sources: list[ReportCase]) -> list[ReportCase]:
    """One case per name; a later source's record replaces an earlier one's (statistics last:
    they know the most)."""
    cases: dict[str, ReportCase] = {}
    for source in sources:
        for case in source:
            earlier = cases.get(case.name)
            if earlier is not None:
                case.image = case.image or earlier.image
                case.tumour = case.tumour or earlier.tumour
                case.pancreas = case.pancreas or earlier.pancreas
                case.seconds = case.seconds if case.seconds is not None else earlier.seconds
                case.tumour_ml = case.tumour_ml if case.tumour_ml is not None else earlier.tumour_ml
            cases[case.name] = case
    return list(cases.values())


def collect_cases(out_dir: Path, known: list[ReportCase] | None = None) -> list[ReportCase]:
    """The cases of an output folder: ``known`` (a batch run's), then its manifest's, then its
    statistics files'."""
    out_dir = Path(out_dir)
    statistics = [case_from_statistics(p) for p in sorted(out_dir.glob("*" + STATISTICS_SUFFIX))]
    return merged(known or [], cases_from_manifest(out_dir), statistics)


def cases_from_batch(pairs: list[tuple[Any, Any]], demonstration: bool = False) -> list[ReportCase]:
    """A batch run's cases from (input, destination) pairs: a case whose mask is there was
    written (the run's log says why another was not)."""
    cases = []
    for src, dst in pairs:
        tumour = Path(dst.tumour)
        written = tumour.is_file()
        cases.append(ReportCase(
            name=case_id(tumour), status="ok" if written else "failed",
            error=None if written else "no mask written (the run's log says why)",
            image=Path(getattr(src, "folder", src)), tumour=tumour if written else None,
            pancreas=getattr(dst, "pancreas", None), demonstration=demonstration,
        ))
    return cases
