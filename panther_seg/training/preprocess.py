"""Preprocess a labelled dataset for training, with the very functions inference uses.

``python -m panther_seg.training.preprocess DATA_DIR OUT_DIR [--workers N]``

Pairs images and labels by case id (PANTHER naming ``<case>_0000.mha`` + ``<case>.mha`` in one
folder, or nnU-Net's ``imagesTr/`` + ``labelsTr/``), reports and skips bad pairs, writes the
dataset statistics to ``OUT_DIR/mri_statistics.csv`` (the original format) and one folder
``OUT_DIR/<case>/`` per case (``image.npy`` (1, D, H, W) float32, ``label.npy`` (1, D, H, W)
uint8, ``meta.json``: spacing (z, y, x) mm and the statistics row it was made with; plain arrays
that training memory-maps, see ``store.py``). Up-to-date outputs (newer than both inputs, same
statistics) are kept.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from ..config import CLASS_NAMES, STATS_FILE_NAME, IMAGE_CHANNEL_SUFFIX, TRAINING_IMAGES_DIR, TRAINING_LABELS_DIR
from ..errors import InputError
from ..io.images import case_id, has_image_suffix, read_image
from ..inference.preprocessing import preprocess_image, preprocess_label
from ..contract.stats import NormalisationStats, compute_stats, read_stats_csv, write_stats_csv
from . import store

GEOMETRY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CasePair:
    case: str
    image: Path
    label: Path


def find_pairs(data_dir: Path) -> tuple[list[CasePair], list[str]]:
    """Image/label pairs by case id, and a message for each file left without a partner."""
    data_dir = Path(data_dir)
    if (data_dir / TRAINING_IMAGES_DIR).is_dir():
        image_dir, label_dir = data_dir / TRAINING_IMAGES_DIR, data_dir / TRAINING_LABELS_DIR
    else:
        image_dir = label_dir = data_dir
    if not image_dir.is_dir():
        raise InputError(data_dir, "data folder does not exist")
    images, labels = {}, {}
    for folder, is_image_folder in ((image_dir, True), (label_dir, False)):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not (p.is_file() and has_image_suffix(p)):
                continue
            cid = case_id(p)
            if cid.endswith(IMAGE_CHANNEL_SUFFIX) and (is_image_folder or image_dir == label_dir):
                images[cid[: -len(IMAGE_CHANNEL_SUFFIX)]] = p
            elif not is_image_folder or image_dir == label_dir:
                labels[cid] = p
    pairs = [CasePair(c, images[c], labels[c]) for c in sorted(images) if c in labels]
    problems = [f"{images[c]}: no label" for c in sorted(set(images) - set(labels))]
    problems += [f"{labels[c]}: no image" for c in sorted(set(labels) - set(images))]
    return pairs, problems


def validate_pair(pair: CasePair) -> tuple[str, tuple[float, ...], tuple[int, ...], str | None]:
    """(case, spacing xyz, size xyz, problem or None): same geometry, labels within the classes."""
    try:
        image = read_image(pair.image)
        label = sitk.ReadImage(str(pair.label))
    except (InputError, RuntimeError) as e:
        return pair.case, (), (), str(e).strip().splitlines()[-1]
    if label.GetSize() != image.GetSize():
        return pair.case, (), (), f"label size {label.GetSize()} differs from image size {image.GetSize()}"
    for what in ("Spacing", "Origin", "Direction"):
        a, b = (np.asarray(getattr(im, f"Get{what}")()) for im in (image, label))
        if not np.allclose(a, b, atol=GEOMETRY_TOLERANCE * max(1.0, float(np.abs(a).max()))):
            return pair.case, (), (), f"label {what.lower()} {tuple(b)} differs from image's {tuple(a)}"
    values = np.unique(sitk.GetArrayViewFromImage(label))
    allowed = np.arange(len(CLASS_NAMES))
    if not np.isin(values, allowed).all():
        return pair.case, (), (), f"label values {values.tolist()} outside {allowed.tolist()}"
    return pair.case, image.GetSpacing(), image.GetSize(), None


def stats_row(stats: NormalisationStats) -> str:
    return repr(stats.to_dict())


def is_up_to_date(out: Path, pair: CasePair, stats: NormalisationStats) -> bool:
    if not store.is_case(out):
        return False
    made = (out / store.META_FILE).stat().st_mtime
    if made <= max(pair.image.stat().st_mtime, pair.label.stat().st_mtime):
        return False
    try:
        return store.read_meta(out).get("stats") == stats_row(stats)
    except InputError:
        return False


def preprocess_case(args: tuple[CasePair, NormalisationStats, Path]) -> tuple[str, str]:
    """Write the case folder (atomically); returns (case, 'written' | 'up to date')."""
    pair, stats, out_dir = args
    out = store.case_dir(out_dir, pair.case)
    if is_up_to_date(out, pair, stats):
        return pair.case, "up to date"
    image = read_image(pair.image)
    label = sitk.ReadImage(str(pair.label))
    pre = preprocess_image(image, stats)
    lab = preprocess_label(label, image, stats)
    spacing_zyx = [float(s) for s in pre.grid.spacing[::-1]]
    store.write_case(out, pre.volume[None], lab[None], {"spacing": spacing_zyx, "stats": stats_row(stats)})
    return pair.case, "written"


def _pool_map(fn: Callable[[Any], Any], items: list, workers: int, desc: str) -> list:
    """``fn`` over ``items`` in ``workers`` processes (in this one if 1), with a progress bar."""
    bar = dict(total=len(items), desc=desc, unit="case", file=sys.stderr, disable=None)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in tqdm(items, **bar)]
    with get_context("spawn").Pool(min(workers, len(items))) as pool:
        return list(tqdm(pool.imap_unordered(fn, items), **bar))


def preprocess_dataset(data_dir: Path, out_dir: Path, workers: int = 1) -> tuple[NormalisationStats, list[str], list[str]]:
    """Returns the statistics, the cases written or kept, and one message per skipped case."""
    pairs, problems = find_pairs(data_dir)
    checked = _pool_map(validate_pair, pairs, workers, "checking")
    bad = {case: problem for case, _, _, problem in checked if problem}
    problems += [f"{case}: {problem}" for case, problem in sorted(bad.items())]
    good = [p for p in pairs if p.case not in bad]
    if not good:
        raise InputError(data_dir, "no valid image/label pair")
    geometry = {case: (sp, sz) for case, sp, sz, problem in checked if not problem}
    stats = compute_stats([geometry[p.case][0] for p in good], [geometry[p.case][1] for p in good])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_path = out_dir / STATS_FILE_NAME
    if not stats_path.is_file() or read_stats_csv(stats_path) != stats:
        write_stats_csv(stats, stats_path)
    stats = read_stats_csv(stats_path)  # as printed: inference reads these very numbers back
    done = _pool_map(preprocess_case, [(p, stats, out_dir) for p in good], workers, "preprocessing")
    return stats, sorted(case for case, _ in done), problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.preprocess", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = p.parse_args(argv)
    try:
        stats, cases, problems = preprocess_dataset(args.data_dir, args.out_dir, args.workers)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for msg in problems:
        print(f"skipped: {msg}", file=sys.stderr)
    print(f"{len(cases)} cases in {args.out_dir}; target spacing (x, y, z) {stats.target_spacing()}; {len(problems)} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
