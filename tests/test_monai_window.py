"""The reproduced sliding window (``panther_seg.inference.monai_window``) against MONAI's own
``sliding_window_inference`` and helpers: bit-identical outputs (``torch.equal``) over what the
pipeline passes (Gaussian and constant blending, overlaps, batch sizes, volumes shorter than the
window on some axes, one output or an ensemble's tuple, a given weight map) and beyond (a batch of
two volumes, another padding value)."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

monai_utils = pytest.importorskip("monai.inferers.utils", reason="MONAI is the reference")
from monai.data.utils import compute_importance_map as monai_importance_map  # noqa: E402
from monai.data.utils import dense_patch_slices as monai_dense_patch_slices  # noqa: E402

from panther_seg.inference import monai_window  # noqa: E402

WINDOW = (6, 10, 12)


class Predictor:
    """An asymmetric convolution plus the window's mean: its output depends on where each window
    lies, so a misplaced, reordered or re-weighted window changes the result. ``members`` > 1
    returns a tuple, as an ensemble does. A fresh tensor per call (the window functions scale the
    output in place)."""

    def __init__(self, members: int = 1, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.weights = [torch.randn(3, 1, 3, 3, 3, generator=g) for _ in range(members)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = tuple(F.conv3d(x, w, padding=1) + x.mean(dim=(2, 3, 4), keepdim=True) for w in self.weights)
        return out[0] if len(out) == 1 else out


def volume(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def assert_identical(ours, theirs) -> None:
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.equal(a, b), f"max difference {(a - b).abs().max().item()}"


@pytest.mark.parametrize("mode, sigma", [("gaussian", 0.125), ("gaussian", 0.3), ("constant", 0.125)])
def test_the_importance_map_is_monais(mode, sigma):
    for window in (WINDOW, (32, 160, 208), (1, 5, 2)):
        ours = monai_window.compute_importance_map(window, mode=mode, sigma_scale=sigma)
        theirs = monai_importance_map(window, mode=mode, sigma_scale=sigma)
        assert torch.equal(ours, theirs)


def test_the_window_placement_is_monais():
    cases = [((6, 10, 12), WINDOW), ((7, 31, 40), WINDOW), ((20, 19, 13), WINDOW), ((72, 258, 318), (32, 160, 208)),
             ((88, 466, 570), (32, 160, 208))]
    for (size, window), overlap in itertools.product(cases, (0.0, 0.25, 0.5, 0.9)):
        size = tuple(max(s, w) for s, w in zip(size, window))
        interval = monai_window.scan_interval(size, window, overlap)
        assert interval == monai_utils._get_scan_interval(size, window, 3, (overlap,) * 3)
        ours = monai_window.dense_patch_slices(size, window, interval)
        theirs = monai_dense_patch_slices(size, window, interval)
        assert [tuple((s.start, s.stop) for s in w) for w in ours] == [tuple((int(s.start), int(s.stop)) for s in w) for w in theirs]


@pytest.mark.parametrize("shape, overlap, batch_size, members", [
    ((1, 1, 13, 27, 30), 0.5, 1, 1),   # larger than the window on every axis
    ((1, 1, 4, 27, 9), 0.5, 1, 1),     # shorter than the window on two axes: padded, cropped back
    ((1, 1, 13, 27, 30), 0.25, 3, 1),  # batches of windows, the last one short
    ((1, 1, 6, 10, 12), 0.5, 2, 1),    # exactly one window
    ((1, 1, 11, 8, 25), 0.5, 2, 2),    # an ensemble's tuple, with padding
    ((1, 1, 13, 27, 30), 0.0, 1, 3),
])
def test_sliding_window_inference_is_monais(shape, overlap, batch_size, members):
    x = volume(shape)
    weight = monai_window.compute_importance_map(WINDOW, mode="gaussian", sigma_scale=0.125)[None, None]
    for roi_weight_map in (None, weight):
        kwargs = dict(overlap=overlap, mode="gaussian", sigma_scale=0.125, padding_mode="constant", cval=0.0,
                      sw_device=torch.device("cpu"), device=torch.device("cpu"), roi_weight_map=roi_weight_map)
        ours = monai_window.sliding_window_inference(x, WINDOW, batch_size, Predictor(members), **kwargs)
        theirs = monai_utils.sliding_window_inference(x, WINDOW, batch_size, Predictor(members), **kwargs)
        assert_identical(ours, theirs)


def test_two_volumes_constant_blending_and_another_padding_value_are_monais():
    x = volume((2, 1, 5, 14, 11), seed=3)
    kwargs = dict(overlap=0.4, mode="constant", padding_mode="constant", cval=-1.5)
    assert_identical(monai_window.sliding_window_inference(x, WINDOW, 3, Predictor(2), **kwargs),
                     monai_utils.sliding_window_inference(x, WINDOW, 3, Predictor(2), **kwargs))


def test_a_predictor_that_changes_the_window_size_is_refused():
    with pytest.raises(ValueError, match="not the window's"):
        monai_window.sliding_window_inference(volume((1, 1, 8, 12, 14)), WINDOW, 1, lambda w: w[:, :, ::2])
