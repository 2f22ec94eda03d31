"""The one exception type the command line turns into a one-line message and a non-zero exit."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Something the user gave us (image, checkpoint, statistics, folder) cannot be used."""

    def __init__(self, path: Path | str | None, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class FieldError(ValueError):
    """One metadata field (of a checkpoint or statistics file) that cannot be used; the loader
    turns it into an ``InputError`` naming the file and the field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"field '{field}': {problem}")
