"""Which checkpoint and statistics a run uses, and baking new ones into ``resources/``.

Checkpoints: ``--checkpoint`` (repeatable), else those in ``/opt/ml/model/`` (grand-challenge's
model tarball), else those baked in ``resources/`` (verified against their SHA-256 sums). Several
checkpoints make an ensemble: their probabilities are averaged.
Statistics: ``--stats``, else those recorded in the checkpoint, else ``mri_statistics.csv``
beside the checkpoint.

``python -m panther_seg.resources bake --checkpoint X [--stats Y]`` replaces the baked files.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .checkpoint import (
    LoadedModel, ModelContract, check_pipeline_config, load_checkpoint, verify_sha256sums, write_sha256sums,
)
from .config import CHECKPOINT_SUFFIXES, MODEL_TARBALL_DIR, RESOURCES_DIR, SHA256_FILE_NAME, STATS_FILE_NAME
from .errors import FieldError, InputError
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


def bake(checkpoint: Path, stats: Path | None, resources_dir: Path = RESOURCES_DIR) -> None:
    """Replace the baked checkpoint (and statistics) after checking they load, then write sums."""
    loaded = load_checkpoint(checkpoint)
    if stats is not None:
        read_stats_csv(stats)
    elif loaded.stats is None:
        raise InputError(checkpoint, f"records no statistics: pass --stats {STATS_FILE_NAME}")
    resources_dir.mkdir(parents=True, exist_ok=True)
    for old in resources_dir.iterdir():
        if old.suffix in CHECKPOINT_SUFFIXES or old.name in (STATS_FILE_NAME, SHA256_FILE_NAME):
            old.unlink()
    shutil.copy2(checkpoint, resources_dir / Path(checkpoint).name)
    if stats is not None:
        shutil.copy2(stats, resources_dir / STATS_FILE_NAME)
    write_sha256sums(resources_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panther_seg.resources", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bake", help="copy a checkpoint (and statistics) into resources/ with SHA-256 sums")
    b.add_argument("--checkpoint", type=Path, required=True)
    b.add_argument("--stats", type=Path)
    b.add_argument("--resources-dir", type=Path, default=RESOURCES_DIR)
    sub.add_parser("verify", help="check resources/ against its SHA-256 sums")
    args = parser.parse_args(argv)
    try:
        if args.command == "bake":
            bake(args.checkpoint, args.stats, args.resources_dir)
            print(f"baked {args.checkpoint} into {args.resources_dir}")
        else:
            verify_sha256sums(RESOURCES_DIR)
            print(f"{RESOURCES_DIR}: all SHA-256 sums match")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
