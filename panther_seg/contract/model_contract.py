"""The model's contract: what inference must honour for a network (the window it runs on, which
output classes are tumour and pancreas, how its input was preprocessed). The project's resource
format records it; the original authors' formats get the original protocol's values."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import CLASS_NAMES, PANCREAS, TUMOUR, WINDOW
from ..errors import InputError
from .preprocessing_options import PreprocessingOptions
from ..network import SegFormer3D


@dataclass(frozen=True)
class ModelContract:
    """What inference must honour for a network; the defaults are the original protocol's."""

    window: tuple[int, int, int] = WINDOW  # sliding window (z, y, x)
    class_names: tuple[str, ...] = CLASS_NAMES
    tumour_class: int = TUMOUR  # output channel of the tumour probability
    pancreas_class: int = PANCREAS  # output channel of the pancreas probability
    preprocessing: PreprocessingOptions = PreprocessingOptions()
    training_direction: tuple[float, ...] | None = None  # 3x3, row-major; used with orientation "training"

    def direction_matrix(self) -> np.ndarray | None:
        return None if self.training_direction is None else np.asarray(self.training_direction, dtype=float).reshape(3, 3)

    def check_against(self, model: SegFormer3D, path: Path) -> None:
        """Refuse at load a network whose outputs the post-processing cannot use."""
        n = model.decoder.cls.out_channels
        used = {"tumour": self.tumour_class, "pancreas": self.pancreas_class}
        for name, index in used.items():
            if not 0 < index < n:
                raise InputError(path, f"the network has {n} output classes; the {name} class {index} is not one of its foreground classes 1..{n - 1}")
        if self.tumour_class == self.pancreas_class:
            raise InputError(path, f"tumour and pancreas are the same output class ({self.tumour_class})")
        if len(self.class_names) != n:
            raise InputError(path, f"class_names lists {len(self.class_names)} classes but the network has {n} outputs")


def output_classes(model: SegFormer3D) -> int:
    return model.decoder.cls.out_channels


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The original classes' names, then "class 3", "class 4", ... for networks with more."""
    return (CLASS_NAMES + tuple(f"class {i}" for i in range(len(CLASS_NAMES), num_classes)))[:num_classes]


