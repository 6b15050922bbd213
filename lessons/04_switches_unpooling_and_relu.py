# %% [markdown]
# # Lesson 4 — switches, un-pooling, and three ways back through a ReLU
#
# A DeconvNet walks a conv block backwards: un-pool, un-ReLU, deconvolve. Lessons 1-3 covered the
# deconvolution. This one covers the other two steps, and shows that they too are (almost) the
# ordinary backward pass of the network.
#
# Run: `python lessons/04_switches_unpooling_and_relu.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title

from minicnn import ops
from minicnn.layers import Conv2d, MaxPool2d, ReLU
from minicnn.network import Network
from minicnn.shapes import receptive_field, receptive_field_box

OUT = output_dir("04_switches_unpooling_and_relu")

# %% [markdown]
# ## Max-pooling forgets, except where the maxima were
# A 2 x 2 max-pool at stride 2 turns a 4 x 4 input into 2 x 2: here the maxima are 42, 12, 6 and 7.
# Three numbers out of every four are gone; nothing can bring them back. What CAN be kept is where
# each maximum came from: the switches (here the flat index row * 4 + col of each winner).

# %%
title("max-pool 4x4 -> 2x2 and its switches")
x = np.array([[1.0, 42.0, 3.0, 5.0],
              [8.0, 2.0, 12.0, 0.0],
              [6.0, 4.0, 7.0, 1.0],
              [3.0, 5.0, 2.0, 6.0]]).reshape(1, 1, 4, 4)
pooled, switches = ops.max_pool2d(x, 2)
show("x", x[0, 0])
show("max-pooled", pooled[0, 0])
show("switches (flat index of each maximum)", switches[0, 0])
assert pooled[0, 0].tolist() == [[42, 12], [6, 7]]
assert switches[0, 0].tolist() == [[1, 6], [8, 10]]

# %% [markdown]
# ## Un-pooling puts each value back at its switch
# Everything else becomes zero. Two different inputs that agree on the maxima and their places pool
# to the same numbers with the same switches, so un-pooling cannot tell them apart: max-pooling is
# not invertible.

# %%
title("un-pooling with the switches")
unpooled = ops.max_unpool2d(pooled, switches, (4, 4))
show("unpooled", unpooled[0, 0])
assert np.count_nonzero(unpooled) == 4
assert sorted(unpooled[unpooled != 0].tolist()) == [6, 7, 12, 42]

other = x.copy()
other[0, 0, 0, 0], other[0, 0, 3, 0], other[0, 0, 2, 3] = -100.0, 5.5, 0.0  # change three losers
other_pooled, other_switches = ops.max_pool2d(other, 2)
assert not np.array_equal(other, x)
assert np.array_equal(other_pooled, pooled) and np.array_equal(other_switches, switches)
print("a different input with the same maxima pools to the same 2x2 and the same switches")

# %% [markdown]
# ## Max-pool's backward pass IS un-pooling
# The derivative of a max is 1 for the winner and 0 for the others, so the gradient coming back
# goes to the switch positions and nowhere else: exactly un-pooling.

# %%
title("max-pool backward == un-pooling")
pool = MaxPool2d(2)
pool.forward(x)
dy = np.array([[1.0, -2.0], [3.0, 0.5]]).reshape(1, 1, 2, 2)
dx = pool.backward(dy)
show("gradient at the input", dx[0, 0])
assert np.array_equal(dx, ops.max_unpool2d(dy, pool.switches, (4, 4)))

# %% [markdown]
# ## Three ways back through a ReLU
# Forward, a ReLU zeroes the negatives. Backward there are three rules:
# - gradient: pass the signal where the FORWARD input was positive (a -2 input gets 0 back, even if
#   10 comes back) — the true derivative;
# - deconvnet: ignore the forward pass and apply a ReLU to the signal coming back (keep what is
#   positive) — the DeconvNet's "un-ReLU";
# - guided: both masks at once — guided backpropagation.

# %%
title("ReLU backward: gradient, deconvnet, guided")
forward_input = np.array([[3.0, -2.0, 5.0], [-1.0, 0.5, 4.0]])
coming_back = np.array([[-4.0, 10.0, 2.0], [7.0, -3.0, 1.0]])
show("forward input", forward_input)
show("signal coming back", coming_back)
rules = {}
for rule in ("gradient", "deconvnet", "guided"):
    rules[rule] = ops.relu_backward(coming_back, forward_input, rule)
    show(rule, rules[rule])
assert rules["gradient"].tolist() == [[-4, 0, 2], [0, -3, 1]]
assert rules["deconvnet"].tolist() == [[0, 10, 2], [7, 0, 1]]
assert rules["guided"].tolist() == [[0, 0, 2], [0, 0, 1]]
assert rules["gradient"][0, 1] == 0 and rules["deconvnet"][0, 1] == 10  # the -2 input with 10 coming back

# %% [markdown]
# ## A DeconvNet reconstruction on a tiny network
# One conv block: conv (two hand-made 3 x 3 edge filters) -> ReLU -> 2 x 2 max-pool, on a 12 x 12
# image of a bright square. Pick the strongest activation of one feature map, zero everything else,
# and go back: un-pool (switches), un-ReLU, deconvolve. One backward pass, nothing iterated. The
# result lives inside that unit's receptive field (4 x 4 here: 3 for the conv, +1 for the pool).
# With a single block the three ReLU rules agree: the one value sent back is positive and came from
# a positive activation. They part ways only when the signal passes a second block's deconvolution,
# which creates negative values.

# %%
title("DeconvNet: from one activation back to the pixels")
vertical = np.array([[1.0, 0.0, -1.0]] * 3)
net = Network([("conv1", Conv2d(1, 2, 3, bias=False, dtype=np.float64)), ("relu1", ReLU()),
               ("pool1", MaxPool2d(2))])
net["conv1"].params["weight"][...] = np.stack([vertical, vertical.T])[:, None]
image = np.zeros((1, 1, 12, 12))
image[0, 0, 3:9, 4:10] = 1.0

features = net.forward(image)
channel = 0  # the vertical-edge map
i, j = np.unravel_index(np.argmax(features[0, channel]), features.shape[2:])
seed = np.zeros_like(features)
seed[0, channel, i, j] = features[0, channel, i, j]
reconstructions = {rule: net.backward(seed, rule=rule, param_grads=False)[0, 0] for rule in ("deconvnet", "guided", "gradient")}

field = receptive_field(net)[-1]
top, bottom, left, right = receptive_field_box(field, i, j, image.shape[2:])
print(f"strongest vertical-edge unit: ({i}, {j}) = {features[0, channel, i, j]:g}; "
      f"receptive field {field.size}, box rows {top}:{bottom}, cols {left}:{right}")
show("DeconvNet reconstruction (rows/cols of the box)", reconstructions["deconvnet"][top:bottom, left:right])
assert field.size == (4, 4) and field.jump == (2, 2)
for rule, picture in reconstructions.items():
    outside = picture.copy()
    outside[top:bottom, left:right] = 0
    assert not outside.any(), rule  # nothing outside the receptive field
assert reconstructions["deconvnet"].any()
assert all(np.array_equal(picture, reconstructions["deconvnet"]) for picture in reconstructions.values())

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
window_colours = np.array([[0.7, 0.82, 1.0], [0.75, 0.92, 0.75], [0.92, 0.8, 1.0], [1.0, 0.9, 0.6]])
cells = np.zeros((4, 4, 3))
for r, c in np.ndindex(4, 4):
    cells[r, c] = window_colours[2 * (r // 2) + c // 2]
grid(axes[0], x[0, 0], colors=cells, title_text="input 4x4: four 2x2 windows")
for flat in switches.ravel():
    r, c = divmod(int(flat), 4)
    axes[0].add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
grid(axes[1], pooled[0, 0], colors=window_colours.reshape(2, 2, 3), title_text="max-pooled 2x2")
grid(axes[2], unpooled[0, 0], colors=np.where(unpooled[0, 0, :, :, None] != 0, cells, 1.0),
     title_text="un-pooled with the switches")
fig.suptitle("max-pool keeps the maxima (boxed) and where they were; the rest is lost", fontsize=11)
save(fig, OUT, "maxpool_switches_unpool")

fig, axes = plt.subplots(1, 5, figsize=(14, 2.8))
panels = [("forward input", forward_input), ("coming back", coming_back)] + list(rules.items())
for ax, (name, values) in zip(axes, panels):
    grid(ax, values, title_text=name, vmax=10)
fig.suptitle("three ways back through a ReLU", fontsize=11)
save(fig, OUT, "relu_backward_rules")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
axes[0].imshow(image[0, 0], cmap="gray")
axes[0].set_title("image; red: the unit's receptive field", fontsize=10)
grid(axes[1], vertical, title_text="the vertical-edge filter")
picture = reconstructions["deconvnet"]
axes[2].imshow(picture, cmap="RdBu_r", vmin=-np.abs(picture).max(), vmax=np.abs(picture).max())
axes[2].set_title("DeconvNet reconstruction", fontsize=10)
for ax in (axes[0], axes[2]):
    ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               edgecolor="tab:red", linewidth=2))
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("one activation of the vertical-edge map, projected back to the pixels", fontsize=11)
save(fig, OUT, "deconvnet_reconstruction")

print("\nUn-pooling = max-pool backward; un-ReLU differs from ReLU backward only in which mask it uses.")
