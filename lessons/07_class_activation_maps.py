# %% [markdown]
# # Lesson 7 — class activation maps: where is the evidence for a class?
#
# The lecture's network (section 5) ends in a last conv volume A of 4 x 4 x 6 (six feature maps of
# 4 x 4), global average pooling (GAP) to six numbers a_1 ... a_6, and ONE fully connected layer to
# the class scores. Swapping two sums shows that the score of class c is the mean of a 4 x 4 map:
#
#     S_c = sum_k w_k^c a_k + b_c = sum_k w_k^c (1/16) sum_ij A_k(i, j) + b_c
#         = (1/16) sum_ij [ sum_k w_k^c A_k(i, j) ] + b_c = (1/16) sum_ij M_c(i, j) + b_c
#
# M_c = sum_k w_k^c A_k is the class activation map (Zhou 2016). Each position's share of the score
# is M_c(i, j) / 16; up-sampled to the image size and laid over the image, it shows WHERE the
# evidence for class c is. Grad-CAM (Selvaraju 2017) extends the idea to any network.
#
# Run: `python lessons/07_class_activation_maps.py [--out DIR] [--weights DIR]`
# (--weights: a folder holding shapes_cam.npz, shapes_vgg.npz and their model cards; default: the
# repository's weights/)

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title, weights_dir  # first: it also finds minicnn

from minicnn import GlobalAvgPool2d, Linear, Network
from minicnn.data import CLASS_NAMES, HELD_OUT_SEED, make_shapes
from minicnn.models import load_pretrained
from minicnn.plot import attribution_figure, heatmap_overlay
from minicnn.viz.cam import cam, grad_cam, last_conv_layer
from minicnn.viz.pointing import pointing_hits

OUT = output_dir("07_class_activation_maps")
WEIGHTS = weights_dir()

# %% [markdown]
# ## 1. The sum swap, in numbers: the lecture's 4 x 4 x 6 volume
# Small integers, so every number below is exact: the two ways of computing S_c agree to the last bit.

# %%
title("the last conv volume A: six feature maps of 4 x 4")
rng = np.random.default_rng(7)
A = rng.integers(0, 6, size=(6, 4, 4)).astype(np.float64)  # (K=6, 4, 4), after a ReLU: >= 0
w = np.array([1.0, 3.0, -2.0, 0.0, 2.0, -1.0])               # w^c: the fc weights of class c
b = 0.5                                                      # b_c
for k in range(6):
    show(f"A_{k + 1} (weight w_{k + 1} = {w[k]:g})", A[k])

title("way 1: global average pooling, then the fully connected layer")
a = A.mean(axis=(1, 2))  # a_k = (1/16) sum_ij A_k(i, j)
S_way1 = w @ a + b
print("a = GAP(A) =", a)
print(f"S_c = w . a + b = {' + '.join(f'({wk:g})({ak:g})' for wk, ak in zip(w, a))} + {b} = {S_way1:g}")

title("way 2: the weighted sum of the maps, M_c = sum_k w_k A_k, then its mean")
M = np.einsum("k,kij->ij", w, A)
S_way2 = M.mean() + b
show("M_c", M)
print(f"S_c = (1/16) sum_ij M_c(i, j) + b = {M.sum():g} / 16 + {b} = {S_way2:g}")
assert S_way1 == S_way2  # exactly: the sums of integers / 16 are exact in binary floating point
show("each position's share of the score, M_c / 16", M / 16)
assert np.isclose((M / 16).sum() + b, S_way1)

# %%
fig, axes = plt.subplots(1, 7, figsize=(17, 2.8))
for k in range(6):
    grid(axes[k], A[k], title_text=f"A_{k + 1}   x  w_{k + 1} = {w[k]:g}")
grid(axes[6], M, title_text=f"M_c = sum_k w_k A_k\nmean {M.mean():g} + b = S_c = {S_way1:g}")
save(fig, OUT, "sum_swap_4x4x6")

# %% [markdown]
# ## 2. The same numbers through minicnn's `cam`
# A network of just GAP + Linear, fed A as its input: `cam` finds the GAP layer, takes its input as the
# volume and the Linear layer's row w^c, and returns M_c at the volume's size (and up-sampled).

# %%
title("cam() on a GAP + Linear network fed the same volume")
head = Network([("gap", GlobalAvgPool2d()), ("fc", Linear(6, 3))]).astype(np.float64)
head.load_state_dict({"fc.weight": np.stack([w, -w, np.ones(6)]), "fc.bias": np.array([b, 0.0, 0.0])})
volume = A[None]  # (N=1, K=6, 4, 4)
result = cam(head, volume, target=0, upsample=False)
show("cam(...).map[0]", result.map[0])
score = head.forward(volume)[0, 0]
print(f"mean of the map + bias = {result.map[0].mean():g} + {result.bias[0]:g} = {score:g} = the network's score S_0")
np.testing.assert_array_equal(result.map[0], M)
assert result.map[0].mean() + result.bias[0] == score == S_way1

# %% [markdown]
# ## 3. CAM on the trained shapes model
# shapes_cam: four conv layers, the last (relu4) gives 64 maps of 16 x 16 for a 64 x 64 image, then
# GAP and one Linear layer to the ten shape classes. It was trained with image labels only -- it was
# never told where the objects are. We look at held-out images.

# %%
title("shapes_cam on held-out images")
net = load_pretrained("shapes_cam", WEIGHTS)
batch = make_shapes(16, seed=HELD_OUT_SEED)
images, labels = batch.images, batch.labels
scores = net.forward(images)
predicted = scores.argmax(axis=1)
print(net)
print(f"correct on {np.sum(predicted == labels)} of {len(labels)} held-out images")
assert np.sum(predicted == labels) >= 15, "the shipped shapes_cam is 100% accurate on held-out images"

maps = cam(net, images, labels)
print(f"CAM layer (the GAP's input): {maps.layer}, map size {maps.map.shape[1:]}, up-sampled to {maps.upsampled.shape[1:]}")
true_scores = scores[np.arange(len(labels)), labels]
rebuilt = maps.map.mean(axis=(1, 2)) + maps.bias
for n in range(4):
    print(f"  image {n} ({CLASS_NAMES[labels[n]]}): mean(M) + b = {rebuilt[n]:.5f}, score S = {true_scores[n]:.5f}")
np.testing.assert_allclose(rebuilt, true_scores, rtol=1e-4, atol=1e-4 * np.abs(true_scores).max())
show(f"M for image 0 ({CLASS_NAMES[labels[0]]}), 16 x 16, rounded", maps.map[0], digits=1)


# %% [markdown]
# ## 4. Does the map point at the object?
# The pointing game: the map's maximum (up-sampled to 64 x 64) should fall on the object, whose mask we
# know because we drew the images. We grow the mask by 2 pixels (a 5 x 5 square neighbourhood).
# `minicnn/recipes/pointing_game.py` plays it on 3000 images for every method of the lecture.

# %%
title("pointing game on these 16 images")
cam_hits = pointing_hits(maps.upsampled, batch.masks)  # minicnn.viz.pointing
print("CAM points at the object:", "".join("x" if hit else "." for hit in cam_hits), f"({sum(cam_hits)}/16)")
assert sum(cam_hits) >= 12, "trained on labels only, the CAM should find the object in most images"

fig = attribution_figure(images[:6], {"CAM (true class)": maps.upsampled[:6]})
save(fig, OUT, "cam_on_shapes")

# %% [markdown]
# ## 5. One map per class
# Each class has its own row w^c, so its own map. For every class, mean(M_c) + b_c is its score: the
# class the network picks is the one whose map has the most evidence on average.

# %%
title("the ten class maps of image 0")
n = 0
every_class = cam(net, np.repeat(images[n:n + 1], 10, axis=0), np.arange(10))
per_class_scores = every_class.map.mean(axis=(1, 2)) + every_class.bias
for c in np.argsort(-per_class_scores)[:3]:
    print(f"  {CLASS_NAMES[c]:>14}: mean(M_c) + b_c = {per_class_scores[c]:8.4f}   score {scores[n, c]:8.4f}")
np.testing.assert_allclose(per_class_scores, scores[n], rtol=1e-4, atol=1e-4 * np.abs(scores[n]).max())
assert np.argmax(per_class_scores) == predicted[n]

fig, axes = plt.subplots(2, 5, figsize=(12, 5))
for c, ax in enumerate(axes.ravel()):
    ax.set_axis_off()
    heatmap_overlay(images[n], every_class.upsampled[c], ax=ax, title=f"{CLASS_NAMES[c]} {scores[n, c]:.1f}")
save(fig, OUT, "cam_every_class")

# %% [markdown]
# ## 6. Grad-CAM: the same idea for any network
# Grad-CAM weighs the maps of any layer A by alpha_k = mean_ij dS_c / dA_k(i, j), from one backward
# pass, and keeps the positive part: ReLU(sum_k alpha_k A_k). On a GAP + linear network at the GAP's
# input, dS_c / dA_k(i, j) = w_k^c / (16 * 16) for every position, so Grad-CAM = ReLU(M_c) / 256.

# %%
title("Grad-CAM on shapes_cam at the GAP's input == ReLU(CAM) / 256")
layer = maps.layer
gradcam = grad_cam(net, images, labels, layer)
hw = maps.map.shape[1] * maps.map.shape[2]
print(f"alpha_k / w_k^c for image 0: {np.unique(np.round(gradcam.weights[0] / maps.weights[0], 8))} (= 1/{hw})")
np.testing.assert_allclose(gradcam.map, np.maximum(maps.map, 0) / hw, rtol=1e-4, atol=1e-6 * np.abs(maps.map).max())

title("Grad-CAM on shapes_vgg (conv blocks, then fully connected layers: no CAM possible)")
vgg = load_pretrained("shapes_vgg", WEIGHTS)
vgg_layer = last_conv_layer(vgg)
vgg_gradcam = grad_cam(vgg, images, labels, vgg_layer)
vgg_hits = pointing_hits(vgg_gradcam.upsampled, batch.masks)
print(f"Grad-CAM at {vgg_layer} {vgg_gradcam.map.shape[1:]} points at the object in {sum(vgg_hits)}/16 images")
assert sum(vgg_hits) >= 12, "Grad-CAM should find the object in most images"
try:
    cam(vgg, images, labels)
except ValueError as error:
    print("cam(shapes_vgg) refuses, as it should:\n   ", error)
else:
    raise AssertionError("cam must refuse a network without a GAP + linear head")

fig = attribution_figure(images[:6], {
    "CAM": maps.upsampled[:6],
    f"Grad-CAM cam/{layer}": gradcam.upsampled[:6],
    f"Grad-CAM vgg/{vgg_layer}": vgg_gradcam.upsampled[:6],
})
save(fig, OUT, "cam_and_grad_cam")
print("\nlesson 7 done: every identity above was checked by an assert, every count against a floor")
