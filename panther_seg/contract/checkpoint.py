"""Checkpoints: the original Lightning ``.ckpt``, a bare state dict, and the project's resource
format (weights plus everything needed to rebuild and feed the network). Always loaded with
``weights_only=True`` and strictly.

Loading recognises the format from the content; the resource format's fields are validated in
``resource_fields``, the network built in ``network_config``, the contract is ``model_contract``'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..network import SegFormer3D

from ..errors import InputError
from ..io.files import atomic_path
from .model_contract import ModelContract, class_names_for, output_classes
from .network_config import build_model, constructor_names
from .resource_fields import RESOURCE_FIELDS, RESOURCE_FORMAT, RESOURCE_VERSION, validate_resource
from .stats import NormalisationStats

LIGHTNING_PREFIX = "model."


@dataclass
class LoadedModel:
    model: SegFormer3D
    config: dict[str, Any]
    contract: ModelContract = ModelContract()
    stats: NormalisationStats | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str = "state dict"


def _tensors_only(d: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(d, dict) or not d or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items()):
        raise InputError(path, "checkpoint holds no state dict of tensors")
    floats = [v.reshape(-1) for v in d.values() if v.is_floating_point()]
    if floats and bool(torch.isfinite(torch.cat(floats)).all()):  # one pass over all weights: the common case, fast
        return d
    bad = sorted(k for k, v in d.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise InputError(path, f"checkpoint has NaN or infinite weights ({len(bad)} tensors: {', '.join(bad[:3])})")
    return d


def _constructor_args(d: Any) -> dict[str, Any]:
    """The SegFormer3D constructor arguments found in a Lightning ``hyper_parameters`` dict."""
    return {k: v for k, v in d.items() if k in constructor_names()} if isinstance(d, dict) else {}


def load_checkpoint(path: Path, config: dict[str, Any] | None = None) -> LoadedModel:
    """Load any of the three formats; the format is recognised from the file's content.

    ``config`` gives the constructor arguments for formats that do not record them (default:
    a Lightning checkpoint's ``hyper_parameters``, else the default network)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise InputError(path, f"cannot read checkpoint: {e.strerror or e}") from None
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else e.__class__.__name__
        raise InputError(path, f"cannot load checkpoint (corrupt, truncated or not a PyTorch file): {detail}") from None
    if not isinstance(obj, dict):
        raise InputError(path, f"checkpoint holds a {type(obj).__name__}, not a dict")
    if any(k in obj for k in RESOURCE_FIELDS if k != "state_dict"):  # no Lightning or bare key is one of these
        fields = validate_resource(obj, path)
        config = fields["model_config"]
        model = build_model(config, _tensors_only(fields["state_dict"], path), path, "field 'model_config'")
        loaded = LoadedModel(model, config, _contract(fields, model), fields.get("statistics"),
                             fields.get("provenance", {}), kind="project resource")
    elif isinstance(obj.get("state_dict"), dict):  # PyTorch Lightning checkpoint of the original code
        sd = _tensors_only(obj["state_dict"], path)
        if not any(k.startswith(LIGHTNING_PREFIX) for k in sd):
            raise InputError(path, f"Lightning checkpoint has no weights under '{LIGHTNING_PREFIX}'")
        sd = {k[len(LIGHTNING_PREFIX):]: v for k, v in sd.items() if k.startswith(LIGHTNING_PREFIX)}
        config = config if config is not None else _constructor_args(obj.get("hyper_parameters"))
        model = build_model(config, sd, path)
        loaded = LoadedModel(model, config, ModelContract(class_names=class_names_for(output_classes(model))), kind="Lightning checkpoint")
    else:
        config = config or {}
        model = build_model(config, _tensors_only(obj, path), path)
        loaded = LoadedModel(model, config, ModelContract(class_names=class_names_for(output_classes(model))), kind="state dict")
    loaded.contract.check_against(loaded.model, path)
    return loaded


def _contract(fields: dict[str, Any], model: SegFormer3D) -> ModelContract:
    """The contract a resource file records; what it does not record takes the original's."""
    default = ModelContract()
    direction = fields.get("training_direction")
    return ModelContract(
        window=fields.get("window", default.window),
        class_names=fields.get("class_names", class_names_for(output_classes(model))),
        tumour_class=fields.get("tumour_class", default.tumour_class),
        pancreas_class=fields.get("pancreas_class", default.pancreas_class),
        preprocessing=fields.get("preprocessing", default.preprocessing),
        training_direction=None if direction is None else tuple(float(d) for d in np.asarray(direction).ravel()),
    )


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
        "statistics": stats.to_dict(),
        "provenance": provenance or {},
    }
    if direction is not None:
        payload["training_direction"] = [float(x) for x in direction.ravel()]
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


