"""Each post-processing rule of docs/protocol.md on hand-made probability maps whose answer is
known: the inclusive threshold, opening then closing with the 6-connected cross, the minimum
component volume (50 mm^3 or 0.05 % of the total) and its fallback to the largest, the second
component at 20 % of the largest, and the pancreas margin (a ball of round(6 mm / mean spacing)
voxels, the pancreas at probability >= 0.5) including the case where no component touches it.

Shapes are "rounded boxes" (a box dilated by the cross), which opening and closing leave as they
are, so a shape's voxel count is its component's volume."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from panther_seg.inference.postprocessing import pancreas_margin_radius, postprocess

CROSS = ndimage.generate_binary_structure(3, 1)
MM1 = (1.0, 1.0, 1.0)
PANTHER_ZYX = (3.0, 1.1875, 1.1875)


def rounded_box(a: int, b: int, c: int) -> np.ndarray:
    box = np.zeros((a + 2, b + 2, c + 2), dtype=bool)
    box[1:-1, 1:-1, 1:-1] = True
    return ndimage.binary_dilation(box, CROSS)


def put(volume: np.ndarray, shape: np.ndarray, corner: tuple[int, int, int], value: float = 0.9) -> np.ndarray:
    s = tuple(slice(c, c + n) for c, n in zip(corner, shape.shape))
    volume[s] = np.where(shape, value, volume[s])
    return volume


def labelled(mask: np.ndarray) -> list[int]:
    """Component sizes, largest first."""
    labels, n = ndimage.label(mask, CROSS)
    return sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)


def run(tumour: np.ndarray, spacing=MM1, pancreas: np.ndarray | None = None) -> np.ndarray:
    return postprocess(tumour.astype(np.float32), np.zeros_like(tumour, np.float32) if pancreas is None else pancreas.astype(np.float32), spacing)


def test_threshold_is_inclusive_at_0_45():
    shape = rounded_box(1, 8, 9)
    assert labelled(run(put(np.zeros((8, 16, 16)), shape, (1, 2, 2), 0.45))) == [250]
    assert run(put(np.zeros((8, 16, 16)), shape, (1, 2, 2), np.nextafter(np.float32(0.45), 0))).sum() == 0


def test_opening_removes_thin_structures_and_closing_fills_a_hole():
    tumour = put(np.zeros((10, 20, 24)), rounded_box(5, 8, 9), (1, 2, 2))
    tumour[7, 7, 12:22] = 0.9  # a one-voxel line leaving the shape: opening removes it
    tumour[4, 6, 7] = 0.0  # a one-voxel hole deep inside the shape: closing fills it
    out = run(tumour)
    expected = put(np.zeros(tumour.shape), rounded_box(5, 8, 9), (1, 2, 2)) > 0
    assert np.array_equal(out.astype(bool), expected)


def test_opening_comes_before_closing():
    """A checkerboard vanishes under opening; closing first would make it a solid block."""
    tumour = np.zeros((12, 12, 12))
    z, y, x = np.indices((8, 8, 8))
    tumour[2:10, 2:10, 2:10] = ((z + y + x) % 2 == 0) * 0.9
    assert run(tumour).sum() == 0


def test_minimum_volume_50_mm3():
    tumour = put(np.zeros((8, 30, 30)), rounded_box(1, 8, 9), (1, 2, 2))
    tumour = put(tumour, rounded_box(1, 3, 4), (1, 20, 20))  # 50 voxels, 20 % of the largest
    assert labelled(run(tumour, MM1)) == [250, 50]  # 50 mm^3: kept
    assert labelled(run(tumour, (1.0, 1.0, 0.99))) == [250]  # 49.5 mm^3: dropped


def test_minimum_volume_is_at_least_0_05_percent_of_the_total():
    """2,195 crosses of 70 mm^3 and one component of 120 mm^3: the total (153,770 mm^3) puts the
    minimum at 76.9 mm^3, so only the larger one survives; with a minimum of 50 mm^3 alone a
    cross would be kept beside it as the second component."""
    tumour = np.zeros((56, 56, 56))  # shapes stay off the border, where closing erodes
    corners = [(z, y, x) for z in range(2, 54, 4) for y in range(2, 54, 4) for x in range(2, 54, 4)]
    for corner in corners:
        if corner not in ((2, 2, 2), (2, 2, 6)):
            put(tumour, rounded_box(1, 1, 1), corner)  # 7 voxels
    put(tumour, rounded_box(1, 1, 2), (2, 2, 2))  # 12 voxels
    assert len(labelled(tumour > 0.45)) == len(corners) - 1
    assert labelled(run(tumour, (10.0, 1.0, 1.0))) == [12]


def test_when_no_component_is_large_enough_the_largest_is_kept():
    tumour = put(np.zeros((8, 30, 30)), rounded_box(1, 1, 2), (1, 2, 2))  # 12 mm^3
    tumour = put(tumour, rounded_box(1, 1, 1), (1, 15, 15))  # 7 mm^3
    assert labelled(run(tumour)) == [12]


def test_second_component_kept_from_20_percent_of_the_largest():
    for largest, kept in (((1, 8, 9), [250, 50]), ((1, 6, 12), [252])):
        tumour = put(np.zeros((8, 30, 36)), rounded_box(*largest), (1, 2, 2))
        tumour = put(tumour, rounded_box(1, 3, 4), (1, 22, 24))
        tumour = put(tumour, rounded_box(1, 3, 4), (4, 22, 24), 0.0)  # nothing else
        assert labelled(run(tumour)) == kept


def test_third_component_is_never_kept():
    tumour = np.zeros((8, 40, 40))
    for corner in ((1, 2, 2), (1, 2, 22), (1, 22, 2)):
        put(tumour, rounded_box(1, 8, 9), corner)
    assert labelled(run(tumour)) == [250, 250]


def test_pancreas_margin_radius():
    assert pancreas_margin_radius(PANTHER_ZYX) == 3
    assert pancreas_margin_radius(MM1) == 6
    assert pancreas_margin_radius((20.0, 20.0, 20.0)) == 1


@pytest.mark.parametrize("offset", [(-3, 0, 0), (-4, 0, 0), (-2, -2, 0), (-2, -2, -1), (-3, -2, 0), (-2, -2, -2), (0, -3, 0), (0, 0, -4)])
def test_components_away_from_the_dilated_pancreas_are_dropped(offset):
    """The margin is a ball of 3 voxels (x^2 + y^2 + z^2 <= 9) whatever the spacing along each
    axis: a component touches the dilated pancreas when one of its voxels lies within that
    distance of a pancreas voxel (the oracle here: squared distances, no dilation)."""
    shape = (16, 40, 60)
    tumour = put(np.zeros(shape), rounded_box(1, 8, 9), (1, 2, 40))  # the other component, far away
    tested = rounded_box(1, 3, 4)
    corner = (6, 20, 20)
    tumour = put(tumour, tested, corner)
    tip = (corner[0], corner[1] + 1, corner[2] + 1)  # a voxel on the tested component's top face
    point = tuple(t + o for t, o in zip(tip, offset))
    pancreas = np.zeros(shape)
    pancreas[point] = 0.5  # inclusive threshold
    voxels = np.argwhere(put(np.zeros(shape), tested, corner) > 0)
    touches = int(((voxels - np.array(point)) ** 2).sum(axis=1).min()) <= 9
    assert labelled(run(tumour, PANTHER_ZYX, pancreas)) == ([50] if touches else [250, 50])


def test_the_margin_cases_above_cover_both_outcomes_and_tell_a_ball_from_a_cube():
    distances = {offset: sum(o * o for o in offset) for offset in [(-3, -2, 0), (-2, -2, -1)]}
    assert distances[(-3, -2, 0)] > 9 and max(abs(o) for o in (-3, -2, 0)) <= 3  # a cube would touch
    assert distances[(-2, -2, -1)] <= 9


def test_when_no_component_touches_the_pancreas_all_are_kept():
    shape = (10, 40, 60)
    pancreas = np.zeros(shape)
    pancreas[5, 38, 2] = 0.9
    tumour = put(put(np.zeros(shape), rounded_box(1, 8, 9), (1, 2, 2)), rounded_box(1, 3, 4), (1, 2, 40))
    assert labelled(run(tumour, PANTHER_ZYX, pancreas)) == [250, 50]


def test_a_pancreas_below_0_5_is_no_pancreas():
    shape = (10, 40, 60)
    pancreas = np.zeros(shape)
    pancreas[4, 5, 42] = np.nextafter(np.float32(0.5), 0)
    tumour = put(put(np.zeros(shape), rounded_box(1, 8, 9), (1, 2, 2)), rounded_box(1, 3, 4), (1, 2, 40))
    assert labelled(run(tumour, PANTHER_ZYX, pancreas)) == [250, 50]
    pancreas[4, 5, 42] = 0.5
    assert labelled(run(tumour, PANTHER_ZYX, pancreas)) == [50]
