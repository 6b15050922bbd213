"""Pure functions on arrays: the operations of a CNN, forward and backward.

Layout NCHW; float32 by default, float64 accepted everywhere (all operands must share one dtype).
Weights are (F, C, kh, kw) as in PyTorch. stride / padding accept an int or an (h, w) pair.

The duality at the heart of the lecture is visible here:
- the input-gradient of conv2d IS conv_transpose2d with the same weights (col2im of W^T dy);
- the backward pass of max_pool2d IS max_unpool2d with the recorded switches;
- relu_backward has three rules: "gradient", "deconvnet", "guided".

Heavy loops (convolution, im2col, col2im, pooling, ReLU) run in Numba kernels (minicnn.kernels);
their plain NumPy twins live in minicnn.im2col. Matrix products go to BLAS (through `@`, or np.dot
inside the tiled convolution kernels).
"""
import numpy as np

from . import kernels
from .im2col import RELU_RULES
from .checks import check_array, check_choice, check_int_at_least, check_labels, check_shape
from .shapes import check_geometry, conv2d_output_shape, conv_transpose2d_output_shape, pair, pair_at_least

CONV_ALGORITHMS = ("auto", "im2col", "winograd")  # see choose_conv_algorithm

# what one entry along each axis is called, for the layouts below (NCHW images, FCHW filters, ...)
AXIS_NAMES = {"N": "image", "C": "channel", "H": "row", "W": "column", "F": "filter", "K": "class",
              "D": "feature"}


# ----------------------------------------------------------------------------------------------
# checks shared by the ops


def check_nonempty(x, name, layout="NCHW"):
    """Check that x has at least one entry along every axis; layout names the axes ("NCHW", "ND", ...).

    An empty batch (N = 0) or an empty map (H = 0) would give NaN means or reshape errors deep inside.
    """
    for size, axis in zip(x.shape, layout):
        if size < 1:
            raise ValueError(f"{name} must hold at least one {AXIS_NAMES[axis]} ({layout} layout, {axis} >= 1), "
                             f"got shape {x.shape}")
    return x


def check_input_shape(input_shape, name="input_shape", layout="NCHW"):
    """A shape given to a backward op, e.g. (N, C, H, W): one int >= 1 per letter of layout.
    Returns it as a tuple of Python ints."""
    wanted = f"{name} must be a tuple ({', '.join(layout)}) of {len(layout)} ints, got {input_shape!r}"
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(wanted)
    if len(input_shape) != len(layout):
        raise ValueError(wanted)
    return tuple(check_int_at_least(size, f"{name}[{k}] ({axis})", 1)
                 for k, (size, axis) in enumerate(zip(input_shape, layout)))


def check_conv_input_shape(input_shape, w, layout="NCHW"):
    """check_input_shape, plus: its C is the number of input channels w (F, C, kh, kw) expects."""
    input_shape = check_input_shape(input_shape, layout=layout)
    channels = input_shape[layout.index("C")]
    if channels != w.shape[1]:
        raise ValueError(f"channel mismatch: input_shape {input_shape} has {channels} channels but w has shape "
                         f"{w.shape} and expects {w.shape[1]} (w is (F, C, kh, kw))")
    return input_shape


# ----------------------------------------------------------------------------------------------
# convolution


def _check_conv_operands(x, w, b, x_name="x"):
    """Check x (N, C, H, W), w (F, C, kh, kw), b (F,) or None share a dtype, agree on C, are not empty."""
    check_nonempty(check_array(x, x_name, ndim=4), x_name)
    check_nonempty(check_array(w, "w", ndim=4, dtype_like=x), "w", "FCHW")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: {x_name} has shape {x.shape} ({x.shape[1]} channels) but w has shape "
            f"{w.shape} and expects {w.shape[1]} input channels (w is (F, C, kh, kw))"
        )
    if b is not None:
        check_array(b, "b", ndim=1, dtype_like=x)
        check_shape(b, "b", (w.shape[0],))


def winograd_applies(kernel, stride, padding):
    """Can Winograd's F(4x4, 3x3) compute this convolution? 3x3 filters, stride 1, the same padding
    of 0, 1 or 2 on both axes (pairs, as check_geometry returns them)."""
    return kernel == (3, 3) and stride == (1, 1) and padding[0] == padding[1] <= 2


def choose_conv_algorithm(algorithm, kernel, stride, padding, dtype, in_channels, out_channels):
    """The algorithm a conv op runs: "im2col" (tiles of im2col + a matrix product: any geometry, the
    teaching form) or "winograd" (3x3, stride 1, padding 0-2 only: minicnn.winograd).

    "auto" picks winograd for float32 when it applies and both channel counts are at least
    WINOGRAD_MIN_CHANNELS (with fewer, its transforms cost more than the products they save;
    measured on this machine: docs/performance.md); float64 stays on im2col. The rule is the same for
    the forward pass, the input gradient (conv_transpose2d) and the backward pass (conv2d_backward:
    dx and dw together by Winograd transposed, up to F*C = WINOGRAD_DW_MAX_PAIRS); each was measured
    faster there than im2col.
    Asking for "winograd" where it does not apply is an error naming the geometry.
    """
    check_choice(algorithm, "algorithm", CONV_ALGORITHMS)
    applies = winograd_applies(kernel, stride, padding)
    if algorithm == "winograd" and not applies:
        raise ValueError(f"algorithm 'winograd' needs a 3x3 kernel, stride 1 and the same padding 0-2 on both "
                         f"axes, got kernel {kernel}, stride {stride}, padding {padding}; use 'im2col' or 'auto'")
    if algorithm == "auto":
        fast = dtype == np.float32 and min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS
        return "winograd" if applies and fast else "im2col"
    return algorithm


WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_DW_MAX_PAIRS = 256 * 256  # see conv2d_backward


def conv2d(x, w, b=None, stride=1, padding=0, algorithm="auto"):
    """Cross-correlation y[n,f] = sum_c x[n,c] * w[f,c] + b[f].

    x (N, C, H, W), w (F, C, kh, kw), b (F,) -> y (N, F, Ho, Wo), Ho = (H + 2p - kh) // s + 1.
    Mathematically im2col + one matrix product: y = w.reshape(F, -1) @ im2col(x) (minicnn.im2col.conv2d
    says exactly that); kernels.conv2d computes the same numbers tile by tile, so that the columns
    never have to exist all at once. algorithm: "auto", "im2col" or "winograd" (choose_conv_algorithm).
    """
    _check_conv_operands(x, w, b)
    kernel, stride, padding = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    conv2d_output_shape(x.shape[2:], kernel, stride, padding)  # raises if the kernel does not fit
    if choose_conv_algorithm(algorithm, kernel, stride, padding, x.dtype, w.shape[1], w.shape[0]) == "winograd":
        return kernels.winograd_conv2d(x, w, b, padding[0])
    return kernels.conv2d(x, w, b, stride, padding)


def check_conv_transpose_operands(y, w, b, stride, padding, output_padding):
    """Check the operands of a transposed convolution (y (N, F, Hy, Wy), the forward conv's w (F, C, kh, kw),
    b (C,) or None); return (kernel, stride, padding, output_padding, (H, W) of the output) as pairs."""
    check_nonempty(check_array(y, "y", ndim=4), "y")
    check_nonempty(check_array(w, "w", ndim=4, dtype_like=y), "w", "FCHW")
    if w.shape[0] != y.shape[1]:
        raise ValueError(
            f"channel mismatch: y has shape {y.shape} ({y.shape[1]} channels) but w has shape {w.shape}; "
            f"conv_transpose2d takes the forward conv's w (F, C, kh, kw), so y needs F = {w.shape[0]} channels"
        )
    if b is not None:
        check_array(b, "b", ndim=1, dtype_like=y)
        check_shape(b, "b", (w.shape[1],))
    kernel, stride, padding = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    output_padding = pair(output_padding, "output_padding")  # its range is checked by the output shape
    h, wd = conv_transpose2d_output_shape(y.shape[2:], kernel, stride, padding, output_padding)
    if conv2d_output_shape((h, wd), kernel, stride, padding) != y.shape[2:]:
        raise ValueError(f"y of shape {y.shape} cannot come from a conv of an input of size {(h, wd)}")
    return kernel, stride, padding, output_padding, (h, wd)


def conv_transpose2d(y, w, b=None, stride=1, padding=0, output_padding=0, algorithm="auto"):
    """The transpose (adjoint) of conv2d with the forward conv's weights w (F, C, kh, kw).

    y (N, F, Hy, Wy) -> x (N, C, H, W) with H = (Hy - 1) s - 2p + kh + output_padding; b is (C,).
    Computed as col2im(w.reshape(F, -1).T @ y): every y value stamps a scaled copy of its filter
    onto the output, overlapping stamps add. <conv2d(x, w), y> == <x, conv_transpose2d(y, w)>.
    kernels.conv_transpose2d computes it tile by tile (a sample and a chunk of x's channels each).
    At stride 1 it is also a 3x3 conv of y with the flipped filter: algorithm "winograd" (or "auto",
    see choose_conv_algorithm) computes it that way.
    """
    kernel, stride, padding, _, (h, wd) = check_conv_transpose_operands(y, w, b, stride, padding, output_padding)
    if choose_conv_algorithm(algorithm, kernel, stride, padding, y.dtype, w.shape[0], w.shape[1]) == "winograd":
        return kernels.winograd_conv_transpose2d(y, w, b, padding[0])
    return kernels.conv_transpose2d(y, w, b, (h, wd), stride, padding)


def conv2d_backward(dy, x, w, stride=1, padding=0, algorithm="auto"):
    """Gradients of y = conv2d(x, w, b, stride, padding) given dL/dy (N, F, Ho, Wo).

    dx = conv_transpose2d(dy, w)  (the transposed convolution, with output_padding to reach x's size),
    dw = dy_rows @ im2col(x).T (computed tile by tile: kernels.conv2d_weight_grad), db = dy summed
    over N, Ho, Wo.  Returns (dx, dw, db). The columns im2col(x) are rebuilt tile by tile, in cache:
    faster than keeping them in memory (C*kh*kw times the size of x).
    algorithm (choose_conv_algorithm): "winograd" computes dx and dw together by F(4x4, 3x3) transposed
    (kernels.winograd_conv2d_backward, minicnn.winograd.conv2d_backward), "im2col" as above; "auto"
    does so only for at most WINOGRAD_DW_MAX_PAIRS filter-channel pairs F*C (dw's transformed sums,
    36 per pair and thread, must stay in the cache), else Winograd for dx only and im2col for dw.
    """
    _check_conv_operands(x, w, None)
    check_array(dy, "dy", ndim=4, dtype_like=x)
    kernel, stride, padding = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    chosen = choose_conv_algorithm(algorithm, kernel, stride, padding, x.dtype, w.shape[1], w.shape[0])
    if chosen == "winograd" and (algorithm == "winograd" or w.shape[0] * w.shape[1] <= WINOGRAD_DW_MAX_PAIRS):
        check_shape(dy, "dy", (x.shape[0], w.shape[0], *conv2d_output_shape(x.shape[2:], kernel, stride, padding)))
        dx, dw = kernels.winograd_conv2d_backward(dy, x, w, padding[0])
    else:
        dx = conv2d_input_gradient(dy, w, x.shape, stride, padding, chosen)  # checks dy's shape against x's
        dw = kernels.conv2d_weight_grad(dy, x, kernel, stride, padding)
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def conv2d_input_gradient(dy, w, input_shape, stride=1, padding=0, algorithm="auto"):
    """dL/dx of a conv2d whose input had shape input_shape: conv_transpose2d with the right output_padding.

    A strided conv maps several input sizes to one output size; output_padding = (H + 2p - kh) mod s
    picks the one the forward pass saw (the rows it never read come back as zeros).
    """
    check_array(w, "w", ndim=4)
    (kh, kw), (sh, sw), (ph, pw) = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    n, c, h, wd = check_conv_input_shape(input_shape, w)
    check_array(dy, "dy", ndim=4, dtype_like=w)
    check_shape(dy, "dy", (n, w.shape[0], *conv2d_output_shape((h, wd), (kh, kw), (sh, sw), (ph, pw))))
    output_padding = ((h + 2 * ph - kh) % sh, (wd + 2 * pw - kw) % sw)
    return conv_transpose2d(dy, w, None, (sh, sw), (ph, pw), output_padding, algorithm)


def conv_transpose2d_backward(dx, y, w, stride=1, padding=0):
    """Gradients of x = conv_transpose2d(y, w, b, stride, padding, output_padding) given dL/dx (N, C, H, W).

    The duality read the other way: dy = conv2d(dx, w) (the forward convolution), dw = the conv2d weight
    gradient with the roles swapped (y plays the conv's output gradient, dx its input:
    dw[f, c, i, j] = sum over (n, a, b) of y[n, f, a, b] * dx_padded[n, c, a*sh + i, b*sw + j]),
    db = dx summed over N, H, W. Returns (dy, dw, db); output_padding is read off dx's size.
    """
    check_nonempty(check_array(dx, "dx", ndim=4), "dx")
    check_nonempty(check_array(y, "y", ndim=4, dtype_like=dx), "y")
    check_array(w, "w", ndim=4, dtype_like=dx)
    kernel, stride, padding = check_geometry(w.shape[2:], stride, padding, name="w's kernel size")
    output_padding = tuple(int(size + 2 * p - k) % s for size, k, s, p in zip(dx.shape[2:], kernel, stride, padding))
    *_, output_hw = check_conv_transpose_operands(y, w, None, stride, padding, output_padding)
    check_shape(dx, "dx (the gradient at conv_transpose2d's output)", (y.shape[0], w.shape[1], *output_hw))
    dy = kernels.conv2d(dx, w, None, stride, padding)
    dw = kernels.conv2d_weight_grad(y, dx, kernel, stride, padding)
    return dy, dw, dx.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------------------------
# pooling


def pool_geometry(kernel_size, stride=None, padding=0):
    """Pool geometry as (h, w) pairs: stride defaults to the kernel size; padding at most half the kernel
    (as PyTorch: else a window could lie wholly in the padding)."""
    kernel = pair(kernel_size, "kernel_size")
    kernel, stride, padding = check_geometry(kernel, kernel if stride is None else stride, padding)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"padding must be at most half the kernel size {kernel}, got padding {padding}")
    return kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window. x (N, C, H, W) -> (y, switches), both (N, C, Ho, Wo).

    switches[n, c, oh, ow] = flat index h * W + w of the maximum in x[n, c] (PyTorch's return_indices);
    ties go to the first maximum. Max-pool is not invertible: the switches are all that survives.
    """
    check_nonempty(check_array(x, "x", ndim=4), "x")
    kernel, stride, padding = pool_geometry(kernel_size, stride, padding)
    conv2d_output_shape(x.shape[2:], kernel, stride, padding)  # raises if the kernel does not fit
    return kernels.max_pool(x, kernel, stride, padding)


def max_unpool2d(y, switches, output_size):
    """Un-pooling: a zero (N, C, H, W) array with each y value put back at its switch (duplicates add).

    This is max-pool's backward pass (route dy to the winners) and DeconvNet's un-pooling.
    output_size: (H, W) of the pooled input; the switches are flat indices row * W + column in it.
    Only their range is checked: switches read with another W of the same area land in wrong places.
    """
    check_nonempty(check_array(y, "y", ndim=4), "y")
    h, w = pair_at_least(output_size, "output_size", 1)
    if not isinstance(switches, np.ndarray) or switches.dtype != np.int64:
        got = switches.dtype if isinstance(switches, np.ndarray) else type(switches).__name__
        raise TypeError(f"switches must be an int64 numpy array (from max_pool2d), got {got}")
    check_shape(switches, "switches", y.shape)
    if switches.min() < 0 or switches.max() >= h * w:
        raise ValueError(
            f"switches must lie in [0, {h * w}) for output_size {(h, w)}, "
            f"got values from {switches.min()} to {switches.max()}"
        )
    return kernels.unpool(y, switches, (h, w))


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window (zero padding counts, like PyTorch's count_include_pad=True).

    x (N, C, H, W) -> (N, C, Ho, Wo); each channel plane is pooled on its own via im2col.
    """
    check_nonempty(check_array(x, "x", ndim=4), "x")
    kernel, stride, padding = pool_geometry(kernel_size, stride, padding)
    n, c, h, w = x.shape
    ho, wo = conv2d_output_shape((h, w), kernel, stride, padding)
    cols = kernels.im2col(x.reshape(n * c, 1, h, w), kernel, stride, padding)
    return cols.mean(axis=0).reshape(n, c, ho, wo)


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0):
    """dL/dx of avg_pool2d: each dy spreads equally, dy / (kh*kw), over its window (col2im)."""
    check_array(dy, "dy", ndim=4)
    kernel, stride, padding = pool_geometry(kernel_size, stride, padding)
    n, c, h, w = check_input_shape(input_shape)
    check_shape(dy, "dy", (n, c) + conv2d_output_shape((h, w), kernel, stride, padding))
    size = kernel[0] * kernel[1]
    cols = np.repeat(dy.reshape(1, -1) / dy.dtype.type(size), size, axis=0)
    return kernels.col2im(cols, (n * c, 1, h, w), kernel, stride, padding).reshape(n, c, h, w)


def global_avg_pool2d(x):
    """Global average pooling: x (N, C, H, W) -> (N, C), the mean of each feature map."""
    check_nonempty(check_array(x, "x", ndim=4), "x")
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(dy, input_shape):
    """dL/dx of global_avg_pool2d: dy[n, c] / (H*W) at every position. dy (N, C) -> (N, C, H, W)."""
    check_array(dy, "dy", ndim=2)
    n, c, h, w = check_input_shape(input_shape)
    check_shape(dy, "dy", (n, c))
    return np.broadcast_to((dy / dy.dtype.type(h * w))[:, :, None, None], (n, c, h, w)).copy()


def adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins along one axis: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    """Average over a grid of output_size bins that tile the input (bins may overlap by one).

    x (N, C, H, W) -> (N, C, oh, ow). When H, W are multiples of (oh, ow) this is avg_pool2d with
    kernel = stride = H / oh; AlexNet (6x6) and VGG (7x7) use it so that any input size works.
    """
    check_nonempty(check_array(x, "x", ndim=4), "x")
    oh, ow = pair_at_least(output_size, "output_size", 1)
    y = np.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for i, (top, bottom) in enumerate(adaptive_bins(x.shape[2], oh)):
        for j, (left, right) in enumerate(adaptive_bins(x.shape[3], ow)):
            y[:, :, i, j] = x[:, :, top:bottom, left:right].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy, input_shape):
    """dL/dx of adaptive_avg_pool2d: each dy spreads equally over its bin; overlapping bins add."""
    check_nonempty(check_array(dy, "dy", ndim=4), "dy")
    n, c, h, w = check_input_shape(input_shape)
    oh, ow = dy.shape[2:]
    check_shape(dy, "dy", (n, c, oh, ow))
    dx = np.zeros((n, c, h, w), dtype=dy.dtype)
    for i, (top, bottom) in enumerate(adaptive_bins(h, oh)):
        for j, (left, right) in enumerate(adaptive_bins(w, ow)):
            area = dy.dtype.type((bottom - top) * (right - left))
            dx[:, :, top:bottom, left:right] += (dy[:, :, i, j] / area)[:, :, None, None]
    return dx


# ----------------------------------------------------------------------------------------------
# upsampling by resizing (the "resize, then convolve" alternative to a transposed convolution)


UPSAMPLE_MODES = ("nearest", "bilinear")


def interpolation_matrix(size, scale, mode, dtype=np.float64):
    """The (size * scale, size) matrix A that resizes one axis: out = A @ in (PyTorch's interpolate).

    nearest:  out[o] = in[o // scale]
    bilinear: (align_corners=False) out[o] reads source position t = max((o + 0.5) / scale - 0.5, 0)
              as (1 - l) in[floor(t)] + l in[min(floor(t) + 1, size - 1)], l = t - floor(t).
    Every row sums to 1: a constant input stays constant.
    """
    size = check_int_at_least(size, "size", 1)
    scale = check_int_at_least(scale, "scale", 1)
    check_choice(mode, "mode", UPSAMPLE_MODES)
    out = np.arange(size * scale)
    matrix = np.zeros((size * scale, size))
    if mode == "nearest":
        matrix[out, out // scale] = 1.0
        return matrix.astype(dtype)
    source = np.maximum((out + 0.5) / scale - 0.5, 0.0)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weight_high = source - low
    np.add.at(matrix, (out, low), 1.0 - weight_high)
    np.add.at(matrix, (out, high), weight_high)
    return matrix.astype(dtype)


def _interpolation_matrices(hw, scale_factor, mode, dtype):
    (sh, sw), (h, w) = pair_at_least(scale_factor, "scale_factor", 1), hw
    return interpolation_matrix(h, sh, mode, dtype), interpolation_matrix(w, sw, mode, dtype)


def upsample2d(x, scale_factor, mode="nearest"):
    """Resize x (N, C, H, W) -> (N, C, H * sh, W * sw) by whole factors: y = A_h @ x @ A_w.T per plane.

    A_h, A_w are interpolation_matrix(H, sh, mode), interpolation_matrix(W, sw, mode): nearest or
    bilinear (align_corners=False), as torch.nn.functional.interpolate(x, scale_factor=(sh, sw), mode).
    """
    check_nonempty(check_array(x, "x", ndim=4), "x")
    rows, cols = _interpolation_matrices(x.shape[2:], scale_factor, mode, x.dtype)
    return rows @ x @ cols.T


def upsample2d_backward(dy, input_shape, scale_factor, mode="nearest"):
    """dL/dx of upsample2d: the transpose of the same linear map, dx = A_h.T @ dy @ A_w (N, C, H, W).

    For nearest, each input pixel collects the sum of its sh x sw copies' gradients."""
    check_array(dy, "dy", ndim=4)
    n, c, h, w = check_input_shape(input_shape)
    rows, cols = _interpolation_matrices((h, w), scale_factor, mode, dy.dtype)
    check_shape(dy, "dy", (n, c, rows.shape[0], cols.shape[0]))
    return rows.T @ dy @ cols


# ----------------------------------------------------------------------------------------------
# ReLU


def relu(x):
    """max(x, 0) elementwise."""
    check_array(x, "x")
    return kernels.relu(x)


def relu_backward(dy, x, rule="gradient"):
    """The signal that goes back through a ReLU whose forward input was x, under one of three rules.

    "gradient"  dy * [x > 0]             the true derivative (saliency, training)
    "deconvnet" max(dy, 0)               DeconvNet's un-ReLU: ignores the forward pass
    "guided"    dy * [x > 0] * [dy > 0]  guided backpropagation: both masks
    """
    check_array(x, "x")
    check_array(dy, "dy", dtype_like=x)
    check_shape(dy, "dy", x.shape)
    check_choice(rule, "rule", RELU_RULES)
    return kernels.relu_backward(dy, x, rule)


# ----------------------------------------------------------------------------------------------
# fully connected, softmax, loss


def linear(x, w, b=None):
    """y = x @ w.T + b with x (N, in), w (out, in) as in PyTorch, b (out,) -> y (N, out).
    The products run on Numba's threads (kernels.linear: why there)."""
    check_nonempty(check_array(x, "x", ndim=2), "x", "ND")
    check_array(w, "w", ndim=2, dtype_like=x)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"shape mismatch: x has shape {x.shape} ({x.shape[1]} features) but w has shape {w.shape} "
            f"and expects {w.shape[1]} input features (w is (out, in))"
        )
    y = kernels.linear(x, w)
    if b is not None:
        check_array(b, "b", ndim=1, dtype_like=x)
        check_shape(b, "b", (w.shape[0],))
        y += b
    return y


def linear_input_gradient(dy, w, input_shape):
    """dL/dx of y = x @ w.T + b, x of shape input_shape (N, in): dx = dy @ w, (N, out) -> (N, in)."""
    check_array(w, "w", ndim=2)
    n, features = check_input_shape(input_shape, layout="ND")
    if features != w.shape[1]:
        raise ValueError(f"shape mismatch: input_shape {(n, features)} has {features} features but w has shape "
                         f"{w.shape} and expects {w.shape[1]} input features (w is (out, in))")
    check_array(dy, "dy", ndim=2, dtype_like=w)
    check_shape(dy, "dy", (n, w.shape[0]))
    return kernels.linear_input_gradient(dy, w)


def linear_backward(dy, x, w):
    """Gradients of y = x @ w.T + b: dx = dy @ w, dw = dy.T @ x, db = dy summed over N."""
    check_array(x, "x", ndim=2)
    check_array(w, "w", ndim=2, dtype_like=x)
    dx = linear_input_gradient(dy, w, x.shape)  # checks dy against x and w
    return dx, kernels.linear_weight_gradient(dy, x), dy.sum(axis=0)


def _check_logits(logits):
    """logits (N, K) with at least one sample and one class (else no max to shift by, no mean)."""
    return check_nonempty(check_array(logits, "logits", ndim=2), "logits", "NK")


def log_softmax(logits):
    """log p[n, k] = z[n, k] - log sum_j exp(z[n, j]), computed stably (shift by the max). (N, K)."""
    _check_logits(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_backward(dy, logits):
    """dL/dz of log_softmax: dy - softmax(z) * sum_k dy[n, k]."""
    check_array(dy, "dy", ndim=2, dtype_like=logits)
    check_shape(dy, "dy", logits.shape)
    return dy - softmax(logits) * dy.sum(axis=1, keepdims=True)


def softmax(logits):
    """p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j]), (N, K)."""
    return np.exp(log_softmax(logits))


def cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[n, labels[n]]. logits (N, K), labels (N,) int."""
    _check_logits(logits)
    check_labels(labels, logits.shape[0], logits.shape[1])
    log_p = log_softmax(logits)
    return -log_p[np.arange(len(labels)), labels].mean()


def cross_entropy_backward(logits, labels):
    """dL/dlogits of the mean cross-entropy: (softmax(z) - onehot(labels)) / N."""
    _check_logits(logits)
    check_labels(labels, logits.shape[0], logits.shape[1])
    grad = softmax(logits)
    grad[np.arange(len(labels)), labels] -= 1
    return grad / logits.dtype.type(len(labels))


def _pixels_as_rows(scores, labels):
    """scores (N, K, H, W), labels (N, H, W) int -> (N*H*W, K) scores and (N*H*W,) labels, checked."""
    check_nonempty(check_array(scores, "scores", ndim=4), "scores", "NKHW")
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"labels must be an integer numpy array (N, H, W), got {got}")
    n, k, h, w = scores.shape
    check_shape(labels, "labels (one class per pixel)", (n, h, w))
    return scores.transpose(0, 2, 3, 1).reshape(-1, k), labels.reshape(-1)


def pixel_cross_entropy(scores, labels):
    """Per-pixel cross-entropy, the mean over every image and pixel of -log softmax_k(scores)[labels].

    scores (N, K, H, W): K class scores at each pixel (softmax over the channel axis); labels (N, H, W)
    ints in [0, K). The same number as cross_entropy over the N*H*W pixels taken as samples."""
    return cross_entropy(*_pixels_as_rows(scores, labels))


def pixel_cross_entropy_backward(scores, labels):
    """dL/dscores of pixel_cross_entropy: (softmax over K - onehot(labels)) / (N*H*W), (N, K, H, W)."""
    rows, flat = _pixels_as_rows(scores, labels)
    n, k, h, w = scores.shape
    return cross_entropy_backward(rows, flat).reshape(n, h, w, k).transpose(0, 3, 1, 2).copy()
