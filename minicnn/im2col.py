"""im2col and col2im in plain NumPy: the readable reference.

A convolution slides a (C, kh, kw) window over a padded input. im2col copies every window into one
column of a matrix, so that the whole convolution becomes a single matrix product:

    cols = im2col(x)              # (C*kh*kw, N*Ho*Wo): column (n, oh, ow) is one window
    y    = w.reshape(F, -1) @ cols  # (F, N*Ho*Wo)

Rows are ordered (c, i, j), exactly like w.reshape(F, C*kh*kw); columns are ordered (n, oh, ow).
col2im is the adjoint (transpose) of im2col: it adds every column back onto the window it came from,
so overlapping windows sum, and the padding is cropped away.

conv2d, conv2d_weight_grad and conv_transpose2d below are the convolution written with im2col
(col2im) and one matrix product; minicnn.kernels computes the same numbers tile by tile (im2col_tile is one tile).

minicnn.kernels holds Numba versions with the same signatures; tests hold the two equal.
"""
import numpy as np

from .shapes import conv2d_output_shape

RELU_RULES = ("gradient", "deconvnet", "guided")  # ReLU's three backward rules (see relu_backward)


def im2col(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo); kernel_size, stride, padding are (h, w) pairs."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = conv2d_output_shape((h, w), kernel_size, stride, padding)
    x_padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # every window's (i, j) element, for all windows at once: a strided slice
            window_element = x_padded[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw]
            cols[:, i, j] = window_element.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * ho * wo)


def col2im(cols, input_shape, kernel_size, stride, padding):
    """cols (C*kh*kw, N*Ho*Wo) -> x (N, C, H, W): the transpose of im2col (overlaps add)."""
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = conv2d_output_shape((h, w), kernel_size, stride, padding)
    cols = cols.reshape(c, kh, kw, n, ho, wo)
    x_padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x_padded[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    return x_padded[:, :, ph : ph + h, pw : pw + w].copy()


def im2col_tile(x, sample, rows, kernel_size, stride, padding):
    """The columns of one sample, output rows [start, stop) only: (C*kh*kw, (stop - start)*Wo)."""
    start, stop = rows
    wo = conv2d_output_shape(x.shape[2:], kernel_size, stride, padding)[1]
    return im2col(x[sample : sample + 1], kernel_size, stride, padding)[:, start * wo : stop * wo]


def conv2d(x, w, b, stride, padding):
    """y = w.reshape(F, -1) @ im2col(x) (+ b), as (N, F, Ho, Wo): the whole convolution as one GEMM."""
    n, f = x.shape[0], w.shape[0]
    ho, wo = conv2d_output_shape(x.shape[2:], w.shape[2:], stride, padding)
    y = w.reshape(f, -1) @ im2col(x, w.shape[2:], stride, padding)  # (F, N*Ho*Wo), columns (n, oh, ow)
    y = y.reshape(f, n, ho, wo).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(y if b is None else y + b.reshape(1, f, 1, 1))


def conv2d_weight_grad(dy, x, kernel_size, stride, padding):
    """dw = dy_rows @ im2col(x).T as (F, C, kh, kw), where dy_rows (F, N*Ho*Wo) is dy with its
    columns in im2col's (n, oh, ow) order: every weight meets every input it touched."""
    f = dy.shape[1]
    dy_rows = dy.transpose(1, 0, 2, 3).reshape(f, -1)
    return (dy_rows @ im2col(x, kernel_size, stride, padding).T).reshape(f, x.shape[1], *kernel_size)


def conv_transpose2d(y, w, b, output_hw, stride, padding):
    """x = col2im(w.reshape(F, -1).T @ y_rows) (+ b), with (H, W) = output_hw: the adjoint of conv2d."""
    n, f = y.shape[:2]
    c, kernel = w.shape[1], w.shape[2:]
    y_rows = y.transpose(1, 0, 2, 3).reshape(f, -1)  # (F, N*Ho*Wo), columns (n, oh, ow)
    x = col2im(w.reshape(f, -1).T @ y_rows, (n, c, *output_hw), kernel, stride, padding)
    return x if b is None else x + b.reshape(1, c, 1, 1)


def max_pool(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> (y, switches), both (N, C, Ho, Wo).

    y is the maximum of each window (padding counts as -inf); switches[n, c, oh, ow] is the flat index
    h * W + w, in the unpadded input plane, of the element that won. Ties go to the first maximum in
    row-major window order; a NaN wins and propagates, as in PyTorch (the first NaN's index; PyTorch's
    return_indices gives the last NaN's).
    """
    n, c, h, w = x.shape
    kw, (sh, sw), (ph, pw) = kernel_size[1], stride, padding
    ho, wo = conv2d_output_shape((h, w), kernel_size, stride, padding)
    planes = x.reshape(n * c, 1, h, w)
    windows = im2col(planes, kernel_size, stride, padding)  # (kh*kw, N*C*Ho*Wo), zeros in the padding
    inside = im2col(np.ones((1, 1, h, w), dtype=bool), kernel_size, stride, padding)  # padding: False
    inside = np.tile(inside, (1, n * c))
    best = np.where(inside, windows, -np.inf).max(axis=0)  # NaN if a NaN is inside the window
    is_nan = np.isnan(windows) & inside
    winner = np.where(
        is_nan.any(axis=0),
        np.argmax(is_nan, axis=0),  # the first NaN wins
        np.argmax(inside & (windows == best), axis=0),  # else the first element equal to the maximum
    )
    y = windows[winner, np.arange(windows.shape[1])]
    i, j = np.divmod(winner, kw)  # position of the winner inside its window
    oh, ow = np.divmod(np.arange(windows.shape[1]) % (ho * wo), wo)
    switches = (oh * sh + i - ph) * w + (ow * sw + j - pw)
    return y.reshape(n, c, ho, wo), switches.reshape(n, c, ho, wo).astype(np.int64)


def unpool(y, switches, output_hw):
    """Put each y[n, c, k] back at position switches[n, c, k] of a zero (N, C, H, W) plane.

    Values whose switches coincide (overlapping windows) add up: this is exactly max-pool backward.
    """
    n, c = y.shape[:2]
    h, w = output_hw
    out = np.zeros((n * c, h * w), dtype=y.dtype)
    rows = np.repeat(np.arange(n * c), y[0, 0].size)
    np.add.at(out, (rows, switches.reshape(-1)), y.reshape(-1))
    return out.reshape(n, c, h, w)


def relu(x):
    """max(x, 0) elementwise (NaN stays NaN)."""
    return np.where(x < 0, np.zeros_like(x), x)


def relu_backward(dy, x, rule):
    """The three backward rules of ReLU, given the forward input x and the signal dy coming back.

    "gradient":  dy where x > 0, else 0           (the true derivative; saliency)
    "deconvnet": max(dy, 0), ignoring x           (Zeiler & Fergus' un-ReLU)
    "guided":    dy where x > 0 and dy > 0, else 0 (guided backpropagation: both masks)
    """
    zero = np.zeros_like(dy)
    if rule == "gradient":
        return np.where(x > 0, dy, zero)
    if rule == "deconvnet":
        return np.where(dy > 0, dy, zero)
    if rule == "guided":
        return np.where((x > 0) & (dy > 0), dy, zero)
    raise ValueError(f"rule must be one of {list(RELU_RULES)}, got {rule!r}")


def flip_kernel(w):
    """The kernel of the transposed convolution as an ordinary one: w (F, C, kh, kw) -> (C, F, kh, kw).

    Spatially flipped (rotated by 180 degrees) and with input / output channels swapped.
    """
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
