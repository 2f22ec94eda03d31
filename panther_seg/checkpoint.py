"""Checkpoints: the original Lightning ``.ckpt``, a bare state dict, and the project's resource
format (weights plus everything needed to rebuild and feed the network). Always loaded with
``weights_only=True`` and strictly."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import SegFormer3D

from .config import CHECKPOINT_SUFFIXES, CLASS_NAMES, SHA256_FILE_NAME, STATS_FILE_NAME
from .errors import InputError
from .stats import NormalisationStats

RESOURCE_FORMAT = "panther-segformer3d-resource"
RESOURCE_VERSION = 1
LIGHTNING_PREFIX = "model."


@dataclass
class LoadedModel:
    model: SegFormer3D
    config: dict[str, Any]
    class_names: tuple[str, ...] = CLASS_NAMES
    training_direction: np.ndarray | None = None  # None: the checkpoint does not say (identity)
    stats: NormalisationStats | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str = "state dict"


def build_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path) -> SegFormer3D:
    """Build the network from its constructor arguments and load the weights strictly."""
    try:
        model = SegFormer3D(**config)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise InputError(path, f"checkpoint's network configuration is invalid: {e}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        ]
        raise InputError(path, "checkpoint does not match the SegFormer3D network: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def _tensors_only(d: dict, path: Path) -> dict[str, torch.Tensor]:
    if not d or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items()):
        raise InputError(path, "checkpoint holds no state dict of tensors")
    return d


def _constructor_args(d: Any) -> dict[str, Any]:
    """The SegFormer3D constructor arguments found in a Lightning ``hyper_parameters`` dict."""
    names = SegFormer3D.__init__.__code__.co_varnames[1 : SegFormer3D.__init__.__code__.co_argcount]
    return {k: v for k, v in d.items() if k in names} if isinstance(d, dict) else {}


def load_checkpoint(path: Path, config: dict[str, Any] | None = None) -> LoadedModel:
    """Load any of the three formats; the format is recognised from the file's content.

    ``config`` gives the constructor arguments for formats that do not record them (default:
    a Lightning checkpoint's ``hyper_parameters``, else the default network)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else e.__class__.__name__
        raise InputError(path, f"cannot load checkpoint (corrupt, truncated or not a PyTorch file): {detail}") from None
    if not isinstance(obj, dict):
        raise InputError(path, f"checkpoint holds a {type(obj).__name__}, not a dict")
    if obj.get("format") == RESOURCE_FORMAT:
        config = dict(obj["model_config"])
        direction = obj.get("training_direction")
        stats = obj.get("statistics")
        return LoadedModel(
            model=build_model(config, _tensors_only(obj["state_dict"], path), path),
            config=config,
            class_names=tuple(obj.get("class_names", CLASS_NAMES)),
            training_direction=None if direction is None else np.asarray(direction, dtype=float).reshape(3, 3),
            stats=None if stats is None else NormalisationStats.from_dict(stats),
            provenance=dict(obj.get("provenance", {})),
            kind="project resource",
        )
    if isinstance(obj.get("state_dict"), dict):  # PyTorch Lightning checkpoint of the original code
        sd = _tensors_only(obj["state_dict"], path)
        if not any(k.startswith(LIGHTNING_PREFIX) for k in sd):
            raise InputError(path, f"Lightning checkpoint has no weights under '{LIGHTNING_PREFIX}'")
        sd = {k[len(LIGHTNING_PREFIX):]: v for k, v in sd.items() if k.startswith(LIGHTNING_PREFIX)}
        config = config if config is not None else _constructor_args(obj.get("hyper_parameters"))
        return LoadedModel(build_model(config, sd, path), config, kind="Lightning checkpoint")
    config = config or {}
    return LoadedModel(build_model(config, _tensors_only(obj, path), path), config, kind="state dict")


def save_resource(
    path: Path,
    model: SegFormer3D,
    config: dict[str, Any],
    stats: NormalisationStats,
    training_direction: np.ndarray | None = None,
    class_names: tuple[str, ...] = CLASS_NAMES,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write the project's resource format (fp32 weights, constructor arguments, statistics...)."""
    direction = np.eye(3) if training_direction is None else np.asarray(training_direction, dtype=float)
    payload = {
        "format": RESOURCE_FORMAT,
        "version": RESOURCE_VERSION,
        "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "state_dict": {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "training_direction": [float(x) for x in direction.ravel()],
        "statistics": stats.to_dict(),
        "provenance": provenance or {},
    }
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sha256sums(folder: Path) -> Path:
    """List every checkpoint and statistics file of ``folder`` with its SHA-256."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in CHECKPOINT_SUFFIXES or p.name == STATS_FILE_NAME)
    out = Path(folder) / SHA256_FILE_NAME
    out.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files))
    return out


def verify_sha256sums(folder: Path) -> None:
    """Check the files listed in ``folder/SHA256SUMS``: a damaged resource must not run silently."""
    sums = Path(folder) / SHA256_FILE_NAME
    if not sums.is_file():
        raise InputError(sums, "missing: baked resources must carry SHA-256 sums (python -m panther_seg.resources bake)")
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        target = Path(folder) / name.strip().lstrip("*")
        if not target.is_file():
            raise InputError(target, f"listed in {SHA256_FILE_NAME} but missing")
        if sha256(target) != digest:
            raise InputError(target, "SHA-256 mismatch: the file is damaged or was replaced without updating SHA256SUMS")


def find_checkpoint(folder: Path) -> Path | None:
    """The single checkpoint file of a folder (None when there is none)."""
    if not Path(folder).is_dir():
        return None
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) > 1:
        raise InputError(folder, f"{len(found)} checkpoint files ({', '.join(p.name for p in found)}); expected one")
    return found[0] if found else None
