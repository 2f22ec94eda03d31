"""How well the per-case confidence tracks the real error: labelled SYNTHETIC cases
(``tools.synthetic``, noise levels spread so that some are hard) through the default protocol
(8 mirrorings), each case's mean mirrored Dice against its real tumour Dice (prediction vs label),
with the correlations and, per candidate threshold, what flagging below it would catch. Prints its
figures and the machine; docs/confidence.md records a run and the threshold chosen from it.

``python -m panther_seg.tools.confidence_study [--cases 8] [--checkpoint CKPT] [--threads 1]``
(default checkpoint: the baked one, the demonstration trained on synthetic cases).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..config import REVIEW_MEAN_DICE, TUMOUR
from ..dice import dice
from ..inference.pipeline import Segmenter
from ..system.machine import summary
from .synthetic import make_case

NOISE_LEVELS = (20.0, 30.0, 45.0, 60.0)  # Rician noise sd around the generator's default (30); at 80 and above the demonstration finds nothing
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
POOR_DICE = 0.5  # a case whose real Dice is below this is one a reviewer should see


def ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.arange(len(values))
    for value in np.unique(values):  # ties share their mean rank
        out[values == value] = out[values == value].mean()
    return out


def correlations(confidence: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """Pearson's r and Spearman's rho."""
    return float(np.corrcoef(confidence, real)[0, 1]), float(np.corrcoef(ranks(confidence), ranks(real))[0, 1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.tools.confidence_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--seed", type=int, default=7000, help="first case's seed (the demonstration trained on 2026's cases)")
    p.add_argument("--shape", type=int, nargs=3, default=(32, 128, 160), metavar=("Z", "Y", "X"))
    p.add_argument("--checkpoint", type=Path, action="append", help="default: the baked checkpoint(s)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (keep a shared machine usable)")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each case's line as it is measured
    logging.getLogger("panther_seg").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    segmenter = Segmenter.from_resources(args.checkpoint, device=args.device, progress=False)
    print(f"machine: {summary()}; this run: {torch.get_num_threads()} torch thread(s)")
    print(f"checkpoint: {segmenter.resources.describe()} (demonstration: {segmenter.resources.demonstration})")
    print(f"cases: {args.cases} SYNTHETIC labelled cases (panther_seg.tools.synthetic, seeds {args.seed}..{args.seed + args.cases - 1}, "
          f"shape {tuple(args.shape)} z,y,x, 1.1875 x 1.1875 x 3.0 mm, noise sd {NOISE_LEVELS} in turn); default protocol, 8 mirrorings")
    print(f"{'case':>6} {'noise':>6} {'mean mirrored Dice':>19} {'min':>6} {'volume spread mL':>17} {'real Dice':>10} {'s':>6}")
    rows = []
    found_any: list[bool] = []
    for i in range(args.cases):
        noise = NOISE_LEVELS[i % len(NOISE_LEVELS)]
        image, label = make_case(args.seed + i, args.shape, (1.1875, 1.1875, 3.0), noise_sd=noise)
        start = time.perf_counter()
        out = segmenter.segment(image)
        seconds = time.perf_counter() - start
        c = out.confidence
        real = float(dice(sitk.GetArrayViewFromImage(out.tumour) > 0, sitk.GetArrayViewFromImage(label) == TUMOUR))
        rows.append((c.mean_dice, c.min_dice, real))
        found_any.append(bool(np.any(sitk.GetArrayViewFromImage(out.tumour))))
        print(f"{args.seed + i:>6} {noise:>6.0f} {c.mean_dice:>19.3f} {c.min_dice:>6.3f} "
              f"{c.volume_ml_min:>7.2f}-{c.volume_ml_max:<9.2f} {real:>10.3f} {seconds:>6.1f}")
    table = np.asarray(rows, dtype=float)
    found = np.asarray(found_any)
    for subset, chosen in (("all cases", np.ones(len(table), bool)), ("cases with a tumour found", found)):
        for name, column in (("mean mirrored Dice", 0), ("min mirrored Dice", 1)):
            if chosen.sum() >= 3 and np.ptp(table[chosen, column]) > 0:
                r, rho = correlations(table[chosen, column], table[chosen, 2])
                print(f"{subset}: {name} vs real Dice: Pearson r = {r:.3f}, Spearman rho = {rho:.3f} (n = {int(chosen.sum())})")
            else:
                print(f"{subset}: {name} vs real Dice: too few cases or no spread (n = {int(chosen.sum())})")
    print(f"cases with no tumour found (flagged by that rule): {int((~found).sum())}")
    poor = table[:, 2] < POOR_DICE
    print(f"cases with real Dice < {POOR_DICE}: {int(poor.sum())}")
    for threshold in THRESHOLDS:
        flagged = (table[:, 0] < threshold) | ~found
        caught = int((flagged & poor).sum())
        print(f"flag mean mirrored Dice < {threshold:.2f} or no tumour: {int(flagged.sum())} flagged, {caught} of {int(poor.sum())} poor cases caught, "
              f"real Dice flagged {table[flagged, 2].mean() if flagged.any() else float('nan'):.3f} vs not {table[~flagged, 2].mean() if (~flagged).any() else float('nan'):.3f}"
              + ("  <- config.REVIEW_MEAN_DICE" if threshold == REVIEW_MEAN_DICE else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
