"""Weak segmentation (minicnn.evaluate.segmentation): the graph cut reaches the minimum energy found by
enumerating every labelling of tiny images, obeys its seeds; threshold masks and IoU by hand."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("maxflow")

from minicnn.evaluate.segmentation import (  # noqa: E402
    cut_energy,
    cut_terms,
    graph_cut_mask,
    iou,
    minimum_cut,
    threshold_mask,
)


def brute_force_minimum(terms):
    """The least energy over all 2^(H W) labellings."""
    h, w = terms.object_cost.shape
    return min(cut_energy(np.array(bits, dtype=bool).reshape(h, w), terms)
               for bits in itertools.product((False, True), repeat=h * w))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from([(3, 3), (2, 4), (3, 2)]), st.floats(0, 3),
       st.sampled_from([(0.2, 0.8), (0.0, 1.0), (0.4, 0.6)]))
def test_the_graph_cut_reaches_the_brute_force_minimum(seed, shape, smoothness, seeds):
    rng = np.random.default_rng(seed)
    heat, image = rng.random(shape), rng.random((3,) + shape)
    terms = cut_terms(heat, image, low=seeds[0], high=seeds[1], smoothness=smoothness)
    labels = minimum_cut(terms)
    assert labels.shape == shape and labels.dtype == bool
    assert cut_energy(labels, terms) == pytest.approx(brute_force_minimum(terms), rel=1e-9, abs=1e-9)


def test_the_seeds_hold_under_strong_smoothing_and_without_it_each_pixel_follows_its_map_value():
    heat = np.array([[0, 1, 2], [3, 4.5, 5], [6, 7, 8]], dtype=np.float64)  # no value at m = 0.5 (a tie)
    image = np.zeros((3, 3, 3))
    labels = graph_cut_mask(heat, image, low=0.15, high=0.85, smoothness=100.0)
    assert labels[2, 2] and not labels[0, 0]  # the seeds: the top value is object, the lowest background
    # no smoothing: each pixel follows m = heat / 8 (object where 1 - m < m)
    np.testing.assert_array_equal(graph_cut_mask(heat, image, 0.15, 0.85, smoothness=0.0), heat / 8 > 0.5)


def test_the_energy_of_hand_labellings():
    heat = np.array([[0.0, 1.0]])
    image = np.zeros((3, 1, 2))  # flat: every neighbour weight is the smoothness
    terms = cut_terms(heat, image, low=0.0, high=1.0, smoothness=0.25)
    np.testing.assert_allclose(terms.right, [[0.25, 0.0]])
    # L = (0, 1): unary m_0 + (1 - m_1) = 0 + 0, one cut edge 0.25
    assert cut_energy(np.array([[False, True]]), terms) == pytest.approx(0.25)
    assert cut_energy(np.array([[True, True]]), terms) > 1  # pixel 0 is a background seed: HARD


def test_threshold_and_iou_by_hand():
    heat = np.arange(10, dtype=np.float64).reshape(2, 5)
    np.testing.assert_array_equal(threshold_mask(heat, 0.8), heat > 7.2)
    assert not threshold_mask(np.ones((4, 4))).any()  # a constant map segments nothing
    a = np.array([[True, True, False, False]])
    b = np.array([[False, True, True, False]])
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 1.0
    with pytest.raises(ValueError, match=r"bool masks of one shape, got bool \(1, 4\) and float64 \(1, 4\)"):
        iou(a, b.astype(float))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"heat must have shape \(4, 4\), got \(4, 5\)"):
        cut_terms(np.zeros((4, 5)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"high must be a finite number > 0.5 and <= 1, got 0.5"):
        cut_terms(np.zeros((4, 4)), np.zeros((3, 4, 4)), low=0.5, high=0.5)
