"""Hypothesis strategies shared by the tests: conv / pool geometries and arrays that fit them."""
import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_geometry(draw, max_kernel=5, max_stride=3, max_padding=2, max_channels=4, max_batch=3):
    """A random (x_shape, w_shape, stride, padding) with the kernel fitting the padded input."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding))
    h = draw(st.integers(max(1, kh - 2 * ph), 11))
    w = draw(st.integers(max(1, kw - 2 * pw), 11))
    n, c, f = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    return (n, c, h, w), (f, c, kh, kw), (sh, sw), (ph, pw)


@st.composite
def pool_geometry(draw, max_kernel=4, max_stride=3):
    """A random (x_shape, kernel, stride, padding) for pooling; padding <= kernel // 2 as in PyTorch."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 12))
    w = draw(st.integers(max(1, kw - 2 * pw), 12))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, h, w), (kh, kw), (sh, sw), (ph, pw)


dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)


def random_array(seed, shape, dtype=np.float64):
    """Standard normal values of the given shape and dtype from a seeded generator."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(actual, expected, dtype):
    """Relative closeness at 1e-5 (float32) or 1e-10 (float64), scaled by the largest expected value."""
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
    expected = np.asarray(expected)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences (f(x + eps e_i) - f(x - eps e_i)) / 2 eps of the scalar f() at every element of x."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = f()
        x[index] = saved - eps
        minus = f()
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """max |a - b| relative to the largest magnitude in a or b."""
    return np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), 1e-12)
