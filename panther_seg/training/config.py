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
from ..errors import InputError


@dataclass
class Augmentation:
    """nnU-Net-like augmentations (probabilities per patch), as the original recipe applies them."""

    rotate_range: float = 0.5  # radians, each axis
    rotate_prob: float = 0.2
    rotate_padding: str = "border"  # MONAI's default, the original's
    zoom_range: tuple[float, float] = (0.7, 1.4)
    zoom_prob: float = 0.2
    zoom_padding: str = "edge"  # MONAI's default, the original's
    noise_std: float = 0.01
    noise_prob: float = 0.15
    smooth_sigma: tuple[float, float] = (0.5, 1.5)
    smooth_prob: float = 0.1
    scale_intensity: float = 0.3  # multiply by 1 +- this
    scale_intensity_prob: float = 0.15
    contrast_range: tuple[float, float] = (0.65, 1.5)
    contrast_prob: float = 0.15
    contrast_fixed_mean: bool = False  # original: plain multiplication clipped to the patch's range
    low_res_zoom: tuple[float, float] = (0.5, 1.0)
    low_res_prob: float = 0.125
    gamma_range: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = 0.15
    gamma_inverted_fraction: float = 0.15
    gamma_retain_stats: bool = False  # original: the gamma-adjusted patch keeps its new mean and std
    mirror_prob: float = 0.5  # per axis


AUTO = "auto"


@dataclass
class TrainConfig:
    """The original recipe (see docs/training.md for the source of each value and the options)."""

    model: dict[str, Any] = field(default_factory=dict)  # SegFormer3D constructor arguments; {} = default network
    window: tuple[int, int, int] = WINDOW  # (z, y, x)
    batch_size: int = 2  # patches per optimiser step, shared between the processes under DDP
    case_repeats: int = 1  # patches drawn from each training case per epoch (original: each case once)
    class_ratios: tuple[float, float, float] = (0.2, 0.3, 0.5)  # patch centres on background, tumour, pancreas
    image_threshold: float = 0.0  # patch centres only where the normalised image is above this
    aux_weight: float = 0.3
    lr: float = 3e-4
    weight_decay: float = 5e-5
    warmup_steps: int = 9000
    decay_end_step: int = 150000  # polynomial decay reaches 0 here
    poly_power: float = 0.9
    max_steps: int = 250000
    grad_clip: float = 1.0
    val_every_n_epochs: int = 1
    val_window: tuple[int, int, int] = WINDOW  # sliding window of validation: inference's by default
    val_overlap: float = 0.5
    val_mirror: bool = False
    val_batch_size: int = 2
    early_stop_patience: int = 150  # validations
    early_stop_min_delta: float = 0.001
    seed: int = 17
    deterministic: bool = True  # cuDNN deterministic (original); false: cudnn.benchmark for the fixed patch shape
    precision: str = "32-true"  # original fp32; options: bf16-mixed, 16-mixed, mixed (bf16 where supported, else 16)
    sync_batchnorm: bool = True  # several GPUs normalise over the whole step's patches, as one GPU does
    num_workers: int | str = AUTO  # data-loader workers per process; auto: the CPUs available per process, less one
    log_every_n_steps: int = 50
    log_images: bool = True
    sample_log: bool = False  # RUN_DIR/samples/rank<r>.jsonl: every patch's case, seed, centre and transforms
    aug: Augmentation = field(default_factory=Augmentation)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _coerce(value: Any, default: Any, key: str) -> Any:
    if key == "num_workers":  # the one setting that takes a number or 'auto'
        if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError(f"{key}: expected a number >= 0 or '{AUTO}', got {value!r}")
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


PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "mixed")
PADDINGS = {"rotate_padding": ("border", "zeros", "reflection"), "zoom_padding": ("edge", "constant", "reflect", "symmetric", "wrap")}


def check(cfg: TrainConfig) -> TrainConfig:
    """Values the types cannot rule out; a bad one fails before any work starts."""
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    for key, allowed in PADDINGS.items():
        if getattr(cfg.aug, key) not in allowed:
            raise ValueError(f"aug.{key}: expected one of {', '.join(allowed)}, got {getattr(cfg.aug, key)!r}")
    for key in ("batch_size", "case_repeats", "val_every_n_epochs", "max_steps", "log_every_n_steps", "val_batch_size"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key}: expected a number >= 1, got {getattr(cfg, key)}")
    if min(cfg.window) < 1 or min(cfg.val_window) < 1:
        raise ValueError("window and val_window: every size must be >= 1")
    return cfg


def load_config(path: Path | None = None, sets: list[str] | None = None) -> TrainConfig:
    """The defaults, then the file's settings, then ``--set``'s; a bad one names its source."""
    cfg = TrainConfig()
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}  # JSON is YAML too
            if not isinstance(data, dict):
                raise ValueError("expected a mapping of settings")
            apply_overrides(cfg, data)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise InputError(path, str(e).splitlines()[0]) from None
    try:
        if sets:
            apply_overrides(cfg, parse_set(sets))
        return check(cfg)
    except (ValueError, yaml.YAMLError) as e:
        raise InputError("--set" if sets else path, str(e).splitlines()[0]) from None


def save_config(cfg: TrainConfig, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
