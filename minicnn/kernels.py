"""The six hot loops of the engine as Numba kernels: im2col, col2im, max_pool, unpool, relu, relu_backward.

Each public function here has the same signature and gives the same result as its plain NumPy twin
in minicnn.im2col (the readable reference); tests/test_kernels.py holds the two equal. The NumPy
versions say *what* is computed with whole-array operations; the versions here say it again as
plain loops, which Numba compiles to machine code and runs on all cores:

    @njit(parallel=True, cache=True)   compile on the first call, run `prange` loops in parallel,
                                       and keep the machine code on disk for the next process.

Every kernel is split in two:
  - a thin Python wrapper with the reference's signature: it unpacks the (h, w) pairs, checks the
    arguments, makes the input contiguous, and calls
  - an `_underscore` kernel that takes only arrays and plain ints.

Parallel loops never let two iterations write the same element (a "race"): im2col gives each
iteration its own output row; col2im, max_pool and unpool give each iteration its own (n, c) plane.

Threading: this module selects Numba's `workqueue` threading layer (unless NUMBA_THREADING_LAYER
is set in the environment). The default here would be OpenMP (GNU libgomp), whose worker threads
keep spinning for a while after each parallel loop and so steal both cores from OpenBLAS's threads
running the matrix product that follows (trap 1 of the project's PERFORMANCE.md notes). Measured on the 2-core
machine, median of 200 calls of `w2d @ im2col(x)` for benchmark shape (b) (N=32, 32->64, 16x16, k3):
    OpenMP, default                 8.0-18 ms (timings cluster at 8 ms: the stall)
    OpenMP + OMP_WAIT_POLICY=passive  3.9 ms
    workqueue                        4.1 ms      (im2col alone ~1.1 ms, the GEMM alone ~1.6 ms)
and for shape (e) (N=1, 256->256, 28x28): 8.5-12 ms, 5.1 ms, 4.6-5.6 ms. Both fixes work equally;
workqueue is chosen because it is local to Numba: OMP_WAIT_POLICY would have to be in the
environment before any library loads libgomp, and it would also change every other OpenMP user in
the process (PyTorch too). The price: waking workqueue's sleeping threads costs ~0.15 ms per
parallel call (spinning OpenMP: ~3 us; passive OpenMP: ~0.08 ms), which only matters for tiny
arrays. Caveats: workqueue does not allow two Python threads to run kernels at the same time, and
the choice is global to Numba in this process and must come before the first parallel call
anywhere (after that the layer is fixed).

Page faults (trap 2), measured, not handled here: each call returns a fresh array, and glibc hands
big blocks back to the OS after use, so the next call faults them in again: im2col for shape (c)
(N=8, 64 channels, 56x56, k3; 58 MB of columns) takes ~21 ms, but ~7 ms when glibc is told to keep
freed memory (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD). relu on 6 MB is ~2x slower than torch
for the same reason.
"""
import os

import numba
import numpy as np
from numba import njit, prange

from .shapes import conv2d_output_shape

if "NUMBA_THREADING_LAYER" not in os.environ:  # the user's choice wins
    numba.config.THREADING_LAYER = "workqueue"

RELU_RULES = ("gradient", "deconvnet", "guided")  # the code passed to the kernel is the position


@njit(cache=True)
def _valid_range(offset, stride, padding, size, out_size):
    """The outputs o in [start, stop) whose tap o*stride + offset - padding falls inside [0, size).

    A window at output position o reads input position o*stride + offset - padding (offset = the
    row or column inside the window). Outside [start, stop) it reads padding.
    """
    # o*stride >= padding - offset          ->  o >= ceil((padding - offset) / stride)
    # o*stride <= size - 1 + padding - offset -> o <= floor((size - 1 + padding - offset) / stride)
    start = max(0, -((offset - padding) // stride))
    stop = min(out_size, (size - 1 + padding - offset) // stride + 1)
    return start, max(start, stop)


# ---------------------------------------------------------------------------------------------
# im2col and its adjoint col2im
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _copy_into(dst, src):
    """dst[k] = src[k] for all k (1D arrays of one length). A separate serial function: given
    two contiguous arrays, LLVM turns this loop into SIMD instructions."""
    for k in range(src.size):
        dst[k] = src[k]


@njit(cache=True)
def _add_into(dst, src):
    """dst[k] += src[k] for all k (1D arrays of one length); vectorised like _copy_into."""
    for k in range(src.size):
        dst[k] += src[k]


@njit(parallel=True, cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, ho, wo):
    """The loops of im2col (see there): x (N, C, H, W), C-contiguous -> cols (C*kh*kw, N*Ho*Wo)."""
    n, c, h, w = x.shape
    cols = np.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    for row in prange(c * kh * kw):  # each iteration owns one output row: no races
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        oh_start, oh_stop = _valid_range(i, sh, ph, h, ho)
        ow_start, ow_stop = _valid_range(j, sw, pw, w, wo)
        left = ow_start * sw + j - pw  # input column read by output column ow_start
        m = ow_stop - ow_start  # how many output columns read inside the input
        for b in range(n):
            for oh in range(ho):
                first = (b * ho + oh) * wo  # column of window (b, oh, 0)
                dst = cols[row, first : first + wo]  # the windows (b, oh, 0..wo-1)
                if oh < oh_start or oh >= oh_stop:
                    dst[:] = 0  # this window row lies in the padding
                    continue
                dst[:ow_start] = 0
                dst[ow_stop:] = 0
                x_row = x[b, ch, oh * sh + i - ph]
                if sw == 1:  # the same slice as below; written without a step, Numba knows
                    _copy_into(dst[ow_start:ow_stop], x_row[left : left + m])  # it is contiguous
                else:
                    _copy_into(dst[ow_start:ow_stop], x_row[left : left + sw * m : sw])
    return cols


def im2col(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo); kernel_size, stride, padding are (h, w) pairs.

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sh + i, ow*sw + j], where x_padded is x with
    ph rows of zeros above and below and pw columns of zeros left and right; rows are ordered
    (c, i, j) like w.reshape(F, C*kh*kw), columns (n, oh, ow). So conv2d is w.reshape(F, -1) @ cols.
    The padding is never built: a tap that falls in it writes 0.
    NumPy twin: minicnn.im2col.im2col. Parallel over the C*kh*kw rows.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = conv2d_output_shape(x.shape[2:], kernel_size, stride, padding)
    return _im2col(np.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, ho, wo)


@njit(parallel=True, cache=True)
def _col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo):
    """The loops of col2im (see there): cols (C*kh*kw, N*Ho*Wo), C-contiguous -> x (N, C, H, W)."""
    x = np.empty((n, c, h, w), dtype=cols.dtype)
    for plane in prange(n * c):  # each iteration owns one output plane x[b, ch]: no races
        b = plane // c
        ch = plane % c
        x[b, ch] = 0
        for i in range(kh):
            oh_start, oh_stop = _valid_range(i, sh, ph, h, ho)
            for j in range(kw):
                ow_start, ow_stop = _valid_range(j, sw, pw, w, wo)
                left = ow_start * sw + j - pw  # input column written by output column ow_start
                m = ow_stop - ow_start
                row = (ch * kh + i) * kw + j
                for oh in range(oh_start, oh_stop):
                    first = (b * ho + oh) * wo  # column of window (b, oh, 0)
                    src = cols[row, first + ow_start : first + ow_stop]
                    x_row = x[b, ch, oh * sh + i - ph]
                    if sw == 1:  # contiguous, see _im2col
                        _add_into(x_row[left : left + m], src)
                    else:
                        _add_into(x_row[left : left + sw * m : sw], src)
    return x


def col2im(cols, input_shape, kernel_size, stride, padding):
    """cols (C*kh*kw, N*Ho*Wo) -> x (N, C, H, W): the transpose (adjoint) of im2col.

    x[n, c, y, z] = sum of cols[(c, i, j), (n, oh, ow)] over all (i, j, oh, ow) with
    oh*sh + i - ph = y and ow*sw + j - pw = z: every column is added back onto the window it came
    from, overlapping windows add up, and whatever fell on the padding is dropped.
    So <im2col(x), cols> = <x, col2im(cols)> for all x and cols.
    NumPy twin: minicnn.im2col.col2im. Parallel over the N*C planes; each iteration owns its plane.
    """
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = conv2d_output_shape((h, w), kernel_size, stride, padding)
    if cols.shape != (c * kh * kw, n * ho * wo):
        raise ValueError(
            f"cols must have shape (C*kh*kw, N*Ho*Wo) = {(c * kh * kw, n * ho * wo)} for input_shape "
            f"{tuple(input_shape)}, got {cols.shape}"
        )
    return _col2im(np.ascontiguousarray(cols), n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo)


# ---------------------------------------------------------------------------------------------
# max-pool with switches, and un-pool (its backward)
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _wins(v, best):
    """Does v replace the running maximum best? If it is larger, or if it is NaN and best is not.

    Equal values do not replace: the first maximum stays. Once best is NaN nothing replaces it
    (every comparison with NaN is False). Written with & and | rather than `and` / `or`, and used
    as `best = v if better else best`, so that the compiler can pick without jumping: on random
    data a jump is mispredicted half the time (this form measured ~2x faster than an `if`).
    """
    return (v > best) | (np.isnan(v) & (best == best))


@njit(parallel=True, cache=True)
def _max_pool(x, kh, kw, sh, sw, ph, pw, ho, wo):
    """The loops of max_pool (see there): x (N, C, H, W) -> y, switches (N, C, Ho, Wo)."""
    n, c, h, w = x.shape
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    switches = np.empty((n, c, ho, wo), dtype=np.int64)
    for plane in prange(n * c):  # each iteration owns one output plane: no races
        b = plane // c
        ch = plane % c
        for oh in range(ho):
            # the window's rows inside the input; padding rows are -inf and never win, so skip them
            top = oh * sh - ph
            h_start, h_stop = max(top, 0), min(top + kh, h)
            for ow in range(wo):
                left = ow * sw - pw
                w_start, w_stop = max(left, 0), min(left + kw, w)
                best = x[b, ch, h_start, w_start]  # start from the window's first element
                best_index = h_start * w + w_start
                for ih in range(h_start, h_stop):
                    for iw in range(w_start, w_stop):
                        v = x[b, ch, ih, iw]
                        better = _wins(v, best)
                        best = v if better else best
                        best_index = ih * w + iw if better else best_index
                y[b, ch, oh, ow] = best
                switches[b, ch, oh, ow] = best_index
    return y, switches


@njit(parallel=True, cache=True)
def _max_pool_2x2(x):
    """_max_pool for kernel 2x2, stride 2, no padding: the same loops with the window size fixed,
    so the compiler unrolls them: 3-5x faster than _max_pool on the benchmark shapes."""
    n, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    switches = np.empty((n, c, ho, wo), dtype=np.int64)
    for plane in prange(n * c):
        b = plane // c
        ch = plane % c
        for oh in range(ho):
            for ow in range(wo):
                best = x[b, ch, 2 * oh, 2 * ow]
                best_index = 2 * oh * w + 2 * ow
                for ih in range(2 * oh, 2 * oh + 2):
                    for iw in range(2 * ow, 2 * ow + 2):
                        v = x[b, ch, ih, iw]
                        better = _wins(v, best)
                        best = v if better else best
                        best_index = ih * w + iw if better else best_index
                y[b, ch, oh, ow] = best
                switches[b, ch, oh, ow] = best_index
    return y, switches


def max_pool(x, kernel_size, stride, padding):
    """x (N, C, H, W) -> (y, switches), both (N, C, Ho, Wo).

    y[n, c, oh, ow] = max of the window x_padded[n, c, oh*sh : oh*sh + kh, ow*sw : ow*sw + kw]
    (padding counts as -inf); switches[n, c, oh, ow] = h*W + w, the flat index in the unpadded
    input plane of the element that won. Ties go to the first maximum in row-major window order;
    a NaN wins (it propagates, as in PyTorch).
    NumPy twin: minicnn.im2col.max_pool. Parallel over the N*C planes; kernel 2x2 with stride 2
    and no padding runs _max_pool_2x2, the same loops with the sizes fixed.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if ph > kh // 2 or pw > kw // 2:  # else a window could lie wholly in the padding
        raise ValueError(f"padding must be at most half the kernel size {(kh, kw)}, got padding {(ph, pw)}")
    ho, wo = conv2d_output_shape(x.shape[2:], kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):  # the common case has its own kernel
        return _max_pool_2x2(x)
    return _max_pool(x, kh, kw, sh, sw, ph, pw, ho, wo)


@njit(parallel=True, cache=True)
def _unpool(y, switches, h, w):
    """The loops of unpool (see there) on planes: y, switches (N*C, Ho*Wo) -> (out (N*C, H*W), bad)."""
    planes, k = y.shape  # y and switches as (N*C, Ho*Wo)
    out = np.empty((planes, h * w), dtype=y.dtype)
    bad = 0  # how many switches point outside the plane (they are skipped)
    for p in prange(planes):  # each iteration owns one output plane: no races
        out[p] = 0
        for q in range(k):
            s = switches[p, q]
            if 0 <= s < h * w:
                out[p, s] += y[p, q]
            else:
                bad += 1
    return out, bad


def unpool(y, switches, output_hw):
    """y, switches (N, C, Ho, Wo) -> out (N, C, H, W), zero except at the switches.

    out[n, c].flat[switches[n, c, k]] += y[n, c, k] for every k: each value goes back to where its
    maximum came from; values whose switches coincide (overlapping windows) add up. This is exactly
    the backward pass of max_pool (and the DeconvNet's "un-pooling").
    NumPy twin: minicnn.im2col.unpool. Parallel over the N*C planes; each iteration owns its plane.
    """
    n, c = y.shape[:2]
    h, w = output_hw
    if switches.shape != y.shape:
        raise ValueError(f"switches must have the shape of y {y.shape}, got {switches.shape}")
    if not np.issubdtype(switches.dtype, np.integer):
        raise TypeError(f"switches must be integer indices, got dtype {switches.dtype}")
    y2 = np.ascontiguousarray(y).reshape(n * c, -1)
    s2 = np.ascontiguousarray(switches, dtype=np.int64).reshape(n * c, -1)
    out, bad = _unpool(y2, s2, h, w)
    if bad:
        raise ValueError(f"{bad} switches lie outside the output plane [0, {h}*{w}) = [0, {h * w})")
    return out.reshape(n, c, h, w)


# ---------------------------------------------------------------------------------------------
# ReLU and its three backward rules
# ---------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _relu(x):
    """The loop of relu (see there) on a flat, contiguous array."""
    out = np.empty_like(x)
    for k in prange(x.size):
        v = x[k]
        out[k] = 0 if v < 0 else v  # "v < 0" is False for NaN: NaN stays NaN
    return out


def relu(x):
    """max(x, 0) elementwise, any shape (NaN stays NaN). NumPy twin: minicnn.im2col.relu."""
    return _relu(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)


@njit(parallel=True, cache=True)
def _relu_backward(dy, x, rule):
    """The loops of relu_backward (see there) on flat arrays; rule 0, 1, 2 = RELU_RULES[rule]."""
    out = np.empty_like(dy)
    if rule == 0:  # "gradient": keep dy where the forward input was positive
        for k in prange(dy.size):
            out[k] = dy[k] if x[k] > 0 else 0
    elif rule == 1:  # "deconvnet": keep the positive part of dy, whatever x was
        for k in prange(dy.size):
            out[k] = dy[k] if dy[k] > 0 else 0
    else:  # "guided": both masks
        for k in prange(dy.size):
            out[k] = dy[k] if (x[k] > 0 and dy[k] > 0) else 0
    return out


def relu_backward(dy, x, rule):
    """The three backward rules of ReLU; dy (the signal coming back) and x (the forward input)
    have the same shape, the result has dy's shape and dtype.

    "gradient":  dy where x > 0, else 0            (the true derivative; saliency)
    "deconvnet": max(dy, 0), ignoring x            (Zeiler & Fergus' un-ReLU)
    "guided":    dy where x > 0 and dy > 0, else 0 (guided backpropagation: both masks)
    NumPy twin: minicnn.im2col.relu_backward.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"rule must be one of {list(RELU_RULES)}, got {rule!r}")
    if dy.shape != x.shape:
        raise ValueError(f"dy and x must have the same shape, got dy {dy.shape} and x {x.shape}")
    dy_flat = np.ascontiguousarray(dy).reshape(-1)
    x_flat = np.ascontiguousarray(x).reshape(-1)
    return _relu_backward(dy_flat, x_flat, RELU_RULES.index(rule)).reshape(dy.shape)
