"""PANTHER Task 1 pancreatic tumour segmentation of T1 contrast-enhanced MRI.

The Python API (the command line ``panther-seg`` builds through the same calls)::

    import panther_seg
    segmenter = panther_seg.Segmenter.from_resources(fast=True)   # load the network(s) once
    outputs = segmenter.segment("scan.nii.gz")                     # a path or a SimpleITK image
    mask = panther_seg.segment("scan.nii.gz", device="cpu")        # or all in one call
"""
from .system.identity import ensure_user_name

ensure_user_name()  # before anything imports MONAI: getpass.getuser() fails for a uid without a passwd entry

from .errors import InputError  # noqa: E402
from .inference.options import Options  # noqa: E402
from .inference.pipeline import Extras, Segmentation, Segmenter, segment  # noqa: E402

__all__ = ["Extras", "InputError", "Options", "Segmentation", "Segmenter", "segment"]
