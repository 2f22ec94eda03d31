"""The one Dice of two masks, for the smoke test, validation during training, the departures
measurement and the challenge's scores."""
from __future__ import annotations

from typing import TypeVar

Mask = TypeVar("Mask")  # a boolean NumPy array or torch tensor


def dice(a: Mask, b: Mask) -> Mask:
    """``2 |a & b| / (|a| + |b|)`` of two boolean masks (NumPy arrays, or torch tensors on any
    device without a host sync); 1 when both are empty: two empty masks agree."""
    total = a.sum() + b.sum()
    empty = total == 0
    return (2 * (a & b).sum() + empty) / (total + empty)  # type: ignore[operator,return-value]
