# %% [markdown]
# # Lesson 3 — deconvolution in 2D: stamps, output_padding, and four small convolutions
#
# In 2D the transposed convolution is easiest to picture as stamping: every value of y prints a copy
# of the filter, scaled by that value, onto the output; where stamps overlap they add. Then the same
# operation is computed as one stride-1 convolution over a zero-inserted input (the sub-pixel form),
# and finally as four small convolutions whose outputs are interleaved (the polyphase form).
#
# Run: `python lessons/03_deconvolution_in_2d.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title

from minicnn import ops
from minicnn.matrix import (
    flip_kernel,
    insert_zeros,
    matrix_conv_transpose2d,
    pad_or_crop,
    parity_classes,
    polyphase_conv_transpose2d,
    subpixel_conv_transpose2d,
)
from minicnn.shapes import conv2d_output_shape, input_sizes_for_output

OUT = output_dir("03_deconvolution_in_2d")

# %% [markdown]
# ## 5 x 5, a 2 x 2 filter, stride 2: the output is 2 x 2
# floor((5 - 2) / 2) + 1 = 2. The last row and column of x are never read: no window reaches them.
# So a 4 x 4 input gives the same 2 x 2 output, and the way back must be told which size to produce.

# %%
title("5x5 -> 2x2 -> back")
x = np.arange(1.0, 26.0).reshape(1, 1, 5, 5)
w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
y = ops.conv2d(x, w, stride=2)
show("x", x[0, 0])
show("y = conv2d(x, w, stride 2)", y[0, 0])
assert conv2d_output_shape((5, 5), 2, stride=2) == (2, 2) and y.shape == (1, 1, 2, 2)
assert input_sizes_for_output(2, kernel=2, stride=2) == range(4, 6)  # 4 x 4 and 5 x 5 both give 2 x 2

back_4 = ops.conv_transpose2d(y, w, stride=2)
back_5 = ops.conv_transpose2d(y, w, stride=2, output_padding=1)
show("conv_transpose2d(y, w, stride 2)", back_4[0, 0])
show("... with output_padding=1", back_5[0, 0])
assert back_4.shape == (1, 1, 4, 4) and back_5.shape == (1, 1, 5, 5)
assert not back_5[0, 0, 4, :].any() and not back_5[0, 0, :, 4].any()  # the unread row / column: zeros
assert np.array_equal(back_5[0, 0, :4, :4], back_4[0, 0])

# %% [markdown]
# ## Stamping
# The transposed convolution is linear in y, so it is the sum of what each y value does alone:
# y_ij alone prints y_ij * w with its top-left corner at (2i, 2j). Here the stride equals the filter
# size and the stamps tile the output. With a 3 x 3 filter at stride 2 they overlap and add.

# %%
title("every y value stamps a scaled filter; overlaps add")


def stamps(y, w, stride, output_padding=0):
    """The contribution of each y value alone: conv_transpose2d of y with every other value zeroed."""
    parts = {}
    for i, j in np.ndindex(y.shape[2:]):
        alone = np.zeros_like(y)
        alone[:, :, i, j] = y[:, :, i, j]
        parts[i, j] = ops.conv_transpose2d(alone, w, stride=stride, output_padding=output_padding)
    return parts


tiles = stamps(y, w, 2, output_padding=1)
for (i, j), stamp in tiles.items():
    assert np.array_equal(stamp[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2], y[0, 0, i, j] * w[0, 0])
    assert np.count_nonzero(stamp) == 4
assert np.array_equal(sum(tiles.values()), back_5)

w3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
y_small = np.array([[1.0, 2.0], [-1.0, 1.0]]).reshape(1, 1, 2, 2)
overlapping = stamps(y_small, w3, 2)
total = ops.conv_transpose2d(y_small, w3, stride=2)
show("3x3 filter, stride 2: sum of the four stamps", total[0, 0])
assert total.shape == (1, 1, 5, 5)  # (2 - 1) * 2 + 3: no output_padding needed here
assert np.array_equal(sum(overlapping.values()), total)
assert total[0, 0, 2, 2] == 9 * 1 + 7 * 2 + 3 * -1 + 1 * 1  # the centre gets a corner of every stamp

# %% [markdown]
# ## Channels: the stamp is a whole filter volume
# A forward filter w[f] is a (C, kh, kw) volume. Going back, each value of output channel f stamps that
# whole volume (all C channels at once); the stamps of different filters add.

# %%
title("several filters: their stamps add")
rng = np.random.default_rng(0)
w_volume = rng.standard_normal((2, 3, 2, 2))  # 2 filters over 3 channels
y_two = rng.standard_normal((1, 2, 2, 2))  # one value map per filter
back = ops.conv_transpose2d(y_two, w_volume, stride=2, output_padding=1)
per_filter = [ops.conv_transpose2d(y_two[:, [f]], w_volume[[f]], stride=2, output_padding=1) for f in range(2)]
print(f"y {y_two.shape} -> x {back.shape}: 3 channels, each the sum of both filters' stamps")
assert back.shape == (1, 3, 5, 5)
assert np.allclose(back, per_filter[0] + per_filter[1])

# %% [markdown]
# ## The sub-pixel form: 4 x 4 -> 9 x 9 -> 6 x 6
# The lecture's picture: y is 4 x 4, the filter 4 x 4, stride 2, padding 2.
# Insert one zero between neighbours (7 x 7), pad k - 1 - p = 1 all round (9 x 9), and run an ordinary
# stride-1 convolution with the flipped filter: 9 - 4 + 1 = 6, a 6 x 6 output. Same numbers as the engine.

# %%
title("4x4 -> zeros inserted 7x7 -> padded 9x9 -> 6x6")
y_4x4 = rng.integers(1, 10, (1, 1, 4, 4)).astype(float)
w_4x4 = rng.integers(-3, 4, (1, 1, 4, 4)).astype(float)
stride, padding = 2, 2
spread = insert_zeros(y_4x4, (stride, stride))
padded = pad_or_crop(pad_or_crop(spread, 2, 4 - 1 - padding, 4 - 1 - padding), 3, 4 - 1 - padding, 4 - 1 - padding)
out = ops.conv2d(padded, flip_kernel(w_4x4))
show("y", y_4x4[0, 0])
show("y with zeros, padded (9x9)", padded[0, 0])
show("stride-1 conv with the flipped filter (6x6)", out[0, 0])
engine = ops.conv_transpose2d(y_4x4, w_4x4, stride=stride, padding=padding)
assert spread.shape[2:] == (7, 7) and padded.shape[2:] == (9, 9) and out.shape[2:] == (6, 6)
assert np.allclose(out, engine)
assert np.allclose(subpixel_conv_transpose2d(y_4x4, w_4x4, stride=stride, padding=padding), engine)
assert np.allclose(matrix_conv_transpose2d(y_4x4, w_4x4, stride=stride, padding=padding), engine)

# %% [markdown]
# ## Four small convolutions (the polyphase form)
# Most of the 9 x 9 input is zeros, so most multiplications are wasted. Look at which weights an
# output pixel actually meets: the non-zeros sit on every other row and column, so an output pixel
# only ever meets weights from ONE parity class of the filter:
# blue (even row, even column), green (even, odd), purple (odd, even), yellow (odd, odd).
# Each class is a 2 x 2 filter; sliding it over y itself (4 x 4, no zeros, stride 1) gives 3 x 3
# outputs; the four 3 x 3 results, interleaved, are the 6 x 6 output. Interleaving four channels into
# one twice-as-large image is also called a pixel shuffle.

# %%
title("four 2x2 convolutions, interleaved")
COLOURS = {(0, 0): "blue", (0, 1): "green", (1, 0): "purple", (1, 1): "yellow"}
classes = parity_classes(w_4x4, stride)
for (a, b), colour in COLOURS.items():
    # output pixels (a::2, b::2) sit at uncropped position o + p, whose parity picks the weight class
    r = ((a + padding) % stride, (b + padding) % stride)
    sub_output = ops.conv2d(y_4x4, flip_kernel(classes[r]))  # a VALID 2x2 convolution: 4x4 -> 3x3
    print(f"output pixels (row {a} mod 2, col {b} mod 2) use the {COLOURS[r]} weights "
          f"{classes[r][0, 0].ravel().astype(int).tolist()} -> {sub_output.shape[2:]}")
    assert classes[r].shape[2:] == (2, 2) and sub_output.shape[2:] == (3, 3)
    assert np.allclose(engine[:, :, a::2, b::2], sub_output)
assert np.allclose(polyphase_conv_transpose2d(y_4x4, w_4x4, stride=stride, padding=padding), engine)

# prove the partition: keep only one class of weights; only that class's output pixels change
owner = np.full((6, 6), -1)
for index, r in enumerate(COLOURS):
    only_r = np.zeros_like(w_4x4)
    only_r[:, :, r[0]::2, r[1]::2] = 1.0  # positive weights on this class only: nothing can cancel
    reached = ops.conv_transpose2d(np.ones_like(y_4x4), only_r, stride=2, padding=2)[0, 0] != 0
    assert (owner[reached] == -1).all()  # no pixel is reached by two classes
    owner[reached] = index
assert (owner >= 0).all()  # every pixel is reached by exactly one class
print("each of the 36 output pixels meets the weights of exactly one colour")

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(2, 5, figsize=(14, 6))
for row, (parts, total_map, name) in enumerate([(tiles, back_5, "2x2 filter, stride 2, output_padding 1"),
                                                (overlapping, total, "3x3 filter, stride 2: stamps overlap")]):
    limit = np.abs(total_map).max()
    for ax, ((i, j), stamp) in zip(axes[row], parts.items()):
        source = y if row == 0 else y_small
        grid(ax, stamp[0, 0], title_text=f"y[{i},{j}] = {source[0, 0, i, j]:g} stamps", vmax=limit)
    grid(axes[row, 4], total_map[0, 0], title_text="sum of the stamps", vmax=limit)
    axes[row, 0].set_ylabel(name, fontsize=10)
fig.suptitle("transposed convolution = every input value stamps a scaled copy of the filter", fontsize=12)
save(fig, OUT, "stamping")

RGB = {"blue": (0.45, 0.65, 0.95), "green": (0.5, 0.82, 0.5), "purple": (0.75, 0.6, 0.92), "yellow": (0.98, 0.85, 0.35)}
fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), gridspec_kw={"width_ratios": [4, 9, 6]})
kernel_cells = np.zeros((4, 4, 3))
for (i, j) in np.ndindex(4, 4):
    kernel_cells[i, j] = RGB[COLOURS[i % 2, j % 2]]
grid(axes[0], w_4x4[0, 0], colors=kernel_cells, title_text="the 4x4 filter: four parity classes")
flipped_cells = kernel_cells[::-1, ::-1]

input_cells = np.ones((9, 9, 3))
input_cells[padded[0, 0] != 0] = 0.75
input_cells[[0, -1], :] = input_cells[:, [0, -1]] = (0.93, 0.93, 0.93)
grid(axes[1], padded[0, 0], colors=input_cells,
     title_text="y: zeros inserted, padded by 1 (9x9); grey border = padding")
# one window of the flipped filter, drawn at output pixel (1, 2): only one colour lands on y values
top, left = 1, 2
for (i, j) in np.ndindex(4, 4):
    if padded[0, 0, top + i, left + j] != 0:
        axes[1].add_patch(plt.Rectangle((left + j - 0.5, top + i - 0.5), 1, 1, fill=False,
                                        edgecolor=flipped_cells[i, j], linewidth=3))
axes[1].add_patch(plt.Rectangle((left - 0.5, top - 0.5), 4, 4, fill=False, edgecolor="black", linestyle="--"))

output_cells = np.zeros((6, 6, 3))
for (i, j) in np.ndindex(6, 6):
    output_cells[i, j] = RGB[COLOURS[(i + padding) % 2, (j + padding) % 2]]
grid(axes[2], engine[0, 0], colors=output_cells, title_text="6x6 output, coloured by the one class it uses")
axes[2].add_patch(plt.Rectangle((2 - 0.5, 1 - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
fig.suptitle("kernel 4, stride 2, padding 2: each output pixel meets one colour of weights "
             "(dashed: the flipped filter's window for the boxed output pixel)", fontsize=11)
save(fig, OUT, "subpixel_parity_classes")

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (a, b) in zip(axes, COLOURS):
    r = ((a + padding) % 2, (b + padding) % 2)
    colour_cells = np.ones((3, 3, 3)) * RGB[COLOURS[r]]
    grid(ax, engine[0, 0, a::2, b::2], colors=colour_cells,
         title_text=f"{COLOURS[r]}: y * 2x2 -> 3x3\nplaced at rows {a}::2, cols {b}::2")
fig.suptitle("the four sub-convolutions, interleaved, give the 6x6 output (a pixel shuffle)", fontsize=11)
save(fig, OUT, "polyphase_four_convolutions")

print("\nOne transposed convolution = stamps = one zero-inserted stride-1 conv = four small convs interleaved.")
