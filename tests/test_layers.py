"""Every layer's backward against finite differences in float64, and the layers' bookkeeping."""
import numpy as np
import pytest

from minicnn import AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU
from strategies import numerical_gradient, relative_error, random_array

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
        scale = 1.0 if layer._cache is None else layer._cache  # the mask drawn by that forward pass
        loss = lambda: np.vdot(x * scale, r)
    else:
        loss = lambda: np.vdot(layer.forward(x), r)
    assert relative_error(dx, numerical_gradient(loss, x)) <= 1e-7
    for key, param in layer.params.items():
        assert relative_error(layer.grads[key], numerical_gradient(loss, param)) <= 1e-7


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


@pytest.mark.parametrize("layer,x_shape", [
    (Conv2d(2, 3, 3, stride=2, rng=np.random.default_rng(0), dtype=np.float64), (1, 2, 8, 7)),
    (Linear(5, 4, rng=np.random.default_rng(0), dtype=np.float64), (3, 5)),
])
def test_without_param_grads_grads_stay_untouched_and_dx_is_the_same(layer, x_shape):
    x = random_array(0, x_shape)
    dy = random_array(1, layer.forward(x).shape)
    dx_only = layer.backward(dy, param_grads=False)
    assert not any(grad.any() for grad in layer.grads.values())
    np.testing.assert_array_equal(dx_only, layer.backward(dy, param_grads=True))
    assert layer.grads["weight"].any()
    with pytest.raises(ValueError, match=r"dy must have shape"):
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
    he = Conv2d(64, 64, 3, rng=rng).params["weight"]
    assert abs(he.std() - np.sqrt(2 / (64 * 9))) < 0.02 * np.sqrt(2 / (64 * 9)) * 10
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
