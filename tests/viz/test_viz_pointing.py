"""The pointing game's scoring (minicnn.viz.pointing), against its definition written pixel by pixel:
a hit when the map's maximum lies within TOLERANCE pixels (in y and in x) of some object pixel."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.viz.pointing import TOLERANCE, centre_maps, grown_mask, pointed_pixel, pointing_hits


def brute_force_hit(heat, mask, tolerance):
    """The definition: the maximum pixel (unique here) is within `tolerance` of an object pixel in y and x."""
    if heat.max() == heat.min():
        return False
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    rows, cols = np.nonzero(mask)
    return bool(np.any((np.abs(rows - y) <= tolerance) & (np.abs(cols - x) <= tolerance)))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 12), st.integers(5, 12), st.integers(0, 3))
def test_hits_equal_the_pixel_by_pixel_definition(seed, h, w, tolerance):
    rng = np.random.default_rng(seed)
    maps = rng.random((4, h, w))  # continuous values: one maximum per map
    masks = rng.random((4, h, w)) < 0.08
    want = [brute_force_hit(heat, mask, tolerance) for heat, mask in zip(maps, masks)]
    np.testing.assert_array_equal(pointing_hits(maps, masks, tolerance), want)


def test_the_hand_checked_cases():
    mask = np.zeros((9, 9), dtype=bool)
    mask[4, 4] = True  # one object pixel
    heat = np.zeros((9, 9))
    heat[4, 6] = 1  # 2 px to the right: inside the default tolerance
    assert pointing_hits(heat[None], mask[None]).tolist() == [True]
    heat[4, 6], heat[4, 7] = 0, 1  # 3 px: outside
    assert pointing_hits(heat[None], mask[None]).tolist() == [False]
    assert grown_mask(mask).sum() == (2 * TOLERANCE + 1) ** 2
    # a flat map points nowhere: a miss even where the object covers everything
    assert pointed_pixel(np.ones((9, 9))) is None
    assert pointing_hits(np.ones((1, 9, 9)), np.ones((1, 9, 9), dtype=bool)).tolist() == [False]


def test_ties_point_at_the_tied_pixel_nearest_their_centroid():
    heat = np.zeros((9, 9))
    heat[0:3, 0:3] = 5  # a flat 3x3 plateau of maxima: its centre pixel (1, 1)
    assert pointed_pixel(heat) == (1, 1)


def test_centre_maps_point_at_the_centre():
    maps = centre_maps(3, (8, 10))
    assert maps.shape == (3, 8, 10)
    assert all(pointed_pixel(m) == (4, 5) for m in maps)


def test_maps_and_masks_must_match():
    with pytest.raises(ValueError, match=r"both have shape \(N, H, W\), got \(2, 5, 5\) and \(2, 5, 4\)"):
        pointing_hits(np.zeros((2, 5, 5)), np.zeros((2, 5, 4), dtype=bool))
    with pytest.raises(TypeError, match=r"masks must be a bool array .*got dtype float64"):
        pointing_hits(np.zeros((2, 5, 5)), np.full((2, 5, 5), 0.3))
    maps = np.zeros((2, 5, 5))
    maps[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"maps must hold finite values, got 1 NaN or inf"):
        pointing_hits(maps, np.zeros((2, 5, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"tolerance must be an int >= 0, got -1"):
        pointing_hits(np.zeros((2, 5, 5)), np.zeros((2, 5, 5), dtype=bool), tolerance=-1)
