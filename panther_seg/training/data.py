"""Training data: preprocessed cases (``<case>.npz``), splits by case id, patches sampled by
class, and the nnU-Net-like augmentations (MONAI transforms)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai import transforms as T
from torch.utils.data import Dataset

from ..config import CLASS_NAMES
from ..errors import InputError
from .config import Augmentation, TrainConfig

MAX_INDICES_PER_CLASS = 200_000  # candidate patch centres kept per class (memory)


def available_cases(data_dir: Path, cases: Sequence[str], role: str) -> list[Path]:
    """The preprocessed files of ``cases``; missing ones are reported, none at all is an error."""
    paths = [Path(data_dir) / f"{c}.npz" for c in cases]
    missing = [p.stem for p in paths if not p.is_file()]
    if missing:
        warnings.warn(f"{len(missing)} {role} case(s) of the split are not in {data_dir}: {', '.join(missing[:5])}", stacklevel=2)
    found = [p for p in paths if p.is_file()]
    if not found:
        raise InputError(data_dir, f"none of the split's {role} cases is preprocessed there")
    return found


def load_case(path: Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {"image": f["image"].astype(np.float32), "label": f["label"].astype(np.uint8), "case": path.stem}


class CaseSource:
    """Cases loaded lazily (or all at once and kept, when ``cache``), with their class indices."""

    def __init__(self, paths: Sequence[Path], cache: bool, with_indices: bool):
        self.paths = list(paths)
        self.indices = (
            T.ClassesToIndicesd("label", num_classes=len(CLASS_NAMES), max_samples_per_class=MAX_INDICES_PER_CLASS)
            if with_indices else None
        )
        self.cached = [self._load(i) for i in range(len(self.paths))] if cache else None

    def _load(self, i: int) -> dict[str, Any]:
        case = load_case(self.paths[i])
        return self.indices(case) if self.indices is not None else case

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.cached[i]) if self.cached is not None else self._load(i)


def train_transforms(cfg: TrainConfig) -> T.Compose:
    """Pad, crop a patch centred by class, then augment (spatial first, then intensity, then mirror)."""
    a: Augmentation = cfg.aug
    keys, img = ["image", "label"], "image"
    r = a.rotate_range
    gamma = [
        T.RandAdjustContrastd(img, prob=a.gamma_prob * (1 - a.gamma_inverted_fraction), gamma=a.gamma_range, retain_stats=True),
        T.RandAdjustContrastd(img, prob=a.gamma_prob * a.gamma_inverted_fraction, gamma=a.gamma_range, invert_image=True, retain_stats=True),
    ]
    return T.Compose([
        T.SpatialPadd(keys, spatial_size=cfg.window),
        T.RandCropByLabelClassesd(
            keys, label_key="label", spatial_size=cfg.window, ratios=list(cfg.class_ratios),
            num_classes=len(CLASS_NAMES), num_samples=1, indices_key="label_cls_indices", warn=False,
        ),
        T.RandRotated(keys, range_x=r, range_y=r, range_z=r, prob=a.rotate_prob, mode=("bilinear", "nearest"), padding_mode="zeros"),
        T.RandZoomd(keys, prob=a.zoom_prob, min_zoom=a.zoom_range[0], max_zoom=a.zoom_range[1], mode=("trilinear", "nearest"), padding_mode="constant"),
        T.RandGaussianNoised(img, prob=a.noise_prob, std=a.noise_std),
        T.RandGaussianSmoothd(img, sigma_x=a.smooth_sigma, sigma_y=a.smooth_sigma, sigma_z=a.smooth_sigma, prob=a.smooth_prob),
        T.RandScaleIntensityd(img, factors=a.scale_intensity, prob=a.scale_intensity_prob),
        T.RandScaleIntensityFixedMeand(img, factors=(a.contrast_range[0] - 1, a.contrast_range[1] - 1), preserve_range=True, prob=a.contrast_prob),
        T.RandSimulateLowResolutiond(img, prob=a.low_res_prob, zoom_range=a.low_res_zoom),
        *gamma,
        *(T.RandFlipd(keys, prob=a.mirror_prob, spatial_axis=axis) for axis in range(3)),
        T.SelectItemsd(keys),
        T.EnsureTyped(keys, track_meta=False),
    ])


class PatchDataset(Dataset):
    """``length`` random patches per epoch, cycling over the cases (the epoch is only a unit of
    validation; training is counted in steps)."""

    def __init__(self, source: CaseSource, transform: T.Compose, length: int):
        self.source, self.transform, self.length = source, transform, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = self.transform(self.source[i % len(self.source)])
        out = out[0] if isinstance(out, list) else out
        return {"image": out["image"].float(), "label": out["label"].long()}


class CaseDataset(Dataset):
    """Whole preprocessed cases, for sliding-window validation."""

    def __init__(self, source: CaseSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.source[i]
        return {"image": torch.from_numpy(case["image"]), "label": torch.from_numpy(case["label"]).long(), "case": case["case"], "index": i}


def seed_worker(worker_id: int) -> None:
    """Distinct, reproducible MONAI random states per data-loader worker."""
    info = torch.utils.data.get_worker_info()
    if info is not None:
        info.dataset.transform.set_random_state(seed=int(info.seed % (2**32)))  # type: ignore[attr-defined]
