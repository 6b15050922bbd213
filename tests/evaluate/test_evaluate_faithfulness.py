"""Deletion and insertion (minicnn.evaluate.faithfulness): the curves' ends, a hand-computed curve and AUC,
and the identity linking the two (deleting in one order is inserting in the reverse order)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.evaluate.faithfulness import (
    area_under_curve,
    changed_counts,
    deletion_curve,
    fill_images,
    insertion_curve,
    pixel_order,
)
from minicnn.layers import Conv2d, Flatten, Linear, ReLU
from minicnn.network import Network
from minicnn.ops import softmax


def sum_network():
    """(N, 1, 2, 2) -> scores (0, sum of the pixels): p(class 1) = sigmoid(sum of the pixels)."""
    fc = Linear(4, 2, rng=np.random.default_rng(0), dtype=np.float64)
    fc.params["weight"][:] = [[0, 0, 0, 0], [1, 1, 1, 1]]
    fc.params["bias"][:] = 0
    return Network([("flatten", Flatten()), ("fc", fc)])


def small_cnn(seed):
    rng = np.random.default_rng(seed)
    return Network([("conv", Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                    ("flatten", Flatten()), ("fc", Linear(3 * 6 * 6, 4, rng=rng, dtype=np.float64))])


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def test_a_hand_computed_deletion_curve_and_its_area():
    net = sum_network()
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # pixel values 1, 2, 3, 4 (raster order)
    heat = np.array([[[0.1, 0.9], [0.5, 0.0]]])  # order: pixel 1 (2.0), pixel 2 (3.0), pixel 0 (1.0), pixel 3 (4.0)
    curve = deletion_curve(net, x, 1, heat, steps=4, fill=0.0)
    want = sigmoid(np.array([10.0, 8.0, 5.0, 4.0, 0.0]))  # the sum after removing 2, then 3, then 1, then 4
    np.testing.assert_allclose(curve[0], want, rtol=1e-12)
    # trapezoid rule by hand, spacing 1/4
    hand = 0.25 * ((want[0] + want[1]) / 2 + (want[1] + want[2]) / 2 + (want[2] + want[3]) / 2 + (want[3] + want[4]) / 2)
    np.testing.assert_allclose(area_under_curve(curve), [hand], rtol=1e-12)
    insertion = insertion_curve(net, x, 1, heat, steps=2, fill=0.0)  # 2 pixels a step: 2 and 3, then 1 and 4
    np.testing.assert_allclose(insertion[0], sigmoid(np.array([0.0, 5.0, 10.0])), rtol=1e-12)


def test_the_area_of_hand_curves():
    np.testing.assert_allclose(area_under_curve([[1, 1, 1], [0, 1, 0], [1, 0.5, 0]]), [1, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"curves must have shape \(N, steps \+ 1\) with steps >= 1, got \(3,\)"):
        area_under_curve([1, 2, 3])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["blur", "mean", 0.25]), st.sampled_from([1, 3, 9, 36]))
def test_deletion_starts_at_the_image_and_ends_at_the_fill_image(seed, fill, steps):
    rng = np.random.default_rng(seed)
    net, x = small_cnn(seed), rng.random((3, 2, 6, 6))
    target = rng.integers(0, 4, 3)
    heat = rng.random((3, 6, 6))
    deletion = deletion_curve(net, x, target, heat, steps=steps, fill=fill, batch_size=4)
    insertion = insertion_curve(net, x, target, heat, steps=steps, fill=fill, batch_size=5)
    p_image = softmax(net.forward(x))[np.arange(3), target]
    p_fill = softmax(net.forward(fill_images(x, fill)))[np.arange(3), target]
    assert deletion.shape == insertion.shape == (3, steps + 1)
    # equal up to the rounding of a GEMM run on another batch (float64)
    np.testing.assert_allclose(deletion[:, 0], p_image, rtol=1e-12)
    np.testing.assert_allclose(deletion[:, -1], p_fill, rtol=1e-12)
    np.testing.assert_allclose(insertion[:, 0], p_fill, rtol=1e-12)
    np.testing.assert_allclose(insertion[:, -1], p_image, rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 2, 3, 4, 6, 12, 36]))
def test_deleting_in_one_order_is_inserting_in_the_reverse_order(seed, steps):
    """With no ties and steps dividing H*W, deletion step k changes exactly the pixels insertion with -map has
    NOT yet put back at step steps - k, so the curves are each other reversed."""
    rng = np.random.default_rng(seed)
    net, x = small_cnn(seed), rng.random((2, 2, 6, 6))
    heat = rng.permutation(72).reshape(2, 6, 6).astype(np.float64)  # distinct values
    deletion = deletion_curve(net, x, [0, 3], heat, steps=steps, fill="mean")
    insertion = insertion_curve(net, x, [0, 3], -heat, steps=steps, fill="mean")
    np.testing.assert_allclose(deletion, insertion[:, ::-1], rtol=1e-12)


def test_the_result_does_not_depend_on_the_batch_size():
    rng = np.random.default_rng(1)
    net, x, heat = small_cnn(1), rng.random((3, 2, 6, 6)), rng.random((3, 6, 6))
    np.testing.assert_allclose(deletion_curve(net, x, 2, heat, steps=5, batch_size=1),
                               deletion_curve(net, x, 2, heat, steps=5, batch_size=100), rtol=1e-12)


def test_the_order_is_highest_first_ties_in_raster_order_and_the_counts_floor():
    heat = np.array([[[1.0, 3.0], [3.0, 2.0]]])
    np.testing.assert_array_equal(pixel_order(heat), [[1, 2, 3, 0]])
    np.testing.assert_array_equal(changed_counts(10, 4), [0, 2, 5, 7, 10])


def test_the_fill_images():
    x = np.random.default_rng(0).random((2, 3, 8, 8))
    np.testing.assert_allclose(fill_images(x, "mean")[:, :, 3, 5], x.mean(axis=(2, 3)))
    blurred = fill_images(x, "blur", blur_sigma=2.0)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    np.testing.assert_allclose(blurred.mean(axis=(2, 3)), x.mean(axis=(2, 3)), atol=0.05)
    with pytest.raises(ValueError, match=r"fill must be one of \['blur', 'mean'\], got 'black'"):
        fill_images(x, "black")


def test_bad_maps_are_refused():
    net, x = small_cnn(0), np.zeros((2, 2, 6, 6))
    with pytest.raises(ValueError, match=r"maps must have shape \(2, 6, 6\), got \(2, 6, 5\)"):
        deletion_curve(net, x, 0, np.zeros((2, 6, 5)), steps=3)
    with pytest.raises(ValueError, match=r"steps must be an int >= 1, got 0"):
        insertion_curve(net, x, 0, np.zeros((2, 6, 6)), steps=0)
