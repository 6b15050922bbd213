"""The methods under evaluation (minicnn.evaluate.methods): each map is the viz function's, the signed map is
the same signal before absolute values, and CAM says why it does not apply to a network without a GAP head."""
import numpy as np
import pytest

from minicnn.evaluate.methods import METHOD_NAMES, Options, describe, method_maps, unavailable
from minicnn.models import shapes_cam, shapes_vgg
from minicnn.viz.attribution import saliency, score_gradient
from minicnn.viz.cam import cam, grad_cam


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((2, 3, 64, 64)).astype(np.float32)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_gives_two_maps_at_the_images_size(method, images):
    net = shapes_cam(seed=1)
    maps = method_maps(net, method, images, np.array([3, 7]), Options(smooth=2))
    assert maps.map.shape == maps.signed.shape == (2, 64, 64)
    assert np.isfinite(maps.map).all() and np.isfinite(maps.signed).all()


@pytest.mark.parametrize("method,rule", [("saliency", "gradient"), ("guided backprop", "guided"),
                                         ("deconvnet", "deconvnet")])
def test_the_backward_rule_maps_are_the_signal_max_abs_and_summed(method, rule, images):
    net = shapes_vgg(seed=2)
    signal = score_gradient(net, images, [1, 4], rule=rule)
    maps = method_maps(net, method, images, np.array([1, 4]))
    np.testing.assert_array_equal(maps.map, np.abs(signal).max(axis=1))
    np.testing.assert_allclose(maps.signed, signal.sum(axis=1), rtol=1e-6)


def test_smoothgrad_cam_and_gradcam_are_the_viz_functions(images):
    net = shapes_cam(seed=3)
    smooth = method_maps(net, "SmoothGrad", images, np.array([0, 0]), Options(smooth=3, sigma=0.2, seed=4))
    np.testing.assert_array_equal(smooth.map, saliency(net, images, 0, smooth=3, sigma=0.2, seed=4).map)
    np.testing.assert_array_equal(method_maps(net, "CAM", images, np.array([2, 5])).signed,
                                  cam(net, images, [2, 5]).upsampled)
    np.testing.assert_array_equal(method_maps(net, "Grad-CAM", images, np.array([2, 5])).map,
                                  grad_cam(net, images, [2, 5], "relu4").upsampled)


def test_cam_needs_a_gap_head(images):
    assert unavailable(shapes_cam(seed=0), "CAM") is None
    assert unavailable(shapes_vgg(seed=0), "CAM") == "needs a GlobalAvgPool2d + Linear head"
    with pytest.raises(ValueError, match=r"method 'CAM' does not apply to this network: it needs a GlobalAvgPool2d"):
        method_maps(shapes_vgg(seed=0), "CAM", images, np.array([0, 0]))
    with pytest.raises(ValueError, match=r"method must be one of \['saliency', .*got 'lime'"):
        method_maps(shapes_vgg(seed=0), "lime", images, np.array([0, 0]))
    with pytest.raises(ValueError, match=r"smooth must be an int >= 1, got 0"):
        method_maps(shapes_vgg(seed=0), "SmoothGrad", images, np.array([0, 0]), Options(smooth=0))
    assert describe("SmoothGrad", Options(smooth=5)) == "mean of 5 saliency maps, sigma 0.15"
