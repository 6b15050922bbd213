# %% [markdown]
# # Lesson 14 — test your own convolution
#
# A convolution written by hand is easy to get almost right: it runs, the shapes look plausible, the
# picture it makes looks like an edge map. minicnn tests its own ops with *properties*: identities
# checked on hundreds of shapes and values that hypothesis draws (non-square kernels, strides that do
# and do not divide the size, one channel or several, every output_padding), and when one fails,
# hypothesis shrinks the case to the smallest one that still fails. `minicnn.testing` gives you the
# same checks for your own code.
#
# Below: a plain NumPy convolution, its transpose and its backward pass, written the way one writes
# them for a course. Then six typical mistakes, each caught by one check with the minimal example it
# finds, and the fixed versions passing every check.
#
# Run: `python lessons/14_test_your_own_convolution.py [--out DIR]` (needs `pip install "minicnn[testing]"`)

# %%
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, title  # first: it also finds minicnn

from minicnn.matrix import insert_zeros, pad_or_crop
from minicnn.testing import (check_conv2d, check_conv2d_backward, check_conv_transpose2d, check_matrix_form,
                             check_max_pool2d, gradcheck)

OUT = output_dir("14_test_your_own_convolution")
SEED = 0  # every check below runs the same cases each time the lesson runs (seed=None: new ones each run)

# %% [markdown]
# ## A convolution by hand
# Output (i, j) reads the window of the padded input that starts at (i sh, j sw) and has the kernel's
# size; y[n, f, i, j] = sum over c, a, b of x_pad[n, c, i sh + a, j sw + b] w[f, c, a, b] (a
# cross-correlation: the kernel is not flipped). The kernel fits at n + 2p - k + 1 positions along an
# axis; the stride keeps every s-th of them, the first included: ceil((n + 2p - k + 1) / s).

# %%
def window(i, j, stride, kernel):
    """The rows and columns of the padded input that output (i, j) reads."""
    (sh, sw), (kh, kw) = stride, kernel
    return slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)


def pad_both_sides(x, padding):
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def output_size(n, k, s, p):
    positions = n + 2 * p - k + 1  # where the kernel fits at stride 1
    return (positions - 1) // s + 1  # every s-th of them, the first included: ceil(positions / s)


def my_conv2d(x, w, stride, padding, pad=pad_both_sides, size=output_size):
    """x (N, C, H, W), w (F, C, kh, kw), stride and padding (h, w) pairs -> y (N, F, Ho, Wo)."""
    x_pad = pad(x, padding)
    ho, wo = (size(n, k, s, p) for n, k, s, p in zip(x.shape[2:], w.shape[2:], stride, padding))
    y = np.zeros((x.shape[0], w.shape[0], ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):
            rows, cols = window(i, j, stride, w.shape[2:])
            y[:, :, i, j] = np.tensordot(x_pad[:, :, rows, cols], w, axes=([1, 2, 3], [1, 2, 3]))
    return y


# %% [markdown]
# ## Its transpose and its backward pass
# The transposed convolution runs the forward one backwards: every y value stamps its filter, scaled,
# onto the window it came from; overlapping stamps add; then the padding is cropped off. Its output
# size is the forward conv's input size, H = (Hy - 1) s - 2p + k + output_padding: several input
# sizes give one output size when s > 1, and output_padding says which one.
#
# The backward pass of y = conv2d(x, w) + b for a gradient dy at the output: dx is that same
# stamping of dy (the transposed convolution), dw adds up each window of x weighted by its dy, and
# db sums dy.

# %%
def my_conv_transpose2d(y, w, stride, padding, output_padding):
    """y (N, F, Hy, Wy), the forward conv's w (F, C, kh, kw) -> x (N, C, H, W)."""
    (ph, pw), (kh, kw) = padding, w.shape[2:]
    h, wd = ((m - 1) * s - 2 * p + k + op for m, s, p, k, op in zip(y.shape[2:], stride, padding, (kh, kw),
                                                                      output_padding))
    x_pad = np.zeros((y.shape[0], w.shape[1], h + 2 * ph, wd + 2 * pw), y.dtype)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            rows, cols = window(i, j, stride, (kh, kw))
            x_pad[:, :, rows, cols] += np.tensordot(y[:, :, i, j], w, axes=(1, 0))  # (N, C, kh, kw)
    return x_pad[:, :, ph : ph + h, pw : pw + wd]


def my_conv2d_backward(dy, x, w, stride, padding, window=window):
    """dy (N, F, Ho, Wo) at the output of conv2d(x, w, b) -> (dx, dw, db)."""
    (ph, pw), (h, wd) = padding, x.shape[2:]
    x_pad = pad_both_sides(x, padding)
    dx_pad, dw = np.zeros_like(x_pad), np.zeros_like(w)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            rows, cols = window(i, j, stride, w.shape[2:])
            dx_pad[:, :, rows, cols] += np.tensordot(dy[:, :, i, j], w, axes=(1, 0))
            dw += np.tensordot(dy[:, :, i, j], x_pad[:, :, rows, cols], axes=(0, 0))
    return dx_pad[:, :, ph : ph + h, pw : pw + wd], dw, dy.sum(axis=(0, 2, 3))


# %% [markdown]
# ## How a check reports a mistake
# `check_conv2d(fn)` calls fn(x, w, stride, padding) on 100 drawn cases and compares it with
# minicnn.ops.conv2d. On the first difference hypothesis shrinks the case: smaller arrays, fewer
# channels, stride and padding towards 1 and 0, values towards 0 and 1. The AssertionError it raises
# names that minimal case, the entry that differs and both numbers. `caught` runs a check we expect
# to fail and returns its error (a CaseFailure: the message, and the case as arrays).

# %%
FAILURES = {}


def caught(label, check, fn):
    """Run check(fn); it must fail. Print and keep its error (the minimal case is in failure.case)."""
    try:
        check(fn, seed=SEED)
    except AssertionError as failure:
        print(failure)
        FAILURES[label] = failure
        return failure
    raise AssertionError(f"{check.__name__} did not catch '{label}'")


def differs_along_an_axis(case, condition):
    """Does condition(n, k, s, p) hold along the rows or the columns of a ConvCase?"""
    return any(condition(n, k, s, p) for n, k, s, p in zip(case.x.shape[2:], case.w.shape[2:], case.stride,
                                                            case.padding))


# %% [markdown]
# ## Mistake 1: the kernel flipped
# The textbook convolution flips the kernel (sum of x[i - a] w[a]); a CNN's "convolution" does not.
# The two agree on symmetric kernels -- a 3x3 blur, a 1x1 kernel -- which is why the mistake survives
# a test on one hand-picked example. Hypothesis needs a kernel of two entries.

# %%
title("mistake 1: the kernel flipped")
flipped = caught("kernel flipped", check_conv2d, lambda x, w, s, p: my_conv2d(x, w[:, :, ::-1, ::-1], s, p))
w = flipped.case.w
assert not np.array_equal(w, w[:, :, ::-1, ::-1])  # only a kernel that is not symmetric can show it
assert flipped.case.x.size <= 4 and w.size <= 4

# %% [markdown]
# ## Mistake 2: padding on one side only
# Padding 2p at the top and left instead of p on each side keeps the output size right; only the
# values shift.

# %%
title("mistake 2: padding on one side only")


def pad_one_side(x, padding):
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (2 * ph, 0), (2 * pw, 0)))


one_side = caught("padding on one side", check_conv2d, partial(my_conv2d, pad=pad_one_side))
assert one_side.case.padding != (0, 0)

# %% [markdown]
# ## Mistake 3: the last row dropped when the stride does not divide
# "Stride s keeps one position in s": positions // s rounds down, and loses the last window
# whenever s does not divide the number of positions (an odd input under a 3x3, stride 2, padding 1
# layer). The check's first test is the shape; the minimal case has a single position along one axis
# and stride 2 along it.

# %%
title("mistake 3: the last row dropped when the stride does not divide")


def output_size_rounded_down(n, k, s, p):
    return (n + 2 * p - k + 1) // s


rounded_down = caught("last row dropped", check_conv2d, partial(my_conv2d, size=output_size_rounded_down))
assert differs_along_an_axis(rounded_down.case, lambda n, k, s, p: (n + 2 * p - k + 1) % s != 0)
assert differs_along_an_axis(rounded_down.case, lambda n, k, s, p: n + 2 * p - k + 1 == 1 and s == 2)
assert "y has shape" in str(rounded_down)

# %% [markdown]
# ## Mistake 4: output_padding ignored
# Leaving output_padding out of H = (Hy - 1) s - 2p + k + output_padding gives the smallest of the
# input sizes that lead to y, not the one asked for.

# %%
title("mistake 4: output_padding ignored")
ignored = caught("output_padding ignored", check_conv_transpose2d,
                 lambda y, w, s, p, op: my_conv_transpose2d(y, w, s, p, (0, 0)))
assert ignored.case.output_padding != (0, 0) and "x has shape" in str(ignored)

# %% [markdown]
# ## Mistake 5: a transposed convolution that is not the adjoint
# The sub-pixel recipe of lesson 3 -- insert s - 1 zeros between the y values, pad k - 1 - p,
# correlate at stride 1 -- works only with the kernel FLIPPED (and its channels swapped). Without the
# flip the sizes all come out right, and the output is not W^T y. `check_conv_transpose2d` tests the
# identity that defines the transpose, <conv2d(x', w), y> = <x', fn(y, w)>, for a random x'.

# %%
title("mistake 5: a transposed convolution that is not the adjoint")


def upsample_and_correlate(y, w, stride, padding, output_padding, kernel):
    """Insert zeros, pad k - 1 - p (crop where negative; output_padding more at the end), correlate with kernel."""
    (kh, kw), (ph, pw), (oph, opw) = w.shape[2:], padding, output_padding
    z = insert_zeros(y, stride)
    z = pad_or_crop(pad_or_crop(z, 2, kh - 1 - ph, kh - 1 - ph + oph), 3, kw - 1 - pw, kw - 1 - pw + opw)
    return my_conv2d(z, kernel, (1, 1), (0, 0))


def channels_swapped(w):
    return w.transpose(1, 0, 2, 3)


def flipped_and_channels_swapped(w):
    return w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)


not_adjoint = caught("not the adjoint", check_conv_transpose2d,
                     lambda y, w, s, p, op: upsample_and_correlate(y, w, s, p, op, channels_swapped(w)))
assert not_adjoint.what == "adjoint"

# %% [markdown]
# ## Mistake 6: a gradient off by the stride
# The backward pass must stamp dy onto the same windows the forward pass read. Forgetting the
# stride there (windows at (i, j) instead of (i sh, j sw)) is invisible at stride 1.

# %%
title("mistake 6: a gradient off by the stride")


def window_without_stride(i, j, stride, kernel):
    return window(i, j, (1, 1), kernel)


off_by_stride = caught("gradient off by the stride", check_conv2d_backward,
                       partial(my_conv2d_backward, window=window_without_stride))
assert off_by_stride.case.stride != (1, 1) and off_by_stride.what in ("dx", "dw")

# %% [markdown]
# ## The fixed versions pass every check
# The hand-written convolution, its transpose (by stamping, and by the sub-pixel recipe with the
# kernel flipped), and its backward pass -- 100 cases each. A max-pool with switches, and the
# convolution's matrix built by pushing unit vectors through my_conv2d (column k of W is the conv of
# the k-th unit image: lesson 1's y = W x), pass their checks too.

# %%
title("the fixed versions")


def my_max_pool2d(x, kernel_size, stride, padding):
    """y = max over each window (padding counts as -inf); switches = flat index in the plane of the first maximum."""
    (ph, pw), (h, wd), kw = padding, x.shape[2:], kernel_size[1]
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    ho, wo = (output_size(n, k, s, p) for n, k, s, p in zip((h, wd), kernel_size, stride, padding))
    y = np.zeros(x.shape[:2] + (ho, wo), x.dtype)
    switches = np.zeros(y.shape, np.int64)
    for i in range(ho):
        for j in range(wo):
            rows, cols = window(i, j, stride, kernel_size)
            flat = x_pad[:, :, rows, cols].reshape(x.shape[0], x.shape[1], -1)
            first = flat.argmax(axis=2)  # argmax returns the first maximum: ties as PyTorch
            a, b = np.divmod(first, kw)
            y[:, :, i, j] = np.take_along_axis(flat, first[..., None], axis=2)[..., 0]
            switches[:, :, i, j] = (rows.start + a - ph) * wd + (cols.start + b - pw)
    return y, switches


def my_conv2d_matrix(w, input_shape, stride, padding):
    """The (F*Ho*Wo, C*H*W) matrix of my_conv2d on one image: column k = my_conv2d(k-th unit image)."""
    units = np.eye(int(np.prod(input_shape)), dtype=w.dtype).reshape(-1, *input_shape)
    return my_conv2d(units, w, stride, padding).reshape(len(units), -1).T


for name, check, fn in [
    ("my_conv2d", check_conv2d, my_conv2d),
    ("my_conv_transpose2d", check_conv_transpose2d, my_conv_transpose2d),
    ("sub-pixel, kernel flipped", check_conv_transpose2d,
     lambda y, w, s, p, op: upsample_and_correlate(y, w, s, p, op, flipped_and_channels_swapped(w))),
    ("my_conv2d_backward", check_conv2d_backward, my_conv2d_backward),
    ("my_max_pool2d", check_max_pool2d, my_max_pool2d),
    ("my_conv2d_matrix", check_matrix_form, my_conv2d_matrix),
]:
    check(fn, seed=SEED)  # raises on any failing case
    print(f"{check.__name__}({name}): 100 cases pass")

# %% [markdown]
# ## One more tool: gradcheck
# `gradcheck(f, x, grad)` compares a gradient with central differences (f(x + eps) - f(x - eps)) / 2 eps
# at every entry, in float64, and returns the worst relative error. Here: the input gradient of
# L(x) = sum(tanh(my_conv2d(x, w)) * r), by the chain rule through our own backward pass.

# %%
title("gradcheck")
rng = np.random.default_rng(0)
x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
stride, padding = (2, 1), (1, 1)
r = rng.standard_normal(my_conv2d(x, w, stride, padding).shape)


def loss(x):
    return float(np.sum(np.tanh(my_conv2d(x, w, stride, padding)) * r))


dy = r * (1 - np.tanh(my_conv2d(x, w, stride, padding)) ** 2)  # dL/dy
dx, dw, db = my_conv2d_backward(dy, x, w, stride, padding)
error = gradcheck(loss, x, dx)
print(f"worst relative error of dx against central differences: {error:.1e}")
assert error < 1e-8

# %% [markdown]
# ## Figure: the six minimal cases
# For each mistake, the first image and channel of each array of the case, then the right answer
# (minicnn's) and the buggy one, as the check compared them.

# %%
def first_plane(a):
    """The first 2D plane of an array (a row for a 1D one)."""
    a = np.asarray(a)
    return a.reshape(1, -1) if a.ndim < 2 else a[(0,) * (a.ndim - 2)]


def panel(ax, name, a):
    plane = first_plane(a)
    if plane.size == 0:
        ax.text(0.5, 0.5, f"{name}\nempty {np.shape(a)}", ha="center", va="center", fontsize=9)
        ax.axis("off")
    else:
        grid(ax, plane, fmt="{:g}", title_text=f"{name} {np.shape(a)}", vmax=2)


columns = 5  # at most three arrays in a case, then the right and the buggy result
fig, axes = plt.subplots(len(FAILURES), columns, figsize=(2.2 * columns, 2.1 * len(FAILURES)))
for row, (label, failure) in zip(axes, FAILURES.items()):
    arrays = [(field, value) for field, value in zip(failure.case._fields, failure.case) if isinstance(value, np.ndarray)]
    what = "x" if failure.what == "adjoint" else failure.what  # the adjoint check compares x = fn(y, w)
    arrays += [(f"right {what}", failure.expected), (f"buggy {what}", failure.got)]
    for ax, (name, value) in zip(row, arrays):
        panel(ax, name, value)
    for ax in row[len(arrays):]:
        ax.axis("off")
    row[0].set_ylabel(label, fontsize=10)
    row[0].yaxis.set_visible(True)
fig.suptitle("the minimal case hypothesis found for each mistake", fontsize=12)
save(fig, OUT, "minimal_cases")
