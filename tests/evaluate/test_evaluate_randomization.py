"""The model-parameter randomization test (minicnn.evaluate.randomization): the re-drawn copies change the
chosen layers and nothing else, a fully re-drawn network classifies at chance, and the similarities agree
with their formulas (Spearman by hand, SSIM against one 7 x 7 window written out)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.data import HELD_OUT_SEED, make_shapes
from minicnn.evaluate.methods import Maps
from minicnn.evaluate.randomization import (
    parameter_layers,
    randomized_copy,
    similarities,
    spearman,
    ssim,
    steps,
)
from minicnn.models import load_pretrained, shapes_vgg
from minicnn.train import accuracy


@pytest.fixture(scope="module")
def trained():
    return load_pretrained("shapes_vgg")


def test_the_steps_go_from_the_top_down(trained):
    layers = parameter_layers(trained)
    assert layers == ["fc2", "fc1", "conv3_2", "conv3_1", "conv2_2", "conv2_1", "conv1_2", "conv1_1"]
    cascade = steps(trained, "cascade")
    assert [step.layers for step in cascade] == [tuple(layers[:k]) for k in range(1, 9)]
    assert [step.layers for step in steps(trained, "independent")] == [(name,) for name in layers]
    assert cascade[2].label == "down to conv3_2"


@pytest.mark.parametrize("mode", ["cascade", "independent"])
def test_each_step_redraws_its_layers_and_no_others(trained, mode):
    before = trained.state_dict()
    for step in steps(trained, mode):
        copy = randomized_copy(trained, step.layers, seed=3)
        for key, value in copy.named_parameters().items():
            layer, kind = key.split(".")
            if layer in step.layers and kind == "weight":
                assert not np.array_equal(value, before[key]), key  # re-drawn
            elif layer in step.layers:  # biases start at zero, as in a new network
                np.testing.assert_array_equal(value, 0, err_msg=key)
            else:
                np.testing.assert_array_equal(value, before[key], err_msg=key)  # kept
    for key, value in trained.named_parameters().items():  # the trained network is untouched
        np.testing.assert_array_equal(value, before[key])


def test_a_layer_gets_the_same_new_values_in_every_step_and_from_the_same_seed(trained):
    two, three = randomized_copy(trained, ("fc2", "fc1"), 5), randomized_copy(trained, ("fc2", "fc1", "conv3_2"), 5)
    for key in ("fc2.weight", "fc1.weight"):
        np.testing.assert_array_equal(two.named_parameters()[key], three.named_parameters()[key])
    again = randomized_copy(trained, ("fc2", "fc1"), 5)
    other = randomized_copy(trained, ("fc2", "fc1"), 6)
    np.testing.assert_array_equal(again.named_parameters()["fc1.weight"], two.named_parameters()["fc1.weight"])
    assert not np.array_equal(other.named_parameters()["fc1.weight"], two.named_parameters()["fc1.weight"])


def test_the_redrawn_weights_follow_the_layers_initial_distribution(trained):
    """He init: std sqrt(2 / fan_in) (fc1: fan_in 2048; conv1_1: 27)."""
    copy = randomized_copy(trained, ("fc1", "conv1_1"), 0)
    assert copy["fc1"].params["weight"].std() == pytest.approx(np.sqrt(2 / 2048), rel=0.02)
    assert copy["conv1_1"].params["weight"].std() == pytest.approx(np.sqrt(2 / 27), rel=0.15)


def test_a_fully_redrawn_network_classifies_at_chance(trained):
    batch = make_shapes(500, seed=HELD_OUT_SEED)
    assert accuracy(trained, batch.images, batch.labels) > 0.95
    for seed in (0, 1):
        random = randomized_copy(trained, parameter_layers(trained), seed)
        # 10 classes: chance is 10%, +- 4 standard deviations of a binomial over 500 images
        assert abs(accuracy(random, batch.images, batch.labels) - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 500)


def test_only_layers_with_parameters_can_be_redrawn():
    net = shapes_vgg(seed=0)
    with pytest.raises(ValueError, match=r"layers must name layers with parameters, one of \['fc2', .*got 'relu1_1'"):
        randomized_copy(net, ("relu1_1",))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 40))
def test_spearman_without_ties_is_one_minus_six_sum_d_squared(seed, n):
    rng = np.random.default_rng(seed)
    a, b = rng.permutation(n).astype(float), rng.permutation(n).astype(float)  # ranks themselves, no ties
    d = a - b
    assert spearman(a, b) == pytest.approx(1 - 6 * (d ** 2).sum() / (n * (n * n - 1)), abs=1e-12)


def test_spearman_by_hand():
    a = np.array([[1.0, 5.0], [2.0, 9.0]])
    assert spearman(a, a ** 3) == pytest.approx(1.0)  # any increasing function keeps the ranks
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.abs(a - 3), np.abs(-(a - 3))) == pytest.approx(1.0)  # |.| forgets the flipped sign
    assert np.isnan(spearman(a, np.ones((2, 2))))
    with pytest.raises(ValueError, match=r"one shape, got \(2, 2\) and \(4,\)"):
        spearman(a, np.ones(4))


def one_window_ssim(x, y, c1=0.01 ** 2, c2=0.03 ** 2):
    """SSIM of one window (Wang et al. 2004) with sample (ddof 1) variances and covariance."""
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(ddof=1), y.var(ddof=1)
    cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_ssim_of_a_7x7_pair_is_the_one_window_formula(seed):
    """skimage's 7 x 7 windows fit a 7 x 7 map once, and its border crop keeps only that window."""
    pytest.importorskip("skimage")
    rng = np.random.default_rng(seed)
    x, y = rng.random((7, 7)), rng.random((7, 7))
    x.flat[[0, 1]], y.flat[[5, 9]] = (0.0, 1.0), (1.0, 0.0)  # already spanning [0, 1]: scaling changes nothing
    assert ssim(x, y) == pytest.approx(one_window_ssim(x, y), rel=1e-9)
    assert ssim(x, 3 * x + 2) == pytest.approx(1.0)  # each map is scaled to [0, 1] first


def test_identical_maps_are_similar_by_every_measure():
    pytest.importorskip("skimage")
    rng = np.random.default_rng(0)
    maps = Maps(rng.random((2, 9, 9)), rng.standard_normal((2, 9, 9)))
    for values in similarities(maps, maps).values():
        np.testing.assert_allclose(values, 1.0)
    flipped = similarities(maps, Maps(maps.map, -maps.signed))
    np.testing.assert_allclose(flipped["spearman_signed"], -1.0)
    np.testing.assert_allclose(flipped["spearman_abs"], 1.0)
