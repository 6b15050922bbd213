"""Gradient ascent (activation maximization, class models) and DeepDream, each by its defining identity:
the objective rises step after step, the gradient is that of the stated objective (finite differences in
float64), blur and decay remove high frequencies, and a trained model's class model is classified as
its class."""

import numpy as np
import pytest

from minicnn import Adam, Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU, fit, ops
from minicnn.viz.ascent import (activation_max, channel_seed, class_model, high_frequency_energy,
                                log_probability_objective, objective_gradient, regularize)
from minicnn.viz.dream import deep_dream, dream_gradient



def small_net(seed=0, dtype=np.float32, size=16, classes=3):
    """conv-relu-pool x2, fc: (N, 3, size, size) -> (N, classes)."""
    net = Network([
        ("conv1", Conv2d(3, 6, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(6, 8, 3, padding=1)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()), ("fc", Linear(8 * (size // 4) ** 2, classes)),
    ], seed=seed)
    return net.astype(dtype)


def stripes_and_blobs(n, seed, size=16):
    """A toy problem: class 0 vertical stripes, class 1 horizontal stripes, class 2 a bright blob."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    y, x = np.mgrid[0:size, 0:size]
    images = rng.uniform(0, 0.2, size=(n, 3, size, size))
    for i, label in enumerate(labels):
        phase = rng.integers(0, 4)
        if label == 0:
            images[i] += 0.6 * ((x + phase) % 4 < 2)
        elif label == 1:
            images[i] += 0.6 * ((y + phase) % 4 < 2)
        else:
            cy, cx = rng.integers(4, size - 4, size=2)
            images[i] += 0.7 * ((y - cy) ** 2 + (x - cx) ** 2 <= 9)
    return np.clip(images, 0, 1).astype(np.float32), labels


@pytest.fixture(scope="module")
def trained_net():
    """A tiny net trained to ~100% on stripes_and_blobs (about a second)."""
    images, labels = stripes_and_blobs(300, seed=0)
    net = small_net(seed=1)
    fit(net, Adam(net, lr=0.01), images, labels, epochs=6, batch_size=32, progress=False)
    test_images, test_labels = stripes_and_blobs(100, seed=1)
    accuracy = (net.forward(test_images).argmax(axis=1) == test_labels).mean()
    assert accuracy >= 0.95
    return net.eval()


def rises(trace, tolerance=1e-3):
    """The trace ends well above where it began and never falls by more than `tolerance` of its range."""
    span = trace.max() - trace.min()
    return trace[-1] > trace[0] + 0.1 * abs(trace[0]) + 1e-6 and np.diff(trace).min() >= -tolerance * span


# ----------------------------------------------------------------------------------------------
# the objective rises


@pytest.mark.parametrize("layer,channel", [("relu1", 0), ("relu2", 5), ("pool2", 2), ("fc", 1)])
def test_activation_max_objective_rises(trained_net, layer, channel):
    for net in (small_net(seed=3), trained_net):
        result = activation_max(net, layer, channel, steps=40, lr=0.01, jitter=0, blur_every=0,
                                shape=(3, 16, 16), progress=False)
        assert result.objective.shape == (41,) and rises(result.objective), result.objective
        assert rises(result.regularized)
        assert result.image.shape == (3, 16, 16) and result.image.dtype == np.float32
        assert result.image.min() >= 0 and result.image.max() <= 1  # pixel_range (0, 1)


@pytest.mark.parametrize("target", [0, 1, 2])
def test_class_model_objective_rises(trained_net, target):
    for net in (small_net(seed=4), trained_net):
        result = class_model(net, target, steps=40, lr=0.01, jitter=0, blur_every=0, shape=(3, 16, 16),
                             progress=False)
        assert rises(result.objective), result.objective
        np.testing.assert_allclose(result.output, net.forward(result.image[None])[0], rtol=1e-5, atol=1e-5)
        assert result.objective[-1] == pytest.approx(result.output[target], rel=1e-5)


def test_class_model_of_a_trained_net_is_classified_as_its_class(trained_net):
    for target in range(3):  # jitter and blur scaled down to the 16 x 16 images
        result = class_model(trained_net, target, steps=100, jitter=1, blur_sigma=0.5, shape=(3, 16, 16),
                             progress=False)
        assert ops.softmax(result.output[None])[0, target] >= 0.9


def test_deep_dream_objective_rises_within_each_octave(trained_net):
    image = np.random.default_rng(0).uniform(0, 1, size=(3, 32, 32)).astype(np.float32)
    for net, picture in ((small_net(seed=5, size=32), image), (trained_net, stripes_and_blobs(1, 2)[0][0])):
        single = deep_dream(net, picture, "relu2", steps=15, octaves=1, jitter=0, progress=False)
        assert rises(single.objective), single.objective
    net = small_net(seed=5, size=32)
    pyramid = deep_dream(net, image, "relu2", steps=8, octaves=3, octave_scale=1.4, jitter=4, progress=False)
    assert pyramid.octave_shapes == [(16, 16), (23, 23), (32, 32)]
    per_octave = pyramid.objective.reshape(3, 8)
    assert np.all(per_octave[:, -1] > per_octave[:, 0])
    assert pyramid.image.shape == image.shape and not np.array_equal(pyramid.image, image)
    assert 0 <= pyramid.image.min() and pyramid.image.max() <= 1


# ----------------------------------------------------------------------------------------------
# the gradients are those of the stated objectives (finite differences, float64)


def finite_difference(function, x, every=5, eps=1e-6):
    """Central differences of a scalar function at every `every`-th entry of x: (indices, values)."""
    indices = list(np.ndindex(x.shape))[::every]
    values = []
    for index in indices:
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        values.append((function(plus) - function(minus)) / (2 * eps))
    return indices, np.array(values)


def test_deep_dream_gradient_is_that_of_half_the_squared_activation():
    """Seeding the backward pass with the activation itself is gradient ascent on 1/2 sum f^2."""
    net = small_net(seed=6, dtype=np.float64)
    image = np.random.default_rng(1).uniform(0, 1, size=(3, 16, 16))
    energy, gradient = dream_gradient(net, image, "relu2")
    half_square = lambda x: 0.5 * np.sum(net.forward(x[None], upto="relu2") ** 2)  # noqa: E731
    assert energy == pytest.approx(half_square(image), rel=1e-12)
    indices, numeric = finite_difference(half_square, image)
    analytic = np.array([gradient[i] for i in indices])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())


@pytest.mark.parametrize("where", ["mean", "center"])
def test_activation_max_gradient_is_that_of_the_channel_objective(where):
    net = small_net(seed=7, dtype=np.float64)
    image = np.random.default_rng(2).uniform(0, 1, size=(3, 16, 16))
    seed = channel_seed(net.forward(image[None], upto="relu2").shape, 3, where)

    def channel_objective(x):
        maps = net.forward(x[None], upto="relu2")[0, 3]  # (8, 8)
        return maps.mean() if where == "mean" else maps[4, 4]

    value, gradient, _ = objective_gradient(net, "relu2", seed, image)
    assert value == pytest.approx(channel_objective(image), rel=1e-12)
    indices, numeric = finite_difference(channel_objective, image)
    np.testing.assert_allclose([gradient[i] for i in indices], numeric, rtol=1e-6,
                               atol=1e-7 * max(np.abs(numeric).max(), 1e-12))


def test_log_probability_objective_gradient_is_that_of_log_softmax():
    net = small_net(seed=11, dtype=np.float64)
    image = np.random.default_rng(5).uniform(0, 1, size=(3, 16, 16))
    log_p = lambda x: ops.log_softmax(net.forward(x[None]))[0, 2]  # noqa: E731
    value, gradient, _ = objective_gradient(net, "fc", log_probability_objective(2), image)
    assert value == pytest.approx(log_p(image), rel=1e-12)
    indices, numeric = finite_difference(log_p, image)
    np.testing.assert_allclose([gradient[i] for i in indices], numeric, rtol=1e-6,
                               atol=1e-7 * np.abs(numeric).max())


# ----------------------------------------------------------------------------------------------
# regularizers


def laplacian_energy(image):
    """sum of the squared discrete Laplacian (4-neighbour, periodic) over all planes."""
    lap = -4 * image + sum(np.roll(image, s, axis=a) for s in (1, -1) for a in (1, 2))
    return float(np.sum(lap ** 2))


def test_blur_and_decay_lower_the_high_frequency_energy(trained_net):
    plain = dict(steps=60, lr=0.02, l2=0.0, jitter=0, blur_every=0, shape=(3, 16, 16), progress=False)
    for run in (lambda **kw: class_model(trained_net, 0, **kw),
                lambda **kw: activation_max(small_net(seed=8), "relu2", 1, **kw)):
        raw = run(**plain)
        smooth = run(**{**plain, "decay": 0.02, "blur_every": 2, "blur_sigma": 1.0})
        raw_x, smooth_x = raw.image - 0.5, smooth.image - 0.5  # the ascent variable x (mean 0.5)
        assert high_frequency_energy(smooth_x) < high_frequency_energy(raw_x)
        assert laplacian_energy(smooth_x) < 0.5 * laplacian_energy(raw_x)


def test_high_frequency_energy_of_known_images():
    y, x = np.mgrid[0:16, 0:16]
    checker = np.broadcast_to(((y + x) % 2).astype(float), (3, 16, 16))
    ramp = np.broadcast_to(np.sin(2 * np.pi * x / 16), (3, 16, 16))
    assert high_frequency_energy(checker) == pytest.approx(1.0)
    assert high_frequency_energy(ramp) == pytest.approx(0.0, abs=1e-12)


def test_clipping_zeroes_exactly_the_pixels_of_small_norm_or_small_contribution():
    rng = np.random.default_rng(3)
    x, gradient = rng.standard_normal((2, 3, 10, 10))
    norm = np.sqrt((x ** 2).sum(axis=0))
    contribution = np.abs((x * gradient).sum(axis=0))
    for kwargs, score in (({"clip_norm_pct": 40}, norm), ({"clip_contrib_pct": 25}, contribution)):
        clipped = regularize(x, gradient, step=0, **kwargs)
        pct = next(iter(kwargs.values()))
        ranks = np.argsort(np.argsort(score.ravel())).reshape(score.shape)  # 0 = smallest
        expect_zero = ranks < np.ceil(pct / 100 * (score.size - 1))  # below np.percentile's level
        np.testing.assert_array_equal(np.all(clipped == 0, axis=0), expect_zero)
        np.testing.assert_array_equal(clipped[:, ~expect_zero], x[:, ~expect_zero])


def test_decay_and_blur_are_the_stated_operators():
    x = np.random.default_rng(4).standard_normal((3, 12, 12))
    np.testing.assert_allclose(regularize(x, x, step=0, decay=0.1), 0.9 * x)
    np.testing.assert_array_equal(regularize(x, x, step=0, blur_every=2), x)  # not this step
    blurred = regularize(x, x, step=1, blur_every=2, blur_sigma=1.0)
    assert np.allclose(blurred.mean(axis=(1, 2)), x.mean(axis=(1, 2)))  # a blur keeps each plane's mean
    assert laplacian_energy(blurred) < 0.2 * laplacian_energy(x)


def test_mean_is_added_and_the_start_is_the_mean_image():
    net = small_net(seed=10)
    mean = np.array([0.2, 0.4, 0.6])
    result = activation_max(net, "relu1", 0, steps=0, mean=mean, start="zero", shape=(3, 16, 16), progress=False)
    np.testing.assert_allclose(result.image, np.broadcast_to(mean[:, None, None], (3, 16, 16)), atol=1e-7)


# ----------------------------------------------------------------------------------------------
# errors


SMALL = dict(shape=(3, 16, 16), steps=2, progress=False)


def test_bad_arguments_give_clear_errors():
    net = small_net()
    with pytest.raises(ValueError, match="channel 8 is out of range.*8 channels"):
        activation_max(net, "relu2", 8, shape=(3, 16, 16), progress=False)
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        activation_max(net, "conv9", 0, shape=(3, 16, 16), progress=False)
    with pytest.raises(ValueError, match="target 3 is out of range"):
        class_model(net, 3, shape=(3, 16, 16), progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        class_model(net, 0, shape=(3, 20, 20), progress=False)
    with pytest.raises(ValueError, match="start must be one of"):
        class_model(net, 0, shape=(3, 16, 16), start="ones", progress=False)
    with pytest.raises(TypeError, match="dtype float64 but the network's parameters are float32"):
        deep_dream(net, np.zeros((3, 16, 16)), "relu2", progress=False)
    with pytest.raises(ValueError, match="octave of size"):
        deep_dream(net, np.zeros((3, 16, 16), np.float32), "relu2", octaves=8, progress=False)
    with pytest.raises(ValueError, match=r"smallest octave of a \(5, 7\) image would be \(0, 1\)"):
        deep_dream(net, np.zeros((3, 5, 7), np.float32), "relu2", octaves=4, octave_scale=2, progress=False)


@pytest.mark.parametrize("call,error,match", [
    (lambda net, image: activation_max(net, "relu2", 0, lr=-1, **SMALL), ValueError, "lr must be a finite number > 0"),
    (lambda net, image: activation_max(net, "relu2", 0, lr=np.nan, **SMALL), ValueError, "lr must be a finite number"),
    (lambda net, image: activation_max(net, "relu2", 0, blur_sigma=-1, **SMALL), ValueError, "blur_sigma must be"),
    (lambda net, image: activation_max(net, "relu2", 0, l2="a", **SMALL), TypeError, "l2 must be a number"),
    (lambda net, image: activation_max(net, "relu2", 0, decay=1, **SMALL), ValueError, r"decay must be a finite number >= 0 and < 1, got 1.0"),
    (lambda net, image: activation_max(net, "relu2", 0, mean=np.nan, **SMALL), ValueError, "mean must hold finite"),
    (lambda net, image: activation_max(net, "relu2", 0, **{**SMALL, "steps": 2.0}), TypeError, "steps must be an int"),
    (lambda net, image: deep_dream(net, image, "relu2", steps=2.0, progress=False), TypeError, "steps must be an int"),
    (lambda net, image: deep_dream(net, image, "relu2", step_size=np.nan, progress=False), ValueError, "step_size"),
    (lambda net, image: deep_dream(net, image, "relu2", octave_scale=1, progress=False), ValueError, "octave_scale"),
    (lambda net, image: deep_dream(net, image, "relu2", pixel_range=(1, 0), progress=False), ValueError,
     r"pixel_range must be \(low, high\) with low < high"),
    (lambda net, image: activation_max(net, "relu2", 0, pixel_range=(0, np.inf), **SMALL), ValueError,
     "pixel_range's high must be a finite number"),
    (lambda net, image: deep_dream(net, image * np.nan, "relu2", progress=False), ValueError, "image must hold finite"),
])
def test_bad_numbers_give_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(small_net(), np.full((3, 16, 16), 0.5, np.float32))


# ----------------------------------------------------------------------------------------------
# the shipped model


def test_class_model_of_shapes_vgg_is_its_class_with_probability_09():
    """With class_model's defaults (pre-softmax score, Yosinski's regularizers), every class model is
    classified as its class."""
    from minicnn.data import CLASS_NAMES
    from minicnn.models import load_pretrained

    net = load_pretrained("shapes_vgg")
    for target, name in enumerate(CLASS_NAMES):
        result = class_model(net, target, progress=False)
        p = ops.softmax(result.output[None])[0, target]
        assert p >= 0.9, f"class model of {name}: p = {p:.3f}"
        assert result.objective[-1] > result.objective[0]


def test_a_pixel_range_per_channel_holds_each_channel_in_its_own_range():
    """ImageNet inputs are normalized per channel, so each channel has its own valid range."""
    net = small_net()
    low, high = np.array([-0.1, 0.2, 0.4]), np.array([0.3, 0.5, 0.6])
    result = activation_max(net, "relu2", 0, pixel_range=(low, high), mean=0.5, **{**SMALL, "steps": 5})
    dreamed = deep_dream(net, np.full((3, 16, 16), 0.45, np.float32), "relu2", steps=3, octaves=1,
                         pixel_range=(low, high), progress=False).image
    assert np.all(result.image[2] >= 0.4 - 1e-7)  # the start, 0.5 grey, lies outside channel 0's range only
    assert result.image[0].max() <= 0.3 + 1e-7 and result.image[0].max() > 0.3 - 1e-6  # clipped to channel 0's top
    for image in (result.image, dreamed):
        assert image.dtype == np.float32
        assert np.all(image >= low[:, None, None].astype(np.float32) - 1e-7)
        assert np.all(image <= high[:, None, None].astype(np.float32) + 1e-7)
    with pytest.raises(ValueError, match=r"pixel_range's low must be a number or one number per channel, shape \(3,\)"):
        deep_dream(net, np.zeros((3, 16, 16), np.float32), "relu2", pixel_range=(low[:2], high), progress=False)
    with pytest.raises(ValueError, match=r"pixel_range must be \(low, high\) with low < high"):
        activation_max(net, "relu2", 0, pixel_range=(high, low), **SMALL)
