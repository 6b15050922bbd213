# %% [markdown]
# # Lesson 1 — a convolution is a matrix
#
# Sliding a filter over an input multiplies and adds: every output is a weighted sum of inputs.
# So for a fixed input size the whole convolution is one matrix-vector product, y = W x.
# Writing W out is the key to the rest of the lecture: the "deconvolution" used to look inside a
# network is nothing but W transposed (lesson 2).
#
# Run: `python lessons/01_convolution_is_a_matrix.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title  # first: it also finds minicnn

from minicnn import ops
from minicnn.matrix import conv1d, conv1d_matrix, conv1d_matrix_unpadded, conv2d_matrix
from minicnn.plot import WEIGHT_COLOURS
from minicnn.shapes import conv_output_size

OUT = output_dir("01_convolution_is_a_matrix")

# %% [markdown]
# ## The board example: 8 inputs, padding 2, a filter of 4 weights, stride 2
# Padding 2 on both sides makes a vector of 12 numbers. The filter fits at positions 0, 2, 4, 6, 8
# of that vector: (n + 2p - f) / s + 1 = (8 + 4 - 4) / 2 + 1 = 5 outputs.

# %%
title("sizes")
n, f, s, p = 8, 4, 2, 2
m = conv_output_size(n, f, stride=s, padding=p)
print(f"input {n}, padded {n + 2 * p}, filter {f}, stride {s} -> {m} outputs")
assert m == 5

# %% [markdown]
# ## W, written with the weight names
# Build W with the weights 1, 2, 3, 4: then each entry of W *is* the index of the weight sitting there.
# Row i is the filter slid to column 2i; the four outer columns meet only padding zeros.

# %%
title("the matrix W (5 x 12), acting on the padded x")
W_index = conv1d_matrix(np.array([1.0, 2.0, 3.0, 4.0]), n, stride=s, padding=p)
columns = ["0", "0"] + [f"x{k}" for k in range(1, n + 1)] + ["0", "0"]
print("      " + "".join(f"{c:>5}" for c in columns))
for i, row in enumerate(W_index):
    print(f"y{i + 1:<4} " + "".join(f"{('w%d' % v) if v else '.':>5}" for v in row.astype(int)))

assert W_index.shape == (5, 12)
for i, row in enumerate(W_index):
    assert list(np.flatnonzero(row)) == [2 * i, 2 * i + 1, 2 * i + 2, 2 * i + 3]  # row i starts at column 2i

# %% [markdown]
# ## The system of equations
# Dropping the padding columns (they multiply zeros) leaves a 5 x 8 matrix acting on x itself.
# The first and last outputs see only half the filter.

# %%
title("y = W x as five equations")
W_on_x = conv1d_matrix_unpadded(np.array([1.0, 2.0, 3.0, 4.0]), n, stride=s, padding=p)
equations = []
for i, row in enumerate(W_on_x):
    terms = [f"w{int(row[c])} x{c + 1}" for c in np.flatnonzero(row)]
    equations.append(f"y{i + 1} = " + " + ".join(terms))
print("\n".join(equations))
assert equations[0] == "y1 = w3 x1 + w4 x2"
assert equations[1] == "y2 = w1 x1 + w2 x2 + w3 x3 + w4 x4"
assert equations[4] == "y5 = w1 x7 + w2 x8"

# %% [markdown]
# ## The same numbers three ways
# With real numbers in w and x: the engine's convolution, W times the padded x, and the 5 x 8 matrix
# times x all give the same five outputs.

# %%
title("the engine's conv == W @ x_padded == W_unpadded @ x")
rng = np.random.default_rng(0)
w = rng.standard_normal(4)
x = rng.standard_normal(8)
W = conv1d_matrix(w, n, stride=s, padding=p)
y_engine = conv1d(x, w, stride=s, padding=p)
y_matrix = W @ np.pad(x, p)
y_unpadded = conv1d_matrix_unpadded(w, n, stride=s, padding=p) @ x
show("engine conv1d", y_engine)
show("W @ x_padded ", y_matrix)
assert np.allclose(y_engine, y_matrix) and np.allclose(y_engine, y_unpadded)

# %% [markdown]
# ## Two dimensions, several channels, several filters
# Flatten the input volume (C, H, W) into one long vector and the output volume (F, Ho, Wo) into
# another: the convolution is again a matrix, of shape (F Ho Wo) x (C H W). Each row holds one
# filter volume placed at one window. Most entries are zero, and the non-zero ones are the same
# F C kh kw numbers repeated on every row: that is weight sharing.

# %%
title("2D: conv2d(x).ravel() == W @ x.ravel()")
w2 = rng.standard_normal((2, 3, 3, 3))  # 2 filters over 3 channels, 3 x 3
x2 = rng.standard_normal((1, 3, 4, 5))  # one image, 3 channels, 4 x 5 (not square on purpose)
for stride, padding in [(1, 1), (2, 0), ((1, 2), (1, 0))]:
    W2 = conv2d_matrix(w2, x2.shape[1:], stride=stride, padding=padding)
    y2 = ops.conv2d(x2, w2, stride=stride, padding=padding)
    filled = np.count_nonzero(W2) / W2.size
    print(f"stride {stride}, padding {padding}: y {y2.shape[1:]}, W {W2.shape}, {filled:.0%} of W non-zero")
    assert W2.shape == (y2[0].size, x2[0].size)
    assert np.allclose(W2 @ x2.ravel(), y2.ravel())
    assert (np.count_nonzero(W2, axis=1) <= w2[0].size).all()  # at most C kh kw weights per row
    assert set(np.unique(W2[W2 != 0])) <= set(w2.ravel())  # only the filters' own numbers appear

# %% [markdown]
# ## Figures: the two matrices

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
cells = WEIGHT_COLOURS[W_index.astype(int)]
cells[:, [0, 1, 10, 11]] *= 0.85  # shade the padding columns
grid(ax, W_index, fmt="", colors=cells, title_text="W (5 x 12): row i is the filter at column 2i; grey = padding")
for (i, j), v in np.ndenumerate(W_index):
    if v:
        ax.text(j, i, f"w{int(v)}", ha="center", va="center", fontsize=9)
ax.set_xticks(range(12), columns)
ax.set_yticks(range(5), [f"y{i}" for i in range(1, 6)])
ax.tick_params(labelbottom=True, labelleft=True)
save(fig, OUT, "matrix_1d")

# one channel, a 4 x 4 input, a 3 x 3 filter whose weights are 1..9: each entry shows its weight index
W_small = conv2d_matrix(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), (1, 4, 4))
fig, ax = plt.subplots(figsize=(8, 2.6))
colours = plt.get_cmap("tab10")(np.arange(10))[:, :3]
colours[0] = 1.0
grid(ax, W_small, fmt="", colors=colours[W_small.astype(int)],
     title_text="2D: W (4 x 16) of a 3x3 filter (weights 1..9) on a 4x4 input — each row is one window")
for (i, j), v in np.ndenumerate(W_small):
    if v:
        ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=8)
ax.set_xticks(range(16), [f"x{r}{c}" for r in range(4) for c in range(4)], fontsize=7)
ax.set_yticks(range(4), [f"y{r}{c}" for r in range(2) for c in range(2)])
ax.tick_params(labelbottom=True, labelleft=True)
save(fig, OUT, "matrix_2d")
assert W_small.shape == (4, 16)

print("\nA convolution is a (mostly zero, weight-sharing) matrix. Next: its transpose.")
