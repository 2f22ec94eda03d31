"""Which inputs are DICOM, told from the files' first bytes alone: batch mode asks it of every
input, so it imports nothing of the DICOM stack (pydicom, highdicom), which a case of .mha or
NIfTI files never loads."""
from __future__ import annotations

from pathlib import Path

PREAMBLE_OFFSET = 128
MAGIC = b"DICM"


def has_dicom_preamble(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' at byte 128 (files without the preamble are not accepted)."""
    try:
        with open(path, "rb") as f:
            f.seek(PREAMBLE_OFFSET)
            return f.read(4) == MAGIC
    except OSError:
        return False


def is_dicom_folder(path: Path) -> bool:
    """A folder with at least one DICOM file in it (other files are tolerated)."""
    path = Path(path)
    return path.is_dir() and any(p.is_file() and has_dicom_preamble(p) for p in path.iterdir())


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file, such as one enhanced multi-frame image."""
    path = Path(path)
    return path.is_file() and has_dicom_preamble(path)
