"""The network: ``from model import SegFormer3D``."""
from .segformer3d import SegFormer3D, set_fused_attention

__all__ = ["SegFormer3D", "set_fused_attention"]
