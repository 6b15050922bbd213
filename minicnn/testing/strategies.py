"""Hypothesis strategies for convolution and pooling cases: a valid geometry with arrays that fit it.

Each strategy draws a whole case as a named tuple, so a test reads

    @given(conv_cases())
    def test_my_conv(case):
        x, w, stride, padding = case

Per spatial axis a kernel k, a stride s and a padding p are drawn on their own (so kernels, strides
and inputs are often not square), then an input size n from the smallest the kernel fits in
(n + 2p >= k) up to max_size: the stride sometimes divides n + 2p - k and sometimes leaves rows
over. Channel counts and batch sizes start at 1. stride, padding (and output_padding) are (h, w)
pairs of Python ints. Values are multiples of 1/8 in [-2, 2] (see values): sums of their products
are exact in float32 and float64 alike (so any difference is a real one, never rounding),
non-integers catch an accidental int array, and repeated values make max-pool ties common.
"""
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ..checks import FLOAT_DTYPES, check_int_at_least
from ..shapes import conv2d_output_shape

SMALL_ARRAY = 64  # a case prints the values of arrays up to this many entries, else only their shapes


# ----------------------------------------------------------------------------------------------
# the cases


def describe_array(name, a):
    """'name (shape)' and, for a small array, its values on the following lines."""
    a = np.asarray(a)
    if a.size > SMALL_ARRAY:
        return f"{name} {a.shape} {a.dtype} (values not shown: {a.size} entries)"
    body = np.array2string(a, separator=", ", max_line_width=100, prefix="    ")
    return f"{name} {a.shape} {a.dtype} =\n    {body}"


def describe_case(case):
    """The case as text: its geometry on one line, then each array (values shown when small)."""
    arrays_ = [(name, value) for name, value in zip(case._fields, case) if isinstance(value, np.ndarray)]
    geometry = ", ".join(f"{name}={value}" for name, value in zip(case._fields, case)
                         if not isinstance(value, np.ndarray))
    shapes = ", ".join(f"{name} {value.shape}" for name, value in arrays_)
    lines = [f"{type(case).__name__}({shapes}, {geometry})"]
    lines += [describe_array(name, value) for name, value in arrays_]
    return "\n".join(lines)


class ConvCase(NamedTuple):
    """x (N, C, H, W), w (F, C, kh, kw), stride (sh, sw), padding (ph, pw): a valid conv2d."""
    x: np.ndarray
    w: np.ndarray
    stride: tuple
    padding: tuple

    def __repr__(self):
        return describe_case(self)


class ConvBackwardCase(NamedTuple):
    """dy (N, F, Ho, Wo), the gradient at the output of conv2d(x, w, stride, padding), with that conv's operands."""
    dy: np.ndarray
    x: np.ndarray
    w: np.ndarray
    stride: tuple
    padding: tuple

    def __repr__(self):
        return describe_case(self)


class ConvTransposeCase(NamedTuple):
    """y (N, F, Hy, Wy), the forward conv's w (F, C, kh, kw), stride, padding, output_padding (each an (h, w) pair)."""
    y: np.ndarray
    w: np.ndarray
    stride: tuple
    padding: tuple
    output_padding: tuple

    def __repr__(self):
        return describe_case(self)


class PoolCase(NamedTuple):
    """x (N, C, H, W), kernel_size (kh, kw), stride (sh, sw), padding (ph, pw) with p <= k // 2 (as PyTorch)."""
    x: np.ndarray
    kernel_size: tuple
    stride: tuple
    padding: tuple

    def __repr__(self):
        return describe_case(self)


# ----------------------------------------------------------------------------------------------
# pieces


def check_dtype(dtype):
    """float32 or float64 (as a NumPy type), else a ValueError naming what was given."""
    if np.dtype(dtype) not in [np.dtype(t) for t in FLOAT_DTYPES]:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return np.dtype(dtype).type


# 0, 1, -1, 2, -2, 0.5, -0.5, 1.5, ..., 0.125, ...: simplest first, which is where hypothesis shrinks to
EIGHTHS = sorted((Fraction(k, 8) for k in range(-16, 17)), key=lambda v: (v.denominator, abs(v), v < 0))
ELEMENTS = st.sampled_from([float(v) for v in EIGHTHS])


def values(dtype, shape):
    """An array of the shape and dtype with entries among the multiples of 1/8 in [-2, 2].

    Half the time one value fills the array but for a few drawn entries (sparse arrays shrink well:
    a failure ends up as zeros and a single 1 wherever it matters); half the time every entry is
    random (from a drawn seed: generic values find the bugs sparse ones miss).
    """
    sparse = arrays(dtype, shape, elements=ELEMENTS, fill=ELEMENTS)
    generic = st.integers(0, 2**32 - 1).map(lambda seed: random_eighths(seed, shape, dtype))
    return st.one_of(sparse, generic)


def random_eighths(seed, shape, dtype):
    """Multiples of 1/8 in [-2, 2], uniform, from a seeded generator."""
    return (np.random.default_rng(seed).integers(-16, 17, size=shape) / 8).astype(dtype)


def _bounds(**limits):
    """Check the size options (each an int >= 1; paddings >= 0) and return them."""
    return {name: check_int_at_least(value, name, 0 if "padding" in name else 1) for name, value in limits.items()}


@st.composite
def axis_geometry(draw, max_size, max_kernel, max_stride, max_padding, pool=False):
    """(n, k, s, p) along one axis with the kernel fitting the padded input: n + 2p >= k, n <= max_size.

    pool=True limits p to k // 2 (a pooling window never lies wholly in the padding)."""
    k = draw(st.integers(1, min(max_kernel, max_size)))
    s = draw(st.integers(1, max_stride))
    p = draw(st.integers(0, k // 2 if pool else max_padding))
    n = draw(st.integers(max(1, k - 2 * p), max_size))
    return n, k, s, p


@st.composite
def conv_geometry(draw, max_batch=2, max_channels=3, max_size=8, max_kernel=4, max_stride=3, max_padding=2):
    """((N, C, H, W), (F, C, kh, kw), stride, padding) for a valid conv2d: the shapes of a conv_cases case,
    for tests that make their own values."""
    limits = dict(max_size=max_size, max_kernel=max_kernel, max_stride=max_stride, max_padding=max_padding)
    h, kh, sh, ph = draw(axis_geometry(**limits))
    w, kw, sw, pw = draw(axis_geometry(**limits))
    n = draw(st.integers(1, max_batch))
    c, f = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    return (n, c, h, w), (f, c, kh, kw), (sh, sw), (ph, pw)


# ----------------------------------------------------------------------------------------------
# the strategies


def conv_cases(dtype=np.float64, max_batch=2, max_channels=3, max_size=8, max_kernel=4, max_stride=3, max_padding=2):
    """ConvCase(x, w, stride, padding) for conv2d: x (N, C, H, W) with H, W <= max_size, w (F, C, kh, kw).

    Every size is drawn from 1 to its max_* option (padding from 0); C and F up to max_channels.
    """
    dtype = check_dtype(dtype)
    limits = _bounds(max_batch=max_batch, max_channels=max_channels, max_size=max_size, max_kernel=max_kernel,
                     max_stride=max_stride, max_padding=max_padding)

    @st.composite
    def draw_case(draw):
        x_shape, w_shape, stride, padding = draw(conv_geometry(**limits))
        return ConvCase(draw(values(dtype, x_shape)), draw(values(dtype, w_shape)), stride, padding)

    return draw_case()


def conv_backward_cases(dtype=np.float64, **limits):
    """ConvBackwardCase(dy, x, w, stride, padding): a conv_cases case and a gradient dy at its output."""
    def with_dy(case):
        n, f = case.x.shape[0], case.w.shape[0]
        out_hw = conv2d_output_shape(case.x.shape[2:], case.w.shape[2:], case.stride, case.padding)
        return values(np.dtype(case.x.dtype).type, (n, f) + out_hw).map(lambda dy: ConvBackwardCase(dy, *case))

    return conv_cases(dtype, **limits).flatmap(with_dy)


def conv_transpose_cases(dtype=np.float64, max_batch=2, max_channels=3, max_size=8, max_kernel=4, max_stride=3,
                         max_padding=2):
    """ConvTransposeCase(y, w, stride, padding, output_padding) for conv_transpose2d.

    Drawn as the adjoint of a conv2d from (N, C, H, W) to y (N, F, Hy, Wy): output_padding
    = (H + 2p - k) mod s brings the transposed conv back to H, so every legal output_padding
    0 .. s - 1 occurs (with padding p > k - 1 too). max_size bounds H and W, the output's size.
    """
    dtype = check_dtype(dtype)
    limits = _bounds(max_batch=max_batch, max_channels=max_channels, max_size=max_size, max_kernel=max_kernel,
                     max_stride=max_stride, max_padding=max_padding)

    @st.composite
    def draw_case(draw):
        (n, c, h, wd), w_shape, stride, padding = draw(conv_geometry(**limits))
        kernel = w_shape[2:]
        output_padding = tuple((size + 2 * p - k) % s for size, k, s, p in zip((h, wd), kernel, stride, padding))
        y_shape = (n, w_shape[0]) + conv2d_output_shape((h, wd), kernel, stride, padding)
        return ConvTransposeCase(draw(values(dtype, y_shape)), draw(values(dtype, w_shape)), stride, padding,
                                 output_padding)

    return draw_case()


@st.composite
def pool_geometry(draw, max_batch=2, max_channels=3, max_size=8, max_kernel=4, max_stride=3):
    """((N, C, H, W), kernel_size, stride, padding) for a valid pooling, padding <= kernel // 2."""
    axis = axis_geometry(max_size, max_kernel, max_stride, 0, pool=True)
    (h, kh, sh, ph), (wd, kw, sw, pw) = draw(axis), draw(axis)
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels))
    return (n, c, h, wd), (kh, kw), (sh, sw), (ph, pw)


def pool_cases(dtype=np.float64, max_batch=2, max_channels=3, max_size=8, max_kernel=4, max_stride=3):
    """PoolCase(x, kernel_size, stride, padding) for max / average pooling, padding <= kernel // 2."""
    dtype = check_dtype(dtype)
    limits = _bounds(max_batch=max_batch, max_channels=max_channels, max_size=max_size, max_kernel=max_kernel,
                     max_stride=max_stride)

    @st.composite
    def draw_case(draw):
        x_shape, kernel, stride, padding = draw(pool_geometry(**limits))
        return PoolCase(draw(values(dtype, x_shape)), kernel, stride, padding)

    return draw_case()
