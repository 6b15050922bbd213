"""Winograd's minimal filtering (Lavin & Gray 2016): a 3x3 convolution with fewer multiplications.

The plain NumPy reference of the Winograd kernels in minicnn.kernels, written as the matrix products
of the algorithm. In one dimension, F(m, 3) computes m outputs of a 3-tap correlation from a tile of
alpha = m + 2 inputs d with alpha multiplications instead of 3m:

    y = A^T [ (G g) * (B^T d) ]          g (3,) the filter, d (alpha,) the inputs, * elementwise

and in two dimensions, nesting the 1D algorithm along the rows and the columns, F(m x m, 3 x 3)
computes an m x m block of outputs from an alpha x alpha tile with alpha^2 multiplications
instead of 9 m^2:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

With C input channels and F filters the elementwise products become, for every one of the
alpha^2 transformed positions (i, j), one matrix product (F, C) @ (C, tiles): the convolution's
work moves into alpha^2 matrix products that are 9 m^2 / alpha^2 times smaller than im2col's
(2.25x for F(2, 3), 4x for F(4, 3), 5.06x for F(6, 3)).

The transforms come from the Cook-Toom construction (`cook_toom`): a correlation is the transpose of
a polynomial product, and a polynomial product is: evaluate both factors at alpha points, multiply
the values, interpolate. A^T evaluates, G evaluates the filter (scaled), B^T is the transposed
interpolation (scaled back). The points are 0, +-1, +-2, +-1/2 (and "infinity", the leading
coefficient); the larger the tile, the larger and smaller the points' powers, and the larger the
rounding error in float32 (measured in docs/performance.md).
"""
from fractions import Fraction
from functools import lru_cache

import numpy as np

KERNEL_SIZE = 3
POINTS = {  # tile outputs m: the alpha - 1 finite points of F(m, 3) (the last point is infinity)
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}


# ----------------------------------------------------------------------------------------------
# the transforms


def _evaluation_matrix(points, columns):
    """V (alpha, columns): V[j, k] = p_j^k for the finite points, then the row (0, ..., 0, 1) for
    infinity (the leading coefficient). V @ coefficients = the polynomial's values at the points."""
    rows = [[Fraction(p) ** k for k in range(columns)] for p in points]
    return rows + [[Fraction(0)] * (columns - 1) + [Fraction(1)]]


def _inverse(matrix):
    """The exact inverse of a square matrix of Fractions (Gauss-Jordan elimination)."""
    n = len(matrix)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


def cook_toom(points, m, r=KERNEL_SIZE):
    """The exact transforms (A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) of F(m, r) on the
    given alpha - 1 = m + r - 2 finite points, as object arrays of Fractions.

    A^T[i, j] = p_j^i (evaluation, transposed); G[j] = (1, p_j, p_j^2, ...) / f_j; B^T = diag(f) V^-T
    with V the alpha x alpha evaluation matrix and f_j = prod over l != j of (p_j - p_l) (1 for
    infinity), a scaling that moves the interpolation's denominators into G and leaves B^T small
    integers for F(2, 3) and F(4, 3).
    """
    alpha = m + r - 1
    if len(points) != alpha - 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} finite points, got {len(points)}: {points}")
    points = [Fraction(p) for p in points]
    scale = [np.prod([p - q for q in points if q != p]) for p in points] + [Fraction(1)]
    v_inverse = _inverse(_evaluation_matrix(points, alpha))
    at = np.array(_evaluation_matrix(points, m), dtype=object).T
    g = np.array([[value / s for value in row] for row, s in zip(_evaluation_matrix(points, r), scale)],
                 dtype=object)
    bt = np.array([[scale[i] * v_inverse[j][i] for j in range(alpha)] for i in range(alpha)], dtype=object)
    return at, g, bt


@lru_cache(maxsize=None)
def transforms(m):
    """(A^T, G, B^T) of F(m, 3) as float64 arrays, m in POINTS (2, 4 or 6). For F(4, 3):

        B^T = [[4,  0, -5,  0, 1, 0],     G = [[ 1/4,     0,    0],    A^T = [[1, 1,  1, 1,  1, 0],
               [0, -4, -4,  1, 1, 0],          [-1/6,  -1/6, -1/6],           [0, 1, -1, 2, -2, 0],
               [0,  4, -4, -1, 1, 0],          [-1/6,   1/6, -1/6],           [0, 1,  1, 4,  4, 0],
               [0, -2, -1,  2, 1, 0],          [1/24,  1/12,  1/6],           [0, 1, -1, 8, -8, 1]]
               [0,  2, -1, -2, 1, 0],          [1/24, -1/12,  1/6],
               [0,  4,  0, -5, 0, 1]]          [   0,     0,    1]]
    """
    if m not in POINTS:
        raise ValueError(f"m must be one of {sorted(POINTS)} (outputs per tile side), got {m!r}")
    return tuple(matrix.astype(np.float64) for matrix in cook_toom(POINTS[m], m))


def multiplications(m, r=KERNEL_SIZE):
    """(direct, winograd): multiplications for an m x m block of outputs of one r x r filter on one
    channel: m^2 r^2 directly, alpha^2 = (m + r - 1)^2 by F(m x m, r x r)."""
    return m * m * r * r, (m + r - 1) ** 2


# ----------------------------------------------------------------------------------------------
# 1D: one tile


def correlate_1d(d, g):
    """The direct way: y[i] = sum_k d[i + k] g[k], len(d) - len(g) + 1 outputs."""
    return np.array([sum(d[i + k] * g[k] for k in range(len(g))) for i in range(len(d) - len(g) + 1)])


def winograd_1d(d, g, m, exact=False):
    """F(m, 3) on one tile: y = A^T [(G g) * (B^T d)], d (m + 2,), g (3,) -> y (m,).
    exact=True computes in Fractions (d and g then hold ints or Fractions)."""
    at, gm, bt = cook_toom(POINTS[m], m) if exact else transforms(m)
    return at.dot(gm.dot(g) * bt.dot(d))


# ----------------------------------------------------------------------------------------------
# 2D, many channels: the convolution


def tile_grid(output_hw, m):
    """How many m x m output tiles cover an output of size (Ho, Wo): (ceil(Ho / m), ceil(Wo / m))."""
    return tuple(-(-size // m) for size in output_hw)


def input_tiles(x, padding, m):
    """x (N, C, H, W) -> the overlapping input tiles (N, C, th, tw, alpha, alpha) of a 3x3 conv with
    this padding: tile (p, q) reads the padded input's rows p*m .. p*m + alpha - 1 and the same columns.
    The padded input gets extra zero rows/columns at the bottom/right so that the last tiles fit."""
    n, c, h, w = x.shape
    alpha = m + KERNEL_SIZE - 1
    output_hw = (h + 2 * padding - 2, w + 2 * padding - 2)
    th, tw = tile_grid(output_hw, m)
    bottom, right = th * m + 2 - h - padding, tw * m + 2 - w - padding  # >= padding
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, bottom), (padding, right)))
    windows = np.lib.stride_tricks.sliding_window_view(x_padded, (alpha, alpha), axis=(2, 3))
    return windows[:, :, ::m, ::m]


def conv2d(x, w, b=None, padding=1, m=4):
    """y = conv2d(x, w) + b for 3x3 filters at stride 1, by F(m x m, 3 x 3); x (N, C, H, W),
    w (F, C, 3, 3), b (F,) or None -> y (N, F, H + 2p - 2, W + 2p - 2). Computed in x's dtype.

        V = B^T d B       every input tile, every channel     (N, C, th, tw, alpha, alpha)
        U = G g G^T       every filter, every channel          (F, C, alpha, alpha)
        M[i, j] = U[i, j] @ V[i, j]    one (F, C) @ (C, tiles) product per transformed position (i, j)
        Y = A^T M A       every output tile                    (N, F, th, tw, m, m)
    """
    at, g, bt = (matrix.astype(x.dtype) for matrix in transforms(m))
    n, c, h, wd = x.shape
    f = w.shape[0]
    alpha = m + 2
    ho, wo = h + 2 * padding - 2, wd + 2 * padding - 2
    th, tw = tile_grid((ho, wo), m)
    v = bt @ input_tiles(x, padding, m) @ bt.T  # (N, C, th, tw, alpha, alpha)
    u = g @ w @ g.T  # (F, C, alpha, alpha)
    v_by_position = v.transpose(4, 5, 1, 0, 2, 3).reshape(alpha, alpha, c, n * th * tw)
    products = u.transpose(2, 3, 0, 1) @ v_by_position  # (alpha, alpha, F, tiles)
    products = products.reshape(alpha, alpha, f, n, th, tw).transpose(3, 2, 4, 5, 0, 1)
    y_tiles = at @ products @ at.T  # (N, F, th, tw, m, m)
    y = y_tiles.transpose(0, 1, 2, 4, 3, 5).reshape(n, f, th * m, tw * m)[:, :, :ho, :wo]
    if b is not None:
        y = y + b[:, None, None]
    return np.ascontiguousarray(y)


# ----------------------------------------------------------------------------------------------
# 2D, many channels: the backward pass, by the same algorithm transposed


def output_tiles(dy, m):
    """dy (N, F, Ho, Wo) -> its m x m tiles (N, F, th, tw, m, m), side by side (no overlap): tile
    (p, q) holds rows p*m .. p*m + m - 1 and the same columns; zeros past the last row / column."""
    n, f, ho, wo = dy.shape
    th, tw = tile_grid((ho, wo), m)
    dy_padded = np.pad(dy, ((0, 0), (0, 0), (0, th * m - ho), (0, tw * m - wo)))
    return dy_padded.reshape(n, f, th, m, tw, m).transpose(0, 1, 2, 4, 3, 5)


def add_input_tiles(tiles, input_shape, padding, m):
    """The adjoint of input_tiles: tiles (N, C, th, tw, alpha, alpha) -> x (N, C, H, W). Every tile is
    added back where input_tiles read it; overlapping tiles add up; what lies in the padding is dropped."""
    n, c, h, w = input_shape
    th, tw, alpha = tiles.shape[2], tiles.shape[3], tiles.shape[4]
    x_padded = np.zeros((n, c, th * m + alpha - m, tw * m + alpha - m), dtype=tiles.dtype)
    for i in range(alpha):
        for j in range(alpha):
            x_padded[:, :, i : i + th * m : m, j : j + tw * m : m] += tiles[:, :, :, :, i, j]
    return x_padded[:, :, padding : padding + h, padding : padding + w].copy()


def conv2d_backward(dy, x, w, padding=1, m=4):
    """(dx, dw) of y = conv2d(x, w, b, padding, m) given dy = dL/dy (N, F, Ho, Wo), by F(m x m, 3 x 3)
    transposed; x (N, C, H, W), w (F, C, 3, 3). Computed in dy's dtype.

    One tile of the forward pass is linear in the filter g and in the input tile d:
        Y = A^T [ (G g G^T) * (B^T d B) ] A
    so the gradients of one tile are its transposes (<A^T Z A, dY> = <Z, A dY A^T>, and so on):
        dd = B [ (G g G^T) * (A dY A^T) ] B^T      (alpha, alpha): added back onto the input tile
        dg = G^T [ (B^T d B) * (A dY A^T) ] G      (3, 3): summed over all tiles
    Here dY is an m x m tile of dy, and its transform Z = A dY A^T (alpha, alpha) is shared by both
    (input_gradient and weight_gradient below).
    """
    return input_gradient(dy, w, x.shape, padding, m), weight_gradient(dy, x, padding, m)


def _gradient_tiles_by_position(dy, m):
    """Z = A dY A^T of every m x m tile of dy, as (alpha, alpha, F, tiles): one (F, tiles) matrix per
    transformed position (i, j); tiles ordered (n, p, q)."""
    at = transforms(m)[0].astype(dy.dtype)
    z = at.T @ output_tiles(dy, m) @ at  # (N, F, th, tw, alpha, alpha)
    n, f, th, tw, alpha, _ = z.shape
    return z.transpose(4, 5, 1, 0, 2, 3).reshape(alpha, alpha, f, n * th * tw)


def input_gradient(dy, w, input_shape, padding=1, m=4):
    """dx (N, C, H, W) of y = conv2d(x, w, None, padding, m), x of shape input_shape, given dy (N, F, Ho, Wo):
        P[i, j] = U[i, j]^T @ Z[i, j]     (C, F) @ (F, tiles), one matrix product per position (i, j)
        dx = the tiles B P B^T (alpha, alpha), added back where the input tiles were read (add_input_tiles)
    with U = G w G^T (F, C, alpha, alpha) and Z = A dY A^T (see conv2d_backward)."""
    _, g, bt = (matrix.astype(dy.dtype) for matrix in transforms(m))
    n, c = input_shape[:2]
    alpha = m + 2
    th, tw = tile_grid(dy.shape[2:], m)
    u = g @ w.astype(dy.dtype) @ g.T  # (F, C, alpha, alpha)
    p = u.transpose(2, 3, 1, 0) @ _gradient_tiles_by_position(dy, m)  # (alpha, alpha, C, tiles)
    p = p.reshape(alpha, alpha, c, n, th, tw).transpose(3, 2, 4, 5, 0, 1)
    return add_input_tiles(bt.T @ p @ bt, input_shape, padding, m)


def weight_gradient(dy, x, padding=1, m=4):
    """dw (F, C, 3, 3) of y = conv2d(x, w, None, padding, m) given dy (N, F, Ho, Wo):
        M[i, j] = Z[i, j] @ V[i, j]^T     (F, tiles) @ (tiles, C): summed over every tile of every image
        dw = G^T M G
    with Z = A dY A^T and V = B^T d B the input tiles (see conv2d_backward)."""
    _, g, bt = (matrix.astype(dy.dtype) for matrix in transforms(m))
    n, c = x.shape[:2]
    alpha = m + 2
    v = bt @ input_tiles(x.astype(dy.dtype), padding, m) @ bt.T  # (N, C, th, tw, alpha, alpha)
    v_by_position = v.transpose(4, 5, 1, 0, 2, 3).reshape(alpha, alpha, c, -1)
    products = _gradient_tiles_by_position(dy, m) @ v_by_position.transpose(0, 1, 3, 2)  # (alpha, alpha, F, C)
    return np.ascontiguousarray(g.T @ products.transpose(2, 3, 0, 1) @ g)  # (F, C, 3, 3)


def conv_transpose2d(y, w, b=None, padding=1, m=4):
    """The transpose of conv2d (3x3, stride 1) with the forward weights w (F, C, 3, 3): y (N, F, Ho, Wo)
    -> x (N, C, Ho + 2 - 2p, Wo + 2 - 2p), padding 0 to 2: the input gradient of that conv2d, y playing
    dy, plus b (C,). (At stride 1 it is also an ordinary 3x3 conv of y with the flipped filter, channels
    swapped, and padding 2 - p: conv2d(y, flip_kernel(w), b, 2 - padding, m) gives the same numbers.)"""
    n, _, ho, wo = y.shape
    x = input_gradient(y, w, (n, w.shape[1], ho + 2 - 2 * padding, wo + 2 - 2 * padding), padding, m)
    return x if b is None else x + b[:, None, None]
