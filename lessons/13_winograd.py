# %% [markdown]
# # Lesson 13 — the fast convolution is a product of small matrices too
#
# Lessons 1-3 wrote a convolution as one big matrix W. The fastest CPU convolutions rewrite it again,
# as products of small fixed matrices, and multiply less: Winograd's minimal filtering (Lavin & Gray
# 2016). Two outputs of a 3-tap filter take 6 multiplications the direct way; 4 suffice.
# The price is some additions, and rounding error that grows with the tile.
#
# Run: `python lessons/13_winograd.py [--out DIR]`

# %%
import re
from fractions import Fraction
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title  # first: it also finds minicnn

from minicnn import ops, winograd
from minicnn.im2col import conv2d as im2col_conv2d

OUT = output_dir("13_winograd")


# %% [markdown]
# ## F(2, 3) by hand: 4 multiplications instead of 6
# Inputs d0..d3, filter g0, g1, g2; the direct way computes
#   y0 = d0 g0 + d1 g1 + d2 g2,   y1 = d1 g0 + d2 g1 + d3 g2        (6 multiplications).
# Winograd's way: four products m1..m4, each ONE multiplication of "something of d" by "something of g":
#   m1 = (d0 - d2) g0           m2 = (d1 + d2) (g0 + g1 + g2) / 2
#   m4 = (d1 - d3) g2           m3 = (d2 - d1) (g0 - g1 + g2) / 2
#   y0 = m1 + m2 + m3,          y1 = m2 - m3 - m4
# The filter's sums (g0 + g1 + g2) / 2 are computed once per filter and reused by every tile, so
# per tile only the four products count. We count the multiplications by wrapping the numbers.

# %%
class Counted:
    """A number that counts the multiplications of two Counted numbers (shared counter)."""
    products = 0

    def __init__(self, value):
        self.value = Fraction(value)

    def __add__(self, other):
        return Counted(self.value + other.value)

    def __sub__(self, other):
        return Counted(self.value - other.value)

    def __mul__(self, other):
        Counted.products += 1
        return Counted(self.value * other.value)


def direct_f23(d, g):
    return [d[0] * g[0] + d[1] * g[1] + d[2] * g[2], d[1] * g[0] + d[2] * g[1] + d[3] * g[2]]


def filter_f23(g):
    """Once per filter: the four 'something of g' (halving is not a product of data: exact Fractions)."""
    half = Fraction(1, 2)
    return [g[0], Counted((g[0] + g[1] + g[2]).value * half), Counted((g[0] - g[1] + g[2]).value * half), g[2]]


def winograd_f23(d, u):
    m1, m2 = (d[0] - d[2]) * u[0], (d[1] + d[2]) * u[1]
    m3, m4 = (d[2] - d[1]) * u[2], (d[1] - d[3]) * u[3]
    return [m1 + m2 + m3, m2 - m3 - m4]


title("F(2, 3) by hand")
d = [Counted(v) for v in (3, -1, 4, 1)]
g = [Counted(v) for v in (2, 7, -5)]
Counted.products = 0
direct = direct_f23(d, g)
direct_count = Counted.products
u = filter_f23(g)
Counted.products = 0
fast = winograd_f23(d, u)
fast_count = Counted.products
print(f"d = (3, -1, 4, 1), g = (2, 7, -5)")
print(f"direct:   y = {[str(y.value) for y in direct]} with {direct_count} multiplications")
print(f"Winograd: y = {[str(y.value) for y in fast]} with {fast_count} multiplications")
assert (direct_count, fast_count) == (6, 4)
assert [y.value for y in fast] == [y.value for y in direct]

# %% [markdown]
# ## The same as matrices: y = A^T [(G g) * (B^T d)]
# B^T mixes the 4 inputs into 4 numbers, G mixes the 3 weights into 4, they are multiplied elementwise
# (the 4 products) and A^T adds them into the 2 outputs. `minicnn.winograd.cook_toom` derives the
# matrices: evaluate at the points 0, 1, -1 and infinity, multiply, interpolate (the transposed
# polynomial product). Its scaling makes the first row the negative of the by-hand one above
# (m1 with d2 - d0 and -g0): the same algorithm.

# %%
title("the transforms of F(2, 3) as matrices")
at, g_matrix, bt = winograd.transforms(2)
show("B^T", bt)
show("G", g_matrix)
show("A^T", at)
exact = winograd.winograd_1d(np.array([Fraction(v) for v in (3, -1, 4, 1)], dtype=object),
                             np.array([Fraction(v) for v in (2, 7, -5)], dtype=object), 2, exact=True)
assert list(exact) == [y.value for y in direct]
rng = np.random.default_rng(0)
for _ in range(100):  # exact for every integer tile and filter
    d_int, g_int = rng.integers(-9, 10, 4), rng.integers(-9, 10, 3)
    as_fractions = [np.array([Fraction(int(v)) for v in a], dtype=object) for a in (d_int, g_int)]
    assert list(winograd.winograd_1d(*as_fractions, 2, exact=True)) == list(winograd.correlate_1d(d_int, g_int))

# %% [markdown]
# ## 2D: nest the 1D algorithm, Y = A^T [(G g G^T) * (B^T d B)] A
# Apply F(2, 3) down the columns, then along the rows: a 4x4 input tile and a 3x3 filter give a 2x2
# output block with 4 x 4 = 16 multiplications instead of 2 x 2 x 9 = 36. F(4x4, 3x3) uses 6x6 tiles:
# 36 instead of 144.

# %%
title("2D: one tile of F(2x2, 3x3) and of F(4x4, 3x3)")
for m in (2, 4):
    at_exact, g_exact, bt_exact = winograd.cook_toom(winograd.POINTS[m], m)
    alpha = m + 2
    tile = rng.integers(-9, 10, (alpha, alpha)).astype(object)
    filt = rng.integers(-9, 10, (3, 3)).astype(object)
    y_tile = at_exact.dot(g_exact.dot(filt).dot(g_exact.T) * bt_exact.dot(tile).dot(bt_exact.T)).dot(at_exact.T)
    y_direct = np.array([[sum(tile[i + a, j + b] * filt[a, b] for a in range(3) for b in range(3))
                          for j in range(m)] for i in range(m)], dtype=object)
    direct_count, fast_count = winograd.multiplications(m)
    print(f"F({m}x{m}, 3x3): a {alpha}x{alpha} tile -> {m}x{m} outputs, {fast_count} multiplications "
          f"instead of {direct_count}: {direct_count / fast_count:.2f}x fewer; exact: {(y_tile == y_direct).all()}")
    assert (y_tile == y_direct).all()
assert winograd.multiplications(2) == (36, 16) and winograd.multiplications(4) == (144, 36)

# %% [markdown]
# ## Many channels: the elementwise products become matrix products
# With C input channels and F filters, output f of a tile sums over c. The sum commutes with A^T .. A,
# so for each of the alpha^2 transformed positions (i, j) the products over all tiles are ONE matrix
# product: (F, C) @ (C, tiles). A whole layer is alpha^2 matrix products plus cheap transforms:
# the same "a convolution is a matrix product" as im2col, with 2.25x (F(2, 3)) or 4x (F(4, 3)) fewer
# multiply-adds. minicnn.winograd.conv2d writes exactly that, and equals im2col:

# %%
title("a layer: 16 -> 8 channels, 13 x 11 images (not multiples of the tile)")
x = rng.standard_normal((2, 16, 13, 11))
w = rng.standard_normal((8, 16, 3, 3))
reference = im2col_conv2d(x, w, None, (1, 1), (1, 1))
for m in (2, 4, 6):
    error = np.abs(winograd.conv2d(x, w, None, 1, m) - reference).max() / np.abs(reference).max()
    print(f"F({m}x{m}, 3x3) in float64: max |difference| / max |y| = {error:.1e}")
    assert error < 1e-12
assert np.abs(ops.conv2d(x, w, None, 1, 1, algorithm="winograd") - reference).max() < 1e-10 * np.abs(reference).max()

# %% [markdown]
# ## The price: rounding error grows with the tile
# The larger the tile, the larger the points (2, then 1/2) and their powers in A^T, G and B^T: the
# transforms add numbers of very different sizes, and float32 keeps only ~7 digits. We measure the
# error of each F(m, 3) in float32 against float64, for more and more channels.

# %%
title("float32 error of F(m x m, 3 x 3) against float64")
channel_counts = (4, 64, 512)
errors = {}
for m in (2, 4, 6):
    for c in channel_counts:
        errors[m, c] = 0.0
        for seed in range(3):  # the largest error over three random layers of 8 filters on 24 x 24 images
            layer_rng = np.random.default_rng(100 * c + seed)
            x, w = layer_rng.standard_normal((1, c, 24, 24)), layer_rng.standard_normal((8, c, 3, 3))
            exact_y = im2col_conv2d(x, w, None, (1, 1), (1, 1))
            y32 = winograd.conv2d(x.astype(np.float32), w.astype(np.float32), None, 1, m)
            errors[m, c] = max(errors[m, c], np.abs(y32 - exact_y).max() / np.abs(exact_y).max())
    print(f"F({m}x{m}, 3x3): " + ", ".join(f"C={c}: {errors[m, c]:.1e}" for c in channel_counts))
direct32 = im2col_conv2d(x.astype(np.float32), w.astype(np.float32), None, (1, 1), (1, 1))
direct_error = np.abs(direct32 - exact_y).max() / np.abs(exact_y).max()
print(f"direct (im2col) in float32, C=512: {direct_error:.1e}")
for c in channel_counts:
    assert errors[2, c] < errors[4, c] < errors[6, c]  # the error grows with the tile ...
    assert errors[4, c] > errors[4, 4] * 0.999  # ... and with the channels
# minicnn promises float32 within 2e-5 of max |y|: F(4x4, 3x3) keeps it at 512 channels, F(6x6, 3x3) does not
assert errors[4, 512] < 2e-5 < errors[6, 512]

fig, ax = plt.subplots(figsize=(6.5, 3.6))
for k, m in enumerate((2, 4, 6)):
    ax.bar(np.arange(len(channel_counts)) + 0.27 * (k - 1), [errors[m, c] for c in channel_counts], width=0.27,
           label=f"F({m}x{m}, 3x3)")
ax.axhline(direct_error, color="black", linestyle="--", linewidth=1, label="direct, float32 (C=512)")
ax.set_yscale("log")
ax.set_xticks(range(len(channel_counts)), [f"C = {c}" for c in channel_counts])
ax.set_ylabel("max |error| / max |y|")
ax.set_title("float32 error grows with the tile", fontsize=10)
ax.legend(fontsize=8)
save(fig, OUT, "error_by_tile")

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [6, 3, 6]})
at4, g4, bt4 = winograd.transforms(4)
grid(axes[0], bt4, fmt="{:g}", title_text="B^T (6 x 6): inputs")
grid(axes[1], g4, fmt="{:.3g}", title_text="G (6 x 3): filter")
grid(axes[2], at4, fmt="{:g}", title_text="A^T (4 x 6): outputs")
save(fig, OUT, "transforms_f43")

# %% [markdown]
# ## The backward pass: the same matrices, transposed
# One tile, Y = A^T [(G g G^T) * (B^T d B)] A, is linear in the filter g and in the input tile d, so
# its gradients are its transposes: with Z = A dY A^T, dd = B [(G g G^T) * Z] B^T and
# dg = G^T [(B^T d B) * Z] G. Training runs dx and dw this way (minicnn.winograd.conv2d_backward is
# the NumPy form); they equal the im2col gradients, and the adjoint identity <conv(x), dy> = <x, dx>.

# %%
title("the backward pass by Winograd, transposed")
from minicnn.im2col import conv2d_weight_grad, conv_transpose2d  # noqa: E402

x = rng.standard_normal((2, 3, 7, 9))
w = rng.standard_normal((4, 3, 3, 3))
dy = rng.standard_normal((2, 4, 7, 9))
dx, dw = winograd.conv2d_backward(dy, x, w, padding=1, m=4)
dx_im2col = conv_transpose2d(dy, w, None, (7, 9), (1, 1), (1, 1))   # im2col's input gradient: W^T dy
dw_im2col = conv2d_weight_grad(dy, x, (3, 3), (1, 1), (1, 1))
print(f"max |dx - im2col's| = {np.abs(dx - dx_im2col).max():.1e}, max |dw - im2col's| = {np.abs(dw - dw_im2col).max():.1e}")
assert np.allclose(dx, dx_im2col, atol=1e-10) and np.allclose(dw, dw_im2col, atol=1e-10)
assert np.isclose(np.vdot(winograd.conv2d(x, w, None, 1, 4), dy), np.vdot(x, dx))   # the adjoint identity

# %% [markdown]
# ## The measured speed
# minicnn's Numba kernels run F(4x4, 3x3) for float32 3x3 stride-1 convolutions with enough channels
# ("auto": ops.choose_conv_algorithm): a block of ~96 tiles at a time, the 36 products by
# single-threaded BLAS inside one parallel loop. The timings live in docs/performance.md (`minicnn
# bench`); this lesson does not time anything. The convolution lines of its first table:

# %%
title("from docs/performance.md")
page = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
section = page.read_text().split("\n## Results")[-1].split("\n## ")[0] if page.exists() else ""
results = section.split("\n### ")[1] if "\n### " in section else section  # its first table
rows = [line for line in results.splitlines() if re.match(r"\| (conv2d|VGG16)", line)]
print("\n".join(rows) if rows else "(docs/performance.md is not in this checkout)")

print("\nWinograd: the same convolution as fewer, smaller matrix products; exact in exact arithmetic, "
      "a little less exact in float32.")
