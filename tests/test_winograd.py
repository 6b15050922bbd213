"""Winograd's minimal filtering: the transforms' identities (exact, in Fractions), the NumPy reference
(minicnn.winograd) = im2col, the Numba kernels = the reference, and the algorithm choice in ops."""
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import kernels, ops, winograd
from minicnn.im2col import conv2d as im2col_conv2d
from minicnn.im2col import flip_kernel
from minicnn.layers import Conv2d
from minicnn.network import Network
from minicnn.testing import relative_error
from strategies import seeds

MANY = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=15, deadline=None)
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-10}  # of max |y|, relative
TILES = sorted(winograd.POINTS)  # 2, 4, 6
BACKWARD_BLOCK = kernels.WINOGRAD_BACKWARD_TILES_PER_BLOCK


# ----------------------------------------------------------------------------------------------
# the transforms: exact identities


small_ints = st.integers(-50, 50)


@MANY
@given(st.sampled_from(TILES), st.data())
def test_one_tile_in_1d_equals_direct_correlation_exactly(m, data):
    """A^T [(G g) * (B^T d)] = the correlation of d with g, in exact rational arithmetic."""
    d = np.array([Fraction(v) for v in data.draw(st.lists(small_ints, min_size=m + 2, max_size=m + 2))], dtype=object)
    g = np.array([Fraction(v) for v in data.draw(st.lists(small_ints, min_size=3, max_size=3))], dtype=object)
    assert list(winograd.winograd_1d(d, g, m, exact=True)) == list(winograd.correlate_1d(d, g))


@FEW
@given(st.sampled_from(TILES), st.data())
def test_one_tile_in_2d_is_the_1d_algorithm_nested_exactly(m, data):
    """A^T [(G g G^T) * (B^T d B)] A = the 2D correlation of one (m+2)^2 tile with a 3x3 filter, exactly."""
    at, g_matrix, bt = winograd.cook_toom(winograd.POINTS[m], m)
    alpha = m + 2
    d = np.array(data.draw(st.lists(small_ints, min_size=alpha * alpha, max_size=alpha * alpha)),
                 dtype=object).reshape(alpha, alpha) * Fraction(1)
    g = np.array(data.draw(st.lists(small_ints, min_size=9, max_size=9)), dtype=object).reshape(3, 3) * Fraction(1)
    y = at.dot(g_matrix.dot(g).dot(g_matrix.T) * bt.dot(d).dot(bt.T)).dot(at.T)
    direct = np.array([[sum(d[i + a, j + b] * g[a, b] for a in range(3) for b in range(3)) for j in range(m)]
                       for i in range(m)], dtype=object)
    assert (y == direct).all()


@pytest.mark.parametrize("m", TILES)
def test_transforms_shapes_counts_and_float_copies(m):
    at, g, bt = winograd.transforms(m)
    alpha = m + 2
    assert at.shape == (m, alpha) and g.shape == (alpha, 3) and bt.shape == (alpha, alpha)
    exact = winograd.cook_toom(winograd.POINTS[m], m)
    for matrix, fractions in zip((at, g, bt), exact):
        np.testing.assert_array_equal(matrix, fractions.astype(np.float64))
    direct, fast = winograd.multiplications(m)
    assert (direct, fast) == (9 * m * m, alpha * alpha)
    assert fast < direct


def test_f23_and_f43_input_transforms_are_small_integers():
    """The scaling of cook_toom leaves B^T integer for F(2, 3) and F(4, 3): the input transform adds,
    subtracts and multiplies by 2, 4, 5 only."""
    for m in (2, 4):
        bt = winograd.cook_toom(winograd.POINTS[m], m)[2]
        assert all(value.denominator == 1 and abs(value) <= 5 for value in bt.flat)


def test_unknown_tile_size_is_rejected():
    with pytest.raises(ValueError, match=r"m must be one of \[2, 4, 6\].*got 3"):
        winograd.transforms(3)
    with pytest.raises(ValueError, match="F\\(4, 3\\) needs 5 finite points, got 3"):
        winograd.cook_toom((0, 1, -1), 4)


# ----------------------------------------------------------------------------------------------
# the convolution: reference = im2col, kernel = reference


@st.composite
def winograd_cases(draw, max_channels=64, max_size=40):
    """(x, w, b, padding): 3x3 filters, stride 1, padding 0-2, sizes 1..max_size (not multiples of the tile)."""
    padding = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, 3 - 2 * padding), max_size))
    w = draw(st.integers(max(1, 3 - 2 * padding), max_size))
    c = draw(st.integers(1, max_channels))
    f = draw(st.integers(1, max_channels))
    n = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(seeds))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weights = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype) if draw(st.booleans()) else None
    return x, weights, bias, padding


def assert_within(got, expected, dtype):
    assert got.shape == expected.shape and got.dtype == np.dtype(dtype)
    assert relative_error(got, expected) <= TOLERANCE[dtype]


@MANY
@given(winograd_cases(max_channels=16, max_size=20), st.sampled_from(TILES))
def test_reference_conv2d_equals_im2col(case, m):
    x, w, b, padding = case
    expected = im2col_conv2d(x.astype(np.float64), w.astype(np.float64),
                             None if b is None else b.astype(np.float64), (1, 1), (padding, padding))
    got = winograd.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                          padding, m)
    assert_within(got, expected, np.float64)


@MANY
@given(winograd_cases())
def test_kernel_equals_reference_and_im2col(case):
    x, w, b, padding = case
    got = kernels.winograd_conv2d(x, w, b, padding)
    assert_within(got, winograd.conv2d(x, w, b, padding, 4), x.dtype.type)
    assert_within(got, ops.conv2d(x, w, b, 1, padding, algorithm="im2col"), x.dtype.type)


@MANY
@given(winograd_cases())
def test_transposed_kernel_equals_reference_and_im2col(case):
    x, w, b, padding = case  # x plays y, the forward conv's output: (N, F, Ho, Wo) with F = w.shape[0]
    y = x[:, :1].repeat(w.shape[0], axis=1) * x.dtype.type(0.5) + x[:, -1:]
    c_bias = None if b is None else np.resize(b, w.shape[1])
    if y.shape[2] + 2 - 2 * padding < 1 or y.shape[3] + 2 - 2 * padding < 1:
        return  # no input size gives this output at this padding
    got = kernels.winograd_conv_transpose2d(y, w, c_bias, padding)
    assert_within(got, winograd.conv_transpose2d(y, w, c_bias, padding, 4), x.dtype.type)
    assert_within(got, ops.conv_transpose2d(y, w, c_bias, 1, padding, algorithm="im2col"), x.dtype.type)


@FEW
@given(winograd_cases(max_channels=8, max_size=12))
def test_winograd_transpose_is_the_adjoint_of_winograd_conv(case):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)>, both by Winograd, in float64."""
    x, w, _, padding = case
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    y = np.random.default_rng(1).standard_normal(ops.conv2d(x, w, None, 1, padding, algorithm="im2col").shape)
    lhs = np.vdot(ops.conv2d(x, w, None, 1, padding, algorithm="winograd"), y)
    rhs = np.vdot(x, ops.conv_transpose2d(y, w, None, 1, padding, algorithm="winograd"))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10 * np.abs(x).sum() * np.abs(y).sum())


@pytest.mark.parametrize("channels", [128, 512])
def test_many_channels_stay_within_the_float32_tolerance(channels):
    """The error of F(4, 3) grows with the channel count: 512 channels stay within 2e-5 of max |y|."""
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((1, channels, 9, 10)).astype(np.float32)
    w = rng.standard_normal((3, channels, 3, 3)).astype(np.float32)
    exact = im2col_conv2d(x.astype(np.float64), w.astype(np.float64), None, (1, 1), (1, 1))
    assert relative_error(kernels.winograd_conv2d(x, w, None, 1), exact) <= TOLERANCE[np.float32]
    dy = rng.standard_normal((1, 3, 9, 10)).astype(np.float32)
    exact_t = ops.conv_transpose2d(dy.astype(np.float64), w.astype(np.float64), None, 1, 1, algorithm="im2col")
    assert relative_error(kernels.winograd_conv_transpose2d(dy, w, None, 1), exact_t) <= TOLERANCE[np.float32]


def test_filters_changed_in_place_are_transformed_again():
    """The transformed filters are kept between calls; an optimizer's in-place update must be seen."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    for _ in range(2):
        for transposed in (False, True):
            if transposed:
                dy = x[:, :1].repeat(5, axis=1)
                got = kernels.winograd_conv_transpose2d(dy, w, None, 1)
                expected = ops.conv_transpose2d(dy, w, None, 1, 1, algorithm="im2col")
            else:
                got = kernels.winograd_conv2d(x, w, None, 1)
                expected = ops.conv2d(x, w, None, 1, 1, algorithm="im2col")
            assert relative_error(got, expected) <= TOLERANCE[np.float32]
        w -= np.float32(0.5) * w[::-1]  # in place, as an optimizer's step


# ----------------------------------------------------------------------------------------------
# the backward pass: dx and dw by the transposed algorithm


def backward_case(case):
    """(dy, x, w, padding) from a winograd_cases draw: dy random, of the forward output's shape."""
    x, w, _, padding = case
    shape = (x.shape[0], w.shape[0], x.shape[2] + 2 * padding - 2, x.shape[3] + 2 * padding - 2)
    dy = np.random.default_rng(x.size).standard_normal(shape).astype(x.dtype)
    return dy, x, w, padding


def im2col_backward(dy, x, w, padding):
    """(dx, dw) by im2col, in float64."""
    dx, dw, _ = ops.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, padding,
                                    algorithm="im2col")
    return dx, dw


@FEW
@given(winograd_cases(max_channels=8, max_size=12), seeds)
def test_add_input_tiles_is_the_adjoint_of_input_tiles(case, seed):
    """<input_tiles(x), T> = <x, add_input_tiles(T)>: overlapping tiles add up, the padding is dropped."""
    x, _, _, padding = case
    x = x.astype(np.float64)
    for m in TILES:
        tiles = winograd.input_tiles(x, padding, m)
        t = np.random.default_rng(seed).standard_normal(tiles.shape)
        back = winograd.add_input_tiles(t, x.shape, padding, m)
        assert np.vdot(tiles, t) == pytest.approx(np.vdot(x, back), rel=1e-12, abs=1e-12 * np.abs(t).sum())


@MANY
@given(winograd_cases(max_channels=16, max_size=20), st.sampled_from(TILES))
def test_reference_backward_equals_im2col(case, m):
    dy, x, w, padding = backward_case(case)
    dy, x, w = dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
    dx, dw = winograd.conv2d_backward(dy, x, w, padding, m)
    expected_dx, expected_dw = im2col_backward(dy, x, w, padding)
    assert_within(dx, expected_dx, np.float64)
    assert_within(dw, expected_dw, np.float64)


@FEW
@given(winograd_cases(max_channels=8, max_size=14), st.sampled_from(TILES))
def test_reference_transpose_two_ways(case, m):
    """conv_transpose2d at stride 1: the input gradient (transposed Winograd) = a conv with the flipped filters."""
    x, w, b, padding = case  # x plays y: its channels are resized to w's F
    x, w = x.astype(np.float64), w.astype(np.float64)
    y = np.resize(x, (x.shape[0], w.shape[0]) + x.shape[2:])
    c_bias = None if b is None else np.resize(b, w.shape[1]).astype(np.float64)
    if y.shape[2] + 2 - 2 * padding < 1 or y.shape[3] + 2 - 2 * padding < 1:
        return
    assert_within(winograd.conv_transpose2d(y, w, c_bias, padding, m),
                  winograd.conv2d(y, flip_kernel(w), c_bias, 2 - padding, m), np.float64)


@MANY
@given(winograd_cases())
def test_backward_kernel_equals_reference_and_im2col(case):
    """Channels 1-64, sizes 1-40 (not multiples of the tile), padding 0-2, 1-2 images, both dtypes;
    with one image and two threads the work is cut into chunks of channels."""
    dy, x, w, padding = backward_case(case)
    dx, dw = kernels.winograd_conv2d_backward(dy, x, w, padding)
    reference_dx, reference_dw = winograd.conv2d_backward(dy, x, w, padding, 4)
    expected_dx, expected_dw = im2col_backward(dy, x, w, padding)
    for got, reference, expected in ((dx, reference_dx, expected_dx), (dw, reference_dw, expected_dw)):
        assert_within(got, reference, x.dtype.type)
        assert_within(got, expected.astype(x.dtype), x.dtype.type)


def test_backward_kernel_shares_the_work_in_any_way():
    """Images split among threads, channels among chunks, blocks of tiles across images: the same dx, dw."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7, 9, 11)).astype(np.float32)
    w = rng.standard_normal((6, 7, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 6, 9, 11)).astype(np.float32)
    expected_dx, expected_dw = im2col_backward(dy, x, w, 1)
    threads = numba.get_num_threads()
    try:
        for count in range(1, threads + 1):
            numba.set_num_threads(count)
            for block in (1, 5, 64):
                kernels.WINOGRAD_BACKWARD_TILES_PER_BLOCK = block
                dx, dw = kernels.winograd_conv2d_backward(dy, x, w, 1)
                assert_within(dx, expected_dx.astype(np.float32), np.float32)
                assert_within(dw, expected_dw.astype(np.float32), np.float32)
    finally:
        numba.set_num_threads(threads)
        kernels.WINOGRAD_BACKWARD_TILES_PER_BLOCK = BACKWARD_BLOCK


@pytest.mark.parametrize("channels", [128, 512])
def test_backward_with_many_channels_and_tiles_stays_within_the_float32_tolerance(channels):
    """dw sums its transformed products over every tile of every image, dx over the filters: both stay
    within 2e-5 of their largest value against float64 im2col."""
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((4, channels, 28, 27)).astype(np.float32)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((4, channels, 28, 27)).astype(np.float32)
    dx, dw = kernels.winograd_conv2d_backward(dy, x, w, 1)
    expected_dx, expected_dw = im2col_backward(dy, x, w, 1)
    assert relative_error(dx, expected_dx) <= TOLERANCE[np.float32]
    assert relative_error(dw, expected_dw) <= TOLERANCE[np.float32]


@FEW
@given(winograd_cases(max_channels=40, max_size=24))
def test_winograd_backward_equals_torch(case):
    torch = pytest.importorskip("torch")
    dy, x, w, padding = backward_case(case)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, padding=padding).backward(torch.tensor(dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w, 1, padding, algorithm="winograd")
    assert_within(dx, tx.grad.numpy(), x.dtype.type)
    assert_within(dw, tw.grad.numpy(), x.dtype.type)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)))


def test_backward_checks_dy_and_the_geometry():
    x = np.zeros((1, 2, 8, 8), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 3, 8, 8\)"):
        ops.conv2d_backward(np.zeros((1, 3, 6, 6), np.float32), x, w, 1, 1, algorithm="winograd")
    with pytest.raises(TypeError, match=r"dy"):
        ops.conv2d_backward(np.zeros((1, 3, 8, 8), np.float64), x, w, 1, 1, algorithm="winograd")
    with pytest.raises(ValueError, match=r"'winograd' needs a 3x3 kernel.*stride \(2, 2\)"):
        ops.conv2d_backward(np.zeros((1, 3, 4, 4), np.float32), x, w, 2, 1, algorithm="winograd")


# ----------------------------------------------------------------------------------------------
# choosing the algorithm


def test_auto_chooses_winograd_for_float32_3x3_stride_1_with_enough_channels():
    many, few = ops.WINOGRAD_MIN_CHANNELS, ops.WINOGRAD_MIN_CHANNELS - 1
    choose = ops.choose_conv_algorithm
    assert choose("auto", (3, 3), (1, 1), (1, 1), np.float32, many, many) == "winograd"
    assert choose("auto", (3, 3), (1, 1), (1, 1), np.float32, few, many) == "im2col"
    assert choose("auto", (3, 3), (1, 1), (1, 1), np.float64, many, many) == "im2col"
    assert choose("auto", (3, 3), (2, 2), (1, 1), np.float32, many, many) == "im2col"
    assert choose("auto", (5, 5), (1, 1), (2, 2), np.float32, many, many) == "im2col"
    assert choose("auto", (3, 3), (1, 1), (1, 0), np.float32, many, many) == "im2col"
    assert choose("im2col", (3, 3), (1, 1), (1, 1), np.float32, many, many) == "im2col"
    assert choose("winograd", (3, 3), (1, 1), (2, 2), np.float64, 1, 1) == "winograd"


def test_auto_backward_keeps_dw_on_im2col_beyond_the_largest_measured_layer(monkeypatch):
    """conv2d_backward with "auto": dx and dw by Winograd up to WINOGRAD_DW_MAX_PAIRS filter-channel pairs."""
    calls = []
    monkeypatch.setattr(kernels, "winograd_conv2d_backward", lambda *args: calls.append(args) or (None, None))
    monkeypatch.setattr(kernels, "conv2d_weight_grad", lambda *args: "im2col dw")
    rng = np.random.default_rng(0)
    for pairs, fused in ((ops.WINOGRAD_DW_MAX_PAIRS, True), (4 * ops.WINOGRAD_DW_MAX_PAIRS, False)):
        f = c = int(pairs ** 0.5)
        x = rng.standard_normal((1, c, 3, 3)).astype(np.float32)
        w = np.zeros((f, c, 3, 3), np.float32)
        _, dw, _ = ops.conv2d_backward(np.zeros((1, f, 3, 3), np.float32), x, w, 1, 1)
        assert (dw == "im2col dw") != fused and len(calls) == 1
    _, dw, _ = ops.conv2d_backward(np.zeros((1, f, 3, 3), np.float32), x, w, 1, 1, algorithm="winograd")
    assert len(calls) == 2


def test_winograd_where_it_does_not_apply_is_an_error_naming_the_geometry():
    x = np.zeros((1, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"'winograd' needs a 3x3 kernel.*kernel \(3, 3\), stride \(2, 2\)"):
        ops.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), None, 2, 1, algorithm="winograd")
    with pytest.raises(ValueError, match=r"'winograd' needs a 3x3 kernel.*kernel \(5, 5\)"):
        ops.conv_transpose2d(x, np.zeros((2, 2, 5, 5), np.float32), None, 1, 2, algorithm="winograd")
    with pytest.raises(ValueError, match=r"algorithm must be one of \['auto', 'im2col', 'winograd'\], got 'fft'"):
        ops.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), algorithm="fft")


def test_conv2d_layer_and_network_take_the_algorithm():
    rng = np.random.default_rng(0)
    net = Network([("conv", Conv2d(3, 4, 3, padding=1, rng=rng)), ("conv2", Conv2d(4, 2, 3, padding=2, rng=rng))])
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    outputs, gradients = {}, {}
    for algorithm in ("im2col", "winograd"):
        assert net.set_conv_algorithm(algorithm) is net
        assert net["conv"].algorithm == net["conv2"].algorithm == algorithm
        outputs[algorithm] = net.forward(x)
        gradients[algorithm] = net.backward(np.ones_like(outputs[algorithm]), param_grads=False)
    assert relative_error(outputs["winograd"], outputs["im2col"]) <= TOLERANCE[np.float32]
    assert relative_error(gradients["winograd"], gradients["im2col"]) <= TOLERANCE[np.float32]
    with pytest.raises(ValueError, match=r"algorithm must be one of"):
        Conv2d(3, 4, 3, algorithm="direct")
    with pytest.raises(ValueError, match=r"algorithm must be one of"):
        net.set_conv_algorithm("direct")
