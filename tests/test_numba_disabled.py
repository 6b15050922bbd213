"""Debugging the kernels: with NUMBA_DISABLE_JIT=1 every @njit kernel runs as plain Python (so pdb and
print work inside it), and computes the same numbers. Run in a child process: the switch is read when
Numba is first imported."""
import os
import subprocess
import sys

from helpers import REPO

CHILD = r"""
import numpy as np
import numba
assert numba.config.DISABLE_JIT, "NUMBA_DISABLE_JIT did not reach numba"
from minicnn import im2col as reference, kernels, ops

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 7, 6))
w = rng.standard_normal((4, 3, 3, 2))
geometry = ((3, 2), (2, 1), (1, 1))
assert not isinstance(kernels._im2col_tile, numba.core.registry.CPUDispatcher), "the kernels are still compiled"
np.testing.assert_allclose(kernels.im2col(x, *geometry), reference.im2col(x, *geometry), rtol=1e-12)
y = kernels.conv2d(x, w, None, *geometry[1:])
np.testing.assert_allclose(y, reference.conv2d(x, w, None, *geometry[1:]), rtol=1e-10, atol=1e-12)
pooled, switches = kernels.max_pool(x, (2, 2), (2, 2), (0, 0))
want, want_switches = reference.max_pool(x, (2, 2), (2, 2), (0, 0))
np.testing.assert_array_equal(pooled, want)
np.testing.assert_array_equal(switches, want_switches)
np.testing.assert_array_equal(kernels.relu_backward(x, x[::-1].copy(), "guided"),
                              reference.relu_backward(x, x[::-1].copy(), "guided"))
print("plain Python kernels agree")
"""


def test_the_kernels_run_as_plain_python_under_numba_disable_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "plain Python kernels agree" in done.stdout
