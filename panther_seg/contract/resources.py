"""Which checkpoint and statistics a run uses, and baking new ones into ``resources/``.

Checkpoints: ``--checkpoint`` (repeatable), else those in ``/opt/ml/model/`` (grand-challenge's
model tarball), else those baked in ``resources/`` (verified against their SHA-256 sums). Several
checkpoints make an ensemble: their probabilities are averaged.
Statistics: ``--stats``, else those recorded in the checkpoint, else ``mri_statistics.csv``
beside the checkpoint.

``python -m panther_seg.contract.resources bake --checkpoint X [--checkpoint X2 ...] [--stats Y]`` replaces
the baked files; ``write_resources`` is the one writer of such a folder (the training's export
uses it too).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from .checkpoint import LoadedModel, load_checkpoint
from .model_contract import ModelContract
from ..results import ModelProvenance
from .provenance import describe_model, is_demonstration, model_provenance
from .network_config import check_pipeline_config
from ..config import CHECKPOINT_SUFFIXES, MODEL_TARBALL_DIR, RESOURCES_DIR, SHA256_FILE_NAME, STATS_FILE_NAME
from ..errors import FieldError, InputError
from ..io.files import atomic_path, sha256, write_text_atomic
from .stats import NormalisationStats, read_stats_csv


@dataclass
class Resources:
    """The networks of a run (an ensemble of one or more members of the same network and
    contract), the statistics they share, and where each came from."""

    members: list[LoadedModel]
    stats: NormalisationStats
    checkpoint_paths: list[Path]
    stats_source: str

    @property
    def contract(self) -> ModelContract:
        return self.members[0].contract

    def describe(self) -> str:
        names = ", ".join(f"{p} ({m.kind})" for p, m in zip(self.checkpoint_paths, self.members))
        return f"{'ensemble of ' + str(len(self.members)) + ': ' if len(self.members) > 1 else ''}{names}"

    @property
    def demonstration(self) -> bool:
        """A member records that it is a demonstration (trained on synthetic data): not a model for real scans."""
        return any(is_demonstration(m.provenance) for m in self.members)

    @cached_property
    def model(self) -> ModelProvenance:
        """The model as every result names it (DICOM's algorithm identification, the report)."""
        return model_provenance(self.checkpoint_paths, self.members[0].provenance)

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """The model that makes this run's results: each checkpoint's file, SHA-256 and what it
        records of its training (data, when, which code), and the statistics' source; written
        into every statistics.json (docs/statistics.md)."""
        return {
            "demonstration": self.demonstration,
            "checkpoints": [describe_model(p, sha256(p), m.kind, m.provenance) for p, m in zip(self.checkpoint_paths, self.members)],
            "statistics": self.stats_source,
        }


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder, sorted by name (none when it does not exist)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)


def locate_checkpoints(checkpoints: Sequence[Path] | None, model_dir: Path, resources_dir: Path) -> list[Path]:
    """``--checkpoint`` (repeatable), else every checkpoint in the model tarball's folder, else
    every one baked in resources/; a folder's SHA-256 sums must list and match each of them."""
    if checkpoints:
        return [Path(c) for c in checkpoints]
    for folder in (model_dir, resources_dir):
        found = checkpoint_files(folder)
        if found:
            if folder == resources_dir or (folder / SHA256_FILE_NAME).is_file():
                listed = verify_sha256sums(folder)
                unlisted = [p.name for p in found if p.name not in listed]
                if unlisted:
                    raise InputError(folder / SHA256_FILE_NAME, f"does not list {', '.join(unlisted)}: every checkpoint must carry its SHA-256")
            return found
    raise InputError(resources_dir, f"no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) in {model_dir} or {resources_dir}")


def check_ensemble(members: list[LoadedModel], paths: list[Path]) -> None:
    """Members must be the same network with the same contract and statistics: their
    probabilities are averaged on one grid."""
    first = members[0]
    for member, path in zip(members[1:], paths[1:]):
        for field, a, b in (
            ("network configuration", first.config, member.config),
            ("window", first.contract.window, member.contract.window),
            ("classes", (first.contract.class_names, first.contract.tumour_class, first.contract.pancreas_class),
             (member.contract.class_names, member.contract.tumour_class, member.contract.pancreas_class)),
            ("preprocessing", first.contract.preprocessing, member.contract.preprocessing),
            ("training direction", first.contract.training_direction, member.contract.training_direction),
            ("statistics", first.stats, member.stats),
        ):
            if a != b:
                raise InputError(path, f"ensemble member differs from {paths[0].name} in its {field}: {b} vs {a}")


def resolve_resources(
    checkpoints: Sequence[Path] | None = None,
    stats: Path | None = None,
    model_config: dict[str, Any] | None = None,
    model_dir: Path = MODEL_TARBALL_DIR,
    resources_dir: Path = RESOURCES_DIR,
) -> Resources:
    paths = locate_checkpoints(checkpoints, model_dir, resources_dir)
    members = [load_checkpoint(p, model_config) for p in paths]
    for member, path in zip(members, paths):
        try:
            check_pipeline_config(member.config)
        except FieldError as e:
            raise InputError(path, f"the network cannot segment: {e}") from None
    check_ensemble(members, paths)
    if stats is not None:
        return Resources(members, read_stats_csv(Path(stats)), paths, str(stats))
    if members[0].stats is not None:
        return Resources(members, members[0].stats, paths, f"recorded in {', '.join(p.name for p in paths)}")
    beside = paths[0].parent / STATS_FILE_NAME
    if not beside.is_file():
        raise InputError(paths[0], f"checkpoint records no statistics and there is no {STATS_FILE_NAME} beside it (use --stats)")
    return Resources(members, read_stats_csv(beside), paths, str(beside))


def write_resources(folder: Path, checkpoints: dict[str, Callable[[Path], object]], stats: Path | None) -> list[Path]:
    """The one writer of a resources folder (baking, and the training's export): exactly these
    checkpoints (name: a function writing that file), the statistics file when given, and
    ``SHA256SUMS`` over them; any other checkpoint or statistics file there is removed, so the
    folder holds one model (or one ensemble) and nothing stale."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / name for name in checkpoints]
    for target, write in zip(targets, checkpoints.values()):
        with atomic_path(target) as tmp:
            write(tmp)
    stats_target = folder / STATS_FILE_NAME
    if stats is not None and Path(stats).resolve() != stats_target.resolve():
        with atomic_path(stats_target) as tmp:
            shutil.copyfile(stats, tmp)
    for old in checkpoint_files(folder):
        if old not in targets:
            old.unlink()
    if stats is None:
        stats_target.unlink(missing_ok=True)
    write_sha256sums(folder)
    return targets


def write_sha256sums(folder: Path) -> Path:
    """List every checkpoint and statistics file of ``folder`` with its SHA-256."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in CHECKPOINT_SUFFIXES or p.name == STATS_FILE_NAME)
    out = Path(folder) / SHA256_FILE_NAME
    write_text_atomic(out, "".join(f"{sha256(p)}  {p.name}\n" for p in files))
    return out


def verify_sha256sums(folder: Path) -> set[str]:
    """Check the files listed in ``folder/SHA256SUMS`` (a damaged resource must not run
    silently); returns the names listed."""
    sums = Path(folder) / SHA256_FILE_NAME
    if not sums.is_file():
        raise InputError(sums, "missing: baked resources must carry SHA-256 sums (python -m panther_seg.contract.resources bake)")
    listed: set[str] = set()
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        target = Path(folder) / name.strip().lstrip("*")
        if not target.is_file():
            raise InputError(target, f"listed in {SHA256_FILE_NAME} but missing")
        if sha256(target) != digest:
            raise InputError(target, "SHA-256 mismatch: the file is damaged or was replaced without updating SHA256SUMS")
        listed.add(target.name)
    return listed


def bake(checkpoints: Sequence[Path], stats: Path | None, resources_dir: Path = RESOURCES_DIR) -> list[Path]:
    """Replace the baked checkpoints (one, or the members of an ensemble) and statistics after
    checking that they load and agree."""
    paths = [Path(c) for c in checkpoints]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise InputError(paths[0], f"two checkpoints of one name ({', '.join(names)}): rename them, the folder holds both")
    members = [load_checkpoint(p) for p in paths]
    check_ensemble(members, paths)
    if stats is not None:
        read_stats_csv(stats)
    elif members[0].stats is None:
        raise InputError(paths[0], f"records no statistics: pass --stats {STATS_FILE_NAME}")
    return write_resources(resources_dir, {p.name: (lambda tmp, src=p: shutil.copyfile(src, tmp)) for p in paths}, stats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panther_seg.contract.resources", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bake", help="copy checkpoints (one, or the members of an ensemble) and statistics into resources/ with SHA-256 sums")
    b.add_argument("--checkpoint", type=Path, required=True, action="append", help="repeat for an ensemble")
    b.add_argument("--stats", type=Path)
    b.add_argument("--resources-dir", type=Path, default=RESOURCES_DIR)
    sub.add_parser("verify", help="check resources/ against its SHA-256 sums")
    args = parser.parse_args(argv)
    try:
        if args.command == "bake":
            baked = bake(args.checkpoint, args.stats, args.resources_dir)
            print(f"baked {', '.join(p.name for p in baked)} into {args.resources_dir}")
        else:
            verify_sha256sums(RESOURCES_DIR)
            print(f"{RESOURCES_DIR}: all SHA-256 sums match")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
