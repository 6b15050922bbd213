"""Per-pixel cross-entropy (softmax over the channel axis): against PyTorch, finite differences in
float64, and the per-sample cross-entropy it must equal when every pixel is taken as a sample."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ops
from minicnn.testing import assert_close, gradcheck
from strategies import dtypes, random_array, seeds

shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))


def labels_for(seed, shape):
    n, k, h, w = shape
    return np.random.default_rng(seed).integers(0, k, size=(n, h, w))


@settings(max_examples=40, deadline=None)
@given(shapes, dtypes, seeds)
def test_pixel_cross_entropy_equals_torch(shape, dtype, seed):
    torch = pytest.importorskip("torch")
    scores, labels = random_array(seed, shape, dtype) * 3, labels_for(seed, shape)
    tscores = torch.tensor(scores, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tscores, torch.tensor(labels))
    tloss.backward()
    assert_close(np.array(ops.pixel_cross_entropy(scores, labels)), tloss.detach().numpy())
    grad = ops.pixel_cross_entropy_backward(scores, labels)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, tscores.grad.numpy())


@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (1, 11, 4, 1)])
def test_pixel_cross_entropy_gradient_matches_finite_differences(shape):
    scores, labels = random_array(0, shape), labels_for(1, shape)
    gradcheck(lambda _: ops.pixel_cross_entropy(scores, labels), scores, ops.pixel_cross_entropy_backward(scores, labels),
              rtol=1e-7)


def test_one_pixel_images_are_ordinary_cross_entropy():
    scores, labels = random_array(0, (5, 4, 1, 1)), labels_for(1, (5, 4, 1, 1))
    assert ops.pixel_cross_entropy(scores, labels) == pytest.approx(ops.cross_entropy(scores[:, :, 0, 0],
                                                                                      labels[:, 0, 0]), rel=1e-14)


def test_bad_labels_are_named():
    scores = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"labels \(one class per pixel\) must have shape \(2, 4, 4\)"):
        ops.pixel_cross_entropy(scores, np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        ops.pixel_cross_entropy(scores, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        ops.pixel_cross_entropy(scores, np.full((2, 4, 4), 3))
