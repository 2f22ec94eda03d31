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
from typing import Any, Callable

import numpy as np
import torch

from ..network import SegFormer3D

from ..config import (
    CHECKPOINT_SUFFIXES, CLASS_NAMES, DIRECTION_TOLERANCE, PANCREAS, SHA256_FILE_NAME, STATS_FILE_NAME, TUMOUR, WINDOW,
)
from ..errors import FieldError, InputError
from ..io.files import atomic_path, write_text_atomic
from ..system.memory import MemoryBudget
from ..inference.preprocessing import PreprocessingOptions
from .stats import NormalisationStats

RESOURCE_FORMAT = "panther-segformer3d-resource"
RESOURCE_VERSION = 2  # 2 added window, tumour_class, pancreas_class, preprocessing (1 loads with the defaults)
SUPPORTED_RESOURCE_VERSIONS = (1, 2)
LIGHTNING_PREFIX = "model."
# One small input for the check that a network runs: the window's depth (its shortest side) and
# 64 x 64 in-plane, a twentieth of a window. (A 32^3 cube is no cheaper: it takes seconds, the
# deepest stage then being a single voxel.)
CHECK_INPUT = (WINDOW[0], 64, 64)


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


def constructor_names() -> tuple[str, ...]:
    code = SegFormer3D.__init__.__code__
    return code.co_varnames[1 : code.co_argcount]


def check_model_config(config: Any, run: bool = False, budget: MemoryBudget | None = None) -> dict[str, Any]:
    """SegFormer3D constructor arguments: known names only, values the constructor accepts, a
    size that fits the memory limit and, with ``run``, a network that runs. The constructor runs
    on the ``meta`` device (no memory), so an absurd width is refused before anything is built;
    running takes a real copy and one small input on the CPU (the constructor does not check,
    say, that the heads divide the widths; a meta-device forward would import torch's compiler
    stack, which writes files)."""
    if not isinstance(config, dict):
        raise FieldError("model_config", f"expected a dict of constructor arguments, got a {type(config).__name__}")
    unknown = sorted(str(k) for k in config if k not in constructor_names())
    if unknown:
        raise FieldError("model_config", f"unknown constructor argument '{unknown[0]}' (known: {', '.join(constructor_names())})")
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in SegFormer3D(**config).parameters())
    except Exception as e:  # the constructor's own checks raise many types
        raise FieldError("model_config", f"the constructor refuses it ({e.__class__.__name__}: {e})"[:300]) from None
    budget = budget or MemoryBudget.resolve()
    if not budget.fits_weights(parameters):
        raise FieldError("model_config", f"a network of {parameters:,} parameters does not fit a {budget.limit_gib:g} GiB memory limit")
    if run:
        check_runs(SegFormer3D(**config).eval(), config)
    return dict(config)


def check_pipeline_config(config: dict[str, Any]) -> None:
    """What the segmentation pipeline needs of a network that loads, beyond its contract's
    classes (checked at load): one input channel."""
    if config.get("in_channels", 1) != 1:
        raise FieldError("model_config", f"in_channels {config['in_channels']!r}: the pipeline feeds one MRI channel")


def check_runs(model: SegFormer3D, config: dict[str, Any]) -> None:
    """One small input through the network on the CPU, its output shape checked."""
    try:
        with torch.inference_mode():
            out = model.predict(torch.zeros((1, int(config.get("in_channels", 1)), *CHECK_INPUT)))
    except Exception as e:
        raise FieldError("model_config", f"the network it builds cannot run ({e.__class__.__name__}: {e})"[:300]) from None
    if tuple(out.shape) != (1, _num_classes(config), *CHECK_INPUT):
        raise FieldError("model_config", f"the network it builds gives {tuple(out.shape)} for an input of {CHECK_INPUT}")


def _num_classes(config: dict[str, Any]) -> int:
    return int(config.get("num_classes", len(CLASS_NAMES)))


def build_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path,
                config_label: str = "checkpoint's network configuration is invalid") -> SegFormer3D:
    """Build the network from its constructor arguments and load the weights strictly; the keys
    and shapes are compared with a ``meta`` copy first, so nothing is allocated for a mismatch."""
    try:
        config = check_model_config(config)
    except FieldError as e:
        raise InputError(path, f"{config_label}: {e.problem}") from None
    with torch.device("meta"):
        expected = SegFormer3D(**config).state_dict()
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
    model = SegFormer3D(**config)
    model.load_state_dict(state_dict, strict=True)
    try:
        check_runs(model.eval(), config)
    except FieldError as e:
        raise InputError(path, f"{config_label}: {e.problem}") from None
    return model


def _tensors_only(d: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(d, dict) or not d or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items()):
        raise InputError(path, "checkpoint holds no state dict of tensors")
    bad = sorted(k for k, v in d.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise InputError(path, f"checkpoint has NaN or infinite weights ({len(bad)} tensors: {', '.join(bad[:3])})")
    return d


def _constructor_args(d: Any) -> dict[str, Any]:
    """The SegFormer3D constructor arguments found in a Lightning ``hyper_parameters`` dict."""
    return {k: v for k, v in d.items() if k in constructor_names()} if isinstance(d, dict) else {}


# --- the project's resource format: one small validator per field ------------------------------
# Each takes the field's value and the fields validated before it (in this order), and returns
# the value to use or raises FieldError. A new field = a function and a line in RESOURCE_FIELDS.


def _format(value: Any, _: dict[str, Any]) -> str:
    if value != RESOURCE_FORMAT:
        raise FieldError("format", f"expected {RESOURCE_FORMAT!r}, got {value!r}")
    return value


def _version(value: Any, _: dict[str, Any]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in SUPPORTED_RESOURCE_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_RESOURCE_VERSIONS))
        raise FieldError("version", f"{value!r} is not a version this code reads ({supported})")
    return value


def _model_config(value: Any, _: dict[str, Any]) -> dict[str, Any]:
    return check_model_config(value)


def _state_dict(value: Any, _: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        raise FieldError("state_dict", f"expected a dict of tensors, got a {type(value).__name__}")
    return value  # tensors, names and shapes are checked against the network by build_model


def _class_names(value: Any, fields: dict[str, Any]) -> tuple[str, ...]:
    expected = _num_classes(fields["model_config"])
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in value):
        raise FieldError("class_names", f"expected a list of non-empty names, got {value!r}"[:200])
    if len(value) != expected or len(set(value)) != len(value):
        raise FieldError("class_names", f"{list(value)}: expected {expected} distinct names, one per network output")
    return tuple(value)


def _training_direction(value: Any, _: dict[str, Any]) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise FieldError("training_direction", f"expected 9 numbers, got {value!r}"[:200]) from None
    if matrix.size != 9 or not np.all(np.isfinite(matrix)):
        raise FieldError("training_direction",
                         f"expected 9 finite numbers (a 3 x 3 matrix), got {matrix.size}: {matrix.ravel().tolist()}"[:200])
    matrix = matrix.reshape(3, 3)
    error = float(np.abs(matrix.T @ matrix - np.eye(3)).max())
    if error > DIRECTION_TOLERANCE:
        raise FieldError("training_direction",
                         f"not orthonormal (max |D^T D - I| = {error:.3g}, tolerance {DIRECTION_TOLERANCE:g})")
    return matrix


def _window(value: Any, _: dict[str, Any]) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value):
        raise FieldError("window", f"window must be 3 positive sizes (z, y, x), not {value!r}"[:200])
    return tuple(value)  # type: ignore[return-value]


def _class_index(name: str) -> Callable[[Any, dict[str, Any]], int]:
    def validate(value: Any, fields: dict[str, Any]) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(name, f"expected an output channel number, got {value!r}"[:200])
        return value  # its range is checked against the network by ModelContract.check_against

    return validate


def _preprocessing(value: Any, _: dict[str, Any]) -> PreprocessingOptions:
    if not isinstance(value, dict):
        raise FieldError("preprocessing", f"expected a dict of options, got a {type(value).__name__}")
    try:
        return PreprocessingOptions.from_dict(value)
    except (TypeError, ValueError) as e:
        raise FieldError("preprocessing", str(e)) from None


def _statistics(value: Any, _: dict[str, Any]) -> NormalisationStats:
    return NormalisationStats.from_dict(value)


def _provenance(value: Any, _: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise FieldError("provenance", f"expected a dict with text keys, got a {type(value).__name__}")
    return dict(value)


RESOURCE_FIELDS: dict[str, tuple[bool, Callable[[Any, dict[str, Any]], Any]]] = {  # name: (required, validator)
    "format": (True, _format),
    "version": (True, _version),
    "model_config": (True, _model_config),
    "state_dict": (True, _state_dict),
    "class_names": (False, _class_names),
    "training_direction": (False, _training_direction),
    "window": (False, _window),
    "tumour_class": (False, _class_index("tumour_class")),
    "pancreas_class": (False, _class_index("pancreas_class")),
    "preprocessing": (False, _preprocessing),
    "statistics": (False, _statistics),
    "provenance": (False, _provenance),
}


def validate_resource(obj: dict[Any, Any], path: Path) -> dict[str, Any]:
    """Every field of a resource-format checkpoint, validated; one line naming file and field."""
    unknown = sorted(str(k) for k in obj if k not in RESOURCE_FIELDS)
    if unknown:
        raise InputError(path, f"field '{unknown[0]}': unknown to this version of the resource format "
                               f"(known: {', '.join(RESOURCE_FIELDS)})")
    fields: dict[str, Any] = {}
    for name, (required, validate) in RESOURCE_FIELDS.items():
        if name not in obj:
            if required:
                raise InputError(path, f"field '{name}': missing")
            continue
        try:
            fields[name] = validate(obj[name], fields)
        except FieldError as e:
            raise InputError(path, str(e)) from None
    return fields


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
        loaded = LoadedModel(model, config, ModelContract(class_names=class_names_for(_outputs(model))), kind="Lightning checkpoint")
    else:
        config = config or {}
        model = build_model(config, _tensors_only(obj, path), path)
        loaded = LoadedModel(model, config, ModelContract(class_names=class_names_for(_outputs(model))), kind="state dict")
    loaded.contract.check_against(loaded.model, path)
    return loaded


def _outputs(model: SegFormer3D) -> int:
    return model.decoder.cls.out_channels


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The original classes' names, then "class 3", "class 4", ... for networks with more."""
    return (CLASS_NAMES + tuple(f"class {i}" for i in range(len(CLASS_NAMES), num_classes)))[:num_classes]


def _contract(fields: dict[str, Any], model: SegFormer3D) -> ModelContract:
    """The contract a resource file records; what it does not record takes the original's."""
    default = ModelContract()
    direction = fields.get("training_direction")
    return ModelContract(
        window=fields.get("window", default.window),
        class_names=fields.get("class_names", class_names_for(_outputs(model))),
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
    write_text_atomic(out, "".join(f"{sha256(p)}  {p.name}\n" for p in files))
    return out


def verify_sha256sums(folder: Path) -> set[str]:
    """Check the files listed in ``folder/SHA256SUMS`` (a damaged resource must not run
    silently); returns the names listed."""
    sums = Path(folder) / SHA256_FILE_NAME
    if not sums.is_file():
        raise InputError(sums, "missing: baked resources must carry SHA-256 sums (python -m panther_seg.contract.resources bake)")
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
