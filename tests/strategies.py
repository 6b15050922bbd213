"""Test-only hypothesis strategies and values. Conv / pool cases and geometries, assert_close and the
gradient check live in minicnn.testing (one home: the tests use them as a learner would)."""
import numpy as np
from hypothesis import strategies as st


dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)


def random_array(seed, shape, dtype=np.float64):
    """Standard normal values of the given shape and dtype from a seeded generator."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
