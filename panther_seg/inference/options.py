"""A run's options, named as the command line's long options, and the one place that turns them
into the sliding window's settings and the preprocessing, and says how the run departs from the
original protocol.

The command line, the Python API (``Segmenter.from_resources(**options)``), the benchmark and
the departures tool all build through ``Options``: one definition of what each option means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import FAST_OVERLAP, OVERLAP
from .preprocessing import PreprocessingOptions
from .sliding_window import ALL_AXES, InferenceSettings

@dataclass(frozen=True)
class Options:
    """What a user may choose; ``None`` means "what the checkpoint records, else the original"."""

    fast: bool = False  # no mirroring, overlap FAST_OVERLAP (the CPU profile)
    overlap: float | None = None
    no_tta: bool = False
    fp16: bool = False  # fp16 autocast on the GPU
    orientation: str | None = None  # storage | training
    resample: str | None = None  # always | if-needed
    normalise: str | None = None  # positive | nonzero
    batch_size: int | None = None  # windows per forward pass
    model_config: Path | dict[str, Any] | None = None  # constructor arguments (a JSON file or a dict)
    memory_limit: float | None = None  # GiB
    save_pancreas: bool = False
    save_probabilities: bool = False
    save_uncertainty: bool = False  # the per-voxel disagreement of the mirrorings (needs mirroring)
    progress: bool | None = None  # a progress bar over windows (None: when stderr is a terminal)

    def __post_init__(self) -> None:
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), not {self.overlap}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be a whole number of windows >= 1, not {self.batch_size!r}")
        if self.memory_limit is not None and not (math.isfinite(self.memory_limit) and self.memory_limit > 0):
            raise ValueError(f"memory_limit must be a positive number of GiB, not {self.memory_limit}")
        PreprocessingOptions(**self._preprocessing_choices())  # its own checks of the three choices

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, **options: Any) -> "Options":
        """From keyword arguments named as the long options (``fast=True``, ``batch_size=2``);
        an unknown name is refused with the list of known ones."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}; options are: {', '.join(cls.names())}")
        return cls(**options)

    def settings(self, device: str) -> InferenceSettings:
        """The sliding window's settings (its window is the checkpoint's: the Segmenter sets it)."""
        overlap = self.overlap if self.overlap is not None else (FAST_OVERLAP if self.fast else OVERLAP)
        return InferenceSettings(
            overlap=overlap,
            mirror_axes=() if (self.fast or self.no_tta) else ALL_AXES,
            batch_size=self.batch_size or (None if device == "cuda" else 1),  # None: from free GPU memory
            device=device,
            fp16=self.fp16 and device == "cuda",
            progress=self.progress,
        )

    def _preprocessing_choices(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("orientation", "resample", "normalise") if getattr(self, k) is not None}

    def preprocessing(self, recorded: PreprocessingOptions) -> PreprocessingOptions:
        """The checkpoint's preprocessing, with the options given here instead."""
        return PreprocessingOptions(**{**recorded.to_dict(), **self._preprocessing_choices()})


def describe_departures(settings: InferenceSettings, preprocessing: PreprocessingOptions) -> str:
    """The ways a run departs from the original protocol, or says it follows it."""
    parts = [f"{k} {v}" for k, v in preprocessing.departures().items()]
    if settings.overlap != OVERLAP:
        parts.append(f"overlap {settings.overlap}")
    if len(settings.mirror_axes) < len(ALL_AXES):
        parts.append(f"{2 ** len(settings.mirror_axes)} mirrorings instead of {2 ** len(ALL_AXES)}")
    if settings.fp16:
        parts.append("fp16")
    return "protocol: the original" if not parts else "protocol: the original except " + ", ".join(parts)
