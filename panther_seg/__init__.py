"""PANTHER Task 1 pancreatic tumour segmentation of T1 contrast-enhanced MRI.

The Python API (the command line ``panther-seg`` builds through the same calls)::

    import panther_seg
    segmenter = panther_seg.Segmenter.from_resources(fast=True)   # load the network(s) once
    outputs = segmenter.segment("scan.nii.gz")                     # a path or a SimpleITK image
    mask = panther_seg.segment("scan.nii.gz", device="cpu")        # or all in one call

The public names load on first use (PEP 562), so ``import panther_seg.cli`` and ``--help`` do not
pay for torch: every command imports this package first.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .system.identity import ensure_user_name

ensure_user_name()  # before anything imports MONAI: getpass.getuser() fails for a uid without a passwd entry

# public name: the module that defines it
_PUBLIC = {
    "Extras": ".results",
    "InputError": ".errors",
    "Options": ".inference.options",
    "Segmentation": ".results",
    "Segmenter": ".inference.pipeline",
    "segment": ".inference.pipeline",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from .errors import InputError
    from .inference.options import Options
    from .inference.pipeline import Segmenter, segment
    from .results import Extras, Segmentation


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
