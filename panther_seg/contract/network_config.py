"""A network's constructor arguments: checked (known names, a size that fits the memory budget, a
network that runs) before anything is built, then the network built with its weights, strictly."""
from __future__ import annotations

import inspect
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..config import CLASS_NAMES, WINDOW
from ..errors import FieldError, InputError
from ..network import SegFormer3D
from ..system.memory import MemoryBudget

# One small input for the check that a network runs: the window's depth (its shortest side) and
# 64 x 64 in-plane, a twentieth of a window. (A 32^3 cube is no cheaper: it takes seconds, the
# deepest stage then being a single voxel.)
CHECK_INPUT = (WINDOW[0], 64, 64)


def constructor_names() -> tuple[str, ...]:
    code = SegFormer3D.__init__.__code__
    return code.co_varnames[1 : code.co_argcount]


def _frozen(value: Any) -> Any:
    """A hashable, list-or-tuple-blind form of a constructor argument."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _config_key(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), _frozen(v)) for k, v in config.items()))


@lru_cache(maxsize=8)
def _meta_network(key: tuple[tuple[str, Any], ...]) -> SegFormer3D:
    config = dict(key)
    if is_default_network(config):
        # 19 MB on the CPU in 0.05 s, where the meta device's first use imports torch's
        # symbolic-shape machinery (about 1 s of every case's start-up)
        return SegFormer3D(**config)
    with torch.device("meta"):
        return SegFormer3D(**config)


def meta_network(config: dict[str, Any]) -> SegFormer3D:
    """The network ``config`` builds, for reading its names, shapes and size only: on the
    ``meta`` device (no memory, so an absurd width costs nothing), the default network on the
    CPU (its size is known). Built once per configuration: a checkpoint's loading asks for it
    twice (the size check, then the state dict's names and shapes)."""
    return _meta_network(_config_key(config))


def is_default_network(config: dict[str, Any]) -> bool:
    """Whether ``config`` builds the default network (every argument absent or at its default)."""
    defaults = inspect.signature(SegFormer3D.__init__).parameters
    return all(_frozen(value) == _frozen(defaults[name].default) for name, value in config.items())


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
        parameters = sum(p.numel() for p in meta_network(config).parameters())
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
    if tuple(out.shape) != (1, num_classes(config), *CHECK_INPUT):
        raise FieldError("model_config", f"the network it builds gives {tuple(out.shape)} for an input of {CHECK_INPUT}")


def num_classes(config: dict[str, Any]) -> int:
    return int(config.get("num_classes", len(CLASS_NAMES)))


def build_model(config: dict[str, Any], state_dict: dict[str, torch.Tensor], path: Path,
                config_label: str = "checkpoint's network configuration is invalid") -> SegFormer3D:
    """Build the network from its constructor arguments and load the weights strictly; the keys
    and shapes are compared with a ``meta`` copy first, so nothing is allocated for a mismatch."""
    try:
        config = check_model_config(config)
    except FieldError as e:
        raise InputError(path, f"{config_label}: {e.problem}") from None
    expected = meta_network(config).state_dict()
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
    model.eval()
    if is_default_network(config):  # the network the tests and the baked weights run: a forward would only re-prove it
        return model
    try:
        check_runs(model, config)
    except FieldError as e:
        raise InputError(path, f"{config_label}: {e.problem}") from None
    return model


