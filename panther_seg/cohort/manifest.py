"""``OUT/manifest.csv``: the cohort's record of every case, the only thing a rerun trusts.

One row per case, keyed by the case's mask file name (unique within a cohort, as batch mode
enforces). Only the driver writes it, and always whole and atomically (``io.files``), after each
case: a driver killed at any moment leaves the previous complete manifest. A case counts as done
on a rerun only if its row says done, was made with the same options, and every output it lists
is on disk with the recorded SHA-256.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..io.files import sha256, write_text_atomic

MANIFEST_NAME = "manifest.csv"
STATUSES = ("done", "refused", "failed")


@dataclass
class CaseRecord:
    """One case's row; times in seconds, ``outputs`` as ``name:sha256`` pairs joined by ``;``."""

    case: str
    input: str
    status: str
    error: str = ""
    outputs: str = ""
    tumour_ml: str = ""
    worker: str = ""
    attempts: int = 1
    read_s: str = ""
    preprocess_s: str = ""
    segment_s: str = ""
    write_s: str = ""
    wall_s: str = ""
    worker_peak_gib: str = ""
    finished_at: str = ""
    options: str = ""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def checksums(self) -> dict[str, str]:
        pairs = (item.rsplit(":", 1) for item in self.outputs.split(";") if item)
        return {name: digest for name, digest in pairs}


def join_checksums(checksums: dict[str, str]) -> str:
    return ";".join(f"{name}:{digest}" for name, digest in checksums.items())


class Manifest:
    """The rows in memory, in the order cases were first recorded; ``save`` rewrites the file."""

    def __init__(self, path: Path, rows: dict[str, CaseRecord] | None = None):
        self.path = path
        self.rows = rows or {}

    @classmethod
    def load(cls, output: Path) -> "Manifest":
        path = output / MANIFEST_NAME
        rows: dict[str, CaseRecord] = {}
        if path.is_file():
            names = set(CaseRecord.columns())
            with open(path, newline="") as f:
                for raw in csv.DictReader(f):
                    known = {k: v for k, v in raw.items() if k in names and v is not None}
                    if "case" not in known or "input" not in known or "status" not in known:
                        continue
                    known["attempts"] = int(known.get("attempts") or 1)
                    record = CaseRecord(**known)
                    rows[record.case] = record
        return cls(path, rows)

    def record(self, row: CaseRecord) -> None:
        self.rows[row.case] = row
        self.save()

    def save(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CaseRecord.columns(), lineterminator="\n")
        writer.writeheader()
        for row in self.rows.values():
            writer.writerow(asdict(row))
        write_text_atomic(self.path, text.getvalue())

    def verified(self, case: str, wanted: dict[str, Path], options: str) -> bool:
        """Done before with these options, and each wanted output on disk as it was written."""
        row = self.rows.get(case)
        if row is None or row.status != "done" or row.options != options:
            return False
        recorded = row.checksums()
        if set(recorded) != {p.name for p in wanted.values()}:
            return False
        try:
            return all(sha256(p) == recorded[p.name] for p in wanted.values())
        except OSError:
            return False
