"""The LightningModule: deep-supervised DiceCE, AdamW with warm-up + polynomial decay, and
sliding-window validation with the inference code's own ``predict_probabilities``."""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from monai.losses import DiceCELoss

from model import SegFormer3D

from ..config import CLASS_NAMES, PANCREAS, TUMOUR
from ..sliding_window import InferenceSettings, predict_probabilities
from .config import TrainConfig

MONITOR = "val/dice_mean"


def lr_factor(step: int, warmup: int, decay_end: int, power: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then (1 - progress) ** power down to 0 at ``decay_end``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(decay_end - warmup, 1)
    return max(1.0 - (step - warmup) / span, 0.0) ** power


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (nothing to find, nothing found)."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, truth).sum()) / total


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
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        self.model_config = dict(cfg["model"])
        # flat constructor arguments: panther_seg.checkpoint.load_checkpoint rebuilds the network from them
        self.save_hyperparameters({**self.model_config, "training_config": cfg})
        self.model = SegFormer3D(**self.model_config)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.val_scores: list[tuple[float, float, float]] = []
        self.last_val_metrics: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "SegmentationModule":
        return cls(cfg.to_dict())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, aux = self.model(batch["image"])
        main = self.loss(logits, batch["label"])
        aux_loss = self.loss(aux, batch["label"])
        loss = main + self.cfg["aux_weight"] * aux_loss
        self.log_dict({"train/loss": loss, "train/loss_main": main, "train/loss_aux": aux_loss}, prog_bar=False, on_step=True, batch_size=batch["image"].shape[0])
        return loss

    def settings(self) -> InferenceSettings:
        return InferenceSettings(
            window=tuple(self.cfg["val_window"]),
            overlap=self.cfg["val_overlap"],
            mirror_axes=(0, 1, 2) if self.cfg["val_mirror"] else (),
            batch_size=self.cfg["val_batch_size"],
            device=str(self.device),
            fp16=self.device.type == "cuda" and "16" in str(self.trainer.precision),
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        volume = batch["image"][0, 0].float().cpu().numpy()
        truth = batch["label"][0, 0].cpu().numpy()
        prediction = predict_probabilities(self.model, torch.from_numpy(volume), self.settings()).argmax(0).cpu().numpy()
        scores = (dice(prediction == TUMOUR, truth == TUMOUR), dice(prediction == PANCREAS, truth == PANCREAS))
        self.val_scores.append((float(batch["index"][0]), *scores))
        if batch_idx == 0 and self.cfg["log_images"]:
            self.log_example(volume, truth, prediction)

    def on_validation_epoch_start(self) -> None:
        self.val_scores = []

    def on_validation_epoch_end(self) -> None:
        """Mean Dice over the validation cases of every process (DDP: gathered, each case once)."""
        local = torch.tensor(self.val_scores, dtype=torch.float64, device=self.device).reshape(-1, 3)
        rows = self.all_gather(local).reshape(-1, 3).cpu().numpy()
        tumour, pancreas, cases = mean_dice_over_cases(rows)
        metrics = {"val/dice_tumour": tumour, "val/dice_pancreas": pancreas, MONITOR: (tumour + pancreas) / 2,
                   "val/cases": float(cases)}
        self.last_val_metrics = metrics
        self.log_dict(metrics, prog_bar=True)

    def log_example(self, volume: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Image, truth and prediction on the slice with the most tumour (else pancreas), side by side."""
        logger = self.logger
        if logger is None or not hasattr(logger.experiment, "add_image") or self.global_rank != 0:
            return
        per_slice = (truth == TUMOUR).sum((1, 2)) * 1000 + (truth == PANCREAS).sum((1, 2))
        z = int(per_slice.argmax())
        lo, hi = np.percentile(volume[z], (1, 99))
        image = np.clip((volume[z] - lo) / max(hi - lo, 1e-6), 0, 1)
        scale = len(CLASS_NAMES) - 1
        panel = np.concatenate([image, truth[z] / scale, prediction[z] / scale], axis=1)
        logger.experiment.add_image("val/image_truth_prediction", panel[None].astype(np.float32), self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["validation_metrics"] = dict(self.last_val_metrics)

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, c["warmup_steps"], c["decay_end_step"], c["poly_power"])
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
