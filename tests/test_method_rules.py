"""Rules of the original method that no end-to-end comparison pins down on its own: each test
here fails when its rule changes (the overlap of a normal run, the anisotropic target spacing,
the z-score's epsilon, face connectivity of the tumour components)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from panther_seg.cli import options_from, parse_args
from panther_seg.contract.stats import NormalisationStats
from panther_seg.inference import postprocessing
from panther_seg.inference.preprocessing import zscore
from panther_seg.inference.sliding_window import mirror_sets


def test_a_normal_command_line_run_uses_overlap_one_half_and_eight_mirrorings():
    """spec: MONAI's sliding window at overlap 0.5 over the volume and its 8 mirrorings; --fast
    is the named departure (0.25, none)."""
    normal = options_from(parse_args(["-i", "scan.mha", "-o", "out"])).settings("cpu")
    assert normal.overlap == 0.5
    assert len(mirror_sets(normal.mirror_axes)) == 8
    fast = options_from(parse_args(["-i", "scan.mha", "-o", "out", "--fast"])).settings("cpu")
    assert (fast.overlap, fast.mirror_axes) == (0.25, ())


def test_anisotropic_data_take_the_10th_percentile_z_spacing():
    """nnU-Net's rule: median spacing, except z from the 10th percentile when median z is at
    least 3 times median x; x and y always from the median."""
    at_ratio = NormalisationStats(median_spacing=(1.0, 1.2, 3.0), p10_spacing=(0.8, 0.9, 2.5), median_size=(300, 300, 70))
    assert at_ratio.target_spacing() == (1.0, 1.2, 2.5)
    below = NormalisationStats(median_spacing=(1.0, 1.2, 2.99), p10_spacing=(0.8, 0.9, 2.5), median_size=(300, 300, 70))
    assert below.target_spacing() == (1.0, 1.2, 2.99)


def test_the_z_score_divides_by_std_plus_1e_minus_6():
    """(v - mean) / (std + 1e-6) over the voxels > 0, computed here independently in float64 on
    values whose std (0.01) makes the epsilon visible at the 1e-4 level."""
    rng = np.random.default_rng(5)
    volume = np.where(rng.random((6, 8, 8)) < 0.2, 0.0, 100.0 + 0.01 * rng.standard_normal((6, 8, 8)))
    selected = volume[volume > 0]
    expected = (volume - selected.mean()) / (selected.std() + 1e-6)
    without_epsilon = (volume - selected.mean()) / selected.std()
    assert np.abs(expected - without_epsilon).max() > 1e-4  # the test can tell
    np.testing.assert_allclose(zscore(volume), expected, rtol=1e-6, atol=1e-6)


def rounded_cube(shape: tuple[int, int, int], points: list[tuple[int, int, int]]) -> np.ndarray:
    """Points dilated by the 6-connected cross: unchanged by the opening and closing."""
    mask = np.zeros(shape, dtype=bool)
    for p in points:
        mask[p] = True
    return ndimage.binary_dilation(mask, ndimage.generate_binary_structure(3, 1))


def test_tumour_components_are_face_connected():
    """A (275 voxels), B (7) diagonally off A's edge, C (64) apart. After opening and closing B
    meets A at edges only: with face connectivity B is a third component and is dropped (only the
    largest and the second are kept); with 26-connectivity A and B are one component and B stays
    (checked by changing the structure of the labelling)."""
    shape = (16, 24, 24)
    a = rounded_cube(shape, [(z, y, x) for z in range(5, 10) for y in range(5, 10) for x in range(5, 10)])
    b = rounded_cube(shape, [(7, 11, 12)])
    c = rounded_cube(shape, [(z, 18, x) for z in range(5, 9) for x in range(5, 9)])
    assert not (ndimage.binary_dilation(a, ndimage.generate_binary_structure(3, 1)) & b).any()  # no shared face
    tumour = (a | b | c).astype(np.float32)
    mask = postprocessing.postprocess(tumour, np.zeros_like(tumour), (3.0, 3.0, 3.0)).astype(bool)
    assert mask[a].all() and mask[c].all()
    assert not mask[b].any()
