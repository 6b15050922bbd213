"""Property tests for your own convolution: hypothesis strategies for conv / pool cases, and checks.

    from minicnn.testing import check_conv2d
    check_conv2d(my_conv2d)     # my_conv2d(x, w, stride, padding) -> y; raises AssertionError on a bug

Strategies (conv_cases, conv_transpose_cases, conv_backward_cases, pool_cases) draw whole cases
for your own @given tests (conv_geometry, pool_geometry: their shapes only). The checks
(check_conv2d, check_conv_transpose2d, check_conv2d_backward, check_max_pool2d, check_matrix_form)
run hypothesis for you and hold your function to an identity, shrinking a failure to a minimal
case; gradcheck compares a gradient with central differences.
Needs hypothesis: pip install "minicnn[testing]". See docs/testing.md.
"""
try:
    import hypothesis  # noqa: F401  (the one optional package this module needs)
except ImportError:
    raise ImportError('minicnn.testing needs hypothesis: pip install "minicnn[testing]"') from None

from .compare import CaseFailure, assert_close, gradcheck, numerical_gradient, relative_error
from .properties import check_conv2d, check_conv2d_backward, check_conv_transpose2d, check_matrix_form, check_max_pool2d
from .strategies import (
    ConvBackwardCase,
    ConvCase,
    ConvTransposeCase,
    PoolCase,
    conv_backward_cases,
    conv_cases,
    conv_geometry,
    conv_transpose_cases,
    pool_cases,
    pool_geometry,
)

__all__ = [
    "conv_cases", "conv_transpose_cases", "conv_backward_cases", "pool_cases", "conv_geometry", "pool_geometry",
    "ConvCase", "ConvTransposeCase", "ConvBackwardCase", "PoolCase",
    "check_conv2d", "check_conv_transpose2d", "check_conv2d_backward", "check_max_pool2d", "check_matrix_form",
    "gradcheck", "numerical_gradient", "relative_error", "assert_close", "CaseFailure",
]
