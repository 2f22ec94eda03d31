"""The network: ``from panther_seg.network import SegFormer3D``; ``reference_forward`` is its literal twin."""
from .reference import reference_forward
from .segformer3d import SegFormer3D

__all__ = ["SegFormer3D", "reference_forward"]
