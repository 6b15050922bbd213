"""Every number of one convolution, as the explorer's "every number" view shows them.

    dot_product(a, w, b, stride, padding, f, i, j)   one output of a convolution written out:
        y[f, i, j] = sum_{c, u, v} w[f, c, u, v] * a_pad[c, i*sh + u, j*sw + v] + b[f]
        with a_pad the input zero-padded by (ph, pw): the window starts at row i*sh - ph of a.
    stamps(y, w, stride, padding, output_hw)          the transposed convolution as the lecture draws
        it: every value y[f, i, j] prints a copy of filter w[f] (C, kh, kw) scaled by y[f, i, j] onto
        the output at rows i*sh - ph ..., columns j*sw - pw ...; where copies overlap they add;
        what falls into the padding is cut off. The sum equals ops.conv_transpose2d(y, w).

Both are plain loops on purpose: they are what a student checks by hand, not a fast path.
"""
from typing import NamedTuple

import numpy as np

from ..shapes import pair


class DotProduct(NamedTuple):
    """One output of a convolution, term by term.

    inputs, weights, products: (C, kh, kw) -- the window of the padded input, the filter w[f], and
        their product (padding positions hold input 0);
    rows, cols: (kh,), (kw,) the input row / column of each window position (negative or past the
        end: padding); padded: (kh, kw) bool, True where the window lies in the padding;
    channel_sums: (C,) the sum of the products of each input channel;
    bias: b[f] (0 without a bias); value: sum of all products + bias, in float64.
    """

    inputs: np.ndarray
    weights: np.ndarray
    products: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    padded: np.ndarray
    channel_sums: np.ndarray
    bias: float
    value: float


def dot_product(a, w, b, stride, padding, f, i, j):
    """Output (f, i, j) of conv2d(a[None], w, b, stride, padding) as w . x + b with every term.

    a (C, H, W) the convolution's input; w (F, C, kh, kw); b (F,) or None; stride, padding ints or
    pairs. Returns a DotProduct; its value equals the convolution's output at (f, i, j).
    """
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    _, kh, kw = w.shape[1:]
    height, width = a.shape[1:]
    rows = i * sh - ph + np.arange(kh)
    cols = j * sw - pw + np.arange(kw)
    padded_input = np.pad(a.astype(np.float64), ((0, 0), (ph, ph), (pw, pw)))
    inputs = padded_input[:, i * sh:i * sh + kh, j * sw:j * sw + kw]
    padded = ~(((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :])
    weights = w[f].astype(np.float64)
    products = weights * inputs
    bias = 0.0 if b is None else float(b[f])
    channel_sums = products.sum(axis=(1, 2))
    return DotProduct(inputs, weights, products, rows, cols, padded, channel_sums, bias,
                      float(channel_sums.sum() + bias))


class Stamp(NamedTuple):
    """One value's stamp: y[f, i, j] * w[f] placed with its top-left corner at (top, left) of the output."""

    f: int
    i: int
    j: int
    value: float
    top: int
    left: int
    stamp: np.ndarray   # (C, kh, kw) = value * w[f]


def stamps(y, w, stride, padding, output_hw):
    """The transposed convolution of y (F, h, w) with the forward conv's w (F, C, kh, kw), stamp by stamp.

    output_hw: (H, W) of the output (the forward conv's input size: it fixes the output padding).
    Returns (the list of Stamp of the non-zero values of y, in (f, i, j) order, and the output (C, H, W)
    = the sum of the stamps, cut to the output), in float64.
    """
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    kh, kw = w.shape[2:]
    height, width = output_hw
    padded = np.zeros((w.shape[1], (height + 2 * ph + sh + kh), (width + 2 * pw + sw + kw)))
    printed = []
    for f, i, j in zip(*np.nonzero(y)):
        value = float(y[f, i, j])
        stamp = value * w[f].astype(np.float64)
        padded[:, i * sh:i * sh + kh, j * sw:j * sw + kw] += stamp
        printed.append(Stamp(int(f), int(i), int(j), value, int(i * sh - ph), int(j * sw - pw), stamp))
    return printed, padded[:, ph:ph + height, pw:pw + width]
