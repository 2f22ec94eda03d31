"""Train SegFormer3D on preprocessed cases (PyTorch Lightning + MONAI), the original recipe by default.

``python -m panther_seg.training.train --data PREPROCESSED_DIR --out RUN_DIR [--split original|SPLIT_JSON]
[--fold K] [--config cfg.yaml] [--set key=value ...] [--devices N] [--accelerator cpu|gpu]
[--resume] [--benchmark-data STEPS]``

Writes ``RUN_DIR/best.ckpt`` (best mean validation Dice of tumour and pancreas), ``last.ckpt``
(every epoch), ``config.yaml`` (every hyperparameter), ``run.json`` (data, split, cases, seed,
code revision, machine), ``result.json``, ``validations.csv`` (one row per validation) and
TensorBoard logs in ``RUN_DIR/logs``. ``--devices N`` > 1 uses DDP (gloo on CPU): each process takes its share of
every step's patches, so epochs, validations, patience and the learning-rate schedule are those
of one process. Without ``--split``: the original model's split for PANTHER Task 1 data, else
``splits_final.json`` beside the data, else 3 folds by case id.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from monai.utils import set_determinism

from ..errors import InputError
from ..system.gpu_check import check_once, dtypes_for_precision
from . import provenance, store
from .config import TrainConfig, load_config, save_config
from .data import CaseSource, EpochKeyedSampling, PatchData, available_cases, steps_per_epoch, train_loader, worker_count
from .module import MONITOR, SAMPLES_DIR, VALIDATIONS_FILE, SegmentationModule
from .splits import choose_split, read_split

BEST, LAST = "best", "last"


def is_main_process() -> bool:
    """Rank 0 (Lightning's DDP launcher gives the other processes their rank in the environment)."""
    return rank_zero_only.rank == 0


def uses_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def precision_for(cfg: TrainConfig, accelerator: str) -> str:
    """Lightning's precision string; ``mixed`` is bf16 where the GPU computes it natively, else fp16."""
    gpu = uses_gpu(accelerator)
    bf16 = gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if cfg.precision == "mixed":
        return "bf16-mixed" if bf16 or not gpu else "16-mixed"
    if cfg.precision == "bf16-mixed" and gpu and not bf16:
        raise InputError("--set precision", f"bf16-mixed: {torch.cuda.get_device_name(0)} has no native bf16 (use 16-mixed or mixed)")
    if cfg.precision == "16-mixed" and not gpu:
        raise InputError("--set precision", "16-mixed needs a GPU (on CPU: 32-true or bf16-mixed)")
    return cfg.precision


def set_determinism_for(cfg: TrainConfig) -> None:
    """The original seeds Lightning and MONAI and makes cuDNN deterministic; without
    ``deterministic``, cuDNN picks the fastest kernels for the fixed patch shape instead."""
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    set_determinism(seed=cfg.seed)
    torch.backends.cudnn.deterministic = cfg.deterministic
    torch.backends.cudnn.benchmark = not cfg.deterministic


def record_run(out: Path, args: argparse.Namespace, cfg: TrainConfig, run: dict[str, Any], extra: dict[str, Any]) -> None:
    """The run's inputs, written by rank 0 only (a resumed run keeps the original record)."""
    save_config(cfg, out / "config.yaml")
    path = out / "run.json"
    if args.resume and path.is_file():
        old = json.loads(path.read_text())
        info = {**old, "resumed": [*old.get("resumed", []), {"at": provenance.now(), "command": sys.argv, **extra}]}
    else:
        info = {**run, "seed": cfg.seed, "git_revision": provenance.git_revision(), "machine": provenance.machine(),
                "started": provenance.now(), "command": sys.argv, **extra}
    path.write_text(json.dumps(info, indent=2) + "\n")


def trim_logs(out: Path, checkpoint: Path) -> None:
    """Drop what was logged after the checkpoint's epoch: the resumed run logs those epochs again."""
    epoch = int(torch.load(checkpoint, map_location="cpu", weights_only=True).get("epoch", -1))
    for path in [out / VALIDATIONS_FILE, *sorted((out / SAMPLES_DIR).glob("rank*.jsonl"))]:
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        if path.suffix == ".csv":
            kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= epoch]
        else:
            kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epoch]
        path.write_text("".join(kept))


def benchmark(cfg: TrainConfig, source: CaseSource, steps: int, train_steps: int, accelerator: str) -> dict[str, Any]:
    """Steps/s of the data pipeline alone, then of data + forward/backward/optimiser step, on the
    training device with the run's precision, workers and cuDNN settings."""
    device = torch.device("cuda" if uses_gpu(accelerator) else "cpu")
    precision = precision_for(cfg, accelerator)
    if device.type == "cuda":
        check_once(dtypes_for_precision(precision))
    workers = worker_count(cfg.num_workers, 1)
    loader = train_loader(cfg, source, 0, 1, workers, pin=device.type == "cuda")
    module = SegmentationModule.from_config(cfg).to(device)
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp_dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    amp = precision != "32-true"
    scaler = torch.amp.GradScaler(enabled=precision == "16-mixed")

    def run(with_network: bool, steps: int) -> float:
        epoch, it, done, start = 0, iter(loader), -1, 0.0
        while done < steps:
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                loader.sampler.set_epoch(epoch)
                it = iter(loader)
                batch = next(it)
            if with_network:
                x = batch["image"].to(device, non_blocking=True)
                y = batch["label"].to(device, non_blocking=True).long()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    logits, aux = module.model(x)
                    loss = module.loss(logits, y) + cfg.aux_weight * module.loss(aux, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            done += 1
            if done == 0:  # the first batch pays for worker start-up (and cuDNN's kernel search)
                start = time.perf_counter()
        return steps / (time.perf_counter() - start)

    module.train()
    data_rate = run(False, steps)
    train_rate = run(True, train_steps)
    return {"data_steps_per_s": round(data_rate, 3), "train_steps_per_s": round(train_rate, 3), "data_steps": steps, "train_steps": train_steps,
            "batch_size": cfg.batch_size, "window": list(cfg.window), "num_workers": workers, "device": str(device),
            "precision": precision, "cudnn_benchmark": not cfg.deterministic, "torch_threads": torch.get_num_threads(),
            "machine": provenance.machine()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m panther_seg.training.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by panther_seg.training.preprocess")
    p.add_argument("--split", help="'original' (the original model's split) or a split file in the organisers' format; default: see above")
    p.add_argument("--split-reason", help=argparse.SUPPRESS)  # run_all says why it chose the split
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", type=Path, help="YAML/JSON file of settings")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override settings (after --config)")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--resume", action="store_true", help=f"continue from RUN_DIR/{LAST}.ckpt")
    p.add_argument("--benchmark-data", type=int, metavar="STEPS", help="measure steps/s of the data pipeline alone, then of the full training step, and exit")
    p.add_argument("--benchmark-train-steps", type=int, metavar="N", help="training steps of the benchmark (default: STEPS)")
    return p.parse_args(argv)


def preprocessed_cases(data: Path) -> list[str]:
    if not Path(data).is_dir():
        raise InputError(data, "preprocessed data folder does not exist")
    return sorted(p.name for p in Path(data).iterdir() if store.is_case(p))


def train(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.config, args.set)
    set_determinism_for(cfg)
    out = Path(args.out)
    main = is_main_process()
    split, reason = choose_split(args.split, preprocessed_cases(args.data), [args.data], out)
    reason = args.split_reason or reason
    train_cases, val_cases = read_split(split, args.fold)
    if args.benchmark_data:
        source = CaseSource(available_cases(args.data, train_cases, "training"))
        return benchmark(cfg, source, args.benchmark_data, args.benchmark_train_steps or args.benchmark_data, args.accelerator)
    if cfg.batch_size % args.devices:
        raise InputError("--devices", f"batch_size {cfg.batch_size} cannot be shared by {args.devices} processes: make it a multiple of --devices")
    resume = out / f"{LAST}.ckpt"
    if args.resume and not resume.is_file():
        raise InputError(resume, "nothing to resume from")
    if not args.resume and resume.is_file():
        raise InputError(out, f"holds a run already ({LAST}.ckpt): use --resume, or another --out")
    gpu = uses_gpu(args.accelerator)
    precision = precision_for(cfg, args.accelerator)
    if gpu:
        check_once(dtypes_for_precision(precision))
    data = PatchData(cfg, args.data, train_cases, val_cases, args.devices, pin=gpu)
    run = {"data": str(Path(args.data).resolve()), "split": str(split.resolve()), "split_reason": reason, "fold": args.fold,
           "train_cases": [f.name for f in data.train_folders], "val_cases": [f.name for f in data.val_folders]}
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if args.resume:
            trim_logs(out, resume)
        else:
            shutil.rmtree(out / SAMPLES_DIR, ignore_errors=True)
            (out / VALIDATIONS_FILE).unlink(missing_ok=True)
        record_run(out, args, cfg, run, {"devices": args.devices, "precision": precision,
                                         "steps_per_epoch": steps_per_epoch(len(data.train_folders), cfg)})
    best = ModelCheckpoint(dirpath=out, filename=BEST, monitor=MONITOR, mode="max", save_top_k=1, auto_insert_metric_name=False,
                           enable_version_counter=False, save_on_train_epoch_end=False)
    stop = EarlyStopping(MONITOR, min_delta=cfg.early_stop_min_delta, patience=cfg.early_stop_patience, mode="max", check_on_train_epoch_end=False)
    # last.ckpt after every epoch (after its validation): what --resume continues from
    last = ModelCheckpoint(dirpath=out, filename=LAST, monitor=None, save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True,
                           enable_version_counter=False)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        precision=precision,
        sync_batchnorm=cfg.sync_batchnorm and gpu and args.devices > 1,  # torch's SyncBatchNorm runs on GPUs only
        benchmark=not cfg.deterministic,
        use_distributed_sampler=False,  # data.py shares every step between the processes itself
        max_steps=cfg.max_steps,
        max_epochs=-1,
        check_val_every_n_epoch=cfg.val_every_n_epochs,
        gradient_clip_val=cfg.grad_clip,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(out, name="logs", version=""),
        callbacks=[EpochKeyedSampling(), best, last, stop, LearningRateMonitor("step")],
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=sys.stderr.isatty(),
        default_root_dir=out,
    )
    module = SegmentationModule.from_config(cfg, run, out)
    trainer.fit(module, datamodule=data, ckpt_path=resume if args.resume else None)
    result = {
        "best_checkpoint": best.best_model_path or None,  # none when training stopped before its first validation
        "best_score": None if best.best_model_score is None else float(best.best_model_score),
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "stopped_early": stop.stopped_epoch > 0,
        "finished": provenance.now(),
    }
    if trainer.is_global_zero:
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # config.yaml and run.json are there
    args = parse_args(argv)
    try:
        result = train(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if is_main_process():
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
