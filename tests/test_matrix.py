"""minicnn.matrix: the explicit convolution matrix and the transposed convolution four ways.

For random kernel sizes, strides, paddings (also p > k - 1), output paddings, channels and
non-square sizes, in float64:
    W.T @ y  ==  col2im(w^T y) (NumPy reference)  ==  sub-pixel  ==  polyphase  ==  ops.conv_transpose2d
and the receptive field from shapes.receptive_field is exactly the support of one unit's input gradient.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minicnn import im2col, matrix, ops
from minicnn.layers import AvgPool2d, Conv2d, MaxPool2d, ReLU
from minicnn.network import Network
from minicnn.shapes import conv2d_output_shape, receptive_field, receptive_field_box
from minicnn.testing import assert_close
from strategies import random_array, seeds

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def transpose_geometry(draw):
    """(y_shape, w_shape, stride, padding, output_padding) with an output of at least 1 x 1."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh + 1)), draw(st.integers(0, kw + 1))  # includes p > k - 1
    oph, opw = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))
    hy, wy = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    assume((hy - 1) * sh - 2 * ph + kh + oph >= 1 and (wy - 1) * sw - 2 * pw + kw + opw >= 1)
    n, f, c = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, f, hy, wy), (f, c, kh, kw), (sh, sw), (ph, pw), (oph, opw)


def im2col_conv_transpose2d(y, w, stride, padding, out_hw):
    """The im2col form with the plain-NumPy reference col2im: col2im(w^T y)."""
    n, f, hy, wy = y.shape
    cols = w.reshape(f, -1).T @ y.transpose(1, 0, 2, 3).reshape(f, -1)
    return im2col.col2im(cols, (n, w.shape[1]) + out_hw, w.shape[2:], stride, padding)


# ----------------------------------------------------------------------------------------------
# the transposed convolution, every form equal


@SETTINGS
@given(transpose_geometry(), seeds)
def test_every_form_of_the_transposed_convolution_is_the_same(geometry, seed):
    y_shape, w_shape, stride, padding, output_padding = geometry
    y, w = random_array(seed, y_shape), random_array(seed + 1, w_shape)
    b = random_array(seed + 2, (w_shape[1],))
    expected = ops.conv_transpose2d(y, w, None, stride, padding, output_padding)
    out_hw = expected.shape[2:]

    assert_close(im2col_conv_transpose2d(y, w, stride, padding, out_hw), expected)
    for form in (matrix.matrix_conv_transpose2d, matrix.subpixel_conv_transpose2d,
                 matrix.polyphase_conv_transpose2d):
        got = form(y, w, None, stride, padding, output_padding)
        assert got.shape == expected.shape, form.__name__
        assert_close(got, expected)
        with_bias = form(y, w, b, stride, padding, output_padding)
        assert_close(with_bias, expected + b.reshape(1, -1, 1, 1))


@SETTINGS
@given(transpose_geometry(), seeds)
def test_explicit_matrix_is_conv2d_and_its_transpose_is_the_adjoint(geometry, seed):
    y_shape, w_shape, stride, padding, output_padding = geometry
    w = random_array(seed, w_shape)
    x_hw = ops.conv_transpose2d(np.zeros((1,) + y_shape[1:]), w, None, stride, padding, output_padding).shape[2:]
    x = random_array(seed + 1, (1, w_shape[1]) + x_hw)
    y = random_array(seed + 2, (1,) + y_shape[1:])
    W = matrix.conv2d_matrix(w, x.shape[1:], stride, padding)

    assert_close(W @ x.ravel(), ops.conv2d(x, w, None, stride, padding).ravel())
    assert_close(W.T @ y.ravel(), ops.conv2d_input_gradient(y, w, x.shape, stride, padding).ravel())
    # <conv(x), y> == <x, conv^T(y)>, both sides through the explicit matrix
    np.testing.assert_allclose((W @ x.ravel()) @ y.ravel(), x.ravel() @ (W.T @ y.ravel()), rtol=1e-10)
    np.testing.assert_allclose(
        np.vdot(ops.conv2d(x, w, None, stride, padding), y),
        np.vdot(x, ops.conv_transpose2d(y, w, None, stride, padding, output_padding)), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(transpose_geometry(), seeds)
def test_conv2d_matrix_has_exactly_the_expected_entries(geometry, seed):
    _, (f, c, kh, kw), (sh, sw), (ph, pw), _ = geometry
    rng = np.random.default_rng(seed)
    w = rng.uniform(1, 2, (f, c, kh, kw)) * rng.choice([-1.0, 1.0], (f, c, kh, kw))  # no zero weight
    h, wd = kh + sh + 1, kw + 2 * sw  # non-square, big enough for any padding
    ho, wo = conv2d_output_shape((h, wd), (kh, kw), (sh, sw), (ph, pw))
    W = matrix.conv2d_matrix(w, (c, h, wd), (sh, sw), (ph, pw)).reshape(f, ho, wo, c, h, wd)

    expected = np.zeros_like(W)
    for oh in range(ho):
        for ow in range(wo):
            for i in range(kh):
                for j in range(kw):
                    row, col = oh * sh + i - ph, ow * sw + j - pw
                    if 0 <= row < h and 0 <= col < wd:
                        expected[:, oh, ow, :, row, col] = w[:, :, i, j]
    np.testing.assert_array_equal(W, expected)
    assert np.count_nonzero(W) == np.count_nonzero(expected)


def test_lecture_1d_matrix_is_5_by_12_with_row_i_starting_at_column_2i():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    W = matrix.conv1d_matrix(w, 8, stride=2, padding=2)
    assert W.shape == (5, 12)
    for i in range(5):
        np.testing.assert_array_equal(W[i, 2 * i : 2 * i + 4], w)
        assert np.count_nonzero(W[i]) == 4
    unpadded = matrix.conv1d_matrix_unpadded(w, 8, stride=2, padding=2)
    np.testing.assert_array_equal(unpadded[0], [3, 4, 0, 0, 0, 0, 0, 0])  # y1 = w3 x1 + w4 x2
    np.testing.assert_array_equal(unpadded[4], [0, 0, 0, 0, 0, 0, 1, 2])  # y5 = w1 x7 + w2 x8
    x = np.arange(1.0, 9.0)
    np.testing.assert_allclose(matrix.conv1d(x, w, 2, 2), unpadded @ x)
    np.testing.assert_allclose(matrix.conv1d(x, w, 2, 2), W @ np.pad(x, 2))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 3), st.integers(1, 9), seeds, st.data())
def test_1d_transposed_forms_agree(f, s, p, m, seed, data):
    op = data.draw(st.integers(0, s - 1))
    n = (m - 1) * s - 2 * p + f + op
    assume(n >= 1)
    w, y = random_array(seed, (f,)), random_array(seed + 1, (m,))
    W = matrix.conv1d_matrix(w, n, s, p)
    expected = (W.T @ y)[p : p + n]  # crop the padding rows of W^T y
    np.testing.assert_allclose(matrix.conv_transpose1d(y, w, s, p, op), expected, atol=1e-12)
    np.testing.assert_allclose(matrix.subpixel_conv_transpose1d(y, w, s, p, op), expected, atol=1e-12)
    np.testing.assert_allclose(matrix.conv1d_matrix_unpadded(w, n, s, p).T @ y, expected, atol=1e-12)


def test_lecture_subpixel_shapes_4x4_to_9x9_to_6x6():
    y, w = random_array(0, (1, 1, 4, 4)), random_array(1, (1, 1, 4, 4))
    z = matrix.pad_or_crop(matrix.pad_or_crop(matrix.insert_zeros(y, (2, 2)), 2, 1, 1), 3, 1, 1)
    assert z.shape == (1, 1, 9, 9)
    x = matrix.subpixel_conv_transpose2d(y, w, stride=2, padding=2)
    assert x.shape == (1, 1, 6, 6)
    assert_close(x, ops.conv_transpose2d(y, w, stride=2, padding=2))
    classes = matrix.parity_classes(w, 2)
    assert sorted(classes) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(part.shape == (1, 1, 2, 2) for part in classes.values())


# ----------------------------------------------------------------------------------------------
# orthogonality and reconstruction


def test_edge_filter_rows_are_orthogonal_and_deconv_is_the_inverse_up_to_scale():
    W = matrix.conv1d_matrix(np.array([1.0, 0.0, 0.0, -1.0]), 8, stride=2, padding=2)
    np.testing.assert_array_equal(W @ W.T, 2 * np.eye(5))
    assert matrix.orthogonality(W) == (2.0, 0.0)
    assert np.linalg.matrix_rank(W.T @ W) == 5
    x = np.pad(random_array(3, (8,)), 2)
    errors = matrix.reconstruction(W, x)
    assert errors.scaled_transpose == pytest.approx(errors.pseudo_inverse, abs=1e-12)
    in_row_space = W.T @ random_array(4, (5,))
    assert matrix.reconstruction(W, in_row_space).scaled_transpose < 1e-12


def test_random_filter_is_not_orthogonal():
    W = matrix.conv1d_matrix(random_array(5, (4,)), 8, stride=2, padding=2)
    scale, deviation = matrix.orthogonality(W)
    assert scale > 0 and deviation > 0.05
    errors = matrix.reconstruction(W, W.T @ random_array(6, (5,)))
    assert errors.pseudo_inverse < 1e-10 < 0.01 < errors.scaled_transpose


# ----------------------------------------------------------------------------------------------
# receptive field == support of one unit's input gradient


@st.composite
def window_stack(draw):
    """A few conv / avg-pool layers with stride <= kernel (so no receptive field has holes) and padding
    < kernel (so every window holds a real position), and an input size (H, W) built backwards from
    the output so that every layer reads all of its input: the conditions for an exact box."""
    layers, channels = [], 1
    for index in range(draw(st.integers(1, 4))):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, k))
        if draw(st.booleans()):
            out = draw(st.integers(1, 2))
            layers += [(f"conv{index}", Conv2d(channels, out, k, s, draw(st.integers(0, min(2, k - 1))), dtype=np.float64)),
                       (f"relu{index}", ReLU())]
            channels = out
        else:
            layers.append((f"pool{index}", AvgPool2d(k, s, draw(st.integers(0, k // 2)))))
    size = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    for _, layer in reversed(layers):
        if hasattr(layer, "kernel_size"):
            for axis in (0, 1):
                k, s, p = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis]
                size[axis] = (size[axis] - 1) * s + k - 2 * p  # the smallest input: no row left unread
            assume(min(size) >= 1)
    return layers, tuple(size)


def _positive_network(layers, seed):
    net = Network(layers)
    rng = np.random.default_rng(seed)
    for _, layer in layers:
        if "weight" in layer.params:
            layer.params["weight"][...] = rng.uniform(0.5, 1.5, layer.params["weight"].shape)
    return net


def _unit_gradient(net, x, i, j):
    """Gradient of the sum over channels of unit (i, j) of the last layer, w.r.t. the input image."""
    out = net.forward(x)
    seed = np.zeros_like(out)
    seed[:, :, i, j] = 1.0
    return net.backward(seed, param_grads=False)


@settings(max_examples=60, deadline=None)
@given(window_stack(), seeds, st.data())
def test_receptive_field_is_the_support_of_one_units_input_gradient(stack, seed, data):
    layers, (h, w) = stack
    net = _positive_network(layers, seed)
    x = np.random.default_rng(seed).uniform(0.5, 1.5, (1, 1, h, w))  # positive: every ReLU passes
    out_shape = net.forward(x).shape
    i, j = data.draw(st.integers(0, out_shape[2] - 1)), data.draw(st.integers(0, out_shape[3] - 1))
    support = _unit_gradient(net, x, i, j)[0, 0] != 0

    top, bottom, left, right = receptive_field_box(receptive_field(net)[-1], i, j, (h, w))
    expected = np.zeros_like(support)
    expected[top:bottom, left:right] = True
    np.testing.assert_array_equal(support, expected)


def test_max_pool_gradient_stays_inside_the_receptive_field():
    net = _positive_network([("conv1", Conv2d(1, 2, 3, dtype=np.float64)), ("relu1", ReLU()),
                             ("pool1", MaxPool2d(2)), ("conv2", Conv2d(2, 1, 3, padding=1, dtype=np.float64))], 0)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (1, 1, 14, 14))
    field = receptive_field(net)[-1]
    assert field.size == (8, 8) and field.jump == (2, 2)
    support = _unit_gradient(net, x, 2, 3)[0, 0] != 0
    top, bottom, left, right = receptive_field_box(field, 2, 3, (14, 14))
    inside = np.zeros_like(support)
    inside[top:bottom, left:right] = True
    assert support.any() and not (support & ~inside).any()  # switches pick a subset of the field


# ----------------------------------------------------------------------------------------------
# bad input


def test_kernel_larger_than_the_padded_input_is_an_error():
    with pytest.raises(ValueError, match="larger than the padded input"):
        matrix.conv1d_matrix(np.ones(5), 2, padding=1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        matrix.conv2d_matrix(np.ones((1, 1, 5, 5)), (1, 3, 3), padding=0)


def test_output_padding_not_below_stride_is_an_error():
    y, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    for form in (matrix.matrix_conv_transpose2d, matrix.subpixel_conv_transpose2d,
                 matrix.polyphase_conv_transpose2d):
        with pytest.raises(ValueError, match="output_padding must satisfy 0 <= output_padding < stride"):
            form(y, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        matrix.subpixel_conv_transpose1d(np.ones(2), np.ones(2), stride=1, output_padding=1)


def test_negative_padding_is_an_error():
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        matrix.conv1d_matrix(np.ones(3), 8, padding=-1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        matrix.conv2d_matrix(np.ones((1, 1, 3, 3)), (1, 8, 8), padding=-1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        matrix.polyphase_conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), padding=(0, -1))


def test_mismatched_operands_are_errors_that_name_the_shapes():
    with pytest.raises(ValueError, match=r"channel mismatch: input_shape \(2, 5, 5\) has 2 channels"):
        matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (2, 5, 5))
    with pytest.raises(ValueError, match=r"y needs F = 2 channels"):
        matrix.subpixel_conv_transpose2d(np.ones((1, 3, 2, 2)), np.ones((2, 1, 2, 2)))
    with pytest.raises(TypeError, match=r"stride must be an int >= 1, got tuple \(1, 2\)"):
        matrix.conv1d_matrix(np.ones(3), 8, stride=(1, 2))
    with pytest.raises(ValueError, match="too large to|more than"):
        matrix.conv2d_matrix(np.ones((64, 64, 3, 3)), (64, 64, 64))


def test_sizes_may_be_numpy_ints_but_not_floats():
    w = np.array([1.0, 0.0, 0.0, -1.0])
    np.testing.assert_array_equal(matrix.conv1d_matrix(w, np.int64(8), np.int64(2), np.int64(2)),
                                  matrix.conv1d_matrix(w, 8, 2, 2))
    np.testing.assert_array_equal(matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (3, np.int64(5), 5)),
                                  matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (3, 5, 5)))
    np.testing.assert_array_equal(matrix.insert_zeros(np.ones(3), np.int64(2)), [1, 0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"n \(the input length\) must be an int >= 1, got float 8.0"):
        matrix.conv1d_matrix(w, 8.0)
    with pytest.raises(ValueError, match=r"n \(the input length\) must be an int >= 1, got 0"):
        matrix.conv1d_matrix(w, 0)
    with pytest.raises(ValueError, match=r"input_shape\[1\] \(H\) must be an int >= 1, got 0"):
        matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (3, 0, 5))
    with pytest.raises(TypeError, match=r"input_shape\[1\] \(H\) must be an int >= 1, got float 5.0"):
        matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (3, 5.0, 5))
    with pytest.raises(ValueError, match=r"input_shape must be a tuple \(C, H, W\) of 3 ints, got \(5, 5\)"):
        matrix.conv2d_matrix(np.ones((1, 3, 3, 3)), (5, 5))
    with pytest.raises(ValueError, match=r"stride must be an int >= 1, got 0"):
        matrix.insert_zeros(np.ones(3), (1, 0))
