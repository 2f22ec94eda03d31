"""DICOM objects the tests write, checked by dicom3tools' ``dciodvfy`` against the standard's
IOD and module tables (Debian's ``dicom3tools`` package; tests skip with a reason without it).

What counts as an error: every line dciodvfy starts with ``Error`` (a missing or wrong Type 1
or 2 attribute, a bad value, a broken condition) or ``Abort`` (an unreadable file), and a non-zero exit status without such a line. ``Warning``
lines (attributes outside the IOD, unrecognised defined terms, retired attributes) are the
standard's advice, not a violation; they are returned for the record and not failed on.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ERROR_PREFIXES = ("Error", "Abort")
WARNING_PREFIX = "Warning"


@dataclass(frozen=True)
class Verdict:
    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def dciodvfy() -> str:
    """The dciodvfy executable, or skip the test that needs it."""
    path = shutil.which("dciodvfy")
    if path is None:
        pytest.skip("needs dciodvfy (Debian's dicom3tools package) to validate DICOM objects")
    return path


def validate(path: Path) -> Verdict:
    """dciodvfy's verdict on one file: the IOD it recognised, its error and warning lines."""
    run = subprocess.run([dciodvfy(), str(path)], capture_output=True, text=True, timeout=120)
    lines = [ln.strip() for ln in (run.stdout + "\n" + run.stderr).splitlines() if ln.strip()]
    errors = tuple(ln for ln in lines if ln.startswith(ERROR_PREFIXES))
    if run.returncode != 0 and not errors:
        errors = (f"Error - dciodvfy exit status {run.returncode}",)
    warnings = tuple(ln for ln in lines if ln.startswith(WARNING_PREFIX))
    iod = next((ln for ln in lines if not ln.startswith(ERROR_PREFIXES + (WARNING_PREFIX,))), "")
    return Verdict(iod, errors, warnings)


def assert_valid_dicom(path: Path, iod: str | None = None) -> Verdict:
    """No error line from dciodvfy (and, if given, the IOD it recognised, such as 'Segmentation')."""
    verdict = validate(path)
    assert not verdict.errors, f"dciodvfy finds errors in {Path(path).name}:\n" + "\n".join(verdict.errors)
    if iod is not None:
        assert verdict.iod == iod, f"dciodvfy reads {Path(path).name} as {verdict.iod!r}, not {iod!r}"
    return verdict
