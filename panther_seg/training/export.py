"""Export training checkpoints (one per fold) to one resources folder in the project's format.

``python -m panther_seg.training.export RUN_FOLD0/best.ckpt [RUN_FOLD1/best.ckpt ...]
--stats PREPROCESSED/mri_statistics.csv --out resources/`` replaces the checkpoints and
statistics in ``--out`` with ``fold<K>.pt`` per checkpoint (fp32 weights, constructor arguments,
class names, training orientation (identity), statistics, and its own provenance: data, split,
fold, cases, settings, code revisions, validation metrics, and the ensemble it belongs to), one
``mri_statistics.csv``, and ``SHA256SUMS``: the folder an ensemble of the folds is read from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from ..contract.checkpoint import ModelContract, load_checkpoint, save_resource
from ..config import SHA256_FILE_NAME, STATS_FILE_NAME, WINDOW
from ..errors import InputError
from ..contract.resources import write_resources
from ..contract.stats import read_stats_csv
from . import provenance

RUN_FIELDS = ("data", "split", "split_reason", "fold", "train_cases", "val_cases")


def resource_name(fold: int) -> str:
    return f"fold{fold}.pt"


def training_record(ckpt_path: Path) -> dict[str, Any]:
    """What the Lightning checkpoint (and the run folder beside it) say about the training."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files; load_checkpoint has vetted it already
        raise InputError(ckpt_path, f"cannot read checkpoint: {e.__class__.__name__}") from None
    hparams = ckpt.get("hyper_parameters", {}) or {}
    run_file = Path(ckpt_path).parent / "run.json"
    run_json = json.loads(run_file.read_text()) if run_file.is_file() else {}
    run = {**{k: run_json[k] for k in RUN_FIELDS if k in run_json}, **(hparams.get("run") or {})}
    if "fold" not in run:
        raise InputError(ckpt_path, "records no fold (not written by panther_seg.training.train, and no run.json beside it)")
    return {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "global_step": int(ckpt.get("global_step", 0)),
        "epoch": int(ckpt.get("epoch", 0)),
        "validation_metrics": dict(ckpt.get("validation_metrics", {})),
        "config": hparams.get("training_config", {}),
        "data": run,
        "seed": run_json.get("seed", (hparams.get("training_config") or {}).get("seed")),
        "training_git_revision": run_json.get("git_revision"),
        "training_machine": run_json.get("machine"),
    }


def export(ckpt_paths: Sequence[Path], stats_path: Path, out_dir: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write ``fold<K>.pt`` per checkpoint, the statistics and the sums to ``out_dir``; every other
    checkpoint there is removed, so the folder holds exactly this ensemble."""
    stats = read_stats_csv(stats_path)
    loaded = [load_checkpoint(Path(p)) for p in ckpt_paths]  # strict: the weights must rebuild the recorded network
    records = [training_record(Path(p)) for p in ckpt_paths]
    folds = [int(r["data"]["fold"]) for r in records]
    if len(set(folds)) != len(folds):
        raise InputError(ckpt_paths[0], f"several checkpoints of the same fold ({sorted(folds)}): one per fold")
    splits = {r["data"].get("split") for r in records}
    if len(splits) > 1:
        raise InputError(ckpt_paths[0], f"checkpoints of different splits ({', '.join(sorted(map(str, splits)))}) do not make one ensemble")
    names = [resource_name(f) for f in folds]
    ensemble = {"members": names, "folds": folds, "split": splits.pop()}
    writers = {}
    for name, record, model in zip(names, records, loaded):
        info = {**record, "ensemble": ensemble, "statistics_file": str(stats_path),
                "export_git_revision": provenance.git_revision(), "exported": provenance.now(), **(extra or {})}
        contract = ModelContract(window=tuple(record["config"].get("val_window", WINDOW)))  # the window it was validated with
        writers[name] = lambda tmp, model=model, info=info, contract=contract: save_resource(tmp, model.model, model.config, stats, contract, info)
    targets = write_resources(Path(out_dir), writers, Path(stats_path))
    return targets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+", help="Lightning checkpoints written by panther_seg.training.train, one per fold")
    p.add_argument("--stats", type=Path, required=True, help=f"the {STATS_FILE_NAME} the training data were preprocessed with")
    p.add_argument("--out", type=Path, required=True, help=f"folder for fold<K>.pt, {STATS_FILE_NAME} and {SHA256_FILE_NAME}")
    p.add_argument("--note", help="free text recorded in the provenance")
    p.add_argument("--evaluation", type=Path, help="JSON file (e.g. metrics_summary.json of panther_seg.evaluation on held-out cases) recorded in the provenance")
    args = p.parse_args(argv)
    try:
        extra: dict[str, Any] = {"note": args.note} if args.note else {}
        if args.evaluation:
            try:
                extra["evaluation"] = json.loads(args.evaluation.read_text())
            except (OSError, ValueError) as e:
                raise InputError(args.evaluation, f"cannot read: {e}") from None
        targets = export(args.checkpoints, args.stats, args.out, extra)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(t) for t in targets)}, {args.out / STATS_FILE_NAME} and {args.out / SHA256_FILE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
