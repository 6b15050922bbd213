"""The switch ablation (minicnn.evaluate.switches): with the image's own switches the manual backward pass is
the network's; with flat switches the DeconvNet signal no longer depends on the image at all."""
import numpy as np
import pytest

from minicnn.evaluate.switches import backward_signal, edge_maps, flat_switches, switch_ablation, top_layers
from minicnn.layers import MaxPool2d
from minicnn.models import shapes_cam, shapes_vgg
from minicnn.viz.attribution import score_gradient


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 3, 64, 64)).astype(np.float32)


@pytest.mark.parametrize("rule", ["gradient", "guided", "deconvnet"])
def test_with_its_own_switches_the_backward_pass_is_the_networks(rule, images):
    net = shapes_vgg(seed=1)
    np.testing.assert_allclose(backward_signal(net, images, [0, 4, 9], rule, "own"),
                               score_gradient(net, images, [0, 4, 9], rule), rtol=1e-5, atol=1e-7)


def test_with_flat_switches_the_deconvnet_signal_is_the_same_for_every_image(images):
    """Rule "deconvnet" ignores the forward pass at the ReLUs; the switches were the image's only way in."""
    net = shapes_vgg(seed=2)
    flat = backward_signal(net, images, 3, "deconvnet", "flat")
    np.testing.assert_allclose(flat[1:], np.broadcast_to(flat[0], flat[1:].shape), rtol=1e-6)
    own = backward_signal(net, images, 3, "deconvnet", "own")
    assert not np.allclose(own[0], own[1])  # the image's own switches make them differ
    guided = backward_signal(net, images, 3, "guided", "flat")
    assert not np.allclose(guided[0], guided[1])  # guided backprop keeps the ReLUs' forward masks


def test_flat_switches_are_the_first_position_of_every_window():
    np.testing.assert_array_equal(flat_switches(MaxPool2d(2), (1, 2, 4, 4))[0, 1], [[0, 2], [8, 10]])


def test_the_top_layers_are_those_above_the_last_max_pool():
    assert top_layers(shapes_vgg(seed=0)) == ("fc2", "fc1")
    assert top_layers(shapes_cam(seed=0)) == ("fc", "conv4", "conv3")


def test_edges_peak_on_a_step():
    x = np.zeros((1, 3, 9, 9))
    x[:, :, :, 5:] = 1.0
    edges = edge_maps(x)
    assert set(np.argmax(edges, axis=2).ravel()) <= {4, 5}  # the columns on either side of the step


def test_the_ablation_rows(images):
    net = shapes_vgg(seed=3)
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[:, 20:40, 20:40] = True
    rows = switch_ablation(net, images, np.array([1, 2, 3]), masks, ("deconvnet",))
    assert [(r["network"], r["switches"]) for r in rows] == [
        (network, switches) for network in ("trained", "top re-drawn", "all re-drawn") for switches in ("own", "flat")]
    assert rows[0]["spearman_trained"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"method must be one of \['saliency', 'guided backprop', 'deconvnet'\]"):
        switch_ablation(net, images, np.array([1, 2, 3]), masks, ("CAM",))
