"""Every layer's backward against finite differences in float64, and the layers' bookkeeping."""
import re

import numpy as np
import pytest

from minicnn import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                     Unflatten)
from minicnn.testing import gradcheck
from strategies import random_array

LAYERS = {
    "conv": (lambda rng: Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=rng, dtype=np.float64), (2, 3, 7, 6)),
    "conv_1x1": (lambda rng: Conv2d(3, 2, 1, rng=rng, dtype=np.float64), (2, 3, 4, 5)),
    "linear": (lambda rng: Linear(6, 4, rng=rng, dtype=np.float64), (3, 6)),
    "relu": (lambda rng: ReLU(), (2, 3, 4, 4)),
    "maxpool": (lambda rng: MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "avgpool": (lambda rng: AvgPool2d((2, 3), stride=(1, 2), padding=(1, 1)), (2, 2, 5, 6)),
    "adaptive": (lambda rng: AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    "gap": (lambda rng: GlobalAvgPool2d(), (2, 3, 4, 5)),
    "flatten": (lambda rng: Flatten(), (2, 3, 2, 2)),
    "unflatten": (lambda rng: Unflatten((3, 2, 2)), (2, 12)),
    "dropout": (lambda rng: Dropout(0.5, rng=rng), (2, 3, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("training", [False, True])
def test_layer_gradients_match_finite_differences(name, training):
    make, x_shape = LAYERS[name]
    layer = make(np.random.default_rng(0))
    layer.training = training
    if name == "conv" or name == "conv_1x1" or name == "linear":
        layer.params["bias"] = random_array(5, layer.params["bias"].shape)
    x = random_array(1, x_shape)
    y = layer.forward(x)
    r = random_array(2, y.shape)
    x_before = x.copy()
    layer.zero_grad()
    dx = layer.backward(r)
    np.testing.assert_array_equal(x, x_before)  # backward never writes into the caller's arrays
    if name == "dropout":
        # y = x * scale with the mask drawn by that forward pass: read the scale off y itself (x has no
        # zeros), not off what the layer cached, so a forward and a backward that disagree are caught
        scale = y / x
        assert set(np.unique(scale)) <= ({1.0} if not training else {0.0, 2.0})
        loss = lambda _: np.vdot(x * scale, r)  # numerical_gradient perturbs x (and each parameter) in place
    else:
        loss = lambda _: np.vdot(layer.forward(x), r)
    gradcheck(loss, x, dx, rtol=1e-7)
    for key, param in layer.params.items():
        gradcheck(loss, param, layer.grads[key], rtol=1e-7)


def test_parameter_gradients_accumulate_instead_of_being_overwritten():
    layer = Conv2d(2, 3, 3, padding=1, rng=np.random.default_rng(0), dtype=np.float64)
    x = random_array(0, (2, 2, 5, 5))
    dy = random_array(1, (2, 3, 5, 5))
    layer.forward(x)
    layer.backward(dy)
    once = layer.grads["weight"].copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["weight"], 2 * once)
    layer.zero_grad()
    assert not layer.grads["weight"].any()


@pytest.mark.parametrize("make_layer,x_shape", [
    (lambda: Conv2d(2, 3, 3, stride=2, rng=np.random.default_rng(0), dtype=np.float64), (1, 2, 8, 7)),
    (lambda: Linear(5, 4, rng=np.random.default_rng(0), dtype=np.float64), (3, 5)),
])
def test_without_param_grads_grads_stay_untouched_and_dx_is_the_same(make_layer, x_shape):
    layer = make_layer()  # a fresh layer on every run: no gradients left from an earlier one
    x = random_array(0, x_shape)
    dy = random_array(1, layer.forward(x).shape)
    dx_only = layer.backward(dy, param_grads=False)
    assert not any(grad.any() for grad in layer.grads.values())
    np.testing.assert_array_equal(dx_only, layer.backward(dy, param_grads=True))
    assert layer.grads["weight"].any()
    with pytest.raises(ValueError, match=r"dy \(the gradient at \w+'s output\) must have shape"):
        layer.backward(np.ones((7,) + dy.shape[1:]), param_grads=False)


def test_relu_layer_rules_and_backward_before_forward():
    relu = ReLU()
    with pytest.raises(RuntimeError, match="backward called before forward"):
        relu.backward(np.ones((1, 1, 1, 1)))
    relu.forward(np.array([[-2.0, 1.0]]))
    np.testing.assert_array_equal(relu.backward(np.array([[10.0, 3.0]]), rule="deconvnet"), [[10.0, 3.0]])
    np.testing.assert_array_equal(relu.backward(np.array([[10.0, 3.0]]), rule="gradient"), [[0.0, 3.0]])


def test_he_and_xavier_initialisation_scales():
    rng = np.random.default_rng(0)
    he = Conv2d(64, 64, 3, rng=rng).params["weight"]  # 36,864 draws: the std is within 1% of its value
    assert abs(he.std() - np.sqrt(2 / (64 * 9))) < 0.02 * np.sqrt(2 / (64 * 9))
    xavier = Linear(300, 200, init="xavier", rng=rng).params["weight"]
    limit = np.sqrt(6 / 500)
    assert np.abs(xavier).max() <= limit and abs(xavier.std() - limit / np.sqrt(3)) < 0.05 * limit
    with pytest.raises(ValueError, match="init must be one of"):
        Linear(3, 2, init="zeros")


def test_dropout_is_identity_in_eval_and_scales_in_training():
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((1000, 10), np.float32)
    assert layer.forward(x) is x
    layer.training = True
    y = layer.forward(x)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("make,error,message", [
    (lambda: Conv2d(0, 4, 3), ValueError, r"in_channels must be an int >= 1, got 0"),
    (lambda: Conv2d(-1, 4, 3), ValueError, r"in_channels must be an int >= 1, got -1"),
    (lambda: Conv2d(3.5, 4, 3), TypeError, r"in_channels must be an int >= 1, got float 3.5"),
    (lambda: Conv2d(3, 0, 3), ValueError, r"out_channels must be an int >= 1, got 0"),
    (lambda: Conv2d(3, 4, 0), ValueError, r"kernel_size must be >= 1, got \(0, 0\)"),
    (lambda: Conv2d(3, 4, 3, stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    (lambda: Conv2d(3, 4, 3, padding=-1), ValueError, r"padding must be >= 0, got \(-1, -1\)"),
    (lambda: Conv2d(3, 4, 3, bias="no"), TypeError, r"bias must be True or False, got str 'no'"),
    (lambda: Conv2d(3, 4, 3, dtype=np.int32), ValueError, r"dtype must be one of .*float32.*float64.*got .*int32"),
    (lambda: Linear(True, 3), TypeError, r"in_features must be an int >= 1, got bool True"),
    (lambda: Linear(3, 0), ValueError, r"out_features must be an int >= 1, got 0"),
    (lambda: Linear(3, 2, bias=1), TypeError, r"bias must be True or False, got int 1"),
    (lambda: MaxPool2d(0), ValueError, r"kernel_size must be >= 1, got \(0, 0\)"),
    (lambda: MaxPool2d(2, stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    (lambda: AvgPool2d(2, padding=-1), ValueError, r"padding must be >= 0, got \(-1, -1\)"),
    (lambda: MaxPool2d(2, padding=2), ValueError, r"padding must be at most half the kernel size \(2, 2\)"),
    (lambda: AdaptiveAvgPool2d((0, 6)), ValueError, r"output_size must be >= 1, got \(0, 6\)"),
    (lambda: Dropout(True), TypeError, r"p \(1 would zero every value\) must be a number, got bool True"),
    (lambda: Dropout(1), ValueError, r"p \(1 would zero every value\) must be a finite number >= 0 and < 1, got 1.0"),
    (lambda: Dropout(-0.1), ValueError, r"p \(1 would zero every value\) must be a finite number >= 0 and < 1, got -0.1"),
])
def test_constructors_check_their_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_constructors_accept_numpy_ints_and_bools():
    conv = Conv2d(np.int64(3), np.int64(4), 3, bias=np.bool_(False))
    assert (conv.in_channels, conv.out_channels, conv.use_bias) == (3, 4, False) and "bias" not in conv.params
    assert type(conv.in_channels) is int and Linear(np.int32(5), 2).params["weight"].shape == (2, 5)
    assert AdaptiveAvgPool2d(np.int64(3)).output_size == (3, 3)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_needs_dy_shaped_and_typed_exactly_like_the_forward_output(name):
    make, x_shape = LAYERS[name]
    layer = make(np.random.default_rng(0))
    layer.training = True  # dropout keeps a mask: the one case where a broadcast dy would have gone through
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}.backward called before forward"):
        layer.backward(np.ones((1, 1)))
    y = layer.forward(random_array(1, x_shape))
    layer.zero_grad()
    prefix = rf"dy \(the gradient at {type(layer).__name__}'s output\)"
    for shape in ((1,) * y.ndim, (y.shape[0] + 1,) + y.shape[1:], y.shape[:-1] + (y.shape[-1] + 1,), y.shape[:-1]):
        with pytest.raises(ValueError, match=rf"{prefix} must have shape {re.escape(str(y.shape))}, got"):
            layer.backward(np.ones(shape))
    with pytest.raises(TypeError, match=rf"{prefix} has dtype float32 but the other operand has dtype float64"):
        layer.backward(np.ones(y.shape, np.float32))
    assert all(not grad.any() for grad in layer.grads.values())  # a refused dy left no trace
    assert layer.backward(np.ones(y.shape)).shape == x_shape


def test_flatten_backward_does_not_reshape_a_dy_of_the_same_size():
    flatten = Flatten()
    assert flatten.forward(np.ones((2, 3, 8, 8), np.float32)).shape == (2, 192)
    with pytest.raises(ValueError, match=r"dy \(the gradient at Flatten's output\) must have shape \(2, 192\), "
                                         r"got \(4, 96\)"):
        flatten.backward(np.ones((4, 96), np.float32))
    with pytest.raises(ValueError, match=r"x must hold at least one image \(NCHW layout, N >= 1\), got shape"):
        flatten.forward(np.ones((0, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"x must have 4 dimensions, got shape \(2, 192\)"):
        flatten.forward(np.ones((2, 192), np.float32))


def test_switches_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match=r"MaxPool2d.switches called before forward"):
        MaxPool2d(2).switches


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("init", ["he", "xavier"])
def test_initialisation_drawn_in_pieces_equals_one_draw(monkeypatch, init, dtype):
    """Weights are drawn a piece at a time (no whole float64 temporary); the numbers are those of one draw."""
    import minicnn.layers
    monkeypatch.setattr(minicnn.layers, "_INIT_PIECE", 7)
    layer = Linear(9, 5, init=init, rng=np.random.default_rng(3), dtype=dtype)
    rng = np.random.default_rng(3)
    if init == "he":
        want = rng.standard_normal((5, 9)) * np.sqrt(2.0 / 9)
    else:
        limit = np.sqrt(6.0 / (9 + 5))
        want = rng.uniform(-limit, limit, size=(5, 9))
    np.testing.assert_array_equal(layer.params["weight"], want.astype(dtype))
