"""The shapes autoencoder (models.shapes_autoencoder), its Unflatten layer, and minicnn.recipes.shape_codes."""
import numpy as np
import pytest

from minicnn import Flatten, Unflatten, data, models
from minicnn.recipes import shape_codes


def test_unflatten_undoes_flatten_and_names_a_bad_input():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    flat = Flatten().forward(x)
    layer = Unflatten((3, 4, 5))
    np.testing.assert_array_equal(layer.forward(flat), x)
    np.testing.assert_array_equal(layer.backward(x), flat)
    with pytest.raises(ValueError, match=r"x must have shape \(any, 60\)"):
        layer.forward(np.zeros((2, 59)))
    with pytest.raises(TypeError, match="shape must be a"):
        Unflatten(60)


def test_encoding_then_drawing_is_the_whole_autoencoder():
    net = models.shapes_autoencoder(code_size=5, side=16, seed=0)
    masks = data.make_shapes(3, seed=2, size=32).masks[:, None, ::2, ::2].astype(np.float32)
    codes = net.forward(masks, upto="code")
    assert codes.shape == (3, 5)
    scores = net.forward(masks)
    assert scores.shape == (3, 2, 16, 16)
    np.testing.assert_array_equal(net.forward(codes, after="code"), scores)
    with pytest.raises(ValueError, match="multiple of 4"):
        models.shapes_autoencoder(side=30)


def test_a_walk_starts_and_ends_at_the_two_drawings():
    net = models.shapes_autoencoder(code_size=4, side=32, seed=1)
    inputs, _, labels = shape_codes.mask_set(12, 5, 32)
    drawn = shape_codes.walk(net, inputs[0], inputs[1], steps=5)
    scores = net.forward(inputs[:2])
    inside = 1 / (1 + np.exp(-(scores[:, 1] - scores[:, 0])))
    np.testing.assert_allclose(drawn[[0, -1]], inside, rtol=1e-5, atol=1e-6)
    for i, j in shape_codes.pairs_of_classes(labels, 3):
        assert labels[i] != labels[j]


def test_the_recipe_trains_and_draws(tmp_path, capsys):
    assert shape_codes.main(["--train-size", "64", "--test-size", "40", "--epochs", "1", "--pairs", "2",
                             "--out", str(tmp_path)]) == 0
    assert (tmp_path / "shape_codes.png").stat().st_size > 1000
    assert "IoU inside" in capsys.readouterr().out
