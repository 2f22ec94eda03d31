"""How many windows one forward pass takes on a GPU, from its free memory.

There is no GPU to measure on where this was written, so the memory a window needs is an
estimate from tensor sizes (fp32, 4 bytes a value), read off the network's widths:

* full resolution (the window's V voxels): the input and the stem's first conv-BN and GELU
  outputs (``embed_dims[0] / 2`` channels each), later the upsampled logits;
* stage 1 and the decoder's finest level run at half resolution (V / 8 voxels): the Mix-FFN's
  hidden map (``mlp_ratio x embed_dims[0]`` channels) lives three times (fc1, depthwise conv,
  GELU) beside the residual stream, and the decoder's P1 level holds about six
  ``decoder_C``-channel maps (upsampled P2, gate, lateral, sum, the depthwise-separable smoothing,
  the fused head) beside the stage-1 skip;
* attention runs through ``scaled_dot_product_attention`` (memory-efficient kernels: O(tokens)
  memory), so no attention matrix is counted.

The largest of these, times ``SAFETY`` for the allocator's rounding and cuDNN workspaces, is a
window's share. For the PANTHER network (window 32 x 160 x 208) that is about 0.7 GB, so a GPU
with a few GB free takes the cap. An estimate that proves short costs time, not the case: out of
memory, inference falls back (stitching on the host, one window, the CPU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

FLOAT_BYTES = 4
SAFETY = 1.5  # allocator rounding, cuDNN workspaces, the estimate's slack
MAX_GPU_BATCH = 8  # more windows per pass hardly raise a GPU's throughput and only cost memory
RESERVE_BYTES = 512 * 2**20  # left free for the CUDA context's growth and other processes


@dataclass(frozen=True)
class NetworkWidths:
    """The channel counts that decide a window's activation memory."""

    stem: int  # channels of the full-resolution stem convolution
    stage1: int  # embed_dims[0], at half resolution
    hidden1: int  # stage 1's Mix-FFN hidden width
    decoder: int  # decoder_C
    classes: int

    @classmethod
    def of(cls, model: torch.nn.Module) -> "NetworkWidths":
        """Read from a SegFormer3D's layers; a predictor that is not one gets the default network's widths."""
        try:
            stage1 = model.encoder.norm1.normalized_shape[0]
            hidden1 = model.encoder.tf_block1[0].mlp.fc1.out_features
            decoder, classes = model.decoder.cls.weight.shape[1], model.decoder.cls.weight.shape[0]
        except AttributeError:
            return cls(16, 32, 128, 128, 3)
        return cls(max(stage1 // 2, 1), stage1, hidden1, decoder, classes)


def window_bytes(window: Sequence[int], widths: NetworkWidths) -> int:
    """The estimated GPU memory one window needs in one forward pass (see the module's docstring)."""
    voxels = math.prod(window)
    full = (1 + 2 * widths.stem + 2 * widths.classes) * voxels
    half = (max(3 * widths.hidden1, 6 * widths.decoder) + 3 * widths.stage1) * voxels / 8
    return int(SAFETY * FLOAT_BYTES * max(full, half))


def stitching_bytes(volume_voxels: int, classes: int, members: int) -> int:
    """What the stitching keeps on the device for one case: the volume (and its padded and flipped
    copies), per member the stitched logits of a pass and their running sum, one flipped-back
    copy, the count map, then the softmax."""
    return FLOAT_BYTES * volume_voxels * (4 + 2 * classes * members + 2 * classes)


def gpu_batch_size(free_bytes: int, window: Sequence[int], members: int, widths: NetworkWidths,
                   stitch_bytes: int = 0, cap: int = MAX_GPU_BATCH) -> int:
    """Windows per forward pass that fit in ``free_bytes`` after the stitching buffers and a
    reserve: each window costs one member's activations (the members run one after another) and
    every member's logits of it; at least 1, at most ``cap``."""
    per_window = window_bytes(window, widths) + FLOAT_BYTES * math.prod(window) * widths.classes * members
    room = free_bytes - stitch_bytes - RESERVE_BYTES
    return max(1, min(cap, room // per_window))


def free_gpu_bytes(device: torch.device) -> int:
    """Free memory on ``device`` as the driver sees it, plus what PyTorch's cache holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
