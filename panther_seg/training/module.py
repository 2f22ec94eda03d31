"""The LightningModule: deep-supervised DiceCE, AdamW with warm-up + polynomial decay, and
sliding-window validation that stays on the device (``validation.py``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from monai.losses import DiceCELoss

from ..network import SegFormer3D

from ..config import CLASS_NAMES, PANCREAS, TUMOUR
from ..dice import dice
from ..inference.sliding_window import InferenceSettings, predict_logits
from .config import TrainConfig
from .data import item_seed

MONITOR = "val/dice_mean"
VALIDATIONS_FILE = "validations.csv"
SAMPLES_DIR = "samples"
TORCH_STREAM = 3  # domain tag of the per-epoch torch seed (data.py uses 1 and 2)


def sample_log_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"rank{rank}.jsonl"


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """One row, with the header when the file is new (a resumed run continues the same file)."""
    new = not path.is_file()
    with path.open("a") as f:
        if new:
            f.write(",".join(row) + "\n")
        f.write(",".join(str(v) for v in row.values()) + "\n")


def lr_factor(step: int, warmup: int, decay_end: int, power: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then (1 - progress) ** power down to 0 at ``decay_end``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(decay_end - warmup, 1)
    return max(1.0 - (step - warmup) / span, 0.0) ** power


def mean_dice_over_cases(rows: np.ndarray) -> tuple[float, float, int]:
    """Mean tumour and pancreas Dice over distinct cases, from (case index, tumour, pancreas) rows.

    Under DDP, Lightning's DistributedSampler repeats validation cases so that every process
    gets as many: a case scored twice must count once.
    """
    _, first = np.unique(rows[:, 0], return_index=True)
    if first.size == 0:
        return 0.0, 0.0, 0
    tumour, pancreas = rows[first, 1:].mean(0)
    return float(tumour), float(pancreas), int(first.size)


class SegmentationModule(L.LightningModule):
    def __init__(self, cfg: dict[str, Any], run: dict[str, Any] | None = None, run_dir: Path | None = None):
        super().__init__()
        self.cfg = cfg
        self.model_config = dict(cfg["model"])
        # flat constructor arguments: panther_seg.contract.checkpoint.load_checkpoint rebuilds the network from them;
        # the run (split, fold, cases) travels with the weights so that export needs nothing else
        self.save_hyperparameters({**self.model_config, "training_config": cfg, "run": run or {}})
        self.model = SegFormer3D(**self.model_config)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.run_dir = run_dir  # where the sample log and validations.csv go (none: not written)
        self.val_scores: list[torch.Tensor] = []
        self.last_val_metrics: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: TrainConfig, run: dict[str, Any] | None = None, run_dir: Path | None = None) -> "SegmentationModule":
        return cls(cfg.to_dict(), run, run_dir)

    def on_train_epoch_start(self) -> None:
        """Torch's own random state (anything random in the network) from (seed, epoch, rank):
        a run resumed at an epoch boundary continues as the uninterrupted one."""
        torch.manual_seed(item_seed(self.cfg["seed"], TORCH_STREAM, self.current_epoch, self.global_rank))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        label = batch["label"].long()  # uint8 on the way; the one-hot of the loss needs int64
        logits, aux = self.model(batch["image"])
        main = self.loss(logits, label)
        aux_loss = self.loss(aux, label)
        loss = main + self.cfg["aux_weight"] * aux_loss
        self.log_dict({"train/loss": loss, "train/loss_main": main, "train/loss_aux": aux_loss}, prog_bar=False, on_step=True, batch_size=batch["image"].shape[0])
        if self.run_dir is not None and self.cfg["sample_log"]:
            self.write_samples(batch)
        return loss

    def write_samples(self, batch: dict[str, torch.Tensor]) -> None:
        """One line per patch: where it came from and what was done to it (``sample_log``)."""
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        digest = batch["image"].float().flatten(1).sum(1).tolist()
        path = sample_log_path(self.run_dir, self.global_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            for i in range(batch["image"].shape[0]):
                f.write(json.dumps({
                    "rank": self.global_rank, "step": self.global_step, "epoch": int(batch["epoch"][i]), "position": int(batch["position"][i]),
                    "case_index": int(batch["case_index"][i]), "seed": int(batch["seed"][i]), "applied": int(batch["applied"][i]),
                    "centre": batch["centre"][i].tolist(), "lr": lr, "digest": digest[i],
                }) + "\n")

    def settings(self) -> InferenceSettings:
        return InferenceSettings(
            window=tuple(self.cfg["val_window"]),
            overlap=self.cfg["val_overlap"],
            mirror_axes=(0, 1, 2) if self.cfg["val_mirror"] else (),
            batch_size=self.cfg["val_batch_size"],
            device=str(self.device),
            fp16=False,  # Lightning's precision plugin already autocasts validation under mixed precision
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        volume, truth = batch["image"][0, 0], batch["label"][0, 0]
        prediction = predict_logits(self.model, volume, self.settings())[0].argmax(0)
        scores = torch.stack([dice(prediction == TUMOUR, truth == TUMOUR), dice(prediction == PANCREAS, truth == PANCREAS)]).double()
        self.val_scores.append(torch.cat([batch["index"].to(scores), scores]))
        if batch_idx == 0 and self.cfg["log_images"]:
            self.log_example(volume, truth, prediction)

    def on_validation_epoch_start(self) -> None:
        self.val_scores = []

    def on_validation_epoch_end(self) -> None:
        """Mean Dice over the validation cases of every process (DDP: gathered, each case once)."""
        local = torch.stack(self.val_scores) if self.val_scores else torch.zeros((0, 3), dtype=torch.float64, device=self.device)
        rows = self.all_gather(local).reshape(-1, 3).cpu().numpy()
        tumour, pancreas, cases = mean_dice_over_cases(rows)
        metrics = {"val/dice_tumour": tumour, "val/dice_pancreas": pancreas, MONITOR: (tumour + pancreas) / 2,
                   "val/cases": float(cases), "val/epoch": float(self.current_epoch)}
        self.last_val_metrics = metrics
        self.log_dict(metrics, prog_bar=True, sync_dist=True)  # equal on every process already: the mean changes nothing
        if self.run_dir is not None and self.global_rank == 0 and not self.trainer.sanity_checking:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            append_csv(Path(self.run_dir) / VALIDATIONS_FILE, {"epoch": self.current_epoch, "step": self.global_step, "lr": lr,
                                                                **{k.removeprefix("val/"): v for k, v in metrics.items() if k != "val/epoch"}})

    def log_example(self, volume_t: torch.Tensor, truth_t: torch.Tensor, prediction_t: torch.Tensor) -> None:
        """Image, truth and prediction on the slice with the most tumour (else pancreas), side by side."""
        logger = self.logger
        if logger is None or not hasattr(logger.experiment, "add_image") or self.global_rank != 0:
            return
        per_slice = (truth_t == TUMOUR).sum((1, 2)) * 1000 + (truth_t == PANCREAS).sum((1, 2))
        z = int(per_slice.argmax())
        volume, truth, prediction = (t[z].float().cpu().numpy() for t in (volume_t, truth_t, prediction_t))  # one slice leaves the device
        lo, hi = np.percentile(volume, (1, 99))
        image = np.clip((volume - lo) / max(hi - lo, 1e-6), 0, 1)
        scale = len(CLASS_NAMES) - 1
        panel = np.concatenate([image, truth / scale, prediction / scale], axis=1)
        logger.experiment.add_image("val/image_truth_prediction", panel[None].astype(np.float32), self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["validation_metrics"] = dict(self.last_val_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.last_val_metrics = dict(checkpoint.get("validation_metrics", {}))

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, c["warmup_steps"], c["decay_end_step"], c["poly_power"])
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
