"""The lecture's algebra, executable: a convolution is a matrix, and "deconvolution" is its transpose.

A convolution is linear in its input, so for a fixed input size it IS a matrix W:

    y = W x          conv2d(x).ravel() == conv2d_matrix(w, x.shape[1:]) @ x.ravel()    (batch 1)
    x_hat = W^T y    the transposed convolution (DeconvNet's "deconv", a segmentation net's upsampling)

minicnn.ops computes W^T y without ever building W (col2im of w^T y). This module builds W explicitly,
for small teaching examples, and computes the same W^T y in three deliberately different ways:

    matrix_conv_transpose2d     W.T @ y with the explicit matrix
    subpixel_conv_transpose2d   insert stride-1 zeros between the inputs, pad by k-1-p (crop if that
                                is negative; output_padding more at the bottom/right), then an
                                ordinary stride-1 convolution with the flipped kernel, channels swapped
    polyphase_conv_transpose2d  stride^2 small stride-1 convolutions, one per class of output pixels,
                                each using only one parity class of the kernel's weights; the results
                                are interleaved (a pixel shuffle)

All three equal ops.conv_transpose2d for every kernel size, stride, padding and output_padding.
`orthogonality` and `reconstruction` measure when W^T really undoes W ("assume W is orthogonal").

Layouts as in minicnn.ops: y (N, F, Hy, Wy), forward weights w (F, C, kh, kw), x (N, C, H, W).
The 1D helpers take plain vectors: x (n,), w (f,).
"""
from collections import namedtuple

import numpy as np

from . import ops
from .checks import check_array, check_int_at_least
from .im2col import flip_kernel
from .shapes import (
    check_geometry,
    check_geometry_1d,
    conv2d_output_shape,
    conv_output_size,
)

MAX_MATRIX_ENTRIES = 2**26  # 512 MB of float64: explicit matrices are for small examples only

Orthogonality = namedtuple("Orthogonality", "scale deviation")
Reconstruction = namedtuple("Reconstruction", "transpose scaled_transpose pseudo_inverse")


# ----------------------------------------------------------------------------------------------
# small helpers


def _check_matrix_size(rows, cols):
    if rows * cols > MAX_MATRIX_ENTRIES:
        raise ValueError(
            f"the dense matrix would have shape ({rows}, {cols}) = {rows * cols} entries, more than "
            f"{MAX_MATRIX_ENTRIES}: explicit convolution matrices are for small examples"
        )


def insert_zeros(a, stride):
    """Put stride - 1 zeros between neighbouring values along the last axis (int stride) or the last
    two axes ((sh, sw) pair). A length n becomes (n - 1) s + 1: y1 y2 y3, stride 2 -> y1 0 y2 0 y3.
    """
    strides = (stride,) if np.ndim(stride) == 0 else tuple(stride)
    strides = tuple(check_int_at_least(s, "stride", 1) for s in strides)
    if len(strides) > a.ndim:
        raise ValueError(f"stride {stride!r} does not fit an array of shape {a.shape} (one stride per trailing axis)")
    lead = a.ndim - len(strides)
    shape = a.shape[:lead] + tuple((n - 1) * s + 1 for n, s in zip(a.shape[lead:], strides))
    z = np.zeros(shape, dtype=a.dtype)
    z[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)] = a
    return z


def window(a, axis, start, length):
    """a[start : start + length] along `axis`, reading zeros wherever that range leaves a."""
    shape = list(a.shape)
    shape[axis] = length
    out = np.zeros(shape, dtype=a.dtype)
    low, high = max(start, 0), min(start + length, a.shape[axis])
    if low < high:
        source, target = [slice(None)] * a.ndim, [slice(None)] * a.ndim
        source[axis], target[axis] = slice(low, high), slice(low - start, high - start)
        out[tuple(target)] = a[tuple(source)]
    return out


def pad_or_crop(a, axis, before, after):
    """Zero-pad `axis` by `before` / `after` values; a negative amount crops that many instead."""
    return window(a, axis, -before, a.shape[axis] + before + after)


# ----------------------------------------------------------------------------------------------
# 1D: the lecture's board example


def conv1d_matrix(w, n, stride=1, padding=0):
    """The matrix of a 1D convolution, acting on the ZERO-PADDED input.

    w (f,), input length n -> W (m, n + 2p) with m = (n + 2p - f) // s + 1 and y = W @ x_padded:
        W[i, i*s + t] = w[t]  for t = 0..f-1, zeros elsewhere (row i is the filter at window i).
    The lecture's case n = 8, f = 4, s = 2, p = 2 gives a 5 x 12 matrix, row i starting at column 2i.
    """
    check_array(w, "w", ndim=1)
    f, s, p = check_geometry_1d(len(w), stride, padding, name="w's length")
    n = check_int_at_least(n, "n (the input length)", 1)
    m = conv_output_size(n, f, s, p)  # raises if the kernel is longer than the padded input
    _check_matrix_size(m, n + 2 * p)
    W = np.zeros((m, n + 2 * p), dtype=w.dtype)
    for i in range(m):
        W[i, i * s : i * s + f] = w
    return W


def conv1d_matrix_unpadded(w, n, stride=1, padding=0):
    """The matrix acting on x itself: conv1d_matrix with its 2p padding columns dropped -> (m, n).

    The padding columns only ever multiply zeros, so dropping them changes no output: y = W @ x.
    """
    p = check_geometry_1d(len(w), stride, padding, name="w's length")[2]
    return conv1d_matrix(w, n, stride, padding)[:, p : p + n]


def conv1d(x, w, stride=1, padding=0):
    """1D cross-correlation of a vector with one filter: x (n,), w (f,) -> y (m,). Runs ops.conv2d."""
    check_array(x, "x", ndim=1)
    check_array(w, "w", ndim=1, dtype_like=x)
    _, s, p = check_geometry_1d(len(w), stride, padding, name="w's length")
    y = ops.conv2d(x.reshape(1, 1, 1, -1), w.reshape(1, 1, 1, -1), stride=(1, s), padding=(0, p))
    return y.reshape(-1)


def conv_transpose1d(y, w, stride=1, padding=0, output_padding=0):
    """1D transposed convolution: y (m,), the forward filter w (f,) -> x (n,), n = (m-1)s - 2p + f + op.

    Equals (W^T @ y) with W = conv1d_matrix(w, n, stride, padding), the p padding rows cropped off each end.
    Runs ops.conv_transpose2d.
    """
    check_array(y, "y", ndim=1)
    check_array(w, "w", ndim=1, dtype_like=y)
    _, s, p = check_geometry_1d(len(w), stride, padding, name="w's length")
    x = ops.conv_transpose2d(y.reshape(1, 1, 1, -1), w.reshape(1, 1, 1, -1), stride=(1, s),
                             padding=(0, p), output_padding=(0, output_padding))
    return x.reshape(-1)


def subpixel_conv_transpose1d(y, w, stride=1, padding=0, output_padding=0):
    """The sub-pixel form in 1D: insert zeros, pad f-1-p, correlate with the flipped filter at stride 1.

    y (m,), w (f,) -> x (n,). The lecture's case: y of length 5 -> 9 with zeros -> pad 1 on each side
    -> 11 -> correlate with (w4, w3, w2, w1) -> 8 values. (Padding f-1 = 3 instead gives the 12
    values of W^T y, padding rows included.)
    """
    check_array(y, "y", ndim=1)
    check_array(w, "w", ndim=1, dtype_like=y)
    _, s, p = check_geometry_1d(len(w), stride, padding, name="w's length")
    x = subpixel_conv_transpose2d(y.reshape(1, 1, 1, -1), w.reshape(1, 1, 1, -1), stride=(1, s),
                                  padding=(0, p), output_padding=(0, output_padding))
    return x.reshape(-1)


# ----------------------------------------------------------------------------------------------
# 2D: the matrix


def conv2d_matrix(w, input_shape, stride=1, padding=0):
    """The (F*Ho*Wo, C*H*W) matrix W of conv2d with weights w (F, C, kh, kw) on inputs of input_shape.

    input_shape = (C, H, W), one image: conv2d(x, w, None, stride, padding).ravel() == W @ x.ravel().
    Row (f, oh, ow) holds filter f placed on window (oh, ow) of the padded input, then the padding
    columns are dropped:  W[(f, oh, ow), (c, oh*sh + i - ph, ow*sw + j - pw)] = w[f, c, i, j].
    Most entries are zero: each row has at most C*kh*kw non-zeros.
    """
    check_array(w, "w", ndim=4)
    c, h, wd = ops.check_conv_input_shape(input_shape, w, layout="CHW")
    (kh, kw), (sh, sw), (ph, pw) = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    ho, wo = conv2d_output_shape((h, wd), (kh, kw), (sh, sw), (ph, pw))
    f = w.shape[0]
    _check_matrix_size(f * ho * wo, c * (h + 2 * ph) * (wd + 2 * pw))
    W = np.zeros((f, ho, wo, c, h + 2 * ph, wd + 2 * pw), dtype=w.dtype)
    for oh in range(ho):
        for ow in range(wo):
            W[:, oh, ow, :, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw] = w
    return W[:, :, :, :, ph : ph + h, pw : pw + wd].reshape(f * ho * wo, c * h * wd)


# ----------------------------------------------------------------------------------------------
# 2D: the transposed convolution three ways


def _add_bias(x, b):
    return x if b is None else x + b.reshape(1, -1, 1, 1)


def matrix_conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0):
    """The transposed convolution as the lecture writes it: x = W^T y, with W = conv2d_matrix(w, ...).

    y (N, F, Hy, Wy) -> x (N, C, H, W), H = (Hy - 1) s - 2p + kh + output_padding. The output size
    is needed to build W: several input sizes share one output size when s > 1 (output_padding).
    """
    _, stride, padding, _, (h, wd) = ops.check_conv_transpose_operands(y, w, b, stride, padding, output_padding)
    n, c = y.shape[0], w.shape[1]
    W = conv2d_matrix(w, (c, h, wd), stride, padding)
    x_rows = y.reshape(n, -1) @ W  # row n is (W^T y_n)^T
    return _add_bias(x_rows.reshape(n, c, h, wd), b)


def subpixel_conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0):
    """The transposed convolution as an ordinary stride-1 convolution ("flip, insert zeros, divide the stride").

    y (N, F, Hy, Wy), forward weights w (F, C, kh, kw) -> x (N, C, H, W):
      1. insert s - 1 zeros between neighbouring inputs:        (Hy - 1) s + 1 rows
      2. pad k - 1 - p zeros on each side, output_padding more at the bottom / right
         (when p > k - 1 that amount is negative: crop instead)
      3. correlate with flip_kernel(w) (C, F, kh, kw) at stride 1, no padding:
         (Hy - 1) s + 1 + 2(k - 1 - p) + op - k + 1 = (Hy - 1) s - 2p + k + op rows.
    The lecture's picture: a 4x4 y, kernel 4, stride 2, padding 2 -> 7x7 -> 9x9 -> 6x6.
    """
    (kh, kw), stride, (ph, pw), (oph, opw), _ = ops.check_conv_transpose_operands(y, w, b, stride, padding, output_padding)
    z = insert_zeros(y, stride)
    z = pad_or_crop(z, 2, kh - 1 - ph, kh - 1 - ph + oph)
    z = pad_or_crop(z, 3, kw - 1 - pw, kw - 1 - pw + opw)
    return ops.conv2d(z, flip_kernel(w), b)


def parity_classes(w, stride):
    """Split a kernel (F, C, kh, kw) into its stride^2 parity classes {(rh, rw): w[:, :, rh::sh, rw::sw]}.

    For stride 2 these are the lecture's four colours: weights at (even, even), (even, odd), (odd, even)
    and (odd, odd) positions. A class is empty (size 0) when the kernel is smaller than the stride.
    """
    check_array(w, "w", ndim=4)
    sh, sw = check_geometry(w.shape[2:], stride, 0, name="w's kernel size")[1]
    return {(rh, rw): w[:, :, rh::sh, rw::sw] for rh in range(sh) for rw in range(sw)}


def taps_per_phase(kernel, stride, padding=0):
    """How many filter weights an output pixel of a 1D transposed convolution sums, by its phase o mod s.

    Output o meets the taps i = o + p (mod s) only (see _phase_plan): len(range((o + p) mod s, k, s)) of
    them, away from the borders. Equal for every phase exactly when s divides k; kernel 3, stride 2 gives
    (2, 1): even outputs sum two weights per input channel, odd ones one -- Odena et al.'s checkerboard.
    The 2D counts of phase (a, b) are the product of the two axes' counts (np.outer).
    """
    k, s, p = check_geometry_1d(kernel, stride, padding)
    return tuple(len(range((o + p) % s, k, s)) for o in range(s))


def _phase_plan(c, n_in, k, s, p, n_out):
    """How output positions o = c, c + s, c + 2s, ... along one axis are computed: (r, start, length).

    Output o reads position t = o + p of the uncropped result, where each y[q] stamped w[t - q s].
    Only taps i = t - q s with i = t (mod s) ever reach it: ONE parity class r = (c + p) mod s.
    With w_r = w[r::s] (k_r taps) and q0 = (c + p) // s:
        x[c + j s] = sum_a y[q0 + j - a] w_r[a]          a = 0..k_r - 1,  j = 0..n_c - 1,
    a stride-1 correlation of the window y[start : start + length] (zeros outside y) with w_r flipped,
    start = q0 - k_r + 1, length = n_c + k_r - 1. None when no pixel or no weight is in this class.
    """
    n_c = len(range(c, n_out, s))
    r, q0 = (c + p) % s, (c + p) // s
    k_r = len(range(r, k, s))
    if n_c == 0 or k_r == 0:
        return None
    return r, q0 - k_r + 1, n_c + k_r - 1


def polyphase_conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0):
    """The transposed convolution as sh*sw small stride-1 convolutions, interleaved (a pixel shuffle).

    y (N, F, Hy, Wy), forward weights w (F, C, kh, kw) -> x (N, C, H, W). Output pixels are grouped by
    (row mod sh, col mod sw); each group only ever meets the weights of one parity class of w (see
    parity_classes), so it is an ordinary stride-1 convolution of a window of y with that class,
    flipped:  x[:, :, a::sh, b::sw] = conv2d(window of y, flip_kernel(w[:, :, rh::sh, rw::sw])).
    The lecture's case (4x4 y, kernel 4, stride 2, padding 2): four 2x2 convolutions, each 4x4 -> 3x3,
    interleaved into 6x6.
    """
    (kh, kw), (sh, sw), (ph, pw), _, (h, wd) = ops.check_conv_transpose_operands(y, w, b, stride, padding, output_padding)
    n, c = y.shape[0], w.shape[1]
    x = np.zeros((n, c, h, wd), dtype=y.dtype)
    for a in range(sh):
        rows = _phase_plan(a, y.shape[2], kh, sh, ph, h)
        for col in range(sw):
            cols = _phase_plan(col, y.shape[3], kw, sw, pw, wd)
            if rows is None or cols is None:
                continue  # these output pixels meet no weight: they stay zero
            (rh, row_start, row_length), (rw, col_start, col_length) = rows, cols
            y_window = window(window(y, 2, row_start, row_length), 3, col_start, col_length)
            x[:, :, a::sh, col::sw] = ops.conv2d(y_window, flip_kernel(w[:, :, rh::sh, rw::sw]))
    return _add_bias(x, b)


# ----------------------------------------------------------------------------------------------
# when does the transpose undo the convolution?


def orthogonality(W):
    """How far W W^T is from a multiple of the identity: Orthogonality(scale c, relative deviation).

    c = trace(W W^T) / m is the multiple closest to W W^T in the Frobenius norm, and
    deviation = |W W^T - c I|_F / |W W^T|_F  (0 exactly when the rows are orthogonal with equal length).
    The lecture's edge filter (+1, 0, 0, -1) at stride 2 on 8 inputs padded by 2: W W^T = 2 I, deviation 0.
    """
    check_array(W, "W", ndim=2)
    gram = W @ W.T
    size = float(np.linalg.norm(gram))
    if size == 0:
        raise ValueError(f"W (shape {W.shape}) is all zeros: it has no orthogonality to measure")
    scale = float(np.trace(gram)) / W.shape[0]
    deviation = float(np.linalg.norm(gram - scale * np.eye(W.shape[0], dtype=W.dtype))) / size
    return Orthogonality(scale, deviation)


def reconstruction(W, x):
    """Relative errors |x_hat - x| / |x| of three attempts to recover x from y = W x.

    transpose         x_hat = W^T W x      what "deconvolution" (the transposed conv) returns
    scaled_transpose  x_hat = W^T W x / c  with c = orthogonality(W).scale
    pseudo_inverse    x_hat = W^+ W x      the projection of x on the row space of W: the best any
                                           linear map can do, since W x forgets the rest of x
    When W W^T = c I, W^+ = W^T / c and the last two agree: deconvolution is the inverse up to scale,
    on everything the convolution kept. x may have any shape with x.size == W.shape[1] (it is raveled).
    """
    check_array(W, "W", ndim=2)
    check_array(x, "x", dtype_like=W)
    if x.size != W.shape[1]:
        raise ValueError(f"x must have {W.shape[1]} values (W has shape {W.shape}), got shape {x.shape}")
    x = x.ravel()
    size = float(np.linalg.norm(x))
    if size == 0:
        raise ValueError("x is all zeros: relative errors are undefined")
    y = W @ x
    back = W.T @ y
    scale = orthogonality(W).scale

    def error(x_hat):
        return float(np.linalg.norm(x_hat - x)) / size

    return Reconstruction(error(back), error(back / scale), error(np.linalg.pinv(W) @ y))
