"""The project's resource format, field by field: one small validator per field, each naming the
field when it refuses (``field 'window': ...``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import DIRECTION_TOLERANCE
from ..errors import FieldError, InputError
from .preprocessing_options import PreprocessingOptions
from .network_config import check_model_config, num_classes
from .stats import NormalisationStats

RESOURCE_FORMAT = "panther-segformer3d-resource"
RESOURCE_VERSION = 2  # 2 added window, tumour_class, pancreas_class, preprocessing (1 loads with the defaults)
SUPPORTED_RESOURCE_VERSIONS = (1, 2)


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
    expected = num_classes(fields["model_config"])
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


