"""Every training hyperparameter in one dataclass; defaults are the original recipe.

Overrides come from a YAML/JSON file (``--config``) and then ``--set key=value`` (nested keys with
dots: ``--set aug.rotate_prob=0 model.decoder_C=64``); values are parsed as YAML.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import WINDOW


@dataclass
class Augmentation:
    """nnU-Net-like augmentations (probabilities per patch)."""

    rotate_range: float = 0.5  # radians, each axis
    rotate_prob: float = 0.2
    zoom_range: tuple[float, float] = (0.7, 1.4)
    zoom_prob: float = 0.2
    noise_std: float = 0.01
    noise_prob: float = 0.15
    smooth_sigma: tuple[float, float] = (0.5, 1.5)
    smooth_prob: float = 0.1
    scale_intensity: float = 0.3  # multiply by 1 +- this
    scale_intensity_prob: float = 0.15
    contrast_range: tuple[float, float] = (0.65, 1.5)
    contrast_prob: float = 0.15
    low_res_zoom: tuple[float, float] = (0.5, 1.0)
    low_res_prob: float = 0.125
    gamma_range: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = 0.15
    gamma_inverted_fraction: float = 0.15
    mirror_prob: float = 0.5  # per axis


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=dict)  # SegFormer3D constructor arguments; {} = default network
    window: tuple[int, int, int] = WINDOW  # (z, y, x)
    batch_size: int = 2
    class_ratios: tuple[float, float, float] = (0.2, 0.3, 0.5)  # patch centres on background, tumour, pancreas
    aux_weight: float = 0.3
    lr: float = 3e-4
    weight_decay: float = 5e-5
    warmup_steps: int = 9000
    decay_end_step: int = 150000  # polynomial decay reaches 0 here
    poly_power: float = 0.9
    max_steps: int = 250000
    grad_clip: float = 1.0
    steps_per_validation: int = 250  # a validation after this many training steps
    val_window: tuple[int, int, int] = WINDOW  # sliding window of validation: inference's by default
    val_overlap: float = 0.5
    val_mirror: bool = False
    val_batch_size: int = 2
    early_stop_patience: int = 150  # validations
    early_stop_min_delta: float = 0.001
    seed: int = 12345
    num_workers: int = 4
    cache: bool = True  # keep the preprocessed cases in memory
    precision: str = "auto"  # auto: 16-mixed on GPU, 32 on CPU
    log_images: bool = True
    aug: Augmentation = field(default_factory=Augmentation)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _coerce(value: Any, default: Any, key: str) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ValueError(f"{key}: expected {len(default)} values, got {value!r}")
        return tuple(type(d)(v) for d, v in zip(default, value))
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(default, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(default, int) and float(value) != int(value):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return type(default)(value)
    if isinstance(default, (str, dict)) and isinstance(value, type(default)):
        return value
    raise ValueError(f"{key}: cannot use {value!r} (expected {type(default).__name__})")


def apply_overrides(obj: Any, overrides: dict[str, Any], prefix: str = "") -> None:
    """Set fields from a (nested) dict, type-checked against the defaults; unknown keys fail."""
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ValueError(f"unknown setting '{full}'")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{full}: expected a mapping")
            apply_overrides(current, value, f"{full}.")
        elif key == "model" and not prefix:
            setattr(obj, key, {**current, **value} if isinstance(value, dict) else _coerce(value, current, full))
        else:
            setattr(obj, key, _coerce(value, current, full))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``a.b=1`` -> {"a": {"b": 1}}; values are YAML (numbers, lists, true/false, strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got '{item}'")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def load_config(path: Path | None = None, sets: list[str] | None = None) -> TrainConfig:
    cfg = TrainConfig()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}  # JSON is YAML too
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        apply_overrides(cfg, data)
    if sets:
        apply_overrides(cfg, parse_set(sets))
    return cfg


def save_config(cfg: TrainConfig, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
