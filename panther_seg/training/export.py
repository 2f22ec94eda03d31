"""Export a training checkpoint to the project's resource format.

``python -m panther_seg.training.export RUN_DIR/best.ckpt --stats PREPROCESSED/mri_statistics.csv
--out resources/`` replaces the checkpoint and statistics in ``--out`` with
``segformer3d.pt`` (fp32 weights, constructor arguments, class names, training orientation
(identity), statistics, provenance) and ``mri_statistics.csv``, then writes ``SHA256SUMS``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import ModelContract, load_checkpoint, save_resource, write_sha256sums
from ..config import CHECKPOINT_SUFFIXES, SHA256_FILE_NAME, STATS_FILE_NAME
from ..errors import InputError
from ..stats import read_stats_csv
from . import provenance

RESOURCE_NAME = "segformer3d.pt"


def training_record(ckpt_path: Path) -> dict[str, Any]:
    """What the Lightning checkpoint and its run folder say about the training."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hparams = ckpt.get("hyper_parameters", {}) or {}
    run_dir = Path(ckpt_path).parent
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    return {
        "checkpoint": Path(ckpt_path).name,
        "global_step": int(ckpt.get("global_step", 0)),
        "epoch": int(ckpt.get("epoch", 0)),
        "validation_metrics": dict(ckpt.get("validation_metrics", {})),
        "config": hparams.get("training_config", {}),
        "data": {k: run[k] for k in ("data", "split", "fold", "train_cases", "val_cases") if k in run},
        "seed": run.get("seed"),
        "training_git_revision": run.get("git_revision"),
        "training_machine": run.get("machine"),
    }


def export(ckpt_path: Path, stats_path: Path, out_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the resource, the statistics and the sums to ``out_dir`` (old checkpoints removed)."""
    stats = read_stats_csv(stats_path)
    loaded = load_checkpoint(ckpt_path)  # strict: the weights must rebuild the recorded network
    info = {
        **training_record(ckpt_path),
        "statistics_file": str(stats_path),
        "export_git_revision": provenance.git_revision(),
        "exported": provenance.now(),
        **(extra or {}),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / RESOURCE_NAME
    for old in out_dir.iterdir():
        if old.suffix in CHECKPOINT_SUFFIXES and old != target:
            old.unlink()
    save_resource(target, loaded.model, loaded.config, stats, ModelContract(), info)
    if Path(stats_path).resolve() != (out_dir / STATS_FILE_NAME).resolve():
        shutil.copyfile(stats_path, out_dir / STATS_FILE_NAME)
    write_sha256sums(out_dir)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="Lightning checkpoint written by panther_seg.training.train")
    p.add_argument("--stats", type=Path, required=True, help=f"the {STATS_FILE_NAME} the training data were preprocessed with")
    p.add_argument("--out", type=Path, required=True, help=f"folder for {RESOURCE_NAME}, {STATS_FILE_NAME} and {SHA256_FILE_NAME}")
    p.add_argument("--note", help="free text recorded in the provenance")
    p.add_argument("--evaluation", type=Path, help="JSON file (e.g. metrics_summary.json of panther_seg.evaluate on held-out cases) recorded in the provenance")
    args = p.parse_args(argv)
    try:
        extra: dict[str, Any] = {"note": args.note} if args.note else {}
        if args.evaluation:
            extra["evaluation"] = json.loads(args.evaluation.read_text())
        target = export(args.checkpoint, args.stats, args.out, extra)
    except (InputError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {target}, {args.out / STATS_FILE_NAME} and {args.out / SHA256_FILE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
