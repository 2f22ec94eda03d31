"""Train SegFormer3D on preprocessed cases (PyTorch Lightning + MONAI).

``python -m panther_seg.training.train --data PREPROCESSED_DIR --split SPLIT_JSON --fold K
--out RUN_DIR [--config cfg.yaml] [--set key=value ...] [--devices N] [--accelerator cpu|gpu]
[--resume] [--benchmark-data N]``

Writes ``RUN_DIR/best.ckpt`` (best mean validation Dice of tumour and pancreas), ``last.ckpt``,
``config.yaml`` (every hyperparameter), ``run.json`` (data, split, cases, seed, code revision,
machine), ``result.json`` and TensorBoard logs in ``RUN_DIR/logs``. ``--devices N`` > 1 uses DDP
(gloo on CPU) with no other change.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from monai.data import DataLoader

from ..errors import InputError
from . import provenance
from .config import TrainConfig, load_config, save_config
from .data import CaseDataset, CaseSource, PatchDataset, available_cases, seed_worker, train_transforms
from .splits import read_split
from .module import MONITOR, SegmentationModule

BEST, LAST = "best", "last"


def build_loaders(cfg: TrainConfig, data_dir: Path, train_cases: list[str], val_cases: list[str], pin: bool) -> tuple[DataLoader, DataLoader]:
    transform = train_transforms(cfg)
    transform.set_random_state(seed=cfg.seed)
    train = PatchDataset(
        CaseSource(available_cases(data_dir, train_cases, "training"), cfg.cache, with_indices=True),
        transform,
        cfg.steps_per_validation * cfg.batch_size,
    )
    val = CaseDataset(CaseSource(available_cases(data_dir, val_cases, "validation"), cfg.cache, with_indices=False))
    workers = cfg.num_workers
    train_loader = DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, worker_init_fn=seed_worker,
        persistent_workers=workers > 0, pin_memory=pin, drop_last=True,
    )
    return train_loader, DataLoader(val, batch_size=1, shuffle=False, num_workers=0)


def precision_for(cfg: TrainConfig, accelerator: str) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "16-mixed" if gpu else "32-true"


def record_run(out: Path, args: argparse.Namespace, cfg: TrainConfig, train_cases: list[str], val_cases: list[str]) -> None:
    """The run's inputs, written once (a resumed run keeps the original record)."""
    save_config(cfg, out / "config.yaml")
    info = {
        "data": str(Path(args.data).resolve()),
        "split": str(Path(args.split).resolve()),
        "fold": args.fold,
        "train_cases": train_cases,
        "val_cases": val_cases,
        "seed": cfg.seed,
        "git_revision": provenance.git_revision(),
        "machine": provenance.machine(),
        "started": provenance.now(),
        "command": sys.argv,
    }
    path = out / "run.json"
    if args.resume and path.is_file():
        info = {**json.loads(path.read_text()), "resumed": [*json.loads(path.read_text()).get("resumed", []), provenance.now()]}
    path.write_text(json.dumps(info, indent=2) + "\n")


def benchmark(cfg: TrainConfig, loader: DataLoader, steps: int, accelerator: str) -> dict[str, Any]:
    """Steps/s of data loading alone, then of data loading + forward/backward/optimiser step."""
    device = torch.device("cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu")
    module = SegmentationModule.from_config(cfg).to(device)
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = device.type == "cuda" and "16" in precision_for(cfg, accelerator)
    scaler = torch.amp.GradScaler(enabled=amp)

    def run(with_network: bool) -> float:
        it = iter(loader)
        done, start = -1, 0.0
        while done < steps:
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            if with_network:
                x, y = batch["image"].to(device), batch["label"].to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    logits, aux = module.model(x)
                    loss = module.loss(logits, y) + cfg.aux_weight * module.loss(aux, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            done += 1
            if done == 0:  # the first batch pays for worker start-up
                start = time.perf_counter()
        return steps / (time.perf_counter() - start)

    module.train()
    result = {"data_steps_per_s": run(False), "train_steps_per_s": run(True), "batch_size": cfg.batch_size,
              "window": list(cfg.window), "num_workers": cfg.num_workers, "device": str(device), "machine": provenance.machine()}
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by panther_seg.training.preprocess")
    p.add_argument("--split", type=Path, required=True, help="split file in the organisers' format")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", type=Path, help="YAML/JSON file of settings")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override settings (after --config)")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--resume", action="store_true", help=f"continue from RUN_DIR/{LAST}.ckpt")
    p.add_argument("--benchmark-data", type=int, metavar="STEPS", help="measure steps/s (data alone, then with the network) and exit")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.config, args.set)
    L.seed_everything(cfg.seed, workers=True)
    train_cases, val_cases = read_split(args.split, args.fold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = args.accelerator == "gpu" or (args.accelerator == "auto" and torch.cuda.is_available())
    train_loader, val_loader = build_loaders(cfg, args.data, train_cases, val_cases, pin=gpu)
    if args.benchmark_data:
        return benchmark(cfg, train_loader, args.benchmark_data, args.accelerator)
    resume = out / f"{LAST}.ckpt"
    if args.resume and not resume.is_file():
        raise InputError(resume, "nothing to resume from")
    record_run(out, args, cfg, train_cases, val_cases)
    best = ModelCheckpoint(dirpath=out, filename=BEST, monitor=MONITOR, mode="max", save_last=True, auto_insert_metric_name=False, enable_version_counter=False)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        precision=precision_for(cfg, args.accelerator),
        max_steps=cfg.max_steps,
        max_epochs=-1,
        gradient_clip_val=cfg.grad_clip,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(out, name="logs", version=""),
        callbacks=[best, EarlyStopping(MONITOR, min_delta=cfg.early_stop_min_delta, patience=cfg.early_stop_patience, mode="max", check_on_train_epoch_end=False), LearningRateMonitor("step")],
        log_every_n_steps=min(50, cfg.steps_per_validation),
        enable_progress_bar=sys.stderr.isatty(),
        default_root_dir=out,
    )
    module = SegmentationModule.from_config(cfg)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume if args.resume else None)
    result = {
        "best_checkpoint": str(out / f"{BEST}.ckpt"),
        "best_score": None if best.best_model_score is None else float(best.best_model_score),
        "steps": trainer.global_step,
        "finished": provenance.now(),
    }
    if trainer.is_global_zero:
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    args = parse_args(argv)
    try:
        result = train(args)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
