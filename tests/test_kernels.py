"""The Numba kernels (minicnn.kernels) hold equal to their plain NumPy twins (minicnn.im2col).

Exactly equal where both compute each number the same way (im2col copies, max-pool picks, ReLU
masks); equal to a tight relative tolerance where numbers are sums (col2im, unpool, the tiled
convolution kernels), since the two may add in a different order. Shapes, kernel sizes, strides,
paddings and dtypes are drawn by hypothesis; inputs are random normals, or small integers (so that
ties happen), sometimes a non-contiguous view.
"""
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import im2col as reference
from minicnn import kernels
from minicnn.shapes import conv2d_output_shape

RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
FEW = settings(max_examples=40, deadline=None)
MANY = settings(max_examples=80, deadline=None)


@dataclass
class Case:
    x: np.ndarray  # (N, C, H, W), possibly a non-contiguous view
    kernel: tuple
    stride: tuple
    padding: tuple
    rng: np.random.Generator

    @property
    def geometry(self):
        return self.kernel, self.stride, self.padding

    @property
    def out_hw(self):
        return conv2d_output_shape(self.x.shape[2:], *self.geometry)


@st.composite
def cases(draw, pool=False):
    """A random input and geometry: kernel 1-5, stride 1-3, padding 0-2 (pools: <= kernel // 2),
    each drawn separately for height and width; an input at least as large as the kernel. Some
    inputs are wide (33-72 columns): rows of >= 32 output columns take the kernels' row-copy path."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph = draw(st.integers(0, min(2, kh // 2) if pool else 2))
    pw = draw(st.integers(0, min(2, kw // 2) if pool else 2))
    h = draw(st.integers(max(1, kh - 2 * ph), kh + 7))
    w = draw(st.one_of(st.integers(max(1, kw - 2 * pw), kw + 7), st.integers(33, 72)))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        x = rng.standard_normal((n, c, h, 2 * w))
    else:
        x = rng.integers(-2, 3, (n, c, h, 2 * w)).astype(float)  # many ties
    x = x.astype(dtype)
    x = x[..., ::2] if draw(st.booleans()) else np.ascontiguousarray(x[..., :w])
    return Case(x, (kh, kw), (sh, sw), (ph, pw), rng)


def assert_same(got, want):
    """Same dtype, same shape, same numbers (NaN where the other has NaN)."""
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


def assert_close(got, want, dtype):
    """Sums that may be added in another order: same dtype and shape, numbers within rtol."""
    assert got.dtype == want.dtype == dtype
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


# ----------------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------------
@MANY
@given(cases())
def test_im2col_equals_reference(case):
    assert_same(kernels.im2col(case.x, *case.geometry), reference.im2col(case.x, *case.geometry))


@MANY
@given(cases())
def test_col2im_equals_reference(case):
    cols_shape = reference.im2col(case.x, *case.geometry).shape
    cols = case.rng.standard_normal(cols_shape).astype(case.x.dtype)
    got = kernels.col2im(cols, case.x.shape, *case.geometry)
    assert_close(got, reference.col2im(cols, case.x.shape, *case.geometry), case.x.dtype)


@FEW
@given(cases())
def test_im2col_col2im_adjoint(case):
    """<im2col(x), C> = <x, col2im(C)>: col2im is the transpose of im2col (float64)."""
    x = case.x.astype(np.float64)
    cols = kernels.im2col(x, *case.geometry)
    c = case.rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, kernels.col2im(c, x.shape, *case.geometry))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12 * np.abs(c).sum())


# ----------------------------------------------------------------------------------------------
# the tiled convolution kernels: conv2d, conv2d_weight_grad, conv_transpose2d (and im2col_tile)
# ----------------------------------------------------------------------------------------------
@contextmanager
def tile_columns(size):
    """Run the tiled kernels with tiles of at most `size` output positions (tiny: many bands);
    size None: the default sizes."""
    if size is None:
        yield
        return
    saved = kernels.TILE_COLUMNS, kernels.SMALL_GEMM, kernels.WEIGHT_GRAD_COLUMNS
    kernels.TILE_COLUMNS, kernels.SMALL_GEMM, kernels.WEIGHT_GRAD_COLUMNS = size, 0, size  # no wider tiles
    try:
        yield
    finally:
        kernels.TILE_COLUMNS, kernels.SMALL_GEMM, kernels.WEIGHT_GRAD_COLUMNS = saved


def assert_sums_close(got, want, magnitude, dtype):
    """Sums of products, added in another order: |got - want| <= rtol * (the sum of |terms|)."""
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.abs(got - want) <= 10 * RTOL[dtype] * (magnitude + 1e-30)), np.abs(got - want).max()


@MANY
@given(cases(), st.data())
def test_im2col_tile_equals_reference(case, data):
    ho, _ = case.out_hw
    sample = data.draw(st.integers(0, case.x.shape[0] - 1))
    start = data.draw(st.integers(0, ho))
    stop = data.draw(st.integers(start, ho))
    got = kernels.im2col_tile(case.x, sample, (start, stop), *case.geometry)
    assert_same(got, reference.im2col_tile(case.x, sample, (start, stop), *case.geometry))


@MANY
@given(cases(), st.integers(1, 4), st.booleans(), st.sampled_from([None, 1, 5, 256]))
def test_conv2d_equals_reference(case, filters, with_bias, size):
    """Any geometry; tiles of the default size, or tiny ones so that samples are cut into bands."""
    c, (kh, kw) = case.x.shape[1], case.kernel
    w = case.rng.standard_normal((filters, c, kh, kw)).astype(case.x.dtype)
    b = case.rng.standard_normal(filters).astype(case.x.dtype) if with_bias else None
    with tile_columns(size):
        got = kernels.conv2d(case.x, w, b, case.stride, case.padding)
    abs_b = None if b is None else np.abs(b)  # the sum of |terms| bounds the rounding error
    magnitude = reference.conv2d(np.abs(case.x), np.abs(w), abs_b, case.stride, case.padding)
    assert_sums_close(got, reference.conv2d(case.x, w, b, case.stride, case.padding), magnitude, case.x.dtype)


@MANY
@given(cases(), st.integers(1, 4), st.sampled_from([None, 1, 5, 256]))
def test_conv2d_weight_grad_equals_reference(case, filters, size):
    dy = case.rng.standard_normal((case.x.shape[0], filters, *case.out_hw)).astype(case.x.dtype)
    with tile_columns(size):
        got = kernels.conv2d_weight_grad(dy, case.x, *case.geometry)
    magnitude = reference.conv2d_weight_grad(np.abs(dy), np.abs(case.x), *case.geometry)
    assert_sums_close(got, reference.conv2d_weight_grad(dy, case.x, *case.geometry), magnitude, case.x.dtype)


@MANY
@given(cases(), st.integers(1, 4), st.booleans(), st.sampled_from([None, 1, 5, 256]))
def test_conv_transpose2d_equals_reference(case, filters, with_bias, size):
    """Back onto an input of case.x's size (with a stride, several sizes fit one y: output_padding)."""
    n, c = case.x.shape[:2]
    w = case.rng.standard_normal((filters, c, *case.kernel)).astype(case.x.dtype)
    y = case.rng.standard_normal((n, filters, *case.out_hw)).astype(case.x.dtype)
    b = case.rng.standard_normal(c).astype(case.x.dtype) if with_bias else None
    hw = case.x.shape[2:]
    with tile_columns(size):
        got = kernels.conv_transpose2d(y, w, b, hw, case.stride, case.padding)
    abs_b = None if b is None else np.abs(b)
    magnitude = reference.conv_transpose2d(np.abs(y), np.abs(w), abs_b, hw, case.stride, case.padding)
    want = reference.conv_transpose2d(y, w, b, hw, case.stride, case.padding)
    assert_sums_close(got, want, magnitude, case.x.dtype)


def test_tiled_conv_on_one_sample_cut_into_bands():
    """N=1 (the shape of benchmark e): the work is shared by cutting the sample into row bands
    (conv2d) or channel chunks (conv2d_weight_grad, conv_transpose2d), and bands one after another."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 13, 11))
    w = rng.standard_normal((3, 5, 3, 3))
    dy = rng.standard_normal((1, 3, 13, 11))
    assert kernels._bands(1, 13, 11, threads=2, columns=kernels.TILE_COLUMNS) % 2 == 0
    for size in (kernels.TILE_COLUMNS, 1):  # 1: every output row is its own tile
        with tile_columns(size):
            np.testing.assert_allclose(kernels.conv2d(x, w, None, (1, 1), (1, 1)),
                                       reference.conv2d(x, w, None, (1, 1), (1, 1)), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(kernels.conv2d_weight_grad(dy, x, (3, 3), (1, 1), (1, 1)),
                                       reference.conv2d_weight_grad(dy, x, (3, 3), (1, 1), (1, 1)),
                                       rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(kernels.conv_transpose2d(dy, w, None, (13, 11), (1, 1), (1, 1)),
                                       reference.conv_transpose2d(dy, w, None, (13, 11), (1, 1), (1, 1)),
                                       rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# max_pool / unpool
# ----------------------------------------------------------------------------------------------
@MANY
@given(cases(pool=True))
def test_max_pool_equals_reference(case):
    y, switches = kernels.max_pool(case.x, *case.geometry)
    y_ref, switches_ref = reference.max_pool(case.x, *case.geometry)
    assert_same(y, y_ref)
    assert_same(switches, switches_ref)


@FEW
@given(st.integers(1, 3), st.integers(2, 11), st.integers(2, 11), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**32 - 1))
def test_max_pool_2x2_fast_path_equals_reference(c, h, w, dtype, seed):
    """Kernel 2x2, stride 2, no padding runs its own kernel; odd sizes drop the last row/column."""
    rng = np.random.default_rng(seed)
    for x in (rng.standard_normal((2, c, h, w)), rng.integers(-1, 2, (2, c, h, w))):
        x = x.astype(dtype)
        y, switches = kernels.max_pool(x, (2, 2), (2, 2), (0, 0))
        y_ref, switches_ref = reference.max_pool(x, (2, 2), (2, 2), (0, 0))
        assert_same(y, y_ref)
        assert_same(switches, switches_ref)


@FEW
@given(cases(pool=True))
def test_max_pool_ties_go_to_first_element_of_window(case):
    """A constant input: every element of a window ties, so the switch is its first element
    inside the input (padding is -inf and never wins)."""
    x = np.full(case.x.shape, 0.5, dtype=case.x.dtype)
    (sh, sw), (ph, pw) = case.stride, case.padding
    ho, wo = case.out_hw
    oh, ow = np.arange(ho)[:, None], np.arange(wo)[None, :]
    first = np.maximum(oh * sh - ph, 0) * x.shape[3] + np.maximum(ow * sw - pw, 0)
    for geometry in (case.geometry, ((2, 2), (2, 2), (0, 0))):
        if geometry[0] == (2, 2) and min(x.shape[2:]) < 2:
            continue
        y, switches = kernels.max_pool(x, *geometry)
        assert_same(switches, reference.max_pool(x, *geometry)[1])
        assert np.all(y == 0.5)
    np.testing.assert_array_equal(kernels.max_pool(x, *case.geometry)[1], np.broadcast_to(first, (*x.shape[:2], ho, wo)))


@FEW
@given(cases(pool=True), st.floats(0.05, 0.5))
def test_max_pool_nan_wins(case, fraction):
    """A NaN in a window makes the output NaN, and the switch points to the (first) NaN."""
    x = case.x.copy()
    x[case.rng.random(x.shape) < fraction] = np.nan
    for geometry in (case.geometry, ((2, 2), (2, 2), (0, 0))):
        if geometry[0] == (2, 2) and min(x.shape[2:]) < 2:
            continue
        y, switches = kernels.max_pool(x, *geometry)
        y_ref, switches_ref = reference.max_pool(x, *geometry)
        assert_same(y, y_ref)
        assert_same(switches, switches_ref)
        picked = np.take_along_axis(x.reshape(*x.shape[:2], -1), switches.reshape(*x.shape[:2], -1), axis=2)
        np.testing.assert_array_equal(np.isnan(picked.reshape(y.shape)), np.isnan(y))


def test_max_pool_edge_cases_follow_the_rule_in_kernel_and_reference():
    """1. A window whose elements inside the input are all -inf: the switch still points inside the
       input plane (never into the padding). 2. +inf before a NaN in a window: the NaN wins."""
    x = np.full((1, 1, 3, 3), -np.inf)
    for pool in (kernels.max_pool, reference.max_pool):
        y, switches = pool(x, (3, 3), (1, 1), (1, 1))
        assert np.all(y == -np.inf)
        np.testing.assert_array_equal(switches[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])  # first inside
    x = np.array([[[[np.inf, np.nan], [0.0, 1.0]]]], dtype=np.float32)
    for pool in (kernels.max_pool, reference.max_pool):
        for geometry, whole in ((((2, 2), (2, 2), (0, 0)), (0, 0)), (((3, 3), (1, 1), (1, 1)), (1, 1))):
            y, switches = pool(x, *geometry)  # output `whole` sees the whole input
            assert np.isnan(y[0, 0][whole]) and switches[0, 0][whole] == 1


@MANY
@given(cases(pool=True))
def test_unpool_equals_reference(case):
    """Un-pool the max-pool switches (overlapping windows share switches: those values add)."""
    _, switches = reference.max_pool(case.x, *case.geometry)
    dy = case.rng.standard_normal(switches.shape).astype(case.x.dtype)
    got = kernels.unpool(dy, switches, case.x.shape[2:])
    assert_close(got, reference.unpool(dy, switches, case.x.shape[2:]), case.x.dtype)
    total = pytest.approx(float(dy.sum()), rel=1e-4, abs=1e-4 * float(np.abs(dy).sum()))
    assert float(got.sum()) == total  # every value lands exactly once


# ----------------------------------------------------------------------------------------------
# relu / relu_backward
# ----------------------------------------------------------------------------------------------
@FEW
@given(cases(), st.sampled_from(kernels.RELU_RULES), st.booleans())
def test_relu_and_its_backward_rules_equal_reference(case, rule, with_nans):
    x = case.x.copy()
    dy = case.rng.integers(-2, 3, x.shape).astype(x.dtype)  # zeros and ties in dy as well
    if with_nans:
        x[case.rng.random(x.shape) < 0.2] = np.nan
        dy[case.rng.random(x.shape) < 0.2] = np.nan
    assert_same(kernels.relu(x), reference.relu(x))
    assert_same(kernels.relu_backward(dy, x, rule), reference.relu_backward(dy, x, rule))
    assert_same(kernels.relu(x[:, :, ::2]), reference.relu(x[:, :, ::2]))  # a non-contiguous view


@FEW
@given(st.integers(1, 5000), st.sampled_from(kernels.RELU_RULES), st.integers(0, 2**32 - 1))
def test_relu_split_among_threads_equals_reference(size, rule, seed):
    """Large arrays run split among the threads (small ones on one): force the split here."""
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((2, size))
    x[rng.random(size) < 0.1] = np.nan
    saved, kernels.SERIAL_BELOW = kernels.SERIAL_BELOW, 0
    try:
        assert_same(kernels.relu(x), reference.relu(x))
        assert_same(kernels.relu_backward(dy, x, rule), reference.relu_backward(dy, x, rule))
    finally:
        kernels.SERIAL_BELOW = saved


def test_relu_rules_by_hand():
    """LECTURE.md section 4: an input of -2 that receives 10 back."""
    x = np.array([-2.0, 3.0, 3.0, np.nan])
    dy = np.array([10.0, 10.0, -10.0, 10.0])
    np.testing.assert_array_equal(kernels.relu(x), [0.0, 3.0, 3.0, np.nan])
    np.testing.assert_array_equal(kernels.relu_backward(dy, x, "gradient"), [0.0, 10.0, -10.0, 0.0])
    np.testing.assert_array_equal(kernels.relu_backward(dy, x, "deconvnet"), [10.0, 10.0, 0.0, 10.0])
    np.testing.assert_array_equal(kernels.relu_backward(dy, x, "guided"), [0.0, 10.0, 0.0, 0.0])



# ----------------------------------------------------------------------------------------------
# Linear layers' products: equal to NumPy's, however many threads share them


@MANY
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 12), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**32 - 1), st.integers(1, 2))
def test_linear_products_equal_numpy(n, k, f, dtype, seed, threads):
    """x @ w.T, dy @ w and dy.T @ x, with one image (other bands than for a batch) or several,
    on one or two threads: the same numbers as NumPy's, to the sum's rounding."""
    import numba

    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(shape).astype(dtype) for shape in ((n, k), (f, k), (n, f)))
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got = kernels.linear(x, w), kernels.linear_input_gradient(dy, w), kernels.linear_weight_gradient(dy, x)
    finally:
        numba.set_num_threads(before)
    for value, expected in zip(got, (x @ w.T, dy @ w, dy.T @ x)):
        assert value.dtype == dtype and value.shape == expected.shape and value.flags.c_contiguous
        np.testing.assert_allclose(value, expected, rtol=100 * RTOL[np.dtype(dtype)], atol=100 * RTOL[np.dtype(dtype)])
