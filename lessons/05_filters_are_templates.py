# %% [markdown]
# # Lesson 5 — filters are templates, the maximum names the patch, and what one unit can see
#
# A student on the course forum asked how to decide which of two images "activates a unit more".
# He added up the unit's feature map: +240 for one image, -240 for the other. This lesson works
# through his example: what the numbers are, why the sum is the wrong score and the maximum the
# right one, why a filter responds most to an input that looks like itself, and how large a patch
# of the image one unit of a deeper layer can see.
#
# Run: `python lessons/05_filters_are_templates.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title

from minicnn import ops
from minicnn.layers import AvgPool2d, Conv2d, ReLU
from minicnn.network import Network
from minicnn.shapes import receptive_field, receptive_field_box

OUT = output_dir("05_filters_are_templates")


def response(image, kernel):
    """Feature map of one 3x3 filter on one 6x6 image (a conv with no padding, stride 1)."""
    return ops.conv2d(image[None, None], kernel[None, None])[0, 0]


# %% [markdown]
# ## The forum example
# Image a: a 6 x 6 picture, left half 10 (bright), right half 0 (dark). Image b: the mirror image.
# The vertical-edge filter has rows (1, 0, -1): it adds up the left column of a patch and subtracts
# the right column. The horizontal-edge filter is its transpose.

# %%
title("the forum's two images and two filters")
image_a = np.zeros((6, 6))
image_a[:, :3] = 10.0
image_b = image_a[:, ::-1].copy()
vertical = np.array([[1.0, 0.0, -1.0]] * 3)
horizontal = vertical.T.copy()

a = response(image_a, vertical)  # "activation a"
b = response(image_b, vertical)  # "activation b"
c = response(image_a, horizontal)
d = response(image_b, horizontal)
show("a = vertical filter on image a", a)
show("b = vertical filter on image b", b)
print(f"sums: a {a.sum():g}, b {b.sum():g}, c {c.sum():g}, d {d.sum():g}")
assert a.shape == (4, 4)
assert all(row.tolist() == [0, 30, 30, 0] for row in a)
assert all(row.tolist() == [0, -30, -30, 0] for row in b)
assert (a.sum(), b.sum()) == (240, -240)
assert not c.any() and not d.any()  # the horizontal filter sees no horizontal edge in either image
assert (response(image_a, -vertical).sum(), response(image_b, -vertical).sum()) == (-240, 240)  # flip the sign: swap

# %% [markdown]
# The sign is not a mistake: the filter asks "is it brighter on the left than on the right?".
# Image a says yes (+30), image b says the opposite (-30). After a ReLU, b's unit would be silent.
#
# ## Why the maximum, not the sum
# A unit fires for a pattern somewhere in the image. Summing over all positions mixes places where
# the pattern is with places where its opposite is. A bright vertical stripe has the filter's edge
# on its right side and the reversed edge on its left: the sum is 0, as for a blank image, yet the
# unit fires as strongly as on image a. The maximum (or the top-k values) keeps that, and its
# position says WHICH patch fired.

# %%
title("max vs sum: a bright stripe")
stripe = np.zeros((6, 6))
stripe[:, 2:4] = 10.0
s = response(stripe, vertical)
show("vertical filter on a stripe", s)
scores = {"a": a, "b": b, "c": c, "d": d, "stripe": s}
by_sum = sorted(scores, key=lambda k: -scores[k].sum())
by_max = sorted(scores, key=lambda k: -scores[k].max())
for name, fmap in scores.items():
    print(f"  {name:>6}: sum {fmap.sum():6g}   max {fmap.max():4g}")
print(f"ranked by sum: {by_sum}   ranked by max: {by_max}")
assert s.sum() == 0 and s.max() == 30
assert by_max[:2] == ["a", "stripe"] and by_sum[0] == "a" and by_sum.index("stripe") > by_sum.index("c")
assert s.sum() == c.sum() == d.sum()  # by the sum, the stripe looks like a blank response
assert s.max() == a.max() > max(b.max(), c.max(), d.max())  # by the max, it fires like image a

i, j = np.unravel_index(np.argmax(s), s.shape)
field = receptive_field([(3, 1, 0)])[-1]
top, bottom, left, right = receptive_field_box(field, i, j, stripe.shape)
patch = stripe[top:bottom, left:right]
show(f"the patch behind the strongest unit ({i}, {j})", patch)
assert patch.shape == (3, 3) and all(row.tolist() == [10, 10, 0] for row in patch)  # bright left, dark right

# %% [markdown]
# ## A filter is a template
# A unit computes w . x = |w| |x| cos(theta): the length of the filter, the length of the patch, and
# how similar their directions are. Among patches of the same length, the largest response goes to
# x = w / |w| (cos = 1): the patch that looks like the filter. That is why first-layer filters, which
# multiply pixels directly, can be shown as little images of what they detect. Deeper filters multiply
# feature maps, not pixels (the slides' second layer is 20 x 16 x 7 x 7: 16 channels that are not
# colours), so drawing them says little.

# %%
title("w . x = |w| |x| cos(theta)")
rng = np.random.default_rng(0)
w = vertical.ravel()
random_patches = rng.standard_normal((20000, 9))
random_patches /= np.linalg.norm(random_patches, axis=1, keepdims=True)  # unit length
best_random = (random_patches @ w).max()
template = w / np.linalg.norm(w)
patch_a = image_a[:3, 1:4].ravel()  # the patch of image a where the unit gives 30
cosine_a = patch_a @ w / (np.linalg.norm(patch_a) * np.linalg.norm(w))
print(f"|w| = {np.linalg.norm(w):.4f}")
print(f"best of 20000 random unit-length patches: {best_random:.4f}")
print(f"the template w / |w|:                      {template @ w:.4f}")
print(f"image a's edge patch: w.x = {patch_a @ w:g} = |w| |x| cos, with cos = {cosine_a:.3f}")
assert np.isclose(template @ w, np.linalg.norm(w))
assert best_random < template @ w
assert np.isclose(patch_a @ w, 30) and np.isclose(cosine_a, 0.5)

# %% [markdown]
# ## How much of the image does one unit see?
# A unit of the first 3 x 3 conv sees 3 x 3 pixels. A unit of a second 3 x 3 conv sees 3 x 3 units of
# the first, which together cover 5 x 5 pixels; a third sees 7 x 7. Each layer adds (k - 1) times the
# current jump — the distance in pixels between neighbouring units, which every stride multiplies:
#     r_l = r_{l-1} + (k_l - 1) j_{l-1},   j_l = j_{l-1} s_l.
# Check it by back-propagation: send a 1 back from a single unit through a network whose weights are
# all positive; the pixels that receive something are exactly the receptive field.

# %%
title("receptive fields of stacked 3x3 convolutions")


def positive_network(layers):
    """A Network with every weight set to 1 (nothing can cancel on the way back)."""
    net = Network(layers)
    for name in net.names:
        if "weight" in net[name].params:
            net[name].params["weight"][...] = 1.0
    return net


def unit_gradient(net, image_size, unit):
    """The input gradient of one unit of the last layer: a 1 sent back from it, 0 from all others."""
    out = net.forward(np.ones((1, 1, image_size, image_size)))
    seed = np.zeros_like(out)
    seed[0, 0][unit] = 1.0
    return net.backward(seed, param_grads=False)[0, 0]


def box_side(support):
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


stacked = [(f"conv{k}", Conv2d(1, 1, 3, bias=False, dtype=np.float64)) for k in (1, 2, 3)]
fields = receptive_field(positive_network(stacked))
print("sizes from the formula:", [f.size[0] for f in fields])
assert [f.size for f in fields] == [(3, 3), (5, 5), (7, 7)]
gradients = []
for depth in (1, 2, 3):
    net = positive_network(stacked[:depth])
    gradients.append(unit_gradient(net, 9, (4 - depth, 4 - depth)))  # the unit over the image's centre
    support = gradients[-1] != 0
    print(f"  layer {depth}: back-propagation reaches {box_side(support)} pixels, all of them: {support.sum()}")
    assert box_side(support) == (2 * depth + 1,) * 2 and support.sum() == (2 * depth + 1) ** 2

title("with strides the jump multiplies")
strided = [("conv1", Conv2d(1, 1, 3, bias=False, dtype=np.float64)), ("relu1", ReLU()), ("pool1", AvgPool2d(2)),
           ("conv2", Conv2d(1, 1, 3, bias=False, dtype=np.float64)), ("relu2", ReLU()), ("pool2", AvgPool2d(2)),
           ("conv3", Conv2d(1, 1, 3, bias=False, dtype=np.float64))]
net = positive_network(strided)
fields = receptive_field(net)
for f in fields:
    print(f"  {f.name:>6}: sees {f.size[0]:2d} x {f.size[1]:2d} pixels, neighbours {f.jump[0]} pixel(s) apart")
windowed = [f for f in fields if not f.name.startswith("relu")]
assert [f.size[0] for f in windowed] == [3, 4, 8, 10, 18]
assert [f.jump[0] for f in windowed] == [1, 2, 2, 4, 4]
strided_gradient = unit_gradient(net, 30, (2, 2))
strided_support = strided_gradient != 0
top, bottom, left, right = receptive_field_box(fields[-1], 2, 2, (30, 30))
print(f"  back-propagation from conv3 unit (2, 2) reaches {box_side(strided_support)} pixels, "
      f"rows {top}:{bottom}, cols {left}:{right}")
assert box_side(strided_support) == (18, 18) and strided_support[top:bottom, left:right].all()

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
for col, (name, picture) in enumerate([("image a", image_a), ("image b", image_b), ("stripe", stripe)]):
    axes[0, col].imshow(picture, cmap="gray", vmin=0, vmax=10)
    axes[0, col].set_title(name, fontsize=10)
    axes[0, col].set_xticks([])
    axes[0, col].set_yticks([])
grid(axes[0, 3], vertical, title_text="vertical-edge filter")
for col, (name, fmap) in enumerate([("a", a), ("b", b), ("stripe", s)]):
    grid(axes[1, col], fmap, vmax=30, title_text=f"response {name}: sum {fmap.sum():g}, max {fmap.max():g}")
grid(axes[1, 3], c, vmax=30, title_text="horizontal filter on a: all 0")
axes[0, 2].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 3, 3, fill=False, edgecolor="tab:red", linewidth=2))
axes[1, 2].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=2))
fig.suptitle("the sum cancels (stripe: 0, like a blank); the maximum finds the patch (red)", fontsize=11)
save(fig, OUT, "forum_edges_max_vs_sum")

fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
panels = [(g, f"layer {d}: one unit sees {2 * d + 1}x{2 * d + 1}") for g, d in zip(gradients, (1, 2, 3))]
panels.append((strided_gradient, "conv-pool-conv-pool-conv: 18x18"))
for ax, (gradient, name) in zip(axes, panels):
    shade = np.where(gradient > 0, 0.25 + 0.75 * gradient / gradient.max(), 0.0)  # every reached pixel visible
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1.1)
    ax.set_xticks(np.arange(gradient.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(gradient.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.4)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(name, fontsize=10)
fig.suptitle("receptive fields: the input gradient of one unit (all weights 1); darker = more paths", fontsize=11)
save(fig, OUT, "receptive_fields")

print("\nScore a unit by its maximum; a filter matches what looks like it; depth and strides widen the view.")
