"""Where a case's outputs go, and writing them all or none.

The tumour mask always; the pancreas mask and the probability maps when asked. Grand-challenge
mode: the interfaces' paths (``grand_challenge.gc_outputs``). Batch mode: ``<case>.<format of the input>`` (.mhd
inputs give .mha) and ``<case>_pancreas``, ``<case>_tumour_probability``,
``<case>_pancreas_probability`` beside it, like nnU-Net's ``<case>.nii.gz`` and its probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import DICOM_SEG_SUFFIX, IMAGE_SUFFIXES
from ..errors import InputError
from .images import case_id, check_output_location, write_image_atomic
from ..results import Extras, ModelProvenance, Segmentation

if TYPE_CHECKING:
    from .dicom import DicomSeries

MEASUREMENT_REPORT_SUFFIX = "_sr"  # the DICOM SR beside a SEG: <seg stem>_sr.dcm



@dataclass(frozen=True)
class OutputKind:
    """One kind of output: what messages call it, the suffix of the case id that names it in
    batch mode, and whether a run's ``Extras`` ask for it. (Its grand-challenge interface path is
    grand-challenge's layout: ``grand_challenge.GC_OUTPUTS``.)"""

    what: str
    batch_suffix: str
    wanted: Callable[[Extras], bool]


OUTPUT_KINDS = {  # the fields of Segmentation and OutputPaths, in this order
    "tumour": OutputKind("mask", "", lambda extras: True),
    "pancreas": OutputKind("pancreas mask", "_pancreas", lambda extras: extras.pancreas),
    "tumour_probability": OutputKind("tumour probability map", "_tumour_probability", lambda extras: extras.probabilities),
    "pancreas_probability": OutputKind("pancreas probability map", "_pancreas_probability", lambda extras: extras.probabilities),
    "uncertainty": OutputKind("uncertainty map", "_uncertainty", lambda extras: extras.uncertainty),
}


@dataclass(frozen=True)
class OutputPaths:
    tumour: Path
    pancreas: Path | None = None
    tumour_probability: Path | None = None
    pancreas_probability: Path | None = None
    uncertainty: Path | None = None

    def chosen(self) -> dict[str, Path]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class DicomSegPaths:
    """One DICOM SEG file (for a DICOM series input): the tumour segment and, when asked, the
    pancreas segment in the same file; beside it, when the case was measured, the measurements
    as a DICOM SR (``<seg stem>_sr.dcm``)."""

    tumour: Path
    pancreas_segment: bool = False

    @property
    def measurement_report(self) -> Path:
        return self.tumour.with_name(self.tumour.stem + MEASUREMENT_REPORT_SUFFIX + DICOM_SEG_SUFFIX)

    def chosen(self) -> dict[str, Path]:
        return {"tumour": self.tumour}


def algorithm_version() -> str:
    """The installed package's version, recorded in a DICOM SEG's algorithm identification."""
    try:
        return metadata.version("panther-seg")
    except metadata.PackageNotFoundError:  # run from a clone without installing it
        return "unknown"


def output_paths(extras: Extras, place: Callable[[str], Path]) -> OutputPaths:
    """The outputs ``extras`` ask for, each where ``place(kind)`` puts it."""
    return OutputPaths(**{name: place(name) for name, kind in OUTPUT_KINDS.items() if kind.wanted(extras)})


def mask_suffix(src: Path) -> str:
    """The input's format for its outputs (.mhd headers with raw data become a single .mha)."""
    suffix = src.name[len(case_id(src)):]
    return ".mha" if suffix.lower() == ".mhd" else suffix


def outputs_beside(mask: Path, extras: Extras = Extras()) -> OutputPaths:
    """``mask`` and, beside it, ``<its case id>_pancreas<its suffix>`` etc."""
    stem, suffix = case_id(mask), mask.name[len(case_id(mask)):]
    return output_paths(extras, lambda name: mask.with_name(stem + OUTPUT_KINDS[name].batch_suffix + suffix))


def batch_outputs(src: Path, out_dir: Path, extras: Extras = Extras()) -> OutputPaths:
    return outputs_beside(out_dir / (case_id(src) + mask_suffix(src)), extras)


def is_mask_path(path: Path) -> bool:
    """``-o`` names a mask file (not a folder) when it ends in an image format."""
    return path.name.lower().endswith(IMAGE_SUFFIXES) and not path.is_dir()


def is_dicom_seg_path(path: Path) -> bool:
    """``-o`` names a DICOM SEG file."""
    return path.name.lower().endswith(DICOM_SEG_SUFFIX) and not path.is_dir()


def check_outputs(paths: OutputPaths | DicomSegPaths) -> None:
    for path in paths.chosen().values():
        check_output_location(path)
    if isinstance(paths, DicomSegPaths):
        check_output_location(paths.measurement_report)


def write_outputs(segmentation: Segmentation, paths: OutputPaths | DicomSegPaths, series: DicomSeries | None = None,
                  model: ModelProvenance | None = None) -> list[Path]:
    """Every chosen output, each atomically; if one fails, those already written are removed:
    a case gets all its outputs or none. A DICOM SEG needs the source ``series`` it references;
    DICOM results name ``model``. Returns the files written."""
    if isinstance(paths, DicomSegPaths):
        return write_dicom_seg_output(segmentation, paths, series, model)
    written: list[Path] = []
    try:
        for name, path in paths.chosen().items():
            image = getattr(segmentation, name)
            if image is None:
                raise InputError(path, f"no {OUTPUT_KINDS[name].what} was computed"
                                       + (" (it needs the mirrorings: not with --fast or --no-tta)" if name == "uncertainty" else ""))
            write_image_atomic(image, path, OUTPUT_KINDS[name].what)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def write_dicom_seg_output(segmentation: Segmentation, paths: DicomSegPaths, series: DicomSeries | None,
                           model: ModelProvenance | None = None) -> list[Path]:
    """The masks as one DICOM SEG referencing ``series`` and, when the case was measured, the
    measurements as a DICOM SR referencing the SEG's segments (each atomically: a temporary file,
    then a rename; if the SR fails, the SEG is removed)."""
    from .dicom_seg import write_dicom_seg
    from .dicom_sr import build_measurement_report, write_measurement_report

    if series is None:
        raise InputError(paths.tumour, "a DICOM SEG output needs a DICOM series input")
    masks = {"tumour": segmentation.tumour}
    if paths.pancreas_segment:
        if segmentation.pancreas is None:
            raise InputError(paths.tumour, "no pancreas mask was computed")
        masks["pancreas"] = segmentation.pancreas
    try:
        seg = write_dicom_seg(masks, series, paths.tumour, algorithm_version(), model)
    except OSError as e:
        raise InputError(paths.tumour, f"cannot write the DICOM SEG: {e.strerror or e}") from None
    except ValueError as e:
        raise InputError(paths.tumour, f"cannot write the DICOM SEG: {e}") from None
    if segmentation.measurements is None:
        return [paths.tumour]
    report = paths.measurement_report
    try:
        write_measurement_report(build_measurement_report(seg, series.headers, segmentation.measurements,
                                                          segmentation.confidence, model), report)
    except BaseException as e:
        paths.tumour.unlink(missing_ok=True)
        if isinstance(e, (OSError, ValueError)):
            raise InputError(report, f"cannot write the DICOM SR: {getattr(e, 'strerror', None) or e}") from None
        raise
    return [paths.tumour, report]
