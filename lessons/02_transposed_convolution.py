# %% [markdown]
# # Lesson 2 — the transposed convolution
#
# Lesson 1 wrote a convolution as y = W x. To go back from the 5 outputs towards the 8 inputs, the
# DeconvNet multiplies by W^T. Three questions:
# 1. what W^T y looks like, and why its first and last two rows are thrown away;
# 2. when W^T really undoes W (only if the rows of W are orthogonal — and even then only partly);
# 3. how W^T y is computed as an ordinary convolution: flip the filter, insert zeros, divide the stride.
#
# Run: `python lessons/02_transposed_convolution.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title

from minicnn.matrix import (
    conv1d,
    conv1d_matrix,
    conv_transpose1d,
    insert_zeros,
    orthogonality,
    reconstruction,
    subpixel_conv_transpose1d,
)
from minicnn.plot import WEIGHT_COLOURS
from minicnn.shapes import input_sizes_for_output

OUT = output_dir("02_transposed_convolution")
n, f, s, p = 8, 4, 2, 2  # the lecture's example: 8 inputs, padding 2, 4 weights, stride 2

# %% [markdown]
# ## W^T, a 12 x 5 matrix
# Each column of W^T is a row of W: output y_i sends its value back, weighted by w1..w4, to the four
# inputs it was computed from. Rows 1-2 and 11-12 of W^T y land on the padding, which was never real
# data: they are cropped, leaving estimates of x1..x8.

# %%
title("W^T, with the weight names")
W_index = conv1d_matrix(np.array([1.0, 2.0, 3.0, 4.0]), n, stride=s, padding=p)
rows = ["pad", "pad"] + [f"x{k}" for k in range(1, n + 1)] + ["pad", "pad"]
back_equations = []
for name, row in zip(rows, W_index.T):
    terms = [f"w{int(row[i])} y{i + 1}" for i in np.flatnonzero(row)]
    back_equations.append(f"{name:>4}_hat = " + " + ".join(terms))
print("\n".join(back_equations))
assert W_index.T.shape == (12, 5)
assert back_equations[2] == "  x1_hat = w3 y1 + w1 y2"  # x1 was read by y1 (as w3) and by y2 (as w1)
assert back_equations[9] == "  x8_hat = w4 y4 + w2 y5"

rng = np.random.default_rng(0)
w = rng.standard_normal(f)
y = rng.standard_normal(5)
W = conv1d_matrix(w, n, stride=s, padding=p)
x_hat_12 = W.T @ y
x_hat = conv_transpose1d(y, w, stride=s, padding=p)  # the engine crops the padding for us
show("W^T y (12 values)", x_hat_12)
show("engine conv_transpose1d (8 values)", x_hat)
assert np.allclose(x_hat, x_hat_12[p:-p])

# %% [markdown]
# ## Is W^T the inverse of W?
# Not in general. For the edge filter (+1, 0, 0, -1) at stride 2 the rows of W do not overlap
# in any non-zero position, so they are orthogonal and all have length sqrt(2): W W^T = 2 I.
# That does NOT make W^T W the identity: W^T W is 12 x 12 but has rank 5. Five numbers cannot hold
# eight. What W^T W x does give is twice the part of x that W can see (its projection on the rows of
# W). So "deconvolution inverts the convolution" is true up to the factor 2, on what the convolution kept.

# %%
title("the edge filter (+1, 0, 0, -1): W W^T = 2 I")
edge = np.array([1.0, 0.0, 0.0, -1.0])
E = conv1d_matrix(edge, n, stride=s, padding=p)
show("W W^T", E @ E.T)
scale, deviation = orthogonality(E)
print(f"orthogonality: W W^T = {scale:g} I, deviation {deviation:g}")
print(f"rank of W^T W ({E.shape[1]} x {E.shape[1]}): {np.linalg.matrix_rank(E.T @ E)}")
assert np.array_equal(E @ E.T, 2 * np.eye(5))
assert (scale, deviation) == (2.0, 0.0)
assert np.linalg.matrix_rank(E.T @ E) == 5

x = np.pad(rng.standard_normal(n), p)  # a signal, with its zero padding
projection = np.linalg.pinv(E) @ E @ x  # the part of x that the five outputs can describe
assert np.allclose(E.T @ E @ x, 2 * projection)
edge_errors = reconstruction(E, x)
print(f"random x:        |W^T W x - x| = {edge_errors.transpose:.3f} |x|,  "
      f"|W^T W x / 2 - x| = {edge_errors.scaled_transpose:.3f} |x|,  best possible {edge_errors.pseudo_inverse:.3f} |x|")
assert abs(edge_errors.scaled_transpose - edge_errors.pseudo_inverse) < 1e-12
assert abs(edge_errors.transpose - 1) < 1e-12  # no accident: |2Px - x|^2 = 4|Px|^2 - 4|Px|^2 + |x|^2

x_seen = E.T @ rng.standard_normal(5)  # a signal made only of what W can see
seen_errors = reconstruction(E, x_seen)
print(f"x in W's row space: |W^T W x / 2 - x| = {seen_errors.scaled_transpose:.1e} |x|  (exact)")
assert seen_errors.scaled_transpose < 1e-12

# %% [markdown]
# A random filter has overlapping, non-orthogonal rows: W^T W x is then a distorted copy even of the
# part of x the convolution kept, while the pseudo-inverse still recovers that part exactly.

# %%
title("a random filter: W W^T is not a multiple of I")
w_random = np.random.default_rng(7).standard_normal(f)
R = conv1d_matrix(w_random, n, stride=s, padding=p)
show("random filter", w_random, digits=2)
r_scale, r_deviation = orthogonality(R)
random_errors = reconstruction(R, R.T @ rng.standard_normal(5))
show("W W^T", R @ R.T, digits=2)
print(f"closest multiple of I: {r_scale:.3f} I, relative deviation {r_deviation:.2f}")
print(f"x in W's row space: |W^T W x / c - x| = {random_errors.scaled_transpose:.2f} |x|, "
      f"pseudo-inverse {random_errors.pseudo_inverse:.1e} |x|")
assert r_deviation > 0.3
assert random_errors.scaled_transpose > 0.05 and random_errors.pseudo_inverse < 1e-10

# %% [markdown]
# ## The sub-pixel recipe: W^T y as an ordinary convolution
# Take y (5 values), insert stride - 1 = 1 zero between neighbours (9 values), pad f - 1 = 3 zeros on
# each side (15 values) and slide the FLIPPED filter (w4, w3, w2, w1) over it at stride 1:
# 15 - 4 + 1 = 12 values, exactly W^T y. Padding only f - 1 - p = 1 instead crops the two padding
# values at each end directly: 8 values, the engine's transposed convolution.
# To remember: flip the weights, insert zeros, divide the stride (2 becomes 1).

# %%
title("flip, insert zeros, divide the stride")
labels = insert_zeros(np.arange(1, 6), s)  # 1 0 2 0 3 0 4 0 5: y indices, 0 for the inserted zeros
padded_labels = np.pad(labels, f - 1)
print("y with zeros, padded by 3 (15):", " ".join(f"y{k}" if k else "0" for k in padded_labels))
print("flipped filter:                 w4 w3 w2 w1")
assert len(labels) == 9 and len(padded_labels) == 15

y_with_zeros = insert_zeros(y, s)
full = conv1d(np.pad(y_with_zeros, f - 1), w[::-1].copy())
cropped = conv1d(np.pad(y_with_zeros, f - 1 - p), w[::-1].copy())
show("correlation, pad 3 (12 values)", full)
show("correlation, pad 1 (8 values) ", cropped)
assert full.shape == (12,) and np.allclose(full, W.T @ y)
assert cropped.shape == (8,) and np.allclose(cropped, conv_transpose1d(y, w, stride=s, padding=p))
assert np.allclose(subpixel_conv_transpose1d(y, w, stride=s, padding=p), cropped)

# %% [markdown]
# ## Learned upsampling, and why output_padding exists
# Trained as a layer of its own (segmentation networks, GAN generators), the transposed convolution
# assumes nothing about orthogonality: it is an upsampling layer whose weights are learned. Its output
# size has one catch: with stride 2, inputs of length 8 AND 9 both give 5 outputs, so going back from 5
# the layer must be told which one. output_padding = 1 asks for 9.

# %%
title("two input sizes, one output size")
sizes = input_sizes_for_output(5, kernel=f, stride=s, padding=p)
print(f"input lengths giving 5 outputs: {list(sizes)}")
assert sizes == range(8, 10)
x9_hat = conv_transpose1d(y, w, stride=s, padding=p, output_padding=1)
W9 = conv1d_matrix(w, 9, stride=s, padding=p)
print(f"output_padding=1: {len(x9_hat)} values; W for 9 inputs is {W9.shape}")
assert len(x9_hat) == 9 and W9.shape == (5, 13)
assert np.allclose(x9_hat, (W9.T @ y)[p : p + 9])

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), gridspec_kw={"width_ratios": [12, 5, 5, 12]})
for ax, matrix, name in zip(axes, [E, E.T, E @ E.T, E.T @ E],
                            ["W (5 x 12)", "W^T (12 x 5)", "W W^T = 2 I", "W^T W: rank 5, not 2 I"]):
    grid(ax, matrix, fmt="{:g}" if matrix.shape[1] <= 5 else "", title_text=name, vmax=2)
fig.suptitle("edge filter (+1, 0, 0, -1), stride 2, padding 2", fontsize=11)
save(fig, OUT, "edge_filter_orthogonality")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
positions = np.arange(-p, n + p)
for ax, matrix, name in [(axes[0], E, "edge filter: W W^T = 2 I"), (axes[1], R, "random filter")]:
    c = orthogonality(matrix).scale
    signal = matrix.T @ np.random.default_rng(1).standard_normal(5)  # lies in the row space
    ax.plot(positions, signal, "o-", color="black", label="x (in W's row space)")
    ax.plot(positions, matrix.T @ matrix @ signal / c, "s--", color="tab:red", label="W^T W x / c")
    ax.axvspan(-p - 0.5, -0.5, color="0.9")
    ax.axvspan(n - 0.5, n + p - 0.5, color="0.9")
    ax.set_title(f"{name}: error {reconstruction(matrix, signal).scaled_transpose:.2f}", fontsize=10)
    ax.set_xlabel("position (grey: padding)")
axes[0].legend(fontsize=8)
save(fig, OUT, "reconstruction")

fig, axes = plt.subplots(2, 1, figsize=(8, 7.5), gridspec_kw={"height_ratios": [1, 12]})
y_cells = np.where(padded_labels > 0, 0.75, 1.0)[None, :, None] * np.ones(3)
grid(axes[0], padded_labels[None, :], fmt="", colors=y_cells,
     title_text="y with zeros inserted, padded by f - 1 = 3 (15 values)")
for j, k in enumerate(padded_labels):
    axes[0].text(j, 0, f"y{k}" if k else "0", ha="center", va="center", fontsize=9)
sliding = np.zeros((12, 15), dtype=int)
for i in range(12):
    sliding[i, i : i + 4] = [4, 3, 2, 1]  # flipped weight indices under output i
cells = WEIGHT_COLOURS[sliding]
cells[:, padded_labels == 0] = 0.55 * cells[:, padded_labels == 0] + 0.45  # fade what meets a zero
grid(axes[1], sliding, fmt="", colors=cells,
     title_text="the flipped filter at its 12 positions (faded: it meets a zero)\n"
                "bright cells = the rows of W^T; rows 1-2 and 11-12 are the padding, cropped")
for (i, j), v in np.ndenumerate(sliding):
    if v:
        axes[1].text(j, i, f"w{v}", ha="center", va="center", fontsize=8)
axes[1].set_yticks(range(12), rows)
axes[1].set_xticks(range(15), [f"y{k}" if k else "0" for k in padded_labels])
axes[1].tick_params(labelbottom=True, labelleft=True)
save(fig, OUT, "subpixel_recipe_1d")
# the sliding positions restricted to the columns holding y are W^T, weight for weight
assert np.array_equal(sliding[:, padded_labels > 0], W_index.T)

print("\nW^T undoes W only up to scale and only on what W kept; it is an ordinary stride-1 convolution.")
