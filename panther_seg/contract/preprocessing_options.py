"""How an image becomes network input: the original protocol's choices and their named
departures. A checkpoint records them (``contract``); the preprocessing applies them
(``inference.preprocessing``), so they live below both."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config import NORMALISATIONS, ORIENTATIONS, RESAMPLINGS


@dataclass(frozen=True)
class PreprocessingOptions:
    """How an image becomes network input; the defaults are the original protocol."""

    orientation: str = ORIENTATIONS[0]  # "storage" | "training"
    resample: str = RESAMPLINGS[0]  # "always" | "if-needed"
    normalise: str = NORMALISATIONS[0]  # "positive" | "nonzero"

    def __post_init__(self) -> None:
        for name, allowed in (("orientation", ORIENTATIONS), ("resample", RESAMPLINGS), ("normalise", NORMALISATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")

    def departures(self) -> dict[str, str]:
        """The options that differ from the original protocol."""
        default = PreprocessingOptions()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessingOptions":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing options {sorted(unknown)}")
        return cls(**d)
