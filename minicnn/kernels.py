"""The hot loops of the engine as Numba kernels: the convolution (forward, weight gradient and
transposed, computed in tiles; 3x3 stride-1 convolutions also by Winograd's minimal filtering),
im2col, col2im, max_pool, unpool, relu, relu_backward, and the matrix products of Linear layers.

Each public function here has the same signature and gives the same result as its plain NumPy twin
in minicnn.im2col or minicnn.winograd (the readable references; for Linear, NumPy's `@` itself); tests/test_kernels.py and
tests/test_winograd.py hold them equal. The NumPy versions say *what* is computed with whole-array
operations; the versions here say it again as plain loops, which Numba compiles to machine code and
runs on all cores:

    @njit(parallel=True, cache=True)   compile on the first call, run `prange` loops in parallel,
                                       and keep the machine code on disk for the next process.

Kernels trust their callers: the argument checks (shapes, dtypes, geometry) live once, in the public
functions of minicnn.ops, which are the only callers. Every kernel is split in two:
  - a thin Python wrapper with the reference's signature: it unpacks the (h, w) pairs, makes the
    input contiguous, sizes the tiles and buffers, and calls
  - an `_underscore` kernel that takes only arrays and plain ints.

Parallel loops never let two iterations write the same element (a "race"): im2col gives each
iteration its own output row; col2im, max_pool and unpool give each iteration its own (n, c) plane;
the tiled convolution kernels give each thread its own tiles of the output (the weight gradient:
its own block of rows of dw.T, one chunk of x's channels); the Winograd kernels give each thread
its own blocks of output tiles.

The convolution kernels compute what im2col + one matrix product computes (their twins in
minicnn.im2col say exactly that), but one small tile at a time, so that the im2col columns never
exist all at once: see the section "convolution in tiles".

Threading: Numba runs `prange` loops on one of three thread pools ("threading layers"). This
module asks for TBB first, then workqueue (unless NUMBA_THREADING_LAYER or
NUMBA_THREADING_LAYER_PRIORITY is set in the environment: the user's choice wins). Never OpenMP
(GNU libgomp) by default: its worker threads keep spinning for a while after each parallel loop and
steal the cores from the OpenBLAS threads of the matrix product that follows (two thread pools
fighting over the cores). The choice is global to Numba in this process and fixed by the first
parallel call anywhere; workqueue does not allow two Python threads to run kernels at once.

BLAS inside kernels: np.dot in a Numba kernel calls SciPy's OpenBLAS (not NumPy's). The tiled
kernels run one tile per thread, so that BLAS must run single-threaded: _blas_for_tiles sets it so.
NumPy's own BLAS (`@` outside the kernels) keeps its threads, which spin after each product: so
the engine's Linear products run here too, on Numba's threads. Buffers are kept between calls
(_scratch), so that large temporaries are not faulted in again on every call.
The measurements behind these choices: docs/performance.md.
"""
import collections
import os
import threading

import numba
import numpy as np
from numba import njit, prange

from .shapes import conv2d_output_shape

if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):  # the user's choice wins
    numba.config.THREADING_LAYER = "default"  # the first of the priority list that loads
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]

from .im2col import RELU_RULES  # noqa: E402 (the code passed to a kernel is the rule's position in it)


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
    return _col2im(np.ascontiguousarray(cols), n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo)


# ---------------------------------------------------------------------------------------------
# convolution in tiles: im2col, matrix product and store, one small tile at a time
# ---------------------------------------------------------------------------------------------
# im2col(x) followed by one big GEMM is the clearest way to write a convolution, but the columns
# are C*kh*kw times larger than x (151 MB for a 16->16 3x3 conv of 64 images of 64x64) and travel
# through memory twice. The kernels below compute the same numbers tile by tile: a tile is one
# sample and a band of output rows (see _tile_columns, _bands); its columns are built in a buffer
# that stays in the core's cache, multiplied by the weights right away, and stored into y. One
# parallel loop hands each thread its own tiles and buffers, so only one thread pool is ever
# busy: BLAS runs single-threaded inside (see _blas_for_tiles).

TILE_COLUMNS = 256  # output positions per tile (at most), see _bands; more for small weights:
SMALL_GEMM = 10**6  # multiply-adds up to which OpenBLAS uses its kernel for small matrices, see _tile_columns
WEIGHT_GRAD_COLUMNS = 512  # output positions per band in conv2d_weight_grad, and the size of the
WEIGHT_GRAD_CHUNK_BYTES = 1 << 20  # largest chunk's columns: see conv2d_weight_grad


@njit(cache=True)
def _same_width_run(b, c, ch, h, w, i, j, ph, pw, oh0, top, bottom, first, last):
    """For a conv with stride 1 that keeps the width (Wo = W: "same" padding), the taps (i, j)
    of output rows top..bottom-1 are one run of consecutive numbers in x, and fill one run of
    consecutive places in the tile's row (c*kh*kw + i*kw + j): so they can move as one long copy
    instead of bottom - top short ones (for 16x16 images: 3x faster). Returns (start in the tile
    row, start in x_flat, length); the run goes from the first tap inside x in the top row to the
    last one in the bottom row. The places whose taps fall in the left/right padding (columns
    outside [first, last)) receive numbers from the neighbouring x row: _zero_outside clears them.
    """
    d = (top - oh0) * w + first
    s = ((b * c + ch) * h + top + i - ph) * w + first + j - pw
    length = (bottom - top) * w - first - (w - last)
    return d, s, length


@njit(cache=True)
def _zero_outside(row, start, stop, wo, first, last):
    """row[start:stop] holds output rows of Wo places each: zero the places outside [first, last) in each."""
    for d in range(start, stop, wo):
        for q in range(first):
            row[d + q] = 0
        for q in range(last, wo):
            row[d + q] = 0


@njit(cache=True)
def _im2col_tile(x, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, wo, cols):
    """The im2col columns of sample b, channels c0 <= c < c0 + kc and output rows oh0 <= oh < oh1
    only: cols (kc*kh*kw, (oh1-oh0)*Wo), kc given by the size of cols.

    The same numbers as im2col(x[b:b+1, c0:c0+kc])[:, oh0*Wo : oh1*Wo], written into a small buffer. Serial:
    each thread fills its own tiles. x must be C-contiguous. Three things make it fast on small
    images, where rows are short (each measured; together, for shape (b): 4.1 -> 0.4 ms per batch):
    the window offset (i, j) is the outer loop and the channel the inner one, so that _valid_range
    runs 2*kh*kw times per tile instead of twice per row; a "same" conv copies whole bands at once
    (_same_width_run); other short rows are copied by a plain loop, since the vectorised
    _copy_into only pays off from a few dozen numbers on.
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    kc = cols.shape[0] // (kh * kw)
    x_flat = x.reshape(-1)  # x[b, ch, r, q] = x_flat[((b*C + ch)*H + r)*W + q]
    for i in range(kh):
        top, bottom = _valid_range(i, sh, ph, h, oh1)  # output rows whose tap row is inside x ...
        top = min(max(top, oh0), oh1)  # ... and inside this tile
        bottom = min(max(bottom, top), oh1)
        for j in range(kw):
            first, last = _valid_range(j, sw, pw, w, wo)  # output columns whose tap is inside x
            first, last = min(first, wo), min(last, wo)
            for ch in range(kc):
                row = cols[(ch * kh + i) * kw + j]
                row[: (top - oh0) * wo] = 0  # windows whose tap lies in the top padding
                row[(bottom - oh0) * wo :] = 0  # ... in the bottom padding
                if sh == 1 and sw == 1 and wo == w and top < bottom and first < last:  # see _same_width_run
                    d, s, length = _same_width_run(b, c, c0 + ch, h, w, i, j, ph, pw, oh0, top, bottom, first, last)
                    _copy_into(row[d : d + length], x_flat[s : s + length])
                    _zero_outside(row, (top - oh0) * wo, (bottom - oh0) * wo, wo, first, last)
                    continue
                for oh in range(top, bottom):
                    d = (oh - oh0) * wo  # where output row oh starts in this tile
                    s = ((b * c + c0 + ch) * h + oh * sh + i - ph) * w + first * sw + j - pw  # its first tap
                    for q in range(first):  # taps in the left padding
                        row[d + q] = 0
                    for q in range(last, wo):  # ... in the right padding
                        row[d + q] = 0
                    if sw == 1 and last - first >= 32:
                        _copy_into(row[d + first : d + last], x_flat[s : s + last - first])
                    else:
                        for q in range(last - first):
                            row[d + first + q] = x_flat[s + q * sw]


@njit(cache=True)
def _tile_rows(tile, bands, ho):
    """Tile number -> (sample, first output row, stop row): each sample is cut into `bands` bands
    of output rows, band k covering rows k*Ho//bands to (k+1)*Ho//bands."""
    b, band = tile // bands, tile % bands
    return b, band * ho // bands, (band + 1) * ho // bands


@njit(cache=True)
def _conv2d_tile(x, w2d, bias, b, oh0, oh1, kh, kw, sh, sw, ph, pw, cols, product, y):
    """One tile of conv2d: y[b, :, oh0:oh1, :] = w2d @ (the tile's im2col columns) + bias.

    A serial function of contiguous arrays, so that np.dot hands them to BLAS without copying
    (inside a parallel loop, slices lose the knowledge that they are contiguous)."""
    _, f, ho, wo = y.shape
    _im2col_tile(x, b, 0, oh0, oh1, kh, kw, sh, sw, ph, pw, wo, cols)
    np.dot(w2d, cols, product)  # (F, C*kh*kw) @ (C*kh*kw, m) -> (F, m), one BLAS call
    y_flat = y.reshape(-1)
    m = product.shape[1]
    for g in range(f):  # y[b, g, oh0:oh1, :] is m consecutive numbers of y
        start = ((b * f + g) * ho + oh0) * wo
        _add_bias_into(y_flat[start : start + m], product[g], bias[g])


@njit(cache=True)
def _add_bias_into(dst, src, bias):
    """dst[k] = src[k] + bias for all k (1D arrays of one length); a loop from 0, vectorised."""
    for k in range(src.size):
        dst[k] = src[k] + bias


@njit(parallel=True, cache=True)
def _conv2d_tiled(x, w2d, bias, kh, kw, sh, sw, ph, pw, ho, wo, bands, most, scratch):
    """The loops of conv2d (see there): x (N, C, H, W), w2d (F, C*kh*kw), bias (F,) -> y (N, F, Ho, Wo);
    most: the columns of the largest tile; scratch (threads, (C*kh*kw + F) * most): each thread's buffers."""
    n = x.shape[0]
    f, k = w2d.shape
    threads = scratch.shape[0]
    y = np.empty((n, f, ho, wo), dtype=x.dtype)
    for t in prange(threads):  # one iteration per thread, with its own buffers
        cols_buffer = scratch[t, : k * most]
        product_buffer = scratch[t, k * most : (k + f) * most]
        for tile in range(t, n * bands, threads):  # tiles t, t + threads, ...: each writes its own part of y
            b, oh0, oh1 = _tile_rows(tile, bands, ho)
            m = (oh1 - oh0) * wo
            cols = cols_buffer[: k * m].reshape(k, m)
            product = product_buffer[: f * m].reshape(f, m)
            _conv2d_tile(x, w2d, bias, b, oh0, oh1, kh, kw, sh, sw, ph, pw, cols, product, y)
    return y


@njit(cache=True)
def _gather_band(a, b, oh0, band):
    """band (F, m) = a[b, :, oh0 : oh0 + m // Wo, :] of a (N, F, Ho, Wo): one band of output rows of
    every channel of sample b, as one contiguous matrix (each channel's part is m consecutive numbers)."""
    _, f, ho, wo = a.shape
    a_flat = a.reshape(-1)
    m = band.shape[1]
    for g in range(f):
        start = ((b * f + g) * ho + oh0) * wo
        _copy_into(band[g], a_flat[start : start + m])


@njit(cache=True)
def _weight_grad_tile(dy, x, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, cols, dy_tile, product, dw_t_rows):
    """One tile of the transposed weight gradient, channels c0 <= c < c0 + kc of sample b, output
    rows oh0 <= oh < oh1: dw_t_rows (kc*kh*kw, F) += cols (kc*kh*kw, m) @ dy[b, :, oh0:oh1, :].T (m, F).

    dw_t is dw transposed, (C*kh*kw, F): its rows for a chunk of channels are one contiguous block,
    and BLAS was 10-30% faster on the benchmark and shapes_vgg tiles in this orientation than
    computing dy_tile @ cols.T (measured, one thread)."""
    _im2col_tile(x, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, dy.shape[3], cols)
    _gather_band(dy, b, oh0, dy_tile)
    np.dot(cols, dy_tile.T, product)  # dy_tile.T: BLAS reads dy_tile transposed, no copy
    _add_into(dw_t_rows.reshape(-1), product.reshape(-1))


@njit(cache=True)
def _transpose_into(dst, src):
    """dst = src.T for src (R, F) and dst (F, R) (dst may be a slice of a larger array), in 32 x 32
    blocks: a block's rows of src and of dst stay in cache while it is copied."""
    r, f = src.shape
    for r0 in range(0, r, 32):
        for g0 in range(0, f, 32):
            for g in range(g0, min(g0 + 32, f)):
                for k in range(r0, min(r0 + 32, r)):
                    dst[g, k] = src[k, g]


@njit(parallel=True, cache=True)
def _conv2d_weight_grad_tiled(dy, x, kh, kw, sh, sw, ph, pw, chunks, band, most, scratch):
    """The loops of conv2d_weight_grad (see there): dy (N, F, Ho, Wo), x (N, C, H, W) -> dw (F, C*kh*kw);
    most: the rows of the largest chunk's columns; scratch (threads, (most + F) * band*Wo + 2 * most * F)."""
    n, f, ho, wo = dy.shape
    c = x.shape[1]
    threads = scratch.shape[0]
    dw = np.empty((f, c * kh * kw), dtype=x.dtype)
    m = band * wo
    for t in prange(threads):  # one iteration per thread, with its own buffers
        cols_buffer = scratch[t, : most * m]
        dy_buffer = scratch[t, most * m : (most + f) * m]
        product_buffer = scratch[t, (most + f) * m : (most + f) * m + most * f]
        sum_buffer = scratch[t, (most + f) * m + most * f : (most + f) * m + 2 * most * f]
        for chunk in range(t, chunks, threads):  # a chunk of x's channels: its columns of dw
            c0, c1 = chunk * c // chunks, (chunk + 1) * c // chunks  # belong to this thread alone
            rows = (c1 - c0) * kh * kw
            dw_t_rows = sum_buffer[: rows * f].reshape(rows, f)  # the chunk's rows of dw.T
            dw_t_rows[:] = 0
            for b in range(n):  # every sample and every band of output rows adds to them
                for oh0 in range(0, ho, band):
                    oh1 = min(oh0 + band, ho)
                    k = (oh1 - oh0) * wo
                    _weight_grad_tile(dy, x, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw,
                                      cols_buffer[: rows * k].reshape(rows, k), dy_buffer[: f * k].reshape(f, k),
                                      product_buffer[: rows * f].reshape(rows, f), dw_t_rows)
            _transpose_into(dw[:, c0 * kh * kw : c1 * kh * kw], dw_t_rows)
    return dw


@njit(cache=True)
def _col2im_tile(cols, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, wo, x):
    """The adjoint of _im2col_tile: add cols (kc*kh*kw, (oh1-oh0)*Wo), the columns of channels
    c0 <= c < c0 + kc of sample b and output rows oh0 <= oh < oh1, back onto x[b, c0:c0+kc]
    (taps in the padding are dropped). Same loops as _im2col_tile, with += instead of =."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    kc = cols.shape[0] // (kh * kw)
    x_flat = x.reshape(-1)
    for i in range(kh):
        top, bottom = _valid_range(i, sh, ph, h, oh1)
        top = min(max(top, oh0), oh1)
        bottom = min(max(bottom, top), oh1)
        for j in range(kw):
            first, last = _valid_range(j, sw, pw, w, wo)
            first, last = min(first, wo), min(last, wo)
            for ch in range(kc):
                row = cols[(ch * kh + i) * kw + j]
                if sh == 1 and sw == 1 and wo == w and top < bottom and first < last:  # see _same_width_run
                    d, s, length = _same_width_run(b, c, c0 + ch, h, w, i, j, ph, pw, oh0, top, bottom,
                                                   first, last)
                    _zero_outside(row, (top - oh0) * wo, (bottom - oh0) * wo, wo, first, last)  # our scratch
                    _add_into(x_flat[s : s + length], row[d : d + length])
                    continue
                for oh in range(top, bottom):
                    d = (oh - oh0) * wo
                    s = ((b * c + c0 + ch) * h + oh * sh + i - ph) * w + first * sw + j - pw
                    if sw == 1 and last - first >= 32:
                        _add_into(x_flat[s : s + last - first], row[d + first : d + last])
                    else:
                        for q in range(last - first):
                            x_flat[s + q * sw] += row[d + first + q]


@njit(cache=True)
def _conv_transpose2d_tile(y, w2d_t, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, y_tile, cols, x):
    """One band of one tile: x[b, c0:c0+kc] += col2im(w2d_t (kc*kh*kw, F) @ y[b, :, oh0:oh1, :])."""
    _gather_band(y, b, oh0, y_tile)
    np.dot(w2d_t, y_tile, cols)  # (kc*kh*kw, F) @ (F, m): every y value times its filters
    _col2im_tile(cols, b, c0, oh0, oh1, kh, kw, sh, sw, ph, pw, y.shape[3], x)


@njit(parallel=True, cache=True)
def _conv_transpose2d_tiled(y, w2d_t, bias, h, w, kh, kw, sh, sw, ph, pw, chunks, band, most, scratch):
    """The loops of conv_transpose2d (see there): y (N, F, Ho, Wo), w2d_t = w.reshape(F, -1).T
    (C*kh*kw, F), bias (C,) -> x (N, C, H, W); scratch (threads, (F + most) * band*Wo), most = the
    rows of the largest chunk's columns."""
    n, f, ho, wo = y.shape
    c = w2d_t.shape[0] // (kh * kw)
    threads = scratch.shape[0]
    x = np.empty((n, c, h, w), dtype=y.dtype)
    m = band * wo
    for t in prange(threads):  # one iteration per thread, with its own buffers
        y_buffer = scratch[t, : f * m]
        cols_buffer = scratch[t, f * m : (f + most) * m]
        for tile in range(t, n * chunks, threads):  # a tile: one sample, a chunk of x's channels
            b, chunk = tile // chunks, tile % chunks
            c0, c1 = chunk * c // chunks, (chunk + 1) * c // chunks
            for ch in range(c0, c1):  # this tile owns x[b, c0:c1]: no other thread writes there
                x[b, ch] = bias[ch]
            rows = (c1 - c0) * kh * kw
            for oh0 in range(0, ho, band):  # bands of y rows, one after another: their
                oh1 = min(oh0 + band, ho)  # windows overlap in x, so they stay in this thread
                positions = (oh1 - oh0) * wo  # this band's (the last band may be shorter than m)
                y_tile = y_buffer[: f * positions].reshape(f, positions)
                cols = cols_buffer[: rows * positions].reshape(rows, positions)
                _conv_transpose2d_tile(y, w2d_t[c0 * kh * kw : c1 * kh * kw], b, c0, oh0, oh1,
                                       kh, kw, sh, sw, ph, pw, y_tile, cols, x)
    return x


_BLAS_READY = False


def _blas_for_tiles():
    """Make the BLAS that np.dot calls inside Numba kernels single-threaded; return the thread count.

    np.dot in a Numba kernel calls SciPy's copy of OpenBLAS (not NumPy's). The tiled kernels
    already keep every core busy with a tile each; if that BLAS also started its own threads, the
    two pools would fight over the cores (measured on the busy
    2-core machine: up to 100x slower). NumPy's BLAS (`@` outside the kernels) keeps its threads.
    SciPy's wheels ship OpenBLAS in scipy.libs (Linux, Windows) or scipy/.dylibs (macOS); for
    another build of SciPy a warning says so: the results stay the same, only the speed suffers.
    """
    global _BLAS_READY
    if not _BLAS_READY:
        import ctypes
        import glob
        import warnings

        import scipy
        import scipy.linalg.cython_blas  # noqa: F401 (loads the library, as Numba's np.dot will)

        package = os.path.dirname(scipy.__file__)
        found = False
        for folder in (os.path.join(os.path.dirname(package), "scipy.libs"), os.path.join(package, ".dylibs")):
            for path in glob.glob(os.path.join(folder, "*openblas*")):
                library = ctypes.CDLL(path)
                for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
                    if hasattr(library, name):
                        getattr(library, name)(1)
                        found = True
                        break
        if not found:
            warnings.warn("minicnn could not find SciPy's OpenBLAS to make it single-threaded inside its "
                          "convolution kernels; they may run slowly (results are not affected)", stacklevel=3)
        _BLAS_READY = True
    return numba.get_num_threads()


_SCRATCH = threading.local()  # one scratch buffer per Python thread that calls the kernels


def _scratch(threads, per_thread, dtype):
    """A (threads, per_thread) array of scratch space for the tiled kernels, kept between calls.

    Why: a kernel that allocated its buffers on every call handed them back at
    the end, and glibc returns freed blocks of a few MB to the OS, so the next call faulted them in
    again at ~5 GB/s. Measured, weight gradient of benchmark e: 6.3 ms with fresh buffers, 3.8 ms with
    kept ones. So the buffers are cut from one block that grows to the largest size asked for and
    stays (a few MB; ~20 MB after VGG16), one block per Python thread (two threads never share one).
    Each thread's row starts on a 64-byte cache line, so no two threads write to one line.
    """
    itemsize = np.dtype(dtype).itemsize
    per_thread = -(-per_thread * itemsize // 64) * 64 // itemsize  # round up to whole cache lines
    block = getattr(_SCRATCH, "block", None)
    need = threads * per_thread * itemsize + 64
    if block is None or block.size < need:
        block = _SCRATCH.block = np.empty(need, dtype=np.uint8)
    start = -block.ctypes.data % 64  # the first cache-line boundary in the block
    return block[start : start + threads * per_thread * itemsize].view(dtype).reshape(threads, per_thread)


def _tile_columns(f, k):
    """Output positions per tile when each tile multiplies (F, k) by (k, positions), or the transpose.

    TILE_COLUMNS, except for small weights: OpenBLAS multiplies matrices of at most ~10**6
    multiply-adds with a kernel of its own that skips packing them, much faster at these sizes;
    so a layer with few filters gets tiles just under that size, as wide as they then can be.
    Measured, one thread, 64 samples of 64x64 (shapes_vgg's first block), F=8, k=72: 13.5 ms with
    whole samples (4096 columns), 7.2 ms with 256 columns, 5.9 ms with 1024; F=16, k=144: 21 ms
    at 256 columns (590 000 multiply-adds), 29 ms at 512 (1.2 million).
    """
    small = SMALL_GEMM // max(1, f * k)  # positions that keep the product under SMALL_GEMM
    return max(1, small if small >= TILE_COLUMNS // 2 else TILE_COLUMNS)


def _bands(n, ho, wo, threads, columns):
    """How many bands of output rows to cut each sample into (every tile is one band of one sample):
    - so that a tile has at most `columns` output positions (from _tile_columns), i.e. that many
      columns of im2col: with TILE_COLUMNS they stay in the core's L2 cache from im2col to GEMM
      for C*kh*kw up to ~2000. Measured (one thread, tiles of 128 to 4096 columns): 256 was the
      fastest or within 15% of it for every benchmark shape and shapes_vgg layer;
    - and, where possible, into a number of tiles that the threads can share evenly (N=1 with
      3 bands on 2 threads would leave one thread idle a third of the time).
    """
    if n == 0:
        return 1
    bands = -(-(ho * wo) // columns)  # ceil
    per_thread = -(-(n * bands) // threads)
    bands = -(-(per_thread * threads) // n)
    return max(1, min(bands, ho))


def conv2d(x, w, b, stride, padding):
    """y = conv2d(x, w) + b: x (N, C, H, W), w (F, C, kh, kw), b (F,) or None -> y (N, F, Ho, Wo).

    y[n, f, oh, ow] = sum over (c, i, j) of w[f, c, i, j] * x_padded[n, c, oh*sh + i, ow*sw + j] + b[f];
    stride and padding are (h, w) pairs. The same numbers as w.reshape(F, -1) @ im2col(x), computed
    tile by tile (see the section comment above). NumPy twin: minicnn.im2col.conv2d.
    """
    (sh, sw), (ph, pw) = stride, padding
    f, c, kh, kw = w.shape
    n = x.shape[0]
    ho, wo = conv2d_output_shape(x.shape[2:], (kh, kw), stride, padding)
    threads = _blas_for_tiles()
    bands = _bands(n, ho, wo, threads, _tile_columns(f, c * kh * kw))
    bias = np.zeros(f, dtype=x.dtype) if b is None else np.ascontiguousarray(b)
    w2d = np.ascontiguousarray(w).reshape(f, -1)
    most = -(-ho // bands) * wo  # columns of the largest tile
    scratch = _scratch(threads, (c * kh * kw + f) * most, x.dtype)
    return _conv2d_tiled(np.ascontiguousarray(x), w2d, bias, kh, kw, sh, sw, ph, pw, ho, wo, bands, most, scratch)


def conv_transpose2d(y, w, b, output_hw, stride, padding):
    """x = col2im(w.reshape(F, -1).T @ y_rows) + b: the transpose (adjoint) of conv2d with weights w.

    y (N, F, Ho, Wo), w (F, C, kh, kw), b (C,) or None -> x (N, C, H, W), (H, W) = output_hw (the
    input size of the forward conv: a strided conv maps several sizes to one). Tiles are (sample,
    chunk of x's channels): a tile owns its part of x, and adds its columns onto it band by band
    (the bands' windows overlap, which is why they stay in one thread). N=1 is shared among the
    threads by cutting the channels into chunks. NumPy twin: minicnn.im2col.conv_transpose2d.
    """
    (sh, sw), (ph, pw) = stride, padding
    f, c, kh, kw = w.shape
    n, _, ho, wo = y.shape
    h, wd = output_hw
    threads = _blas_for_tiles()
    per_thread = -(-n // threads)  # samples per thread (ceil); as in _bands, cut the samples into
    chunks = -(-(per_thread * threads) // n) if n else 1  # chunks only to share them out evenly
    chunks = max(1, min(chunks, c))
    columns = _tile_columns(f, -(-c // chunks) * kh * kw)  # per band (see _bands)
    band = max(1, min(ho, columns // wo))  # rows of y per band
    bias = np.zeros(c, dtype=y.dtype) if b is None else np.ascontiguousarray(b)
    w2d_t = np.ascontiguousarray(w.reshape(f, -1).T)  # (C*kh*kw, F)
    most = -(-c // chunks) * kh * kw  # rows of the largest chunk's columns
    scratch = _scratch(threads, (f + most) * band * wo, y.dtype)
    return _conv_transpose2d_tiled(np.ascontiguousarray(y), w2d_t, bias, h, wd, kh, kw, sh, sw, ph, pw,
                                   chunks, band, most, scratch)


def conv2d_weight_grad(dy, x, kernel_size, stride, padding):
    """dw (F, C, kh, kw) of y = conv2d(x, w) given dy (N, F, Ho, Wo): dy_rows @ im2col(x).T.

    dw[f, c, i, j] = sum over (n, oh, ow) of dy[n, f, oh, ow] * x_padded[n, c, oh*sh + i, ow*sw + j].
    Computed tile by tile, as dw.T = im2col(x) @ dy_rows.T: each thread owns chunks of x's channels
    (their rows of dw.T, i.e. their columns of dw), and adds into them the product of every (sample,
    band of WEIGHT_GRAD_COLUMNS output positions); a chunk's columns are at most
    WEIGHT_GRAD_CHUNK_BYTES, so that they stay in the core's cache (measured over 8 shapes, bands of
    256-2048 positions x chunks of 0.25-2 MB: this pair was within 4% of each shape's best on average).
    Measured on the 2-core machine, ms, against the first tiled design (tiles of samples, one partial
    dw per thread, summed at the end): N=1 256->256 28x28 (benchmark e) 5.3-8.0 -> 4.6-5.2;
    N=1 512->512 14x14 (a VGG16 layer) 19.6 -> 5.2-6.1; N=64 16->16 64x64 (shapes_vgg) 13.2 -> 9.0-9.7;
    benchmarks b and c about the same (1.9, 10). With fewer channels than threads (RGB input)
    a thread may have less to do than another.
    NumPy twin: minicnn.im2col.conv2d_weight_grad.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, f, ho, wo = dy.shape
    c = x.shape[1]
    threads = _blas_for_tiles()
    band = max(1, min(ho, WEIGHT_GRAD_COLUMNS // max(1, wo)))  # rows of dy per band
    most_rows = max(kh * kw, WEIGHT_GRAD_CHUNK_BYTES // max(1, band * wo * x.itemsize))  # of a chunk's columns
    chunks = -(-(c * kh * kw) // most_rows)  # chunks of x's channels, as many as that takes ...
    chunks = max(1, min(c, -(-chunks // threads) * threads))  # ... rounded up to share them evenly
    most = -(-c // chunks) * kh * kw  # rows of the largest chunk's columns
    scratch = _scratch(threads, (most + f) * band * wo + 2 * most * f, x.dtype)
    dw = _conv2d_weight_grad_tiled(np.ascontiguousarray(dy), np.ascontiguousarray(x),
                                   kh, kw, sh, sw, ph, pw, chunks, band, most, scratch)
    return dw.reshape(f, c, kh, kw)


def im2col_tile(x, sample, rows, kernel_size, stride, padding):
    """The im2col columns of one sample and a band of output rows [start, stop): (C*kh*kw, (stop-start)*Wo).

    What the tiled kernels build, one tile at a time (exposed for the tests).
    NumPy twin: minicnn.im2col.im2col_tile.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = conv2d_output_shape(x.shape[2:], kernel_size, stride, padding)
    start, stop = rows
    if not 0 <= start <= stop <= ho or not 0 <= sample < x.shape[0]:
        raise ValueError(f"sample {sample} and rows {rows} must lie in [0, {x.shape[0]}) and [0, {ho}]")
    cols = np.empty((x.shape[1] * kh * kw, (stop - start) * wo), dtype=x.dtype)
    _im2col_tile(np.ascontiguousarray(x), sample, 0, start, stop, kh, kw, sh, sw, ph, pw, wo, cols)
    return cols


# ---------------------------------------------------------------------------------------------
# Winograd F(4x4, 3x3): a 3x3 stride-1 convolution with 36 multiplications per 4x4 outputs, not 144
# ---------------------------------------------------------------------------------------------
# The algorithm and its readable NumPy form: minicnn.winograd (conv2d(..., m=4) there computes
# what winograd_conv2d here computes). The output is cut into 4x4 tiles; each reads a 6x6 tile of
# the padded input. The tiles are cut into blocks of about WINOGRAD_TILES_PER_BLOCK; a thread
# takes a block and does all of it while its data stays in the core's cache:
#   V = B^T d B   for every tile and channel of the block          (36, C, tiles)
#   M[k] = U[k] @ V[k]   for each of the 36 transformed positions   (F, C) @ (C, tiles), one BLAS call
#   Y = A^T M A + bias   stored into y                              (N, F, Ho, Wo)
# with U = G g G^T, the transformed filters (36, F, C), kept between calls (_winograd_filters_of).
# Each of the 36 is a row of a (36, row) buffer, the (C, tiles) or (F, C) matrix in its first
# entries (rows spread over the cache sets: _spread_rows). One parallel loop over the blocks is the
# only thread pool; BLAS runs single-threaded inside it (see _blas_for_tiles). The transforms are
# written out for F(4, 3): B^T, G and A^T are the matrices of minicnn.winograd.transforms(4),
# applied to the columns, then the rows, of each 6x6 tile. float32 or float64 (the constants are
# exact in both).

WINOGRAD_TILES_PER_BLOCK = 96


@njit(cache=True)
def _bt6(d0, d1, d2, d3, d4, d5):
    """B^T d for one column (or row) of 6 inputs of an F(4, 3) tile -> 6 numbers."""
    two, four, five = np.float32(2), np.float32(4), np.float32(5)
    return (four * d0 - five * d2 + d4,
            d3 + d4 - four * (d1 + d2),
            four * (d1 - d2) - d3 + d4,
            two * (d3 - d1) - d2 + d4,
            two * (d1 - d3) - d2 + d4,
            four * d1 - five * d3 + d5)


@njit(cache=True)
def _at6(m0, m1, m2, m3, m4, m5):
    """A^T m for one column (or row) of 6 transformed products of an F(4, 3) tile -> 4 outputs."""
    two, four, eight = np.float32(2), np.float32(4), np.float32(8)
    plus, minus = m1 + m2, m1 - m2
    plus2, minus2 = m3 + m4, m3 - m4
    return m0 + plus + plus2, minus + two * minus2, plus + four * plus2, minus + eight * minus2 + m5


@njit(cache=True)
def _g3(g0, g1, g2):
    """G g for one column (or row) of 3 filter weights -> 6 numbers. (Constants exact in float32, and
    a division by 6 rather than a product with a rounded 1/6: float64 filters stay exact to float64.)"""
    quarter, half, six = np.float32(0.25), np.float32(0.5), np.float32(6)
    outer = g0 + g2
    return (quarter * g0, -(outer + g1) / six, -(outer - g1) / six,
            (quarter * g0 + half * g1 + g2) / six, (quarter * g0 - half * g1 + g2) / six, g2)


@njit(parallel=True, cache=True)
def _winograd_filters(w, u):
    """U = G g G^T of every filter: w (F, C, 3, 3) -> u (36, >= F*C): u[6k + l, f*C + c] = (G w[f, c] G^T)[k, l]."""
    f, c = w.shape[0], w.shape[1]
    for g in prange(f):
        half = np.empty((6, 3), dtype=w.dtype)  # G w[g, ch]
        for ch in range(c):
            for j in range(3):
                a0, a1, a2, a3, a4, a5 = _g3(w[g, ch, 0, j], w[g, ch, 1, j], w[g, ch, 2, j])
                half[0, j], half[1, j], half[2, j], half[3, j], half[4, j], half[5, j] = a0, a1, a2, a3, a4, a5
            at = g * c + ch
            for k in range(6):
                b0, b1, b2, b3, b4, b5 = _g3(half[k, 0], half[k, 1], half[k, 2])
                u[6 * k, at], u[6 * k + 1, at], u[6 * k + 2, at] = b0, b1, b2
                u[6 * k + 3, at], u[6 * k + 4, at], u[6 * k + 5, at] = b3, b4, b5


def _spread_rows(row_items, itemsize):
    """A row length (in items) of at least row_items that starts every row of a (36, length) buffer
    64 bytes further into a 4 KiB page than the one before. The Winograd kernels read and write the 36
    rows at once; rows a multiple of 4 KiB apart would all fall into one set of the core's L1 cache
    and evict each other (measured, input transform of shape (c): 175 ns per tile and channel
    with rows 24 KiB apart)."""
    row_bytes = -(-max(row_items * itemsize - 64, 0) // 4096) * 4096 + 64
    return row_bytes // itemsize


@njit(cache=True)
def _tile_origin(tile, tiles_h, tiles_w, padding):
    """Tile number (sample-major, then rows, then columns of tiles) -> (sample, top row, left column)
    of its 6x6 input tile in x (negative or past the edge where it reaches into the padding)."""
    b, rest = tile // (tiles_h * tiles_w), tile % (tiles_h * tiles_w)
    return b, (rest // tiles_w) * 4 - padding, (rest % tiles_w) * 4 - padding


@njit(cache=True)
def _input_band(x, b, ch, top, left, band):
    """band (6, width) = rows top..top+5, columns left..left+width-1 of x[b, ch], 0 outside x."""
    h, w = x.shape[2], x.shape[3]
    width = band.shape[1]
    start, stop = min(max(0, -left), width), max(0, min(width, w - left))  # the columns inside x
    for i in range(6):
        r = top + i
        if r < 0 or r >= h or start >= stop:
            band[i] = 0
            continue
        band[i, :start] = 0
        band[i, stop:] = 0
        row = x[b, ch, r]
        for q in range(start, stop):
            band[i, q] = row[left + q]


@njit(cache=True)
def _winograd_input_tiles(x, c0, c1, first, count, padding, tiles_h, tiles_w, band, v):
    """v[:, (ch - c0)*count + t] = B^T d B (flattened 6x6) for the channels c0 <= ch < c1 and the tiles
    first + t, t < count, of x; v (36, >= (c1 - c0)*count); band (6, >= 4*count + 2) scratch.

    The tiles of one row of tiles overlap and share their 6 input rows: B^T is applied to the columns
    of that band of rows once, for all its tiles at a time (a loop the compiler vectorises), then B to
    the rows of each tile."""
    for ch in range(c0, c1):
        t = 0
        while t < count:  # a run of tiles in one row of tiles
            b, top, left = _tile_origin(first + t, tiles_h, tiles_w, padding)
            run = min(count - t, tiles_w - (first + t) % tiles_w)
            rows = band[:, : 4 * run + 2]
            _input_band(x, b, ch, top, left, rows)
            for q in range(4 * run + 2):  # B^T d: the columns of the whole band
                rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q] = _bt6(
                    rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q])
            for s in range(run):  # (B^T d) B: the rows of each tile
                at, o = (ch - c0) * count + t + s, 4 * s
                for k in range(6):
                    e0, e1, e2, e3, e4, e5 = _bt6(rows[k, o], rows[k, o + 1], rows[k, o + 2], rows[k, o + 3],
                                                  rows[k, o + 4], rows[k, o + 5])
                    v[6 * k, at], v[6 * k + 1, at], v[6 * k + 2, at] = e0, e1, e2
                    v[6 * k + 3, at], v[6 * k + 4, at], v[6 * k + 5, at] = e3, e4, e5
            t += run


@njit(cache=True)
def _winograd_output_tiles(products, bias, first, count, tiles_h, tiles_w, f0, f1, band, y):
    """y's 4x4 tiles first + t, t < count, filters f0 <= g < f1: A^T M A + bias[g],
    M = products[:, (g - f0)*count + t] (6x6, flattened); products (36, >= (f1 - f0)*count); band
    (6, >= 4*count) scratch. The parts of a tile past the last row / column of y are dropped.

    As in _winograd_input_tiles, the tiles of one row of tiles share a band: A is applied to the rows
    of each tile, then A^T to the columns of the whole band at a time, which are stored as rows of y."""
    ho, wo = y.shape[2], y.shape[3]
    for g in range(f0, f1):
        t = 0
        while t < count:
            b, top, left = _tile_origin(first + t, tiles_h, tiles_w, 0)
            run = min(count - t, tiles_w - (first + t) % tiles_w)
            for s in range(run):  # M A: the rows of each tile
                at, o = (g - f0) * count + t + s, 4 * s
                for k in range(6):
                    band[k, o], band[k, o + 1], band[k, o + 2], band[k, o + 3] = _at6(
                        products[6 * k, at], products[6 * k + 1, at], products[6 * k + 2, at],
                        products[6 * k + 3, at], products[6 * k + 4, at], products[6 * k + 5, at])
            width = min(4 * run, wo - left)
            rows = min(4, ho - top)
            for q in range(width):  # A^T (M A): the columns of the whole band, stored row by row
                o0, o1, o2, o3 = _at6(band[0, q], band[1, q], band[2, q], band[3, q], band[4, q], band[5, q])
                band[0, q], band[1, q], band[2, q], band[3, q] = o0, o1, o2, o3
            for i in range(rows):
                _add_bias_into(y[b, g, top + i, left : left + width], band[i, :width], bias[g])
            t += run


@njit(cache=True)
def _winograd_block(x, u, bias, padding, tiles_h, tiles_w, first, count, f0, f1, v, products, y):
    """One block: tiles first .. first + count - 1, filters f0 <= g < f1: transform, multiply, store;
    u (36, >= F*C), v (36, >= C*count), products (36, >= (f1 - f0)*count). A serial function, so
    that np.dot hands the contiguous matrices to BLAS without copying."""
    c = x.shape[1]
    band = np.empty((6, 4 * count + 2), dtype=x.dtype)
    _winograd_input_tiles(x, 0, c, first, count, padding, tiles_h, tiles_w, band, v)
    for k in range(36):  # (f1 - f0, C) @ (C, count): one BLAS call per transformed position
        np.dot(u[k, f0 * c : f1 * c].reshape(f1 - f0, c), v[k, : c * count].reshape(c, count),
               products[k, : (f1 - f0) * count].reshape(f1 - f0, count))
    _winograd_output_tiles(products, bias, first, count, tiles_h, tiles_w, f0, f1, band, y)


@njit(parallel=True, cache=True)
def _winograd_conv2d(x, u, f, bias, padding, ho, wo, tiles_h, tiles_w, blocks, chunks, v_row, products_row,
                     scratch):
    """The loops of winograd_conv2d (see there): x (N, C, H, W), u (36, >= F*C), bias (F,) -> y (N, F, Ho, Wo).
    The work is cut into blocks of tiles x chunks of filters; scratch (threads, 36 * (v_row + products_row)),
    rows of the buffers v (36, v_row), products (36, products_row)."""
    n = x.shape[0]
    tiles = n * tiles_h * tiles_w
    threads = scratch.shape[0]
    y = np.empty((n, f, ho, wo), dtype=x.dtype)
    for t in prange(threads):  # one iteration per thread, with its own buffers
        v = scratch[t, : 36 * v_row].reshape(36, v_row)
        products = scratch[t, 36 * v_row : 36 * (v_row + products_row)].reshape(36, products_row)
        for item in range(t, blocks * chunks, threads):  # each item writes its own tiles and filters of y
            block, chunk = item // chunks, item % chunks
            first = block * tiles // blocks
            count = (block + 1) * tiles // blocks - first
            _winograd_block(x, u, bias, padding, tiles_h, tiles_w, first, count, chunk * f // chunks,
                            (chunk + 1) * f // chunks, v, products, y)
    return y


def winograd_conv2d(x, w, b, padding):
    """y = conv2d(x, w) + b for 3x3 filters at stride 1 by Winograd's F(4x4, 3x3); x (N, C, H, W),
    w (F, C, 3, 3), b (F,) or None, padding an int (0, 1 or 2: the same on both axes)
    -> y (N, F, H + 2p - 2, W + 2p - 2). NumPy twin: minicnn.winograd.conv2d(x, w, b, padding, m=4).
    """
    return _winograd(x, _winograd_filters_of(w), w.shape[0], b, padding)


WINOGRAD_FILTER_CACHE_BYTES = 1 << 30  # at most this much memory for transformed filters (VGG16: ~0.6 GB)
_WINOGRAD_FILTERS = collections.OrderedDict()  # (address, shape, strides, dtype, layout) -> (copy of w, U)
_WINOGRAD_FILTERS_LOCK = threading.Lock()
WINOGRAD_FILTER_LAYOUTS = {  # which filters of w (F, C, 3, 3) are transformed, and for what
    "forward": lambda w: w,  # (F, C, 3, 3): conv2d
    "flipped": lambda w: w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3),  # (C, F, 3, 3): conv_transpose2d
    "swapped": lambda w: w.transpose(1, 0, 2, 3),  # (C, F, 3, 3): U^T, for the backward pass
}


def _winograd_filters_of(w, layout="forward"):
    """The transformed filters U (36, row >= F*C) of w (F, C, 3, 3) (see _winograd_filters) in one of
    WINOGRAD_FILTER_LAYOUTS: "forward", w's own; "flipped", of w's flipped filters with channels swapped,
    (C, F, 3, 3) (for conv_transpose2d); "swapped", of w with channels swapped, (C, F, 3, 3): U's
    transpose, u[k, c*F + f] (for winograd_conv2d_backward).

    Kept between calls: a network's weights are the same from one image to the next, and transforming
    VGG16's filters anew would cost more than a quarter of its forward pass. Every call compares w with
    the copy kept beside its U (a weight changed in place, as an optimizer does, is seen) and transforms
    anew if they differ; the least recently used entries go beyond WINOGRAD_FILTER_CACHE_BYTES."""
    key = (w.ctypes.data, w.shape, w.strides, w.dtype.str, layout)
    with _WINOGRAD_FILTERS_LOCK:
        kept = _WINOGRAD_FILTERS.get(key)
    if kept is not None and np.array_equal(kept[0], w):
        with _WINOGRAD_FILTERS_LOCK:
            if key in _WINOGRAD_FILTERS:
                _WINOGRAD_FILTERS.move_to_end(key)
        return kept[1]
    filters = np.ascontiguousarray(WINOGRAD_FILTER_LAYOUTS[layout](w))
    f, c = filters.shape[:2]
    u = np.empty((36, _spread_rows(f * c, w.itemsize)), dtype=w.dtype)
    _winograd_filters(filters, u)
    with _WINOGRAD_FILTERS_LOCK:
        _WINOGRAD_FILTERS[key] = (w.copy(), u)
        _WINOGRAD_FILTERS.move_to_end(key)
        while len(_WINOGRAD_FILTERS) > 1 and sum(a.nbytes + b.nbytes for a, b in _WINOGRAD_FILTERS.values()) \
                > WINOGRAD_FILTER_CACHE_BYTES:
            _WINOGRAD_FILTERS.popitem(last=False)
    return u


def _winograd(x, u, f, b, padding):
    """y (N, F, Ho, Wo) = the 3x3 stride-1 convolution of x whose transformed filters are u (see winograd_conv2d).

    Blocks of about WINOGRAD_TILES_PER_BLOCK tiles, as many as the threads at least; when there are
    fewer tiles than that (a small image, N = 1), the filters are cut into one chunk per thread
    instead, and each thread reads only its chunk's part of U (the input transform is then done
    by every thread). Measured, N=1 512->512 14x14 (VGG16's last block): 16.4 -> 11.2 ms of CPU time."""
    n, c, h, wd = x.shape
    ho, wo = h + 2 * padding - 2, wd + 2 * padding - 2
    tiles_h, tiles_w = -(-ho // 4), -(-wo // 4)
    threads = _blas_for_tiles()
    tiles = n * tiles_h * tiles_w
    blocks = -(-tiles // WINOGRAD_TILES_PER_BLOCK)
    if blocks < threads:
        chunks = min(f, threads)
    else:
        chunks = 1
        blocks = min(tiles, -(-blocks // threads) * threads)  # a multiple of the threads where possible
    most = -(-tiles // blocks)
    bias = np.zeros(f, dtype=x.dtype) if b is None else np.ascontiguousarray(b)
    v_row, products_row = _spread_rows(c * most, x.itemsize), _spread_rows(-(-f // chunks) * most, x.itemsize)
    scratch = _scratch(threads, 36 * (v_row + products_row), x.dtype)
    return _winograd_conv2d(np.ascontiguousarray(x), u, f, bias, padding, ho, wo, tiles_h, tiles_w, blocks, chunks,
                            v_row, products_row, scratch)


# ---------------------------------------------------------------------------------------------
# Winograd F(4x4, 3x3) backward: dx and dw in one pass over the tiles
# ---------------------------------------------------------------------------------------------
# The readable form and the algebra: minicnn.winograd.conv2d_backward (the same numbers). The tiles
# are those of the forward pass: dy's 4x4 tiles side by side, each with the 6x6 tile of the padded x
# it was computed from. Each thread owns a group of images and a chunk of x's channels (their part
# of dx) and its own sum M of dw's transformed products, and goes through its tiles in blocks:
#   Z = A dY A^T   for every tile and filter of the block             (36, F, tiles)
#   V = B^T d B    for every tile and channel of the chunk            (36, kc, tiles)
#   P[k] = U^T[k] @ Z[k]          (kc, F) @ (F, tiles), one BLAS call   dx's transformed tiles
#   M[k] += V[k] @ Z[k]^T         (kc, tiles) @ (tiles, F), one BLAS call dw's transformed sums
#   dx += B P B^T  added back onto every 6x6 input tile (neighbouring tiles overlap by 2)
# and at the end dw = G^T (M summed over the threads) G. U^T is the "swapped" layout of the filter
# cache (_winograd_filters_of). As for the forward pass, one parallel loop is the only thread pool.

WINOGRAD_BACKWARD_TILES_PER_BLOCK = 64


@njit(cache=True)
def _a4(y0, y1, y2, y3):
    """A y for one column (or row) of 4 outputs' gradients of an F(4, 3) tile -> 6 numbers (A = (A^T)^T)."""
    two, four, eight = np.float32(2), np.float32(4), np.float32(8)
    even, odd = y0 + four * y2, two * y1 + eight * y3
    return y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, even + odd, even - odd, y3


@njit(cache=True)
def _b6(p0, p1, p2, p3, p4, p5):
    """B p for one column (or row) of 6 transformed numbers of an F(4, 3) tile -> 6 (B = (B^T)^T)."""
    two, four, five = np.float32(2), np.float32(4), np.float32(5)
    return (four * p0,
            four * (p2 - p1 + p5) + two * (p4 - p3),
            -five * p0 - four * (p1 + p2) - p3 - p4,
            p1 - p2 + two * (p3 - p4) - five * p5,
            p0 + p1 + p2 + p3 + p4,
            p5)


@njit(cache=True)
def _gt6(m0, m1, m2, m3, m4, m5):
    """G^T m for one column (or row) of 6 transformed sums -> 3 filter gradients (divisions by 6 and 24,
    exact constants, as in _g3)."""
    four, six, twelve, twentyfour = np.float32(4), np.float32(6), np.float32(12), np.float32(24)
    plus, minus, plus2, minus2 = m1 + m2, m2 - m1, m3 + m4, m3 - m4
    return m0 / four - plus / six + plus2 / twentyfour, minus / six + minus2 / twelve, (plus2 - plus) / six + m5


@njit(cache=True)
def _a4_columns(dy_flat, start, wo, rows):
    """rows[:, q] = A y for the column y = dy_flat[start + q + i*wo], i = 0..3, of a band of 4 rows of a
    plane of width wo that lies inside it, for every q < rows.shape[1]."""
    for q in range(rows.shape[1]):
        s = start + q
        rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q] = _a4(
            dy_flat[s], dy_flat[s + wo], dy_flat[s + 2 * wo], dy_flat[s + 3 * wo])


@njit(cache=True)
def _winograd_gradient_tiles(dy, first, count, tiles_h, tiles_w, band, z):
    """z[:, g*count + t] = A dY A^T (flattened 6x6) for every filter g and the 4x4 tiles first + t,
    t < count, of dy (zeros past its last row / column); z (36, >= F*count), band (6, >= 4*count) scratch.
    As in _winograd_input_tiles, A is applied to the columns of a band of tiles at once, then to the rows."""
    f, ho, wo = dy.shape[1], dy.shape[2], dy.shape[3]
    dy_flat = dy.reshape(-1)
    for g in range(f):
        t = 0
        while t < count:  # a run of tiles in one row of tiles
            b, top, left = _tile_origin(first + t, tiles_h, tiles_w, 0)
            run = min(count - t, tiles_w - (first + t) % tiles_w)
            width, inside = 4 * run, min(4 * run, wo - left)
            rows = band[:, :width]
            if top + 4 <= ho and inside == width:  # inside dy: no copy
                _a4_columns(dy_flat, ((b * f + g) * ho + top) * wo + left, wo, rows)
            else:
                for i in range(4):
                    if top + i >= ho:
                        rows[i] = 0
                        continue
                    row = dy[b, g, top + i]
                    for q in range(inside):
                        rows[i, q] = row[left + q]
                    rows[i, inside:] = 0
                for q in range(width):  # A dY: the columns of the whole band
                    rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q] = _a4(
                        rows[0, q], rows[1, q], rows[2, q], rows[3, q])
            for s in range(run):  # (A dY) A^T: the rows of each tile
                at, o = g * count + t + s, 4 * s
                for k in range(6):
                    e0, e1, e2, e3, e4, e5 = _a4(rows[k, o], rows[k, o + 1], rows[k, o + 2], rows[k, o + 3])
                    z[6 * k, at], z[6 * k + 1, at], z[6 * k + 2, at] = e0, e1, e2
                    z[6 * k + 3, at], z[6 * k + 4, at], z[6 * k + 5, at] = e3, e4, e5
            t += run


@njit(cache=True)
def _winograd_add_input_tiles(p, first, count, padding, tiles_h, tiles_w, c0, c1, band, dx):
    """dx[b, ch] += B P B^T on the 6x6 input tile of each tile first + t, t < count, channels
    c0 <= ch < c1, P = p[:, (ch - c0)*count + t] (flattened 6x6); the parts in the padding are dropped;
    band (6, >= 4*count + 2) scratch. The adjoint of _winograd_input_tiles: B is applied to the rows of
    each tile, which are added into a band (neighbouring tiles overlap by 2 columns), then to the
    columns of the whole band, which is added onto dx (the next row of tiles overlaps it by 2 rows)."""
    h, w = dx.shape[2], dx.shape[3]
    for ch in range(c0, c1):
        t = 0
        while t < count:
            b, top, left = _tile_origin(first + t, tiles_h, tiles_w, padding)
            run = min(count - t, tiles_w - (first + t) % tiles_w)
            width = 4 * run + 2
            rows = band[:, :width]
            rows[:] = 0
            for s in range(run):  # P B^T: the rows of each tile
                at, o = (ch - c0) * count + t + s, 4 * s
                for k in range(6):
                    e0, e1, e2, e3, e4, e5 = _b6(p[6 * k, at], p[6 * k + 1, at], p[6 * k + 2, at],
                                                 p[6 * k + 3, at], p[6 * k + 4, at], p[6 * k + 5, at])
                    rows[k, o] += e0
                    rows[k, o + 1] += e1
                    rows[k, o + 2], rows[k, o + 3], rows[k, o + 4], rows[k, o + 5] = e2, e3, e4, e5
            for q in range(width):  # B (P B^T): the columns of the whole band
                rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q] = _b6(
                    rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q])
            start, stop = min(max(0, -left), width), max(0, min(width, w - left))  # the columns inside x
            for i in range(6):
                if 0 <= top + i < h and start < stop:
                    _add_into(dx[b, ch, top + i, left + start : left + stop], rows[i, start:stop])
            t += run


@njit(cache=True)
def _winograd_backward_block(dy, x, u_t, padding, tiles_h, tiles_w, first, count, c0, c1, z, v, p, product,
                             sums, band, dx):
    """One block: tiles first .. first + count - 1, channels c0 <= ch < c1: transform dy's and x's tiles,
    multiply, add dx's tiles onto dx and dw's products into sums (36, >= C*F); z (36, >= F*count),
    v and p (36, >= (c1 - c0)*count), product (>= (c1 - c0)*F) scratch. Serial, as _winograd_block."""
    f, kc = dy.shape[1], c1 - c0
    _winograd_gradient_tiles(dy, first, count, tiles_h, tiles_w, band, z)
    _winograd_input_tiles(x, c0, c1, first, count, padding, tiles_h, tiles_w, band, v)
    dw_t = product[: kc * f].reshape(kc, f)
    for k in range(36):
        z_k = z[k, : f * count].reshape(f, count)
        np.dot(u_t[k, c0 * f : c1 * f].reshape(kc, f), z_k, p[k, : kc * count].reshape(kc, count))
        np.dot(v[k, : kc * count].reshape(kc, count), z_k.T, dw_t)  # z_k.T: BLAS reads it transposed
        _add_into(sums[k, c0 * f : c1 * f], product[: kc * f])
    _winograd_add_input_tiles(p, first, count, padding, tiles_h, tiles_w, c0, c1, band, dx)


@njit(parallel=True, cache=True)
def _winograd_conv2d_backward(dy, x, u_t, padding, tiles_h, tiles_w, groups, chunks, block, z_row, v_row, sum_row,
                              scratch):
    """The loops of winograd_conv2d_backward (see there): dy (N, F, Ho, Wo), x (N, C, H, W), u_t (36, >= C*F)
    -> dx (N, C, H, W), and dw's transformed products: each thread's sums stay in its row of scratch
    (threads, 36 * (z_row + 2 * v_row + sum_row) + ...), at 36 * (z_row + 2 * v_row) (_winograd_filter_gradients)."""
    n, f = dy.shape[0], dy.shape[1]
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    threads = scratch.shape[0]
    dx = np.empty((n, c, h, w), dtype=dy.dtype)
    most = -(-c // chunks)  # channels of the largest chunk
    for t in prange(threads):  # one iteration per thread, with its own buffers
        row = scratch[t]
        z = row[: 36 * z_row].reshape(36, z_row)
        v = row[36 * z_row : 36 * (z_row + v_row)].reshape(36, v_row)
        p = row[36 * (z_row + v_row) : 36 * (z_row + 2 * v_row)].reshape(36, v_row)
        at = 36 * (z_row + 2 * v_row)
        sums = row[at : at + 36 * sum_row].reshape(36, sum_row)
        product = row[at + 36 * sum_row : at + 36 * sum_row + most * f]
        band = row[at + 36 * sum_row + most * f : at + 36 * sum_row + most * f + 6 * (4 * block + 2)].reshape(
            6, 4 * block + 2)
        sums[:] = 0
        for item in range(t, groups * chunks, threads):  # each item owns dx[its images, its channels]
            group, chunk = item // chunks, item % chunks
            b0, b1 = group * n // groups, (group + 1) * n // groups
            c0, c1 = chunk * c // chunks, (chunk + 1) * c // chunks
            dx[b0:b1, c0:c1] = 0
            last = b1 * tiles_h * tiles_w
            for first in range(b0 * tiles_h * tiles_w, last, block):
                _winograd_backward_block(dy, x, u_t, padding, tiles_h, tiles_w, first, min(block, last - first),
                                         c0, c1, z, v, p, product, sums, band, dx)
    return dx


@njit(parallel=True, cache=True)
def _winograd_filter_gradients(scratch, at, sum_row, f, c):
    """dw (F, C, 3, 3) = G^T M G, M[6k + l, ch*F + g] = the sums (36, sum_row) at `at` in every thread's
    row of scratch, added up."""
    dw = np.empty((f, c, 3, 3), dtype=scratch.dtype)
    threads = scratch.shape[0]
    for ch in prange(c):
        m = np.empty(36, dtype=scratch.dtype)
        half = np.empty((3, 6), dtype=scratch.dtype)
        for g in range(f):
            for k in range(36):
                total = scratch[0, at + k * sum_row + ch * f + g]
                for t in range(1, threads):
                    total += scratch[t, at + k * sum_row + ch * f + g]
                m[k] = total
            for l in range(6):  # G^T M: the columns
                half[0, l], half[1, l], half[2, l] = _gt6(m[l], m[6 + l], m[12 + l], m[18 + l], m[24 + l], m[30 + l])
            for i in range(3):  # (G^T M) G: the rows
                dw[g, ch, i, 0], dw[g, ch, i, 1], dw[g, ch, i, 2] = _gt6(
                    half[i, 0], half[i, 1], half[i, 2], half[i, 3], half[i, 4], half[i, 5])
    return dw


def winograd_conv2d_backward(dy, x, w, padding):
    """(dx, dw) of y = conv2d(x, w, b) (3x3, stride 1, padding 0, 1 or 2) given dy (N, F, Ho, Wo), by
    F(4x4, 3x3) transposed; x (N, C, H, W), w (F, C, 3, 3). NumPy twin:
    minicnn.winograd.conv2d_backward(dy, x, w, padding, m=4).

    Work is shared among the threads by groups of images; with fewer images than threads, by chunks of
    x's channels too (each chunk then transforms dy's tiles again)."""
    n, f, ho, wo = dy.shape
    c = w.shape[1]
    tiles_h, tiles_w = -(-ho // 4), -(-wo // 4)
    threads = _blas_for_tiles()
    per_thread = -(-n // threads)  # images per thread, as in conv_transpose2d
    chunks = max(1, min(c, -(-(per_thread * threads) // n)))
    groups = max(1, min(n, threads // chunks))
    block = min(WINOGRAD_BACKWARD_TILES_PER_BLOCK, -(-n // groups) * tiles_h * tiles_w)
    most = -(-c // chunks)
    z_row, v_row = _spread_rows(f * block, dy.itemsize), _spread_rows(most * block, dy.itemsize)
    sum_row = _spread_rows(c * f, dy.itemsize)
    at = 36 * (z_row + 2 * v_row)
    scratch = _scratch(threads, at + 36 * sum_row + most * f + 6 * (4 * block + 2), dy.dtype)
    dx = _winograd_conv2d_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x), _winograd_filters_of(w, "swapped"),
                                   padding, tiles_h, tiles_w, groups, chunks, block, z_row, v_row, sum_row, scratch)
    return dx, _winograd_filter_gradients(scratch, at, sum_row, f, c)


def winograd_conv_transpose2d(y, w, b, padding):
    """The transpose of conv2d (3x3, stride 1, padding 0 to 2) with the forward weights w (F, C, 3, 3):
    y (N, F, Ho, Wo) -> x (N, C, Ho + 2 - 2p, Wo + 2 - 2p), b (C,) or None. At stride 1 it is the 3x3
    convolution of y with the flipped filters (channels swapped) and padding 2 - p: the forward kernel
    (_winograd), so inference and saliency compile no other Winograd kernel. NumPy twins:
    minicnn.winograd.conv_transpose2d(y, w, b, padding, m=4) and winograd.conv2d with the flipped filters."""
    return _winograd(y, _winograd_filters_of(w, "flipped"), w.shape[1], b, 2 - padding)

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
    a NaN wins and propagates, as in PyTorch (with several NaNs in a window, the first one's index;
    PyTorch's return_indices gives the last one).
    NumPy twin: minicnn.im2col.max_pool. Parallel over the N*C planes; kernel 2x2 with stride 2
    and no padding runs _max_pool_2x2, the same loops with the sizes fixed.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding  # padding <= kernel // 2 (ops checks it)
    ho, wo = conv2d_output_shape(x.shape[2:], kernel_size, stride, padding)
    x = np.ascontiguousarray(x)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):  # the common case has its own kernel
        return _max_pool_2x2(x)
    return _max_pool(x, kh, kw, sh, sw, ph, pw, ho, wo)


@njit(parallel=True, cache=True)
def _unpool(y, switches, h, w):
    """The loops of unpool (see there) on planes: y, switches (N*C, Ho*Wo) -> out (N*C, H*W)."""
    planes, k = y.shape  # y and switches as (N*C, Ho*Wo)
    out = np.empty((planes, h * w), dtype=y.dtype)
    for p in prange(planes):  # each iteration owns one output plane: no races
        out[p] = 0
        for q in range(k):
            s = switches[p, q]
            if 0 <= s < h * w:  # ops checks the switches; this keeps a bad one from writing out of bounds
                out[p, s] += y[p, q]
    return out


def unpool(y, switches, output_hw):
    """y, switches (N, C, Ho, Wo) -> out (N, C, H, W), zero except at the switches.

    out[n, c].flat[switches[n, c, k]] += y[n, c, k] for every k: each value goes back to where its
    maximum came from; values whose switches coincide (overlapping windows) add up. This is exactly
    the backward pass of max_pool (and the DeconvNet's "un-pooling").
    NumPy twin: minicnn.im2col.unpool. Parallel over the N*C planes; each iteration owns its plane.
    """
    n, c = y.shape[:2]
    h, w = output_hw
    y2 = np.ascontiguousarray(y).reshape(n * c, -1)
    s2 = np.ascontiguousarray(switches, dtype=np.int64).reshape(n * c, -1)
    return _unpool(y2, s2, h, w).reshape(n, c, h, w)


# ---------------------------------------------------------------------------------------------
# ReLU and its three backward rules
# ---------------------------------------------------------------------------------------------
# Elementwise loops are so fast (~4 numbers per ns on one core) that for small arrays waking the
# threads costs more than the loop: 0.02-0.14 ms per parallel call with workqueue, the time of
# 80 000 to 500 000 numbers. So each loop is written once, over a range of positions, and run
# either directly (one thread) or split among the threads by a parallel loop; SERIAL_BELOW
# decides. Measured, relu of 200 704 numbers (benchmark shape e): 21 us directly, 37 us split.
SERIAL_BELOW = 1 << 18


@njit(cache=True)
def _relu_range(x, out, start, stop):
    """The loop of relu (see there) over positions start <= k < stop of flat, contiguous arrays.
    (Slices first, then a loop from 0: the compiler knows k >= 0 and makes it SIMD; 4x faster.)"""
    x, out = x[start:stop], out[start:stop]
    for k in range(x.size):
        v = x[k]
        out[k] = 0 if v < 0 else v  # "v < 0" is False for NaN: NaN stays NaN


@njit(parallel=True, cache=True)
def _relu_split(x, out, threads):
    """_relu_range over the whole array, one contiguous share per thread."""
    for t in prange(threads):
        _relu_range(x, out, t * x.size // threads, (t + 1) * x.size // threads)


def relu(x):
    """max(x, 0) elementwise, any shape (NaN stays NaN). NumPy twin: minicnn.im2col.relu."""
    x_flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(x_flat)
    if x_flat.size < SERIAL_BELOW:
        _relu_range(x_flat, out, 0, x_flat.size)
    else:
        _relu_split(x_flat, out, numba.get_num_threads())
    return out.reshape(x.shape)


@njit(cache=True)
def _relu_backward_range(dy, x, rule, out, start, stop):
    """The loops of relu_backward (see there) over positions start <= k < stop of flat arrays;
    rule 0, 1, 2 = RELU_RULES[rule]."""
    dy, x, out = dy[start:stop], x[start:stop], out[start:stop]  # loops from 0: SIMD, see _relu_range
    if rule == 0:  # "gradient": keep dy where the forward input was positive
        for k in range(dy.size):
            out[k] = dy[k] if x[k] > 0 else 0
    elif rule == 1:  # "deconvnet": keep the positive part of dy, whatever x was
        for k in range(dy.size):
            out[k] = dy[k] if dy[k] > 0 else 0
    else:  # "guided": both masks
        for k in range(dy.size):
            out[k] = dy[k] if (x[k] > 0 and dy[k] > 0) else 0


@njit(parallel=True, cache=True)
def _relu_backward_split(dy, x, rule, out, threads):
    """_relu_backward_range over the whole array, one contiguous share per thread."""
    for t in prange(threads):
        _relu_backward_range(dy, x, rule, out, t * dy.size // threads, (t + 1) * dy.size // threads)


def relu_backward(dy, x, rule):
    """The three backward rules of ReLU; dy (the signal coming back) and x (the forward input)
    have the same shape, the result has dy's shape and dtype.

    "gradient":  dy where x > 0, else 0            (the true derivative; saliency)
    "deconvnet": max(dy, 0), ignoring x            (Zeiler & Fergus' un-ReLU)
    "guided":    dy where x > 0 and dy > 0, else 0 (guided backpropagation: both masks)
    NumPy twin: minicnn.im2col.relu_backward.
    """
    dy_flat = np.ascontiguousarray(dy).reshape(-1)
    x_flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(dy_flat)
    if dy_flat.size < SERIAL_BELOW:
        _relu_backward_range(dy_flat, x_flat, RELU_RULES.index(rule), out, 0, dy_flat.size)
    else:
        _relu_backward_split(dy_flat, x_flat, RELU_RULES.index(rule), out, numba.get_num_threads())
    return out.reshape(dy.shape)


# ----------------------------------------------------------------------------------------------
# Linear layers: their three matrix products on Numba's threads
#
# Each thread calls a single-threaded BLAS (np.dot, see _blas_for_tiles) on its share. NumPy's `@`
# would start NumPy's own BLAS threads, which keep spinning for a while after every product and take
# the cores from the convolution kernels that run next: VGG16's forward pass, whose fully connected
# layers end one image and whose convolutions start the next, ran a third slower (docs/performance.md).
# NumPy twins: the products themselves, x @ w.T, dy @ w and dy.T @ x.


@njit(parallel=True, cache=True)
def _product_by_rows(a, b, out, parts):
    """out = a @ b, (M, K) @ (K, P) -> (M, P): one band of a's rows (and out's) per part."""
    m = a.shape[0]
    for t in prange(parts):
        r0, r1 = t * m // parts, (t + 1) * m // parts
        if r1 > r0:
            np.dot(a[r0:r1], b, out[r0:r1])


@njit(parallel=True, cache=True)
def _linear_by_feature_bands(x, w, y, parts):
    """y[:, f0:f1] = x @ w[f0:f1].T for the t-th of `parts` bands f0:f1 of w's rows."""
    f = w.shape[0]
    for t in prange(parts):
        f0, f1 = t * f // parts, (t + 1) * f // parts
        if f1 > f0:
            y[:, f0:f1] = np.dot(x, w[f0:f1].T)


@njit(parallel=True, cache=True)
def _input_gradient_by_feature_bands(dy_t, w, partial):
    """partial[t] = dy[:, f0:f1] @ w[f0:f1] for the t-th of partial.shape[0] bands f0:f1 of the F
    features (dy_t = dy.T, (F, N)): their sum over t is dy @ w."""
    f, parts = w.shape[0], partial.shape[0]
    for t in prange(parts):
        f0, f1 = t * f // parts, (t + 1) * f // parts
        if f1 > f0:
            np.dot(dy_t[f0:f1].T, w[f0:f1], partial[t])


def linear(x, w):
    """y = x @ w.T: x (N, K), w (F, K) -> (N, F), by bands of the F features, every image in each
    band's one product (as in one NumPy product, not split among threads by images)."""
    threads = _blas_for_tiles()
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    _linear_by_feature_bands(x, w, y, min(threads, w.shape[0]))
    return y


def linear_input_gradient(dy, w):
    """dx = dy @ w: dy (N, F), w (F, K) -> (N, K): the sum of dy[:, f0:f1] @ w[f0:f1] over bands of F,
    one per thread, every image in each band's one product."""
    threads = _blas_for_tiles()
    dy_t, w = np.ascontiguousarray(dy.T), np.ascontiguousarray(w)
    partial = np.empty((min(threads, w.shape[0]), dy_t.shape[1], w.shape[1]), dtype=w.dtype)
    _input_gradient_by_feature_bands(dy_t, w, partial)
    return partial.sum(axis=0)


def linear_weight_gradient(dy, x):
    """dw = dy.T @ x: dy (N, F), x (N, K) -> (F, K), by bands of dw's rows."""
    threads = _blas_for_tiles()
    dy_t, x = np.ascontiguousarray(dy.T), np.ascontiguousarray(x)
    dw = np.empty((dy_t.shape[0], x.shape[1]), dtype=x.dtype)
    _product_by_rows(dy_t, x, dw, min(threads, dy_t.shape[0]))
    return dw
