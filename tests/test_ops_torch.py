"""Every op, forward and backward, against PyTorch (the oracle) on shapes drawn by hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ops
from minicnn.testing import assert_close, conv_geometry, pool_geometry
from strategies import dtypes, random_array, seeds

torch = pytest.importorskip("torch")
F = torch.nn.functional
SETTINGS = settings(max_examples=40, deadline=None)


def tensor(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


@SETTINGS
@given(conv_geometry(), dtypes, seeds)
def test_conv2d_forward_and_backward_equal_torch(geometry, dtype, seed):
    x_shape, w_shape, stride, padding = geometry
    x, w = random_array(seed, x_shape, dtype), random_array(seed + 1, w_shape, dtype)
    b = random_array(seed + 2, (w_shape[0],), dtype)
    tx, tw, tb = tensor(x, True), tensor(w, True), tensor(b, True)
    ty = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    y = ops.conv2d(x, w, b, stride, padding)
    assert y.dtype == dtype
    assert_close(y, ty.detach().numpy())

    dy = random_array(seed + 3, y.shape, dtype)
    ty.backward(tensor(dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w, stride, padding)
    assert_close(dx, tx.grad.numpy())
    assert_close(dw, tw.grad.numpy())
    assert_close(db, tb.grad.numpy())


@SETTINGS
@given(conv_geometry(), st.data(), dtypes, seeds)
def test_conv_transpose2d_equals_torch_with_output_padding(geometry, data, dtype, seed):
    y_shape, w_shape, stride, padding = geometry
    # conv_transpose2d maps F -> C channels: y has w's first dimension as its channels
    y_shape = (y_shape[0], w_shape[0]) + y_shape[2:]
    output_padding = (data.draw(st.integers(0, stride[0] - 1)), data.draw(st.integers(0, stride[1] - 1)))
    out_h = (y_shape[2] - 1) * stride[0] - 2 * padding[0] + w_shape[2] + output_padding[0]
    out_w = (y_shape[3] - 1) * stride[1] - 2 * padding[1] + w_shape[3] + output_padding[1]
    if out_h < 1 or out_w < 1:
        with pytest.raises(ValueError, match="padding is too large"):
            ops.conv_transpose2d(random_array(seed, y_shape, dtype), random_array(seed, w_shape, dtype),
                                 stride=stride, padding=padding, output_padding=output_padding)
        return
    y, w = random_array(seed, y_shape, dtype), random_array(seed + 1, w_shape, dtype)
    b = random_array(seed + 2, (w_shape[1],), dtype)
    ty, tw, tb = tensor(y, True), tensor(w, True), tensor(b, True)
    tx = F.conv_transpose2d(ty, tw, tb, stride=stride, padding=padding, output_padding=output_padding)
    x = ops.conv_transpose2d(y, w, b, stride, padding, output_padding)
    assert x.shape == tuple(tx.shape)
    assert_close(x, tx.detach().numpy())
    # its backward with respect to y is the forward convolution
    dx = random_array(seed + 3, x.shape, dtype)
    tx.backward(tensor(dx))
    assert_close(ops.conv2d(dx, w, None, stride, padding), ty.grad.numpy())


@SETTINGS
@given(pool_geometry(), dtypes, seeds)
def test_max_pool2d_values_switches_and_unpool_equal_torch(geometry, dtype, seed):
    x_shape, kernel, stride, padding = geometry
    x = random_array(seed, x_shape, dtype)
    tx = tensor(x, True)
    ty, t_switches = F.max_pool2d(tx, kernel, stride, padding, return_indices=True)
    y, switches = ops.max_pool2d(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(switches, t_switches.numpy())
    assert switches.dtype == np.int64

    dy = random_array(seed + 1, y.shape, dtype)
    ty.backward(tensor(dy))
    assert_close(ops.max_unpool2d(dy, switches, x_shape[2:]), tx.grad.numpy())


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), dtypes, seeds)
def test_max_unpool2d_equals_torch_for_non_overlapping_windows(n, c, ho, wo, dtype, seed):
    # with stride == kernel every switch is distinct, where torch's unpool (which assigns) and ours
    # (which adds, so that it is also max-pool's backward pass) must agree
    x = random_array(seed, (n, c, 2 * ho, 3 * wo), dtype)
    y, switches = ops.max_pool2d(x, (2, 3))
    expected = F.max_unpool2d(tensor(y), torch.tensor(switches), (2, 3), output_size=x.shape[2:])
    np.testing.assert_array_equal(ops.max_unpool2d(y, switches, x.shape[2:]), expected.numpy())


@SETTINGS
@given(pool_geometry(), dtypes, seeds)
def test_avg_pool2d_forward_and_backward_equal_torch(geometry, dtype, seed):
    x_shape, kernel, stride, padding = geometry
    x = random_array(seed, x_shape, dtype)
    tx = tensor(x, True)
    ty = F.avg_pool2d(tx, kernel, stride, padding)
    y = ops.avg_pool2d(x, kernel, stride, padding)
    assert_close(y, ty.detach().numpy())
    dy = random_array(seed + 1, y.shape, dtype)
    ty.backward(tensor(dy))
    assert_close(ops.avg_pool2d_backward(dy, x_shape, kernel, stride, padding), tx.grad.numpy())


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), dtypes, seeds)
def test_global_avg_pool2d_equals_torch(n, c, h, w, dtype, seed):
    x = random_array(seed, (n, c, h, w), dtype)
    tx = tensor(x, True)
    ty = F.adaptive_avg_pool2d(tx, 1).reshape(n, c)
    assert_close(ops.global_avg_pool2d(x), ty.detach().numpy())
    dy = random_array(seed + 1, (n, c), dtype)
    ty.backward(tensor(dy))
    assert_close(ops.global_avg_pool2d_backward(dy, x.shape), tx.grad.numpy())


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 6), dtypes, seeds)
def test_linear_forward_and_backward_equal_torch(n, fan_in, fan_out, dtype, seed):
    x, w = random_array(seed, (n, fan_in), dtype), random_array(seed + 1, (fan_out, fan_in), dtype)
    b = random_array(seed + 2, (fan_out,), dtype)
    tx, tw, tb = tensor(x, True), tensor(w, True), tensor(b, True)
    ty = F.linear(tx, tw, tb)
    assert_close(ops.linear(x, w, b), ty.detach().numpy())
    dy = random_array(seed + 3, (n, fan_out), dtype)
    ty.backward(tensor(dy))
    dx, dw, db = ops.linear_backward(dy, x, w)
    assert_close(dx, tx.grad.numpy())
    assert_close(dw, tw.grad.numpy())
    assert_close(db, tb.grad.numpy())


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), dtypes, seeds)
def test_relu_forward_and_backward_equal_torch(n, c, h, w, dtype, seed):
    x = random_array(seed, (n, c, h, w), dtype)
    tx = tensor(x, True)
    ty = F.relu(tx)
    np.testing.assert_array_equal(ops.relu(x), ty.detach().numpy())
    dy = random_array(seed + 1, x.shape, dtype)
    ty.backward(tensor(dy))
    np.testing.assert_array_equal(ops.relu_backward(dy, x, "gradient"), tx.grad.numpy())


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 8), dtypes, seeds, st.floats(0.1, 30))
def test_log_softmax_softmax_and_cross_entropy_equal_torch(n, k, dtype, seed, scale):
    logits = random_array(seed, (n, k), dtype) * dtype(scale)
    labels = np.random.default_rng(seed).integers(0, k, size=n)
    tz = tensor(logits, True)
    t_log_p = F.log_softmax(tz, dim=1)
    assert_close(ops.log_softmax(logits), t_log_p.detach().numpy())
    assert_close(ops.softmax(logits), F.softmax(tensor(logits), dim=1).numpy())
    dy = random_array(seed + 1, (n, k), dtype)
    t_log_p.backward(tensor(dy))
    assert_close(ops.log_softmax_backward(dy, logits), tz.grad.numpy())

    tz = tensor(logits, True)
    t_loss = F.cross_entropy(tz, torch.tensor(labels))
    t_loss.backward()
    assert_close(ops.cross_entropy(logits, labels), t_loss.item())
    assert_close(ops.cross_entropy_backward(logits, labels), tz.grad.numpy())


def test_log_softmax_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    expected = F.log_softmax(torch.tensor(logits), dim=1).numpy()
    np.testing.assert_allclose(ops.log_softmax(logits), expected)
    assert np.isfinite(ops.cross_entropy(logits, np.array([2])))


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 13), st.integers(1, 13), st.integers(1, 7),
       st.integers(1, 7), dtypes, seeds)
def test_adaptive_avg_pool2d_equals_torch(n, c, h, w, oh, ow, dtype, seed):
    x = random_array(seed, (n, c, h, w), dtype)
    tx = tensor(x, True)
    ty = F.adaptive_avg_pool2d(tx, (oh, ow))
    assert_close(ops.adaptive_avg_pool2d(x, (oh, ow)), ty.detach().numpy())
    dy = random_array(seed + 1, ty.shape, dtype)
    ty.backward(tensor(dy))
    assert_close(ops.adaptive_avg_pool2d_backward(dy, x.shape), tx.grad.numpy())


@st.composite
def winograd_geometry(draw):
    """3x3, stride 1, padding 0-2; channels 1-512 (few images and small maps when there are many)."""
    padding = draw(st.integers(0, 2))
    c, f = (draw(st.sampled_from([1, 2, 3, 5, 16, 31, 64, 128, 512])) for _ in range(2))
    largest = 40 if max(c, f) <= 64 else 12
    h = draw(st.integers(max(1, 3 - 2 * padding), largest))
    w = draw(st.integers(max(1, 3 - 2 * padding), largest))
    return (draw(st.integers(1, 2)), c, h, w), (f, c, 3, 3), padding


@SETTINGS
@given(winograd_geometry(), dtypes, seeds)
def test_winograd_conv2d_and_input_gradient_equal_torch(geometry, dtype, seed):
    """algorithm="winograd": float32 within 2e-5 of max |y| of torch's, float64 within 1e-10."""
    x_shape, w_shape, padding = geometry
    x, w = random_array(seed, x_shape, dtype), random_array(seed + 1, w_shape, dtype)
    b = random_array(seed + 2, (w_shape[0],), dtype)
    tx, tw = tensor(x, True), tensor(w)
    ty = F.conv2d(tx, tw, tensor(b), padding=padding)
    tolerance = 2e-5 if dtype == np.float32 else 1e-10
    y = ops.conv2d(x, w, b, 1, padding, algorithm="winograd")
    expected = ty.detach().numpy()
    assert np.abs(y - expected).max() <= tolerance * np.abs(expected).max()
    dy = random_array(seed + 3, y.shape, dtype)
    ty.backward(tensor(dy))
    dx = ops.conv2d_input_gradient(dy, w, x.shape, 1, padding, algorithm="winograd")
    assert np.abs(dx - tx.grad.numpy()).max() <= tolerance * np.abs(tx.grad.numpy()).max()
