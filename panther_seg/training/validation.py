"""Validation that stays on the training device: the inference code's sliding window
(``sliding_window.predict_logits``, on the volume's device), then argmax and Dice as tensors."""
from __future__ import annotations

import torch


def dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice of two boolean masks (a 0-d float64 tensor on their device); 1 when both are empty."""
    total = pred.sum(dtype=torch.float64) + truth.sum(dtype=torch.float64)
    overlap = torch.logical_and(pred, truth).sum(dtype=torch.float64)
    return torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total))
