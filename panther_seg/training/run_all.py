"""Preprocess, train and export in one command: what the training image runs.

``python -m panther_seg.training.run_all --data DATA --out OUT [--split SPLIT_JSON] [--fold K]
[--config cfg.yaml] [--set key=value ...] [--devices N] [--accelerator cpu|gpu] [--workers N]
[--resume]``

Writes ``OUT/preprocessed/`` (npz + mri_statistics.csv), ``OUT/run_fold<K>/`` (checkpoints,
logs, config) and ``OUT/resources/`` (segformer3d.pt, mri_statistics.csv, SHA256SUMS, ready for
``python -m panther_seg.resources bake``). Without ``--split``: ``DATA/splits_final.json`` if
present, else a 3-fold split by sorted case id written to ``OUT/splits_final.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import STATS_FILE_NAME
from ..errors import InputError
from . import export, preprocess, train
from .splits import SPLIT_FILE_NAME, make_splits, write_splits


def choose_split(data: Path, out: Path, cases: list[str], given: Path | None) -> Path:
    if given is not None:
        return given
    if (data / SPLIT_FILE_NAME).is_file():
        return data / SPLIT_FILE_NAME
    path = out / SPLIT_FILE_NAME
    write_splits(make_splits(cases, 3), path)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.run_all", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="images and labels (PANTHER or nnU-Net layout)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", type=Path)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--config", type=Path)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="preprocessing processes")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pre_dir, run_dir, res_dir = args.out / "preprocessed", args.out / f"run_fold{args.fold}", args.out / "resources"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        _, cases, problems = preprocess.preprocess_dataset(args.data, pre_dir, args.workers)
        for msg in problems:
            print(f"skipped: {msg}", file=sys.stderr)
        split = choose_split(args.data, args.out, cases, args.split)
        train_args = ["--data", str(pre_dir), "--split", str(split), "--fold", str(args.fold), "--out", str(run_dir),
                      "--devices", str(args.devices), "--accelerator", args.accelerator]
        train_args += (["--config", str(args.config)] if args.config else []) + (["--set", *args.set] if args.set else [])
        result = train.train(train.parse_args(train_args + (["--resume"] if args.resume else [])))
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return 0  # DDP worker processes stop after training; rank 0 exports
        target = export.export(Path(result["best_checkpoint"]), pre_dir / STATS_FILE_NAME, res_dir)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {target} (best mean validation Dice {result['best_score']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
