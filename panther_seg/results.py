"""What a run produces, as plain types: a case's outputs, what was asked for besides the tumour
mask, and the time each stage took. The pipeline makes them; the writers (``io``) and the batch
mode read them, so they live below both."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import SimpleITK as sitk

log = logging.getLogger("panther_seg")


@dataclass
class Timings:
    """Seconds per stage of one case, logged as each stage ends (the benchmark and the cohort's
    manifest read them)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        log.info("  %-14s %7.2f s", name, self.seconds[name])


@dataclass(frozen=True)
class Extras:
    """What a run returns besides the tumour mask, when asked."""

    probabilities: bool = False  # tumour and pancreas probability maps (float32, input grid, linear)
    pancreas: bool = False  # the pancreas mask the post-processing uses (probability >= 0.5)
    uncertainty: bool = False  # the fraction of mirrorings disagreeing with the final mask (float32, input grid)


@dataclass(frozen=True)
class Lesion:
    """One tumour lesion (a face-connected component of the final mask), measured in physical
    space on the input's grid. Diameters in the image's slice plane are what a radiologist
    measures on the displayed slices; the size category is by ``longest_diameter_mm``."""

    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]  # patient coordinates (LPS), as DICOM and ITK hold them
    longest_in_plane_mm: float  # longest diameter in a slice of the image's slice plane
    perpendicular_in_plane_mm: float  # longest diameter perpendicular to it, in that slice
    longest_3d_mm: float
    size_category: str  # SIZE_CATEGORIES: by longest_in_plane_mm (AJCC T1/T2/T3 cut-offs, as size only)


SIZE_CATEGORIES = ("<=20 mm", "20-40 mm", ">40 mm")


@dataclass(frozen=True)
class Measurements:
    """A case's measurements from its final masks on the input grid; lesions largest first."""

    tumour_volume_ml: float
    lesions: tuple[Lesion, ...]
    pancreas_volume_ml: float | None  # None when the pancreas mask was not computed
    tumour_mean_intensity: float | None  # of the input image inside the tumour; None without tumour
    tumour_median_intensity: float | None

    @property
    def longest_diameter_mm(self) -> float | None:
        return max((lesion.longest_in_plane_mm for lesion in self.lesions), default=None)

    @property
    def size_category(self) -> str | None:
        longest = max(self.lesions, key=lambda lesion: lesion.longest_in_plane_mm, default=None)
        return None if longest is None else longest.size_category


@dataclass(frozen=True)
class Confidence:
    """How the mirrored predictions agree on the tumour (no extra network pass). ``computed`` is
    False without mirroring (``--fast``, ``--no-tta``): then every figure is None, never invented."""

    computed: bool
    mirrorings: int
    mean_dice: float | None = None  # each mirroring's tumour mask against the final mask
    min_dice: float | None = None
    volume_ml_min: float | None = None  # the spread of the mirrorings' tumour volumes
    volume_ml_max: float | None = None
    review: bool | None = None  # flagged for review (the threshold: docs, reporting)
    reason: str = ""  # why not computed, or why flagged


@dataclass
class Segmentation:
    """A case's outputs, each on exactly the input's grid."""

    tumour: sitk.Image
    pancreas: sitk.Image | None = None
    tumour_probability: sitk.Image | None = None
    pancreas_probability: sitk.Image | None = None
    uncertainty: sitk.Image | None = None  # fraction of mirrorings disagreeing with the final mask
    measurements: Measurements | None = None
    confidence: Confidence | None = None


@dataclass(frozen=True)
class ModelProvenance:
    """Which model made a result, as every output names it (a DICOM result's algorithm
    identification among them): its checkpoint files, what and when it was trained on, by which
    code, and whether it is a demonstration (trained on synthetic data, not for real scans)."""

    checkpoints: tuple[str, ...]  # file names (no folders: they would name the machine that ran it)
    trained_on: str
    trained_when: str
    code_revision: str
    demonstration: bool
    note: str = ""
