"""Split files in the organisers' format: a JSON list of folds ``{"train": [...], "val": [...]}``
of case ids. Cases are always split by id, never by a random shuffle."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import InputError

SPLIT_FILE_NAME = "splits_final.json"


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


def read_split(path: Path, fold: int) -> tuple[list[str], list[str]]:
    """(train, val) case ids of one fold."""
    try:
        entry = json.loads(Path(path).read_text())[fold]
        return [str(c) for c in entry["train"]], [str(c) for c in entry["val"]]
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read split file: {e}") from None
    except (IndexError, KeyError, TypeError):
        raise InputError(path, f"no fold {fold} with 'train' and 'val' lists") from None
