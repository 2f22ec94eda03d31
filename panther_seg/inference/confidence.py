"""A per-case confidence from what the default protocol computes anyway: its 8 mirrored
predictions. Each mirroring's tumour probability is thresholded as the final decision rule
thresholds the averaged one (``TUMOUR_THRESHOLD``), and compared with the final mask (after
post-processing) on the network's grid: the mean and minimum Dice over the mirrorings, and the
spread of their tumour volumes. No extra network pass, and the final mask does not depend on it:
the masks are recorded from each mirroring's logits before they join the average.

Memory: each mirroring's mask is kept packed, one bit per voxel (1 byte per network-grid voxel
for all 8), and the softmax that gives it runs a few slices at a time: negligible beside the
stitched logits (``config.MEMBER_BYTES_PER_VOXEL``). docs/confidence.md says what the figures
mean and how the review threshold was chosen; a case with no tumour is flagged too, since
mirrorings that all miss a tumour agree perfectly (measured: docs/confidence.md).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ..config import REVIEW_MEAN_DICE, TUMOUR_THRESHOLD
from ..dice import dice
from ..results import Confidence

SLICES_PER_STEP = 8  # network-grid slices per softmax step (bounds the temporary)
NO_TUMOUR = "no tumour found (every PANTHER Task 1 case has one; mirrorings that all miss it agree perfectly)"
NO_MIRRORING = "no mirroring (--fast or --no-tta): no confidence without the mirrored predictions"


class MirrorVotes:
    """Each mirroring's thresholded tumour mask on the network grid, packed to one bit per voxel.
    ``record`` is what the sliding window calls with a mirroring's logits (one tensor per
    ensemble member, (1, C, z, y, x), flipped back); members' probabilities are averaged first,
    as the final rule averages them."""

    def __init__(self, tumour_class: int):
        self.tumour_class = tumour_class
        self.packed: list[np.ndarray] = []
        self.shape: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.packed)

    @torch.inference_mode()
    def record(self, logits: Sequence[torch.Tensor]) -> None:
        self.shape = tuple(logits[0].shape[2:])
        mask = np.empty(self.shape, dtype=bool)
        for start in range(0, self.shape[0], SLICES_PER_STEP):
            part = slice(start, start + SLICES_PER_STEP)
            tumour = sum(torch.softmax(member[0, :, part], dim=0)[self.tumour_class] for member in logits) / len(logits)
            mask[part] = (tumour >= TUMOUR_THRESHOLD).cpu().numpy()
        self.packed.append(np.packbits(mask, axis=None))

    def masks(self) -> Iterator[np.ndarray]:
        """The recorded masks, unpacked one at a time (one byte per voxel while in use)."""
        size = int(np.prod(self.shape))
        for packed in self.packed:
            yield np.unpackbits(packed, count=size).reshape(self.shape).view(bool)


def mirror_confidence(votes: MirrorVotes | None, final: np.ndarray, voxel_ml: float) -> Confidence:
    """How the mirrorings agree with the final (post-processed) tumour mask on the network grid;
    ``voxel_ml`` is that grid's voxel volume. Not computed without mirroring."""
    if votes is None or len(votes) < 2:
        return Confidence(computed=False, mirrorings=len(votes) if votes is not None else 1, reason=NO_MIRRORING)
    final = final.astype(bool, copy=False)
    scores, volumes = [], []
    for mask in votes.masks():
        scores.append(float(dice(mask, final)))
        volumes.append(int(np.count_nonzero(mask)) * voxel_ml)
    mean = float(np.mean(scores))
    reasons = [f"mean mirrored Dice {mean:.3f} < {REVIEW_MEAN_DICE}"] if mean < REVIEW_MEAN_DICE else []
    if not final.any():
        reasons.append(NO_TUMOUR)
    return Confidence(
        computed=True, mirrorings=len(votes), mean_dice=mean, min_dice=float(min(scores)),
        volume_ml_min=float(min(volumes)), volume_ml_max=float(max(volumes)), review=bool(reasons),
        reason="; ".join(reasons),
    )


def disagreement(votes: MirrorVotes, final: np.ndarray) -> np.ndarray:
    """Per voxel, how many mirrorings disagree with the final mask (uint8, 0..mirrorings)."""
    final = final.astype(bool, copy=False)
    count = np.zeros(final.shape, dtype=np.uint8)
    for mask in votes.masks():
        count += mask != final
    return count
