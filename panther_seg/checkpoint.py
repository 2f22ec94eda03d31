"""Checkpoints: the original Lightning ``.ckpt``, a bare state dict, and the project's resource
format (weights plus everything needed to rebuild and feed the network). Always loaded with
``weights_only=True`` and strictly.

A checkpoint is the model's contract (``ModelContract``): the window it runs on, which output
classes are tumour and pancreas, and how its input was preprocessed. The resource format records
it; the original authors' formats get the original protocol's values."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import SegFormer3D

from .config import CHECKPOINT_SUFFIXES, CLASS_NAMES, PANCREAS, SHA256_FILE_NAME, STATS_FILE_NAME, TUMOUR, WINDOW
from .errors import InputError
from .preprocessing import PreprocessingOptions
from .stats import NormalisationStats

RESOURCE_FORMAT = "panther-segformer3d-resource"
RESOURCE_VERSION = 2  # 2 added window, tumour_class, pancreas_class, preprocessing (1 loads with the defaults)
LIGHTNING_PREFIX = "model."


@dataclass(frozen=True)
class ModelContract:
    """What inference must honour for a network; the defaults are the original protocol's."""

    window: tuple[int, int, int] = WINDOW  # sliding window (z, y, x)
    class_names: tuple[str, ...] = CLASS_NAMES
    tumour_class: int = TUMOUR  # output channel of the tumour probability
    pancreas_class: int = PANCREAS  # output channel of the pancreas probability
    preprocessing: PreprocessingOptions = PreprocessingOptions()
    training_direction: tuple[float, ...] | None = None  # 3x3, row-major; used with orientation "training"

    def direction_matrix(self) -> np.ndarray | None:
        return None if self.training_direction is None else np.asarray(self.training_direction, dtype=float).reshape(3, 3)

    def check_against(self, model: SegFormer3D, path: Path) -> None:
        """Refuse at load a network whose outputs the post-processing cannot use."""
        n = model.decoder.cls.out_channels
        used = {"tumour": self.tumour_class, "pancreas": self.pancreas_class}
        for name, index in used.items():
            if not 0 < index < n:
                raise InputError(path, f"the network has {n} output classes; the {name} class {index} is not one of its foreground classes 1..{n - 1}")
        if self.tumour_class == self.pancreas_class:
            raise InputError(path, f"tumour and pancreas are the same output class ({self.tumour_class})")
        if len(self.class_names) != n:
            raise InputError(path, f"class_names lists {len(self.class_names)} classes but the network has {n} outputs")


@dataclass
class LoadedModel:
    model: SegFormer3D
    config: dict[str, Any]
    contract: ModelContract = ModelContract()
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
        stats = obj.get("statistics")
        loaded = LoadedModel(
            model=build_model(config, _tensors_only(obj["state_dict"], path), path),
            config=config,
            contract=_contract(obj, path),
            stats=None if stats is None else NormalisationStats.from_dict(stats),
            provenance=dict(obj.get("provenance", {})),
            kind="project resource",
        )
    elif isinstance(obj.get("state_dict"), dict):  # PyTorch Lightning checkpoint of the original code
        sd = _tensors_only(obj["state_dict"], path)
        if not any(k.startswith(LIGHTNING_PREFIX) for k in sd):
            raise InputError(path, f"Lightning checkpoint has no weights under '{LIGHTNING_PREFIX}'")
        sd = {k[len(LIGHTNING_PREFIX):]: v for k, v in sd.items() if k.startswith(LIGHTNING_PREFIX)}
        config = config if config is not None else _constructor_args(obj.get("hyper_parameters"))
        loaded = LoadedModel(build_model(config, sd, path), config, kind="Lightning checkpoint")
    else:
        config = config or {}
        loaded = LoadedModel(build_model(config, _tensors_only(obj, path), path), config, kind="state dict")
    if loaded.kind != "project resource":  # the original protocol's contract, named for its classes
        loaded.contract = ModelContract(class_names=class_names_for(loaded.model.decoder.cls.out_channels))
    loaded.contract.check_against(loaded.model, path)
    return loaded


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The original classes' names, then "class 3", "class 4", ... for networks with more."""
    return (CLASS_NAMES + tuple(f"class {i}" for i in range(len(CLASS_NAMES), num_classes)))[:num_classes]


def _contract(obj: dict[str, Any], path: Path) -> ModelContract:
    """The contract recorded in a resource file; fields it does not record take the defaults."""
    default = ModelContract()
    try:
        direction = obj.get("training_direction")
        window = tuple(int(w) for w in obj.get("window", default.window))
        if len(window) != 3 or min(window) < 1:
            raise ValueError(f"window must be 3 positive sizes (z, y, x), not {list(window)}")
        return ModelContract(
            window=window,  # type: ignore[arg-type]
            class_names=tuple(str(c) for c in obj.get("class_names", default.class_names)),
            tumour_class=int(obj.get("tumour_class", default.tumour_class)),
            pancreas_class=int(obj.get("pancreas_class", default.pancreas_class)),
            preprocessing=PreprocessingOptions.from_dict(dict(obj.get("preprocessing", {}))),
            training_direction=None if direction is None else tuple(float(d) for d in np.asarray(direction, dtype=float).reshape(9)),
        )
    except (TypeError, ValueError) as e:
        raise InputError(path, f"checkpoint's model contract is invalid: {e}") from None


def save_resource(
    path: Path,
    model: SegFormer3D,
    config: dict[str, Any],
    stats: NormalisationStats,
    contract: ModelContract = ModelContract(),
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write the project's resource format: fp32 weights, constructor arguments, statistics, the
    model's contract and the provenance."""
    contract.check_against(model, Path(path))
    direction = contract.direction_matrix()
    payload = {
        "format": RESOURCE_FORMAT,
        "version": RESOURCE_VERSION,
        "model_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "state_dict": {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()},
        "window": list(contract.window),
        "class_names": list(contract.class_names),
        "tumour_class": contract.tumour_class,
        "pancreas_class": contract.pancreas_class,
        "preprocessing": contract.preprocessing.to_dict(),
        "training_direction": None if direction is None else [float(x) for x in direction.ravel()],
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


def verify_sha256sums(folder: Path) -> set[str]:
    """Check the files listed in ``folder/SHA256SUMS`` (a damaged resource must not run
    silently); returns the names listed."""
    sums = Path(folder) / SHA256_FILE_NAME
    if not sums.is_file():
        raise InputError(sums, "missing: baked resources must carry SHA-256 sums (python -m panther_seg.resources bake)")
    listed: set[str] = set()
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        target = Path(folder) / name.strip().lstrip("*")
        if not target.is_file():
            raise InputError(target, f"listed in {SHA256_FILE_NAME} but missing")
        if sha256(target) != digest:
            raise InputError(target, "SHA-256 mismatch: the file is damaged or was replaced without updating SHA256SUMS")
        listed.add(target.name)
    return listed
