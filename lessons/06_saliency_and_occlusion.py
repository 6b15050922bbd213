# %% [markdown]
# # Lesson 6 — which pixels made the decision? Saliency maps and occlusion
#
# Two ways to map a class decision back onto the image (lecture section 5):
#
# * saliency (Simonyan 2014): the gradient of the class SCORE S_c (before the softmax) with respect
#   to every pixel, dS_c/dx -- one backward pass from the score, the same pass that trains the
#   network, stopped at the image instead of the weights. The map is max over colour channels of
#   |dS_c/dx|. SmoothGrad averages it over noisy copies; guided backpropagation changes the ReLU rule.
# * occlusion (Zeiler & Fergus 2014): cover a square of the image, run the network again, and
#   write down p(c). Slide the square like a convolution. No gradient at all: slow but direct.
#
# Everything runs on shapes_vgg (minicnn.models), on held-out images it never saw.
#
# Run: `python lessons/06_saliency_and_occlusion.py [--out DIR] [--weights DIR]`
# (--weights: a folder holding shapes_vgg.npz and its model card; default: the repository's weights/)

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import output_dir, save, show, title, weights_dir  # first: it also finds minicnn

from minicnn import ops
from minicnn.data import CLASS_NAMES, HELD_OUT_SEED, make_shapes
from minicnn.models import load_pretrained
from minicnn.plot import attribution_figure, display_image, sample_grid
from minicnn.viz.attribution import guided_backprop, occlusion, saliency
from minicnn.viz.pointing import grown_mask, pointing_hits

OUT = output_dir("06_saliency_and_occlusion")
WEIGHTS = weights_dir()

net = load_pretrained("shapes_vgg", WEIGHTS)
batch = make_shapes(8, seed=HELD_OUT_SEED)
images, labels, masks = batch.images, batch.labels, batch.masks
scores = net.forward(images)
print(f"shapes_vgg is right on {np.sum(scores.argmax(axis=1) == labels)} of {len(labels)} held-out images")
assert np.sum(scores.argmax(axis=1) == labels) >= 7, "the shipped shapes_vgg is 99.9% accurate"
print("classes:", ", ".join(batch.class_names))


# %% [markdown]
# ## 0. The ground truth
# Every generated image comes with the exact pixel mask of its object (and of the distractor, when
# there is one) and the object's tight box: that is what lets us *measure* whether a map points at
# the object. The figure outlines each mask (white: the object, black: a distractor).

# %%
title("0. The ground truth: each image's object mask")
for mask, (y0, x0, y1, x1) in zip(masks, batch.boxes):
    rows, cols = np.nonzero(mask)
    assert mask.any() and (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (y0, x0, y1, x1)
print(f"every mask is non-empty and its tight box is the stored box; object sizes: "
      f"{', '.join(str(int(m.sum())) for m in masks)} pixels of {masks[0].size}")
save(sample_grid(batch, n=len(labels)), OUT, "data_with_masks")


# %% [markdown]
# ## 1. Why the score and not the probability
# p_c = exp(S_c) / sum_k exp(S_k), so dp_c/dx = p_c (dS_c/dx - sum_k p_k dS_k/dx): the gradient of the
# probability mixes in every other class's gradient. A pixel can raise p(c) merely by LOWERING another
# class's score. dS_c/dx speaks of class c alone.

# %%
title("dp_c/dx = p_c (dS_c/dx - sum_k p_k dS_k/dx)")
# the image the network is least sure of: where p_c is close to 1, both sides of the identity vanish
confidence = ops.softmax(net.forward(images))[np.arange(len(labels)), labels]
i = int(np.argmin(confidence))
x, c = images[i:i + 1], int(labels[i])
p = ops.softmax(net.forward(x))[0]
grad_S = np.stack([saliency(net, x, k).gradient[0] for k in range(len(CLASS_NAMES))])  # (10, 3, 64, 64)
mixed = p[c] * (grad_S[c] - np.einsum("k,kchw->chw", p, grad_S))
net.forward(x)
seed = (p[c] * (np.eye(len(p))[c] - p))[None].astype(x.dtype)  # dp_c/dS_j = p_c (delta_cj - p_j)
grad_p = net.backward(seed, param_grads=False)[0]
np.testing.assert_allclose(grad_p, mixed, rtol=1e-3, atol=1e-5 * np.abs(mixed).max())
cosine = np.vdot(grad_p, grad_S[c]) / (np.linalg.norm(grad_p) * np.linalg.norm(grad_S[c]))
print(f"image {i} is a {CLASS_NAMES[c]}, p = {p[c]:.3f}; cosine(dp_c/dx, dS_c/dx) = {cosine:.3f}")
print("(the factor p_c in front: when p_c is near 1, p_c can hardly rise any more, S_c still can)")

# %% [markdown]
# ## 2. The saliency map
# One backward pass from a one-hot seed at the scores (rule "gradient"), all images at once.

# %%
title("saliency maps of the true class")
plain = saliency(net, images, labels)
print(f"gradient {plain.gradient.shape} -> map {plain.map.shape} (max over the 3 colour channels of |dS/dx|)")
share_on_object = [m[grown_mask(k)].sum() / m.sum() for m, k in zip(plain.map, masks)]
area_of_object = [grown_mask(k).mean() for k in masks]
on_object = pointing_hits(plain.map, masks)  # the pointing game (minicnn.viz.pointing): max on the grown mask?
for n in range(len(images)):
    print(f"  image {n} {CLASS_NAMES[labels[n]]:>14}: object (grown) covers {area_of_object[n]:5.1%} of the image "
          f"and holds {share_on_object[n]:5.1%} of the saliency; max on the object: {on_object[n]}")
assert np.mean(share_on_object) > np.mean(area_of_object), "saliency should gather on the object"

# %% [markdown]
# ## 3. The map is a derivative
# Nudge one pixel by +-eps: the score moves by eps times the gradient there (a central difference, in
# float64 so that the numbers are not drowned by rounding).

# %%
title("finite difference at the most salient pixel")
net64 = load_pretrained("shapes_vgg", WEIGHTS).astype(np.float64)
x64 = x.astype(np.float64)  # the image of section 1, class c
gradient64 = saliency(net64, x64, c).gradient
pixel = np.unravel_index(np.argmax(np.abs(gradient64)), gradient64.shape)
eps = 1e-5
up, down = x64.copy(), x64.copy()
up[pixel] += eps
down[pixel] -= eps
numeric = (net64.forward(up)[0, c] - net64.forward(down)[0, c]) / (2 * eps)
print(f"pixel (channel, row, col) = {tuple(int(v) for v in pixel[1:])}: (S(x + eps) - S(x - eps)) / 2 eps = {numeric:.6f}, "
      f"backward pass: {gradient64[pixel]:.6f}")
assert np.isclose(numeric, gradient64[pixel], rtol=1e-4, atol=1e-8)

# %% [markdown]
# ## 4. SmoothGrad: average over noisy copies
# Raw gradients are speckled: a ReLU switching on or off flips a pixel's gradient. SmoothGrad adds
# Gaussian noise (std = 0.15 x the image's range) and averages the maps of 16 copies.
# Roughness below = the mean jump between neighbouring pixels, relative to the map's mean.

# %%
title("SmoothGrad is smoother")
smooth = saliency(net, images, labels, smooth=16, sigma=0.15, seed=0)


def roughness(heat):
    """Mean absolute difference between neighbouring pixels, divided by the mean value."""
    jumps = np.abs(np.diff(heat, axis=0)).mean() + np.abs(np.diff(heat, axis=1)).mean()
    return jumps / heat.mean()


rough_plain = np.mean([roughness(m) for m in plain.map])
rough_smooth = np.mean([roughness(m) for m in smooth.map])
print(f"roughness: saliency {rough_plain:.3f}, SmoothGrad {rough_smooth:.3f}")
assert rough_smooth < rough_plain

# %% [markdown]
# ## 5. Guided backpropagation: another ReLU rule on the way back
# The lecture's three rules at one ReLU. Forward inputs x, signal g coming back:
# gradient passes g where x > 0 (an input of -2 gets 0 even if 10 comes back); DeconvNet passes
# max(g, 0) whatever x was; guided passes g only where x > 0 AND g > 0.

# %%
title("three ReLU rules")
x_relu = np.array([-2.0, 3.0, 1.0, -1.0])
g_back = np.array([10.0, -5.0, 4.0, -3.0])
rules = {rule: ops.relu_backward(g_back, x_relu, rule) for rule in ("gradient", "deconvnet", "guided")}
print(f"forward input x = {x_relu}, signal coming back g = {g_back}")
for rule, passed in rules.items():
    print(f"  {rule:>9}: {passed}")
np.testing.assert_array_equal(rules["gradient"], [0, -5, 4, 0])
np.testing.assert_array_equal(rules["deconvnet"], [10, 0, 4, 0])
np.testing.assert_array_equal(rules["guided"], [0, 0, 4, 0])

guided = guided_backprop(net, images, labels)
print(f"guided signal {guided.signal.shape}: zero at {np.mean(guided.signal == 0):.0%} of the values, "
      f"the plain gradient at {np.mean(plain.gradient == 0):.0%}")
fig, axes = plt.subplots(2, 4, figsize=(9, 4.8))
for n, ax in enumerate(axes.ravel()):
    ax.imshow(display_image(guided.signal[n] / max(np.abs(guided.signal[n]).max(), 1e-12) / 2 + 0.5))
    ax.set_title(f"guided: {CLASS_NAMES[labels[n]]}", fontsize=8)
    ax.set_axis_off()
save(fig, OUT, "guided_backprop_signals")

# %% [markdown]
# ## 6. Occlusion
# A 12 x 12 square of the image's mean colour, moved by 6 pixels: floor((64 - 12) / 6) + 1 = 9 positions
# per axis (the last square ends at pixel 59: the 4 rows and columns after it are never covered),
# 81 forward passes per image, run 64 at a time. At each position we keep p(true class).

# %%
title("occlusion: p(true class) with the square at each position")
SIZE, STRIDE = 12, 6
occ = occlusion(net, images[:4], labels[:4], SIZE, STRIDE, fill="mean", batch_size=64)
assert occ.probability.shape == (4, 9, 9)
print(f"unoccluded p(true class) of images 0-3: {np.round(occ.base_probability, 3)}")
show(f"p({CLASS_NAMES[labels[0]]}) of image 0 with the square at each of the 9 x 9 positions", occ.probability[0], 2)
print(f"largest drop {occ.drop[0].max():.3f}; largest rise (covering HELPED) {-occ.drop[0].min():.3f}")

# one position by hand: cover it, run the network, read p
i, j = np.unravel_index(np.argmax(occ.drop[0]), occ.drop[0].shape)
covered = images[:1].copy()
covered[0, :, i * STRIDE:i * STRIDE + SIZE, j * STRIDE:j * STRIDE + SIZE] = images[0].mean(axis=(1, 2))[:, None, None]
p_by_hand = ops.softmax(net.forward(covered))[0, labels[0]]
print(f"position ({i}, {j}) by hand: p = {p_by_hand:.5f}, occlusion(): {occ.probability[0, i, j]:.5f}")
assert np.isclose(p_by_hand, occ.probability[0, i, j], rtol=1e-5, atol=1e-7)

# covering the object should hurt more than covering the background
on_object, off_object = [], []
for n in range(4):
    for a in range(9):
        for b in range(9):
            touches = masks[n, a * STRIDE:a * STRIDE + SIZE, b * STRIDE:b * STRIDE + SIZE].any()
            (on_object if touches else off_object).append(occ.drop[n, a, b])
print(f"mean drop of p: square on the object {np.mean(on_object):.4f}, square on background only {np.mean(off_object):.4f}")
assert np.mean(on_object) > np.mean(off_object)

# %% [markdown]
# ## 7. All four, side by side, and the pointing game on these images
# The occlusion heat map gives each pixel the mean drop over the squares that covered it.

# %%
title("pointing game on these images (maximum on the object, grown by 2 px)")
maps = {"saliency": plain.map[:4], "SmoothGrad": smooth.map[:4], "guided": guided.map[:4],
        "occlusion": occ.heatmap}
for method, method_maps in maps.items():
    hits = pointing_hits(method_maps, masks[:len(method_maps)])
    print(f"  {method:>10}: {''.join('x' if h else '.' for h in hits)}")
    assert sum(hits) >= 3, f"{method} should point at the object in most of these images"
save(attribution_figure(images[:4], maps), OUT, "saliency_and_occlusion")
print("\nlesson 6 done: every identity above was checked by an assert, every count against a floor")
