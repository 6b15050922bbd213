"""ConvTranspose2d and Upsample: equal to PyTorch forward and backward, finite differences in float64,
and the adjoint identities their backward passes rest on."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ConvTranspose2d, Network, ReLU, Upsample, ops
from minicnn.layers import Conv2d
from minicnn.testing import assert_close, gradcheck
from strategies import dtypes, random_array, seeds

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def transposed_geometry(draw):
    """(layer arguments, x shape) for a ConvTranspose2d whose output has at least one pixel."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    # padding at most what leaves one output pixel: (n - 1) s - 2p + k + op >= 1
    padding = tuple(draw(st.integers(0, max(0, ((n - 1) * s + k + op - 1) // 2)))
                    for n, s, k, op in zip(hw, stride, kernel, output_padding))
    channels = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    x_shape = (draw(st.integers(1, 3)), channels[0]) + hw
    return dict(in_channels=channels[0], out_channels=channels[1], kernel_size=kernel, stride=stride,
                padding=padding, output_padding=output_padding), x_shape


def transposed_layer(arguments, seed, dtype, bias=True):
    layer = ConvTranspose2d(**arguments, bias=bias, rng=np.random.default_rng(seed), dtype=dtype)
    if bias:
        layer.params["bias"] = random_array(seed + 7, layer.params["bias"].shape, dtype)
    return layer


# ---------------------------------------------------------------------------------------------- the oracle


@SETTINGS
@given(transposed_geometry(), dtypes, seeds, st.booleans())
def test_conv_transpose_layer_equals_torch_forward_and_backward(geometry, dtype, seed, bias):
    torch = pytest.importorskip("torch")
    arguments, x_shape = geometry
    layer = transposed_layer(arguments, seed, dtype, bias)
    module = torch.nn.ConvTranspose2d(**arguments, bias=bias).to(torch.float64 if dtype == np.float64 else torch.float32)
    module.load_state_dict({key: torch.tensor(value) for key, value in layer.params.items()})  # same names
    x = random_array(seed + 1, x_shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = module(tx)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == tuple(ty.shape)
    assert_close(y, ty.detach().numpy())

    dy = random_array(seed + 2, y.shape, dtype)
    ty.backward(torch.tensor(dy))
    layer.zero_grad()
    dx = layer.backward(dy)
    assert_close(dx, tx.grad.numpy())
    assert_close(layer.grads["weight"], module.weight.grad.numpy())
    if bias:
        assert_close(layer.grads["bias"], module.bias.grad.numpy())
    else:
        assert "bias" not in layer.params


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from(ops.UPSAMPLE_MODES), dtypes, seeds)
def test_upsample_equals_torch_interpolate_forward_and_backward(sh, sw, h, w, mode, dtype, seed):
    torch = pytest.importorskip("torch")
    x = random_array(seed, (2, 3, h, w), dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, scale_factor=(sh, sw), mode=mode,
                                         **({"align_corners": False} if mode == "bilinear" else {}))
    layer = Upsample((sh, sw), mode)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == (2, 3, h * sh, w * sw)
    assert_close(y, ty.detach().numpy())
    dy = random_array(seed + 1, y.shape, dtype)
    ty.backward(torch.tensor(dy))
    assert_close(layer.backward(dy), tx.grad.numpy())


# ---------------------------------------------------------------------------------------------- finite differences


@pytest.mark.parametrize("arguments, x_shape", [
    (dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1), (2, 3, 3, 4)),
    (dict(in_channels=2, out_channels=3, kernel_size=(4, 2), stride=(2, 1), padding=(1, 0)), (1, 2, 3, 3)),
    (dict(in_channels=2, out_channels=2, kernel_size=1, stride=3, output_padding=(2, 0)), (2, 2, 2, 3)),
])
def test_conv_transpose_layer_gradients_match_finite_differences(arguments, x_shape):
    layer = transposed_layer(arguments, 0, np.float64)
    x = random_array(1, x_shape)
    r = random_array(2, layer.forward(x).shape)
    layer.zero_grad()
    dx = layer.backward(r)
    loss = lambda _: np.vdot(layer.forward(x), r)  # noqa: E731  (gradcheck perturbs x and each parameter in place)
    gradcheck(loss, x, dx, rtol=1e-7)
    for key, param in layer.params.items():
        gradcheck(loss, param, layer.grads[key], rtol=1e-7)


@pytest.mark.parametrize("mode", ops.UPSAMPLE_MODES)
@pytest.mark.parametrize("scale", [1, 2, (3, 2)])
def test_upsample_gradient_matches_finite_differences(mode, scale):
    layer = Upsample(scale, mode)
    x = random_array(0, (2, 2, 3, 4))
    r = random_array(1, layer.forward(x).shape)
    dx = layer.backward(r)
    gradcheck(lambda _: np.vdot(layer.forward(x), r), x, dx, rtol=1e-7)


# ---------------------------------------------------------------------------------------------- identities


@settings(max_examples=30, deadline=None)
@given(transposed_geometry(), seeds)
def test_conv_transpose_backward_is_the_adjoint_and_the_forward_conv(geometry, seed):
    """<T x, dy> = <x, T^T dy> with T^T = conv2d; and the weight gradient is the conv weight gradient with
    the two arrays' roles swapped (checked against conv2d_backward, an independent route)."""
    arguments, x_shape = geometry
    layer = transposed_layer(arguments, seed, np.float64, bias=False)
    x = random_array(seed + 1, x_shape)
    y = layer.forward(x)
    dy = random_array(seed + 2, y.shape)
    dx, dw, db = ops.conv_transpose2d_backward(dy, x, layer.params["weight"], layer.stride, layer.padding)
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-10, atol=1e-10)
    # the conv2d whose transpose this is maps dy (its input) to x's shape (its output)
    _, conv_dw, _ = ops.conv2d_backward(x, dy, layer.params["weight"], layer.stride, layer.padding)
    np.testing.assert_allclose(dw, conv_dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7), st.sampled_from(ops.UPSAMPLE_MODES),
       seeds)
def test_upsample_backward_is_the_adjoint(sh, sw, h, w, mode, seed):
    x = random_array(seed, (2, 3, h, w))
    y = ops.upsample2d(x, (sh, sw), mode)
    r = random_array(seed + 1, y.shape)
    assert np.isclose(np.vdot(y, r), np.vdot(x, ops.upsample2d_backward(r, x.shape, (sh, sw), mode)), rtol=1e-10)


@pytest.mark.parametrize("mode", ops.UPSAMPLE_MODES)
def test_interpolation_keeps_constants_and_nearest_copies_pixels(mode):
    matrix = ops.interpolation_matrix(5, 3, mode)
    assert matrix.shape == (15, 5)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-15)
    x = random_array(0, (1, 2, 3, 4))
    if mode == "nearest":
        np.testing.assert_array_equal(ops.upsample2d(x, 2, mode), x.repeat(2, axis=2).repeat(2, axis=3))
    else:  # interior pixels of a 2x bilinear resize: 3/4 of the nearer input, 1/4 of the other
        y = ops.upsample2d(x, (2, 1), mode)
        np.testing.assert_allclose(y[:, :, 1], 0.75 * x[:, :, 0] + 0.25 * x[:, :, 1], rtol=1e-14)


def test_param_grads_false_gives_the_same_input_gradient_and_leaves_the_weights_alone():
    layer = transposed_layer(dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1), 0, np.float64)
    x = random_array(1, (2, 2, 4, 4))
    dy = random_array(2, layer.forward(x).shape)
    layer.zero_grad()
    with_params = layer.backward(dy)
    before = {key: value.copy() for key, value in layer.grads.items()}
    np.testing.assert_array_equal(layer.backward(dy, param_grads=False), with_params)
    for key, value in layer.grads.items():
        np.testing.assert_array_equal(value, before[key])


def test_a_network_trains_through_both_layers():
    """A conv, a transposed conv and an upsample in one Network: its backward equals finite differences."""
    rng = np.random.default_rng(0)
    net = Network([("conv", Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                   ("up", ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=rng, dtype=np.float64)),
                   ("resize", Upsample(2, "bilinear"))])
    x = random_array(1, (1, 2, 6, 6))
    y = net.forward(x)
    assert y.shape == (1, 2, 12, 12)
    r = random_array(2, y.shape)
    net.zero_grad()
    net.backward(r)
    weight = net["up"].params["weight"]
    gradcheck(lambda _: np.vdot(net.forward(x), r), weight, net.named_gradients()["up.weight"], rtol=1e-7)
    assert net.spatial_layers() == ["conv", "relu"]  # receptive fields end at the first upsampling layer


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride"):
        ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="scale_factor must be >= 1"):
        Upsample(0)
    with pytest.raises(ValueError, match="mode must be one of"):
        Upsample(2, mode="bicubic")
    with pytest.raises(ValueError, match="channel mismatch"):
        ConvTranspose2d(3, 2, 3, rng=np.random.default_rng(0)).forward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ConvTranspose2d(2, 2, 3, rng=np.random.default_rng(0)).forward(np.zeros((1, 2, 4, 4), np.float64))
    layer = ConvTranspose2d(2, 2, 3, stride=2, rng=np.random.default_rng(0))
    y = layer.forward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.zeros(y.shape[:2] + (y.shape[2] + 1, y.shape[3]), np.float32))
    with pytest.raises(ValueError, match="dx"):
        ops.conv_transpose2d_backward(np.zeros((1, 2, 11, 9), np.float32), np.zeros((1, 2, 4, 4), np.float32),
                                      layer.params["weight"], 2, 0)
