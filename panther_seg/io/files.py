"""Writing so that a reader never sees half a file: the one atomic-write helper.

Everything the project writes for others to read (masks, probability maps, checkpoints,
statistics, SHA-256 sums, scores, preprocessed cases) is written under a hidden temporary name
in the destination folder, flushed to disk, and renamed over the final name only when complete;
on any failure the temporary is removed and the final name is untouched.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMPORARY_PREFIX = ".tmp_"


@contextmanager
def atomic_path(path: Path, directory: bool = False) -> Iterator[Path]:
    """A temporary file (or, with ``directory``, folder) beside ``path`` for the block to write;
    it becomes ``path`` when the block succeeds, with the permissions of an ordinary new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, suffix="_" + path.name, dir=path.parent))
    else:  # the final name's suffix kept: writers (SimpleITK's) choose the format by it
        fd, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix="_" + path.name, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        for written in (tmp.rglob("*") if directory else [tmp]):
            if written.is_file():
                flush_to_disk(written)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)  # mkstemp/mkdtemp make them private
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def is_temporary(path: Path | str) -> bool:
    return Path(path).name.startswith(TEMPORARY_PREFIX)


def flush_to_disk(path: Path | str) -> None:
    """fsync: a disk that fills up during write-back reports it here, not after the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (checkpoints, a cohort's outputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
