"""minicnn.testing's strategies draw valid cases, and every kind of case the docstrings promise occurs."""
import numpy as np
import pytest
from hypothesis import find, given, settings

from minicnn import ops
from minicnn.shapes import conv2d_output_shape
from minicnn.testing import ConvCase, conv_backward_cases, conv_cases, conv_transpose_cases, pool_cases

SETTINGS = settings(max_examples=60, deadline=None)


def stride_leaves_rows_over(case, axis):
    """(n + 2p - k) mod s != 0 along axis 0 (rows) or 1 (columns) of a ConvCase."""
    n, k = case.x.shape[2 + axis], case.w.shape[2 + axis]
    return (n + 2 * case.padding[axis] - k) % case.stride[axis] != 0


@SETTINGS
@given(conv_cases())
def test_conv_cases_are_valid_and_within_the_default_bounds(case):
    x, w, stride, padding = case
    assert x.dtype == w.dtype == np.float64 and x.shape[1] == w.shape[1]
    assert max(x.shape[2:]) <= 8 and max(w.shape[2:]) <= 4 and max(stride) <= 3 and max(padding) <= 2
    assert all(isinstance(v, int) for v in stride + padding)
    assert ops.conv2d(x, w, None, stride, padding).shape[2:] == conv2d_output_shape(x.shape[2:], w.shape[2:], stride,
                                                                                   padding)
    assert set(np.unique(np.concatenate([x.ravel(), w.ravel()])) * 8) <= set(range(-16, 17))


@SETTINGS
@given(conv_cases(dtype=np.float32, max_batch=1, max_channels=1, max_size=3, max_kernel=2, max_stride=1, max_padding=0))
def test_conv_cases_respect_their_options(case):
    x, w, stride, padding = case
    assert x.dtype == w.dtype == np.float32
    assert x.shape[:2] == (1, 1) and w.shape[:2] == (1, 1) and max(x.shape[2:]) <= 3 and max(w.shape[2:]) <= 2
    assert stride == (1, 1) and padding == (0, 0)


@pytest.mark.parametrize("name,condition", [
    ("a non-square kernel", lambda c: c.w.shape[2] != c.w.shape[3]),
    ("a non-square input", lambda c: c.x.shape[2] != c.x.shape[3]),
    ("a non-square stride", lambda c: c.stride[0] != c.stride[1]),
    ("a non-square padding", lambda c: c.padding[0] != c.padding[1]),
    ("a stride > 1 that divides n + 2p - k", lambda c: c.stride[0] > 1 and not stride_leaves_rows_over(c, 0)),
    ("a stride that leaves rows over", lambda c: stride_leaves_rows_over(c, 0)),
    ("one input channel, several filters", lambda c: c.w.shape[1] == 1 and c.w.shape[0] > 1),
    ("several channels, one filter", lambda c: c.w.shape[1] > 1 and c.w.shape[0] == 1),
    ("a batch", lambda c: c.x.shape[0] > 1),
    ("padding wider than the kernel", lambda c: c.padding[0] > c.w.shape[2] - 1),
    ("a kernel longer than the input", lambda c: c.w.shape[2] > c.x.shape[2]),
    ("generic values", lambda c: len(np.unique(c.x)) > 10),
    ("non-integer values", lambda c: np.any(c.x != np.round(c.x))),
])
def test_conv_cases_include(name, condition):
    find(conv_cases(), condition, settings=settings(max_examples=2000, database=None))


@SETTINGS
@given(conv_transpose_cases())
def test_conv_transpose_cases_are_valid_and_their_output_padding_legal(case):
    y, w, stride, padding, output_padding = case
    assert y.shape[1] == w.shape[0]
    assert all(0 <= op < s for op, s in zip(output_padding, stride))
    x = ops.conv_transpose2d(y, w, None, stride, padding, output_padding)
    assert max(x.shape[2:]) <= 8
    assert ops.conv2d(x, w, None, stride, padding).shape == y.shape  # y is what a conv of x's size gives


@pytest.mark.parametrize("output_padding", [0, 1, 2])
def test_every_legal_output_padding_occurs_with_stride_3(output_padding):
    find(conv_transpose_cases(), lambda c: c.stride[0] == 3 and c.output_padding[0] == output_padding,
         settings=settings(max_examples=2000, database=None))


@SETTINGS
@given(conv_backward_cases())
def test_conv_backward_cases_have_dy_of_the_output_shape(case):
    dy, x, w, stride, padding = case
    assert dy.shape == ops.conv2d(x, w, None, stride, padding).shape and dy.dtype == x.dtype


@SETTINGS
@given(pool_cases())
def test_pool_cases_are_valid(case):
    x, kernel, stride, padding = case
    assert all(p <= k // 2 for p, k in zip(padding, kernel))
    y, switches = ops.max_pool2d(x, kernel, stride, padding)
    assert y.shape == switches.shape


def test_pool_cases_include_ties_and_padding():
    find(pool_cases(), lambda c: c.padding[0] > 0 and len(np.unique(c.x)) < c.x.size,
         settings=settings(max_examples=2000, database=None))


def test_a_case_prints_its_geometry_and_small_arrays():
    case = ConvCase(np.array([[[[0.0, 1.0]]]]), np.array([[[[0.5], [-2.0]]]]), (2, 1), (1, 0))
    assert repr(case) == ("ConvCase(x (1, 1, 1, 2), w (1, 1, 2, 1), stride=(2, 1), padding=(1, 0))\n"
                          "x (1, 1, 1, 2) float64 =\n    [[[[0., 1.]]]]\n"
                          "w (1, 1, 2, 1) float64 =\n    [[[[ 0.5],\n       [-2. ]]]]")


def test_a_large_array_prints_its_shape_only():
    case = find(conv_cases(), lambda c: c.x.size > 64, settings=settings(max_examples=2000, database=None))
    assert f"x {case.x.shape} float64 (values not shown: {case.x.size} entries)" in repr(case)


@pytest.mark.parametrize("make,error,message", [
    (lambda: conv_cases(max_size=0), ValueError, r"max_size must be an int >= 1, got 0"),
    (lambda: conv_cases(max_padding=-1), ValueError, r"max_padding must be an int >= 0, got -1"),
    (lambda: conv_transpose_cases(max_stride=1.5), TypeError, r"max_stride must be an int >= 1, got float 1.5"),
    (lambda: pool_cases(dtype=np.float16), ValueError, r"dtype must be float32 or float64, got float16"),
])
def test_bad_options_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()
