"""Where a case's outputs go, and writing them all or none.

The tumour mask always; the pancreas mask and the probability maps when asked. Grand-challenge
mode: the interface's path (``images/pancreatic-tumor-segmentation/tumor_seg.mha``) and, for the
optional outputs, sibling interface folders. Batch mode: ``<case>.<format of the input>`` (.mhd
inputs give .mha) and ``<case>_pancreas``, ``<case>_tumour_probability``,
``<case>_pancreas_probability`` beside it, like nnU-Net's ``<case>.nii.gz`` and its probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from ..config import GC_OUTPUT_NAME, GC_OUTPUT_SUBDIR, IMAGE_SUFFIXES, OPTIONAL_OUTPUTS
from ..errors import InputError
from .images import case_id, check_output_location, write_image_atomic
from ..inference.pipeline import Extras, Segmentation

WHAT = {"tumour": "mask", "pancreas": "pancreas mask", "tumour_probability": "tumour probability map",
        "pancreas_probability": "pancreas probability map"}


@dataclass(frozen=True)
class OutputPaths:
    tumour: Path
    pancreas: Path | None = None
    tumour_probability: Path | None = None
    pancreas_probability: Path | None = None

    def chosen(self) -> dict[str, Path]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _optional(extras: Extras, place: Callable[[str], Path]) -> dict[str, Path]:
    wanted = {"pancreas": extras.pancreas, "tumour_probability": extras.probabilities, "pancreas_probability": extras.probabilities}
    return {name: place(name) for name, on in wanted.items() if on}


def gc_outputs(output_root: Path, extras: Extras = Extras()) -> OutputPaths:
    return OutputPaths(output_root / GC_OUTPUT_SUBDIR / GC_OUTPUT_NAME,
                       **_optional(extras, lambda name: output_root / OPTIONAL_OUTPUTS[name][0]))


def mask_suffix(src: Path) -> str:
    """The input's format for its outputs (.mhd headers with raw data become a single .mha)."""
    suffix = src.name[len(case_id(src)):]
    return ".mha" if suffix.lower() == ".mhd" else suffix


def outputs_beside(mask: Path, extras: Extras = Extras()) -> OutputPaths:
    """``mask`` and, beside it, ``<its case id>_pancreas<its suffix>`` etc."""
    stem, suffix = case_id(mask), mask.name[len(case_id(mask)):]
    return OutputPaths(mask, **_optional(extras, lambda name: mask.with_name(stem + OPTIONAL_OUTPUTS[name][1] + suffix)))


def batch_outputs(src: Path, out_dir: Path, extras: Extras = Extras()) -> OutputPaths:
    return outputs_beside(out_dir / (case_id(src) + mask_suffix(src)), extras)


def is_mask_path(path: Path) -> bool:
    """``-o`` names a mask file (not a folder) when it ends in an image format."""
    return path.name.lower().endswith(IMAGE_SUFFIXES) and not path.is_dir()


def check_outputs(paths: OutputPaths) -> None:
    for path in paths.chosen().values():
        check_output_location(path)


def write_outputs(segmentation: Segmentation, paths: OutputPaths) -> None:
    """Every chosen output, each atomically; if one fails, those already written are removed:
    a case gets all its outputs or none."""
    written: list[Path] = []
    try:
        for name, path in paths.chosen().items():
            image = getattr(segmentation, name)
            if image is None:
                raise InputError(path, f"no {WHAT[name]} was computed")
            write_image_atomic(image, path, WHAT[name])
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
