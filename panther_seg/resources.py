"""Which checkpoint and statistics a run uses, and baking new ones into ``resources/``.

Checkpoint: ``--checkpoint``, else the one in ``/opt/ml/model/`` (grand-challenge's model
tarball), else the baked one in ``resources/`` (verified against its SHA-256 sums).
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
from typing import Any

from .checkpoint import (
    LoadedModel, check_pipeline_config, find_checkpoint, load_checkpoint, verify_sha256sums, write_sha256sums,
)
from .config import CHECKPOINT_SUFFIXES, MODEL_TARBALL_DIR, RESOURCES_DIR, SHA256_FILE_NAME, STATS_FILE_NAME
from .errors import FieldError, InputError
from .stats import NormalisationStats, read_stats_csv


@dataclass
class Resources:
    loaded: LoadedModel
    stats: NormalisationStats
    checkpoint_path: Path
    stats_source: str


def locate_checkpoint(checkpoint: Path | None, model_dir: Path, resources_dir: Path) -> Path:
    if checkpoint is not None:
        return Path(checkpoint)
    for folder in (model_dir, resources_dir):
        found = find_checkpoint(folder)
        if found is not None:
            if folder == resources_dir or (folder / SHA256_FILE_NAME).is_file():
                verify_sha256sums(folder)
            return found
    raise InputError(resources_dir, f"no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) in {model_dir} or {resources_dir}")


def resolve_resources(
    checkpoint: Path | None = None,
    stats: Path | None = None,
    model_config: dict[str, Any] | None = None,
    model_dir: Path = MODEL_TARBALL_DIR,
    resources_dir: Path = RESOURCES_DIR,
) -> Resources:
    path = locate_checkpoint(checkpoint, model_dir, resources_dir)
    loaded = load_checkpoint(path, model_config)
    try:
        check_pipeline_config(loaded.config)
    except FieldError as e:
        raise InputError(path, f"the network cannot segment: {e}") from None
    if stats is not None:
        return Resources(loaded, read_stats_csv(Path(stats)), path, str(stats))
    if loaded.stats is not None:
        return Resources(loaded, loaded.stats, path, f"recorded in {path.name}")
    beside = path.parent / STATS_FILE_NAME
    if not beside.is_file():
        raise InputError(path, f"checkpoint records no statistics and there is no {STATS_FILE_NAME} beside it (use --stats)")
    return Resources(loaded, read_stats_csv(beside), path, str(beside))


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
