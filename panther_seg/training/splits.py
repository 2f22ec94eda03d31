"""Split files in the organisers' format: a JSON list of folds ``{"train": [...], "val": [...]}``
of case ids. Cases are always split by id, never by a random shuffle.

The default split is the one the original model was trained on (its authors' fold 0 of the 92
PANTHER Task 1 cases: 73 training, 19 validation), shipped as ``panther_original_fold0.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import InputError

SPLIT_FILE_NAME = "splits_final.json"
ORIGINAL = "original"  # --split original: the shipped split of the original model
ORIGINAL_SPLIT = Path(__file__).resolve().parent / "panther_original_fold0.json"
GENERATED_FOLDS = 3


def make_splits(cases: Sequence[str], folds: int) -> list[dict[str, list[str]]]:
    """Folds assigned round-robin over the sorted case ids: the same cases give the same split."""
    ordered = sorted(cases)
    folds = max(1, min(folds, len(ordered)))
    out = []
    for k in range(folds):
        val = ordered[k::folds]
        out.append({"train": [c for c in ordered if c not in val], "val": val})
    return out


def write_splits(splits: list[dict[str, list[str]]], path: Path) -> None:
    Path(path).write_text(json.dumps(splits, indent=4) + "\n")


def read_splits(path: Path) -> list[dict[str, list[str]]]:
    """Every fold of a split file, checked: lists of case ids, no case both trained and validated on."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read split file: {e}") from None
    if not isinstance(data, list) or not data:
        raise InputError(path, "expected a JSON list of folds {\"train\": [...], \"val\": [...]}")
    folds = []
    for k, entry in enumerate(data):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), list) for key in ("train", "val"))):
            raise InputError(path, f"fold {k} has no 'train' and 'val' lists")
        train, val = [str(c) for c in entry["train"]], [str(c) for c in entry["val"]]
        if set(train) & set(val):
            raise InputError(path, f"fold {k} trains and validates on {sorted(set(train) & set(val))[:3]}")
        folds.append({"train": train, "val": val})
    return folds


def read_split(path: Path, fold: int) -> tuple[list[str], list[str]]:
    """(train, val) case ids of one fold."""
    folds = read_splits(path)
    if not 0 <= fold < len(folds):
        raise InputError(path, f"no fold {fold} (the file has {len(folds)})")
    return folds[fold]["train"], folds[fold]["val"]


def split_path(given: str | Path) -> Path:
    """``original`` names the shipped split; anything else is a file."""
    return ORIGINAL_SPLIT if str(given) == ORIGINAL else Path(given)


def choose_split(given: str | Path | None, cases: Sequence[str], search: Sequence[Path], out_dir: Path) -> tuple[Path, str]:
    """The split file to use, and why.

    Without ``given``: the original model's split when the data hold every one of its cases;
    else the first ``splits_final.json`` in ``search``; else a 3-fold split by case id, written
    to ``out_dir``.
    """
    if given is not None:
        return split_path(given), "given (--split)"
    original = read_splits(ORIGINAL_SPLIT)[0]
    if set(original["train"]) | set(original["val"]) <= set(cases):
        return ORIGINAL_SPLIT, "the original model's split (its authors' fold 0), default for PANTHER Task 1 data"
    for folder in search:
        if (Path(folder) / SPLIT_FILE_NAME).is_file():
            return Path(folder) / SPLIT_FILE_NAME, f"found beside the data ({folder})"
    path, splits = Path(out_dir) / SPLIT_FILE_NAME, make_splits(cases, GENERATED_FOLDS)
    if not path.is_file() or read_splits(path) != splits:  # written once: DDP processes find it made
        path.parent.mkdir(parents=True, exist_ok=True)
        write_splits(splits, path)
    return path, f"{GENERATED_FOLDS} folds by sorted case id (the data are not PANTHER Task 1's and have no {SPLIT_FILE_NAME})"


def main(argv: list[str] | None = None) -> int:
    """``python -m panther_seg.training.splits DATA [--folds K]``: write ``DATA/splits_final.json``,
    K folds by sorted case id over the image/label pairs found in DATA."""
    import argparse
    import sys

    from .preprocess import find_pairs

    p = argparse.ArgumentParser(prog="python -m panther_seg.training.splits", description=main.__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--folds", type=int, default=GENERATED_FOLDS)
    args = p.parse_args(argv)
    try:
        pairs, _ = find_pairs(args.data_dir)
        if not pairs:
            raise InputError(args.data_dir, "no image/label pairs to split")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_splits(make_splits([p.case for p in pairs], args.folds), args.data_dir / SPLIT_FILE_NAME)
    print(f"wrote {args.data_dir / SPLIT_FILE_NAME}: {args.folds} folds of {len(pairs)} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
