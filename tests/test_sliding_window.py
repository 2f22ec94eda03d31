"""The sliding window held to a naive loop written from the protocol's words: MONAI's window
placement (step int(window x (1 - overlap)), the last window moved back inside the volume),
centred zero padding of axes shorter than the window, the Gaussian importance map (sigma 0.125 of
the window, clamped at its minimum or 1e-3), whole-volume mirroring with the logits flipped back
and averaged, batching. The network is a small convolution with an asymmetric kernel: it sees
window borders and orientation, so each of these rules changes its output."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panther_seg.inference.sliding_window import InferenceSettings, mirror_sets, predict_logits, predict_probabilities


class ConvNet:
    """Three output channels from one asymmetric 3x3x3 convolution (zero padding at the window's
    border), plus a dependence on the window's mean: a predictor that notices placement."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(3, 1, 3, 3, 3, generator=g, dtype=torch.float64).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv3d(x, self.weight, padding=1)
        return out + x.mean(dim=(2, 3, 4), keepdim=True)


def naive_starts(size: int, window: int, overlap: float) -> list[int]:
    if size == window:
        return [0]
    step = max(int(window * (1 - overlap)), 1)
    count = 1
    while (count - 1) * step + window < size:
        count += 1
    return [min(i * step, size - window) for i in range(count)]


def naive_gaussian(window: tuple[int, ...]) -> np.ndarray:
    g = np.ones(window)
    for axis, w in enumerate(window):
        x = np.arange(w) - (w - 1) / 2
        shape = [1, 1, 1]
        shape[axis] = w
        g = g * np.exp(-(x**2) / (2 * (0.125 * w) ** 2)).reshape(shape)
    return np.maximum(g, max(g.min(), 1e-3))


def naive_window_logits(net: ConvNet, volume: np.ndarray, window: tuple[int, ...], overlap: float) -> np.ndarray:
    """One pass of the sliding window over a volume: pad, place, weight, stitch, crop."""
    pads = [((w - n) // 2, w - n - (w - n) // 2) if n < w else (0, 0) for n, w in zip(volume.shape, window)]
    padded = np.pad(volume, pads)
    weight = naive_gaussian(window)
    acc = np.zeros((3, *padded.shape))
    count = np.zeros(padded.shape)
    for z, y, x in itertools.product(*(naive_starts(n, w, overlap) for n, w in zip(padded.shape, window))):
        s = (slice(z, z + window[0]), slice(y, y + window[1]), slice(x, x + window[2]))
        patch = torch.from_numpy(np.ascontiguousarray(padded[s], dtype=np.float32))[None, None]
        acc[(slice(None), *s)] += net.predict(patch)[0].double().numpy() * weight
        count[s] += weight
    crop = tuple(slice(p[0], p[0] + n) for p, n in zip(pads, volume.shape))
    return (acc / count)[(slice(None), *crop)]


def naive_logits(net: ConvNet, volume: np.ndarray, window: tuple[int, ...], overlap: float, mirror_axes) -> np.ndarray:
    """The whole volume flipped, slid over, flipped back; the mirrorings averaged."""
    flips = [c for r in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, r)]
    total = np.zeros((3, *volume.shape))
    for axes in flips:
        out = naive_window_logits(net, np.flip(volume, axes) if axes else volume, window, overlap)
        total += np.flip(out, [a + 1 for a in axes]) if axes else out
    return total / len(flips)


VOLUMES = {
    "3+ windows per axis": (40, 44, 52),
    "thinner than the window (padding)": (9, 30, 41),
    "exactly one window": (16, 16, 24),
}


@pytest.mark.parametrize("name", list(VOLUMES))
@pytest.mark.parametrize("overlap, mirror_axes, batch_size", [(0.5, (0, 1, 2), 1), (0.5, (0, 1, 2), 3), (0.25, (), 2), (0.5, (2,), 1)])
def test_sliding_window_equals_a_naive_loop(name, overlap, mirror_axes, batch_size):
    window = (16, 16, 24)
    volume = np.random.default_rng(1).normal(size=VOLUMES[name]).astype(np.float32)
    settings = InferenceSettings(window=window, overlap=overlap, mirror_axes=mirror_axes, batch_size=batch_size)
    net = ConvNet()
    ours = predict_logits([net], torch.from_numpy(volume), settings)[0].numpy()
    expected = naive_logits(net, volume, window, overlap, mirror_axes)
    assert ours.shape == expected.shape == (3, *volume.shape)
    np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=0)


def test_probabilities_are_the_softmax_of_the_averaged_logits():
    """Against the naive loop's mirroring-averaged logits, softmax taken in NumPy: the softmax
    comes after the average over mirrorings, not before."""
    volume = np.random.default_rng(2).normal(size=(20, 20, 30)).astype(np.float32)
    settings = InferenceSettings(window=(16, 16, 24))
    net = ConvNet(5)
    probabilities = predict_probabilities([net], torch.from_numpy(volume), settings).numpy()
    logits = naive_logits(net, volume, settings.window, settings.overlap, settings.mirror_axes)
    expected = np.exp(logits - logits.max(axis=0))
    expected /= expected.sum(axis=0)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-6)


def test_the_eight_mirrorings_in_the_original_order():
    assert mirror_sets((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert mirror_sets(()) == [()]
