"""Preprocess, train every fold, and export them together: what the training image runs.

``python -m panther_seg.training.run_all --data DATA --out OUT [--split original|SPLIT_JSON]
[--folds all|K[,K...]] [--config cfg.yaml] [--set key=value ...] [--devices N]
[--accelerator cpu|gpu] [--workers N] [--resume]``

Writes ``OUT/preprocessed/`` (case folders + mri_statistics.csv), ``OUT/run_fold<K>/`` per fold
(checkpoints, logs, config) and ``OUT/resources/`` (``fold<K>.pt`` per fold, one
mri_statistics.csv, SHA256SUMS: one folder for the ensemble of the folds). Without ``--split``:
the original model's split (one fold) for PANTHER Task 1 data, else ``DATA/splits_final.json``,
else 3 folds by case id written to ``OUT/splits_final.json``. Each fold trains in its own
process (its own DDP group with ``--devices N``); ``--resume`` skips finished folds and
continues the interrupted one from its ``last.ckpt``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ..config import PROJECT_ROOT, STATS_FILE_NAME
from ..errors import InputError
from . import export, preprocess
from .splits import choose_split, read_splits
from .train import BEST, LAST

RESULT_FILE = "result.json"


def parse_folds(text: str, available: int, split: Path) -> list[int]:
    if text == "all":
        return list(range(available))
    try:
        folds = sorted({int(f) for f in text.split(",")})
    except ValueError:
        raise InputError("--folds", f"expected 'all' or fold numbers like 0,2, got '{text}'") from None
    bad = [f for f in folds if not 0 <= f < available]
    if bad:
        raise InputError(split, f"no fold {bad[0]} (the split has {available})")
    return folds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.run_all", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="images and labels (PANTHER or nnU-Net layout)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", help="'original' or a split file in the organisers' format")
    p.add_argument("--folds", default="all", help="'all' (default) or a comma-separated list of fold numbers")
    p.add_argument("--config", type=Path)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="preprocessing processes")
    p.add_argument("--resume", action="store_true", help="skip finished folds, continue an interrupted one")
    return p.parse_args(argv)


def train_fold(args: argparse.Namespace, pre_dir: Path, split: Path, reason: str, fold: int, run_dir: Path) -> int:
    """Train one fold in a fresh process (``python -m panther_seg.training.train``); its exit status."""
    if args.resume and (run_dir / RESULT_FILE).is_file():
        print(f"fold {fold}: finished already ({run_dir / RESULT_FILE})")
        return 0
    command = [sys.executable, "-m", "panther_seg.training.train", "--data", str(pre_dir), "--split", str(split), "--split-reason", reason,
               "--fold", str(fold), "--out", str(run_dir), "--devices", str(args.devices), "--accelerator", args.accelerator]
    command += (["--config", str(args.config)] if args.config else []) + (["--set", *args.set] if args.set else [])
    command += ["--resume"] if args.resume and (run_dir / f"{LAST}.ckpt").is_file() else []
    print(f"fold {fold}: training in {run_dir}", flush=True)
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": path}).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pre_dir, res_dir = args.out / "preprocessed", args.out / "resources"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        _, cases, problems = preprocess.preprocess_dataset(args.data, pre_dir, args.workers)
        for msg in problems:
            print(f"skipped: {msg}", file=sys.stderr)
        split, reason = choose_split(args.split, cases, [args.data], args.out)
        folds = parse_folds(args.folds, len(read_splits(split)), split)
        print(f"split: {split} ({reason}); folds {', '.join(map(str, folds))}", flush=True)
        runs = {k: args.out / f"run_fold{k}" for k in folds}
        for fold, run_dir in runs.items():
            status = train_fold(args, pre_dir, split, reason, fold, run_dir)
            if status:
                return status  # the training process has said why
            if not json.loads((run_dir / RESULT_FILE).read_text()).get("best_checkpoint"):
                raise InputError(run_dir, "training stopped before its first validation (max_steps below one epoch): no best checkpoint")
        targets = export.export([run_dir / f"{BEST}.ckpt" for run_dir in runs.values()], pre_dir / STATS_FILE_NAME, res_dir)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {', '.join(str(t) for t in targets)} with {res_dir / STATS_FILE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
