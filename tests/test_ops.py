"""Identities that hold the ops together, and the lecture's hand-checkable cases (no torch needed)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ops
from minicnn.testing import conv_geometry, gradcheck, pool_geometry
from strategies import random_array, seeds

SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(conv_geometry(), seeds)
def test_adjoint_identity_conv_and_conv_transpose(geometry, seed):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>: the transposed conv is the transpose."""
    x_shape, w_shape, stride, padding = geometry
    x, w = random_array(seed, x_shape), random_array(seed + 1, w_shape)
    conv_x = ops.conv2d(x, w, None, stride, padding)
    y = random_array(seed + 2, conv_x.shape)
    x_back = ops.conv2d_input_gradient(y, w, x_shape, stride, padding)
    assert x_back.shape == x.shape
    np.testing.assert_allclose(np.vdot(conv_x, y), np.vdot(x, x_back), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(conv_geometry(), seeds)
def test_conv_transpose_is_the_input_gradient_of_conv(geometry, seed):
    x_shape, w_shape, stride, padding = geometry
    x, w = random_array(seed, x_shape), random_array(seed + 1, w_shape)
    dy = random_array(seed + 2, ops.conv2d(x, w, None, stride, padding).shape)
    dx, _, _ = ops.conv2d_backward(dy, x, w, stride, padding)
    h, wd = x_shape[2:]
    output_padding = ((h + 2 * padding[0] - w_shape[2]) % stride[0], (wd + 2 * padding[1] - w_shape[3]) % stride[1])
    np.testing.assert_array_equal(dx, ops.conv_transpose2d(dy, w, None, stride, padding, output_padding))


@settings(max_examples=10, deadline=None)
@given(conv_geometry(max_channels=3, max_batch=2), seeds)
def test_conv2d_gradients_match_finite_differences(geometry, seed):
    x_shape, w_shape, stride, padding = geometry
    x, w = random_array(seed, x_shape), random_array(seed + 1, w_shape)
    b = random_array(seed + 2, (w_shape[0],))
    r = random_array(seed + 3, ops.conv2d(x, w, b, stride, padding).shape)

    def loss(_):  # gradcheck perturbs x, w and b in place, one entry at a time
        return np.vdot(ops.conv2d(x, w, b, stride, padding), r)

    dx, dw, db = ops.conv2d_backward(r, x, w, stride, padding)
    gradcheck(loss, x, dx, rtol=1e-7)
    gradcheck(loss, w, dw, rtol=1e-7)
    gradcheck(loss, b, db, rtol=1e-7)


def test_relu_rules_on_the_lecture_example():
    """A -2 input that receives 10 back: 'gradient' gives 0, 'deconvnet' gives 10, 'guided' gives 0."""
    x = np.array([[[[-2.0, 3.0], [1.0, -1.0]]]])
    dy = np.array([[[[10.0, -4.0], [5.0, -7.0]]]])
    np.testing.assert_array_equal(ops.relu_backward(dy, x, "gradient"), [[[[0.0, -4.0], [5.0, 0.0]]]])
    np.testing.assert_array_equal(ops.relu_backward(dy, x, "deconvnet"), [[[[10.0, 0.0], [5.0, 0.0]]]])
    np.testing.assert_array_equal(ops.relu_backward(dy, x, "guided"), [[[[0.0, 0.0], [5.0, 0.0]]]])
    np.testing.assert_array_equal(ops.relu(x), [[[[0.0, 3.0], [1.0, 0.0]]]])


def test_max_pool_on_the_slide_example_and_unpooling():
    x = np.array([[[[42.0, 1, 12, 3], [5, 7, 2, 8], [6, 0, 7, 1], [3, 2, 4, 5]]]])
    y, switches = ops.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, [[[[42.0, 12.0], [6.0, 7.0]]]])
    np.testing.assert_array_equal(switches, [[[[0, 2], [8, 10]]]])
    unpooled = ops.max_unpool2d(y, switches, (4, 4))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 0], expected[0, 0, 0, 2], expected[0, 0, 2, 0], expected[0, 0, 2, 2] = 42, 12, 6, 7
    np.testing.assert_array_equal(unpooled, expected)


@SETTINGS
@given(pool_geometry(), seeds, st.booleans())
def test_max_pool_routes_each_gradient_to_exactly_one_element(geometry, seed, with_ties):
    x_shape, kernel, stride, padding = geometry
    x = random_array(seed, x_shape)
    if with_ties:
        x = np.round(x)  # many equal values: ties go to the first maximum
    y, switches = ops.max_pool2d(x, kernel, stride, padding)
    # each output's switch points at an element inside its window that equals the maximum
    planes = x.reshape(x_shape[0] * x_shape[1], -1)
    np.testing.assert_array_equal(planes[np.arange(len(planes))[:, None], switches.reshape(len(planes), -1)],
                                  y.reshape(len(planes), -1))
    # a one-hot gradient at one output lands, whole, on exactly one input element
    dy = np.zeros_like(y)
    dy.flat[seed % y.size] = 1.0
    dx = ops.max_unpool2d(dy, switches, x_shape[2:])
    assert np.count_nonzero(dx) == 1 and dx.sum() == 1.0


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.ones((1, 1, 4, 4))
    _, switches = ops.max_pool2d(x, 2)
    np.testing.assert_array_equal(switches, [[[[0, 2], [8, 10]]]])


def test_nan_passes_through_without_crashing():
    x = random_array(0, (1, 2, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y, switches = ops.max_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and switches[0, 0, 0, 0] == 5
    assert np.isnan(ops.relu(x)[0, 0, 1, 1])
    assert np.isnan(ops.conv2d(x, random_array(1, (3, 2, 3, 3)), padding=1)).any()


# ------------------------------------------------------------------ bad input


def test_wrong_ndim_names_the_argument_and_shape():
    with pytest.raises(ValueError, match=r"x must have 4 dimensions, got shape \(3, 8, 8\)"):
        ops.conv2d(np.zeros((3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32))


def test_channel_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"x has shape \(1, 3, 8, 8\).*w has shape \(4, 2, 3, 3\)"):
        ops.conv2d(np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 2, 3, 3), np.float32))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the padded input \(4, 4\)"):
        ops.conv2d(np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 1, 5, 5), np.float32), padding=1)


def test_non_float_dtype_is_refused_not_cast():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got uint8"):
        ops.conv2d(np.zeros((1, 3, 8, 8), np.uint8), np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="w has dtype float64 but the other operand has dtype float32"):
        ops.conv2d(np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float64))


def test_bad_geometry_and_rule_are_named():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ops.conv2d(x, np.zeros((1, 1, 2, 2), np.float32), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        ops.conv2d(x, np.zeros((1, 1, 2, 2), np.float32), padding=-1)
    with pytest.raises(ValueError, match="output_padding must satisfy"):
        ops.conv_transpose2d(x, np.zeros((1, 1, 2, 2), np.float32), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="rule must be one of"):
        ops.relu_backward(x, x, "backward")
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        ops.max_pool2d(x, 2, stride=1.5)


def test_unpool_checks_switches():
    y = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"switches must lie in \[0, 16\)"):
        ops.max_unpool2d(y, np.full((1, 1, 2, 2), 16, np.int64), (4, 4))
    with pytest.raises(ValueError, match=r"switches must have shape \(1, 1, 2, 2\)"):
        ops.max_unpool2d(y, np.zeros((1, 1, 4), np.int64), (4, 4))


def test_labels_are_checked():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        ops.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2\)"):
        ops.cross_entropy(logits, np.array([0]))


@pytest.mark.parametrize("call,message", [
    (lambda: ops.conv2d(np.ones((1, 3, 5, 5)), np.ones((0, 3, 3, 3))),
     r"w must hold at least one filter \(FCHW layout, F >= 1\), got shape \(0, 3, 3, 3\)"),
    (lambda: ops.conv2d(np.ones((0, 3, 5, 5)), np.ones((2, 3, 3, 3))),
     r"x must hold at least one image \(NCHW layout, N >= 1\), got shape \(0, 3, 5, 5\)"),
    (lambda: ops.conv_transpose2d(np.ones((0, 2, 3, 3)), np.ones((2, 3, 3, 3))), r"y must hold at least one image"),
    (lambda: ops.max_pool2d(np.ones((0, 3, 4, 4)), 2), r"x must hold at least one image"),
    (lambda: ops.avg_pool2d(np.ones((1, 0, 4, 4)), 2), r"x must hold at least one channel \(NCHW layout, C >= 1\)"),
    (lambda: ops.global_avg_pool2d(np.ones((1, 2, 0, 4))), r"x must hold at least one row \(NCHW layout, H >= 1\)"),
    (lambda: ops.adaptive_avg_pool2d(np.ones((1, 2, 4, 0)), 2), r"x must hold at least one column"),
    (lambda: ops.linear(np.ones((0, 3)), np.ones((2, 3))), r"x must hold at least one image \(ND layout, N >= 1\)"),
    (lambda: ops.softmax(np.ones((2, 0))), r"logits must hold at least one class \(NK layout, K >= 1\)"),
    (lambda: ops.cross_entropy(np.ones((0, 3)), np.zeros(0, np.int64)), r"logits must hold at least one image"),
    (lambda: ops.cross_entropy_backward(np.ones((0, 3)), np.zeros(0, np.int64)), r"logits must hold at least one"),
])
def test_empty_batches_and_maps_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unpool_output_size_is_checked_against_the_switches():
    x = random_array(0, (1, 2, 8, 8))
    y, switches = ops.max_pool2d(x, 2)
    np.testing.assert_array_equal(ops.max_unpool2d(y, switches, 8), ops.max_unpool2d(y, switches, (8, 8)))
    np.testing.assert_array_equal(ops.max_unpool2d(y, switches, np.int64(8)), ops.max_unpool2d(y, switches, (8, 8)))
    with pytest.raises(ValueError, match=r"output_size must be >= 1, got \(-8, -8\)"):
        ops.max_unpool2d(y, switches, (-8, -8))
    with pytest.raises(TypeError, match=r"output_size must be an int or a pair of ints, got \(8, 8, 1\)"):
        ops.max_unpool2d(y, switches, (8, 8, 1))
    with pytest.raises(ValueError, match=r"switches must lie in \[0, 36\) for output_size \(6, 6\)"):
        ops.max_unpool2d(y, switches, (6, 6))


def test_backward_ops_check_input_shape():
    dy = np.ones((1, 2, 2, 2))
    for call in (lambda shape: ops.avg_pool2d_backward(dy, shape, 2),
                 lambda shape: ops.adaptive_avg_pool2d_backward(dy, shape),
                 lambda shape: ops.global_avg_pool2d_backward(np.ones((1, 2)), shape)):
        with pytest.raises(ValueError, match=r"input_shape must be a tuple \(N, C, H, W\) of 4 ints, got \(2, 4, 4\)"):
            call((2, 4, 4))
        with pytest.raises(ValueError, match=r"input_shape\[2\] \(H\) must be an int >= 1, got 0"):
            call((1, 2, 0, 4))
        with pytest.raises(TypeError, match=r"input_shape must be a tuple \(N, C, H, W\) of 4 ints, got 4"):
            call(4)
        assert call((np.int64(1), 2, np.int64(4), 4)).shape == (1, 2, 4, 4)
    w = np.ones((2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"channel mismatch: input_shape \(1, 4, 4, 4\) has 4 channels but w has "
                                         r"shape \(2, 3, 3, 3\) and expects 3"):
        ops.conv2d_input_gradient(dy, w, (1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"input_shape must be a tuple \(N, C, H, W\) of 4 ints, got \(3, 4, 4\)"):
        ops.conv2d_input_gradient(dy, w, (3, 4, 4))
    with pytest.raises(ValueError, match=r"shape mismatch: input_shape \(1, 4\) has 4 features but w has shape "
                                         r"\(2, 3\) and expects 3 input features"):
        ops.linear_input_gradient(np.ones((1, 2)), np.ones((2, 3)), (1, 4))


def test_adaptive_pool_takes_a_numpy_int_output_size():
    x = random_array(0, (1, 2, 6, 6))
    np.testing.assert_array_equal(ops.adaptive_avg_pool2d(x, np.int64(3)), ops.adaptive_avg_pool2d(x, (3, 3)))
    with pytest.raises(ValueError, match=r"output_size must be >= 1, got \(0, 0\)"):
        ops.adaptive_avg_pool2d(x, 0)


def test_checks_live_in_ops_not_in_the_kernels():
    """The kernels trust their callers: these rejections come from ops (kernels.py repeats none of them)."""
    x32 = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size \(2, 2\)"):
        ops.max_pool2d(x32, 2, 1, (0, 2))
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 2, 2, 2\)"):
        ops.conv2d_backward(np.zeros((1, 2, 3, 3), np.float32), x32, np.zeros((2, 1, 3, 3), np.float32))
