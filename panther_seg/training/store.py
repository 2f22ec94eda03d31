"""The preprocessed-case store: one folder per case holding plain ``.npy`` arrays.

Plain (uncompressed) ``.npy`` files are memory-mapped by training: every data-loader worker and
every DDP process reads the same pages of the operating system's cache instead of holding its
own copy of the data set, and nothing is decompressed per patch.

``<case>/image.npy`` (1, D, H, W) float32, ``<case>/label.npy`` (1, D, H, W) uint8 and
``<case>/meta.json`` (spacing (z, y, x) mm, the statistics row the case was made with, shape).
A case folder is written under a temporary name and renamed, so a folder that exists is complete.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.files import atomic_path

IMAGE_FILE, LABEL_FILE, META_FILE = "image.npy", "label.npy", "meta.json"


def case_dir(data_dir: Path, case: str) -> Path:
    return Path(data_dir) / case


def write_case(out: Path, image: np.ndarray, label: np.ndarray, meta: dict[str, Any]) -> None:
    """Write a case folder atomically (a temporary sibling renamed over the old one)."""
    with atomic_path(Path(out), directory=True) as tmp:
        np.save(tmp / IMAGE_FILE, np.ascontiguousarray(image, dtype=np.float32))
        np.save(tmp / LABEL_FILE, np.ascontiguousarray(label, dtype=np.uint8))
        (tmp / META_FILE).write_text(json.dumps({**meta, "shape": list(image.shape)}) + "\n")


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise InputError(folder / META_FILE, f"cannot read the case's metadata: {e}") from None


def is_case(folder: Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (IMAGE_FILE, LABEL_FILE, META_FILE))


def open_case(folder: Path) -> dict[str, Any]:
    """Image and label memory-mapped copy-on-write (writable views, the file never changes)."""
    folder = Path(folder)
    try:
        image = np.load(folder / IMAGE_FILE, mmap_mode="c")
        label = np.load(folder / LABEL_FILE, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise InputError(folder, f"cannot read the preprocessed case: {e}") from None
    if image.dtype != np.float32 or label.dtype != np.uint8 or image.shape != label.shape or image.ndim != 4:
        raise InputError(folder, f"preprocessed case has image {image.dtype} {image.shape} and label {label.dtype} {label.shape}")
    return {"image": image, "label": label, "case": folder.name}
