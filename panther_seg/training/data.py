"""Training data: memory-mapped preprocessed cases, one pass over the training cases per epoch,
patches centred by class, and the original recipe's augmentations (MONAI transforms).

Randomness is keyed to the data, not to processes. Epoch ``e`` visits the cases in a permutation
drawn from (seed, e); the patch at position ``p`` of that epoch is cropped and augmented with a
random state drawn from (seed, e, p). Each DDP process takes its own share of every step's
positions, so processes never repeat each other's transforms; the patches of an epoch do not
depend on the number of processes or data-loader workers; and a run resumed at an epoch boundary
draws exactly the patches the uninterrupted run would have drawn.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from monai import transforms as T
from monai.transforms import RandomizableTransform
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import CLASS_NAMES
from ..errors import InputError
from . import store
from .config import AUTO, Augmentation, TrainConfig

PERMUTATION, AUGMENTATION = 1, 2  # domain tags: the two uses of the seed never share a stream
MAX_AUTO_WORKERS = 16


def item_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that depends on every key (NumPy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def available_cases(data_dir: Path, cases: Sequence[str], role: str) -> list[Path]:
    """The preprocessed folders of ``cases``; missing ones are reported, none at all is an error."""
    folders = [store.case_dir(data_dir, c) for c in cases]
    missing = [f.name for f in folders if not store.is_case(f)]
    if missing:
        warnings.warn(f"{len(missing)} {role} case(s) of the split are not in {data_dir}: {', '.join(missing[:5])}", stacklevel=2)
    found = [f for f in folders if store.is_case(f)]
    if not found:
        raise InputError(data_dir, f"none of the split's {role} cases is preprocessed there")
    return found


class CaseSource:
    """Cases memory-mapped on first use, in each process that reads them (a data-loader worker
    started by 'spawn' gets the folder list, not a copy of the arrays)."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = list(folders)
        self.cases: list[dict[str, Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"folders": self.folders, "cases": None}

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.cases is None:
            self.cases = [store.open_case(f) for f in self.folders]
        return dict(self.cases[i])


def train_transforms(cfg: TrainConfig) -> T.Compose:
    """Pad, crop a patch centred by class, then augment (spatial first, then intensity, then mirror)."""
    a: Augmentation = cfg.aug
    keys, img = ["image", "label"], "image"
    r = a.rotate_range
    gamma = [
        T.RandAdjustContrastd(img, prob=a.gamma_prob * (1 - a.gamma_inverted_fraction), gamma=a.gamma_range, retain_stats=a.gamma_retain_stats),
        T.RandAdjustContrastd(img, prob=a.gamma_prob * a.gamma_inverted_fraction, gamma=a.gamma_range, invert_image=True, retain_stats=a.gamma_retain_stats),
    ]
    return T.Compose([
        T.SpatialPadd(keys, spatial_size=cfg.window),
        T.RandCropByLabelClassesd(
            keys, label_key="label", spatial_size=cfg.window, ratios=list(cfg.class_ratios), num_classes=len(CLASS_NAMES),
            num_samples=1, image_key=img, image_threshold=cfg.image_threshold, warn=False,
        ),
        T.RandRotated(keys, range_x=r, range_y=r, range_z=r, prob=a.rotate_prob, mode=("bilinear", "nearest"), padding_mode=a.rotate_padding),
        T.RandZoomd(keys, prob=a.zoom_prob, min_zoom=a.zoom_range[0], max_zoom=a.zoom_range[1], mode=("trilinear", "nearest"), padding_mode=a.zoom_padding),
        T.RandGaussianNoised(img, prob=a.noise_prob, std=a.noise_std),
        T.RandGaussianSmoothd(img, sigma_x=a.smooth_sigma, sigma_y=a.smooth_sigma, sigma_z=a.smooth_sigma, prob=a.smooth_prob),
        T.RandScaleIntensityd(img, factors=a.scale_intensity, prob=a.scale_intensity_prob),
        T.RandScaleIntensityFixedMeand(
            img, factors=(a.contrast_range[0] - 1, a.contrast_range[1] - 1), fixed_mean=a.contrast_fixed_mean, preserve_range=True, prob=a.contrast_prob,
        ),
        T.RandSimulateLowResolutiond(img, prob=a.low_res_prob, zoom_range=a.low_res_zoom),
        *gamma,
        *(T.RandFlipd(keys, prob=a.mirror_prob, spatial_axis=axis) for axis in range(3)),
        T.SelectItemsd(keys),
        T.EnsureTyped(keys, track_meta=False),
    ])


def steps_per_epoch(cases: int, cfg: TrainConfig) -> int:
    """Optimiser steps per epoch: every case ``case_repeats`` times, in full steps of ``batch_size``."""
    return math.ceil(cases * cfg.case_repeats / cfg.batch_size)


class EpochSampler(Sampler):
    """This process's share of each epoch: yields (epoch, position, case index).

    The epoch is a permutation of ``cases * repeats`` visits, extended (wrapping round, with other
    augmentations) to whole steps of ``batch_size``. Step ``s`` covers positions
    ``s * batch_size ...`` and process ``r`` of ``world`` takes the ``r``-th contiguous block
    of ``batch_size / world`` of them: the same steps, patches and order for any ``world``.
    """

    def __init__(self, cases: int, repeats: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} cannot be shared by {world} processes: make it a multiple of --devices")
        self.cases, self.repeats, self.batch_size, self.seed = cases, repeats, batch_size, seed
        self.rank, self.world, self.epoch = rank, world, 0
        self.steps = math.ceil(cases * repeats / batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set before every epoch to the trainer's epoch (``EpochKeyedSampling``)."""
        self.epoch = epoch

    def visits(self, epoch: int) -> np.ndarray:
        """Case index of every position of the epoch (all processes)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, PERMUTATION, epoch]))
        order = np.tile(np.arange(self.cases), self.repeats)[rng.permutation(self.cases * self.repeats)]
        return order[np.arange(self.steps * self.batch_size) % order.size]

    def positions(self) -> list[int]:
        share = self.batch_size // self.world
        return [s * self.batch_size + self.rank * share + j for s in range(self.steps) for j in range(share)]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        visits = self.visits(self.epoch)
        return iter([(self.epoch, p, int(visits[p])) for p in self.positions()])

    def __len__(self) -> int:
        return self.steps * self.batch_size // self.world


class PatchDataset(Dataset):
    """One augmented patch per (epoch, position, case) from ``EpochSampler``, with what made it."""

    def __init__(self, source: CaseSource, transform: T.Compose, seed: int):
        self.source, self.transform, self.seed = source, transform, seed
        self.random = [t for t in transform.transforms if isinstance(t, RandomizableTransform)]
        self.cropper = next(t for t in transform.transforms if isinstance(t, T.RandCropByLabelClassesd)).cropper

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        epoch, position, case = key
        seed = item_seed(self.seed, AUGMENTATION, epoch, position)
        self.transform.set_random_state(seed=seed)
        out = self.transform(self.source[case])
        out = out[0] if isinstance(out, list) else out
        applied = sum(1 << i for i, t in enumerate(self.random) if t._do_transform)
        return {
            "image": out["image"].float(), "label": out["label"].to(torch.uint8),  # labels travel as uint8
            "case_index": case, "epoch": epoch, "position": position, "seed": seed, "applied": applied,
            "centre": torch.as_tensor(self.cropper.centers[0], dtype=torch.int64),
        }


class ShardSampler(Sampler):
    """Validation cases ``rank, rank + world, ...``, padded by wrapping round so that every
    process scores as many (the Dice is then counted once per distinct case)."""

    def __init__(self, cases: int, rank: int = 0, world: int = 1):
        self.indices = [i % cases for i in range(rank, math.ceil(cases / world) * world, world)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class CaseDataset(Dataset):
    """Whole preprocessed cases, for sliding-window validation."""

    def __init__(self, source: CaseSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.source[i]
        return {"image": torch.from_numpy(np.asarray(case["image"])), "label": torch.from_numpy(np.asarray(case["label"])),
                "case": case["case"], "index": i}


def worker_count(setting: int | str, processes: int) -> int:
    """``auto``: the CPUs this process may use, shared by the processes of the machine, less one
    for the training loop itself (at least one worker, at most 16)."""
    if setting != AUTO:
        return int(setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cpus // max(processes, 1) - 1))


def train_loader(cfg: TrainConfig, source: CaseSource, rank: int, world: int, workers: int, pin: bool) -> DataLoader:
    sampler = EpochSampler(len(source), cfg.case_repeats, cfg.batch_size, cfg.seed, rank, world)
    return DataLoader(
        PatchDataset(source, train_transforms(cfg), cfg.seed), batch_size=cfg.batch_size // world, sampler=sampler,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=pin, drop_last=False,
    )


class EpochKeyedSampling(L.Callback):
    """Gives the sampler the trainer's epoch before every epoch: the number the patches are keyed
    to, also after a resume (where Lightning's own ``set_epoch`` count can run one ahead)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(trainer.current_epoch)


class PatchData(L.LightningDataModule):
    """Opens the cases in each process (``setup``) and builds its share of the loaders."""

    def __init__(self, cfg: TrainConfig, data_dir: Path, train_cases: list[str], val_cases: list[str], processes: int, pin: bool):
        super().__init__()
        self.cfg, self.pin, self.processes = cfg, pin, processes
        self.train_folders = available_cases(data_dir, train_cases, "training")
        self.val_folders = available_cases(data_dir, val_cases, "validation")
        self.train_source: CaseSource | None = None
        self.val_source: CaseSource | None = None

    def setup(self, stage: str) -> None:
        self.train_source = CaseSource(self.train_folders)
        self.val_source = CaseSource(self.val_folders)

    def train_dataloader(self) -> DataLoader:
        assert self.train_source is not None
        workers = worker_count(self.cfg.num_workers, self.processes)
        return train_loader(self.cfg, self.train_source, self.trainer.global_rank, self.trainer.world_size, workers, self.pin)

    def val_dataloader(self) -> DataLoader:
        assert self.val_source is not None
        sampler = ShardSampler(len(self.val_source), self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(CaseDataset(self.val_source), batch_size=1, sampler=sampler, num_workers=0, pin_memory=self.pin)
