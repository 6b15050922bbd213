# %% [markdown]
# # Lesson 16 — can we trust the maps? Faithfulness, sanity checks, the switches, segmentation
#
# Lessons 6, 7 and 9 drew maps that point at the object. Pointing is not the same as explaining:
# a map can point at the object because the object has edges, whatever the network learned.
# Three tests (minicnn.evaluate) ask more:
#
# - deletion (Petsiuk 2018): remove the pixels in the map's order, most important first; if the map
#   is faithful, p(class) falls at once. Insertion: put them back into a blurred image; p rises at once.
# - the model-parameter randomization test (Adebayo 2018): re-draw the network's layers from the top
#   down; the accuracy falls to chance, and a map that explains the network must change with it.
# - the switches: every backward rule un-pools with the max-pool switches of the forward pass. With
#   "flat" switches (the first position of every window) the DeconvNet signal from a class score no
#   longer depends on the image at all.
#
# Run: `python lessons/16_can_we_trust_the_maps.py [--out DIR] [--weights DIR]`
# (`minicnn evaluate --model shapes_vgg --n 50 --out DIR` runs every method and metric at once.)

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import output_dir, save, title, weights_dir  # first: it also finds minicnn

from minicnn.data import HELD_OUT_SEED, make_shapes
from minicnn.evaluate.faithfulness import area_under_curve, deletion_curve, fill_images, insertion_curve
from minicnn.evaluate.randomization import parameter_layers, randomized_copy, spearman
from minicnn.evaluate.segmentation import graph_cut_mask, iou, threshold_mask
from minicnn.evaluate.switches import backward_signal
from minicnn.models import load_pretrained
from minicnn.ops import softmax
from minicnn.train import accuracy
from minicnn.viz.attribution import channel_max_abs
from minicnn.viz.pointing import pointing_hits

OUT = output_dir("16_can_we_trust_the_maps")
net = load_pretrained("shapes_vgg", weights_dir())
batch = make_shapes(12, seed=HELD_OUT_SEED)
images, labels, masks = batch.images, batch.labels, batch.masks
RULES = {"saliency": "gradient", "guided backprop": "guided", "deconvnet": "deconvnet"}


def rule_maps(network, rule, switches="own"):
    """max over colour channels of |d S_c / d x| under a ReLU rule: the maps of lessons 6 and 9."""
    return channel_max_abs(backward_signal(network, images, labels, rule, switches))


# %% [markdown]
# ## 1. Deletion and insertion
# With 16 steps of 256 pixels, step k has replaced the first 256 k pixels of the map's order by the
# blurred image's. The curve starts at p(x) and ends at p(blurred x), whatever the order: only the
# path between differs. The area under it (trapezoid rule) is the score.

# %%
title("deletion and insertion: saliency against a random order")
saliency = rule_maps(net, "gradient")
random_order = np.random.default_rng(0).random(saliency.shape)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
for name, heat in (("saliency", saliency), ("random order", random_order)):
    deletion = deletion_curve(net, images, labels, heat, steps=16)
    insertion = insertion_curve(net, images, labels, heat, steps=16)
    print(f"  {name:>12}: deletion AUC {area_under_curve(deletion).mean():.3f}, "
          f"insertion AUC {area_under_curve(insertion).mean():.3f}")
    axes[0].plot(np.linspace(0, 1, 17), deletion.mean(axis=0), label=name)
    axes[1].plot(np.linspace(0, 1, 17), insertion.mean(axis=0), label=name)
p_image = softmax(net.forward(images).astype(np.float64))[np.arange(12), labels]
p_blurred = softmax(net.forward(fill_images(images, "blur")).astype(np.float64))[np.arange(12), labels]
assert np.allclose(deletion[:, 0], p_image) and np.allclose(deletion[:, -1], p_blurred)
assert area_under_curve(deletion_curve(net, images, labels, saliency, 16)).mean() < area_under_curve(deletion).mean()
for ax, what in zip(axes, ("removed", "inserted")):
    ax.set_xlabel(f"fraction of pixels {what}")
    ax.set_ylabel("mean p(true class)")
    ax.legend()
save(fig, OUT, "deletion_and_insertion")

# %% [markdown]
# ## 2. Re-draw the network from the top down
# Each step re-draws one more layer with its own initial distribution (reset_parameters). After the
# first step the network is at chance; we compare each rule's map with the trained network's map by
# the Spearman rank correlation of the two maps' pixels.

# %%
title("the cascade: accuracy and Spearman correlation with the trained map")
check = make_shapes(200, seed=HELD_OUT_SEED)
trained = {method: rule_maps(net, rule) for method, rule in RULES.items()}
layers = parameter_layers(net)
print(f"  {'re-drawn down to':>17} {'accuracy':>9} " + " ".join(f"{m:>16}" for m in RULES))
for k in range(1, len(layers) + 1):
    network = randomized_copy(net, layers[:k], seed=0)
    similarity = [np.mean([spearman(a, b) for a, b in zip(rule_maps(network, rule), trained[method])])
                  for method, rule in RULES.items()]
    print(f"  {layers[k - 1]:>17} {100 * accuracy(network, check.images, check.labels):8.1f}% "
          + " ".join(f"{s:16.2f}" for s in similarity))
full = randomized_copy(net, layers, seed=0)
assert abs(accuracy(full, check.images, check.labels) - 0.1) < 0.1  # chance: 10 classes
assert np.array_equal(full["fc2"].params["weight"], randomized_copy(net, ["fc2"], seed=0)["fc2"].params["weight"])

# %% [markdown]
# Guided backprop keeps most of its picture while the top layers are re-drawn: at every ReLU its
# signal passes only where the forward pass fired AND where it is positive, so whatever comes from
# the top is reshaped into "where the lower layers fired", which is where the image has structure.

# %% [markdown]
# ## 3. The switches
# Rule "deconvnet" ignores the forward pass at the ReLUs and the convolutions only multiply by W^T:
# the image enters the DeconvNet's backward pass only through the switches. Replace them by flat
# ones and every image gets the same map for a given class.

# %%
title("deconvnet with the image's own switches and with flat ones")
own, flat = rule_maps(net, "deconvnet", "own"), rule_maps(net, "deconvnet", "flat")
same_class = channel_max_abs(backward_signal(net, images, 0, "deconvnet", "flat"))  # class 0 for every image
assert np.allclose(same_class, same_class[:1], rtol=1e-5, atol=1e-8)  # the same map for every image
assert not np.allclose(channel_max_abs(backward_signal(net, images, 0, "deconvnet", "own")), same_class[:1])
print(f"  pointing: own switches {pointing_hits(own, masks).mean():.0%}, flat switches {pointing_hits(flat, masks).mean():.0%}")
guided_random = rule_maps(full, "guided")
print(f"  guided backprop on the FULLY re-drawn network still points at {pointing_hits(guided_random, masks).mean():.0%}")
fig, axes = plt.subplots(3, 6, figsize=(10, 5.4))
for j in range(6):
    for i, (name, maps) in enumerate((("deconvnet, own switches", own), ("deconvnet, flat switches", flat),
                                      ("guided, random network", guided_random))):
        axes[i, j].imshow(maps[j], cmap="gray")
        axes[i, j].set_axis_off()
        if j == 0:
            axes[i, j].set_title(name, fontsize=8, loc="left")
save(fig, OUT, "switches")

# %% [markdown]
# ## 4. From a map to a segmentation
# Threshold the map at its 0.8 quantile, or cut a graph seeded by its highest and lowest pixels
# (PyMaxflow, the `evaluate` extra): the cut prefers to run where the image's colour changes.

# %%
title("weak segmentation of guided backprop's map: IoU with the true mask")
guided = trained["guided backprop"]
thresholded = [iou(threshold_mask(m), mask) for m, mask in zip(guided, masks)]
try:
    cut = [iou(graph_cut_mask(m, image), mask) for m, image, mask in zip(guided, images, masks)]
    print(f"  threshold {np.mean(thresholded):.2f}, graph cut {np.mean(cut):.2f}")
except ImportError as error:
    print(f"  threshold {np.mean(thresholded):.2f}; graph cut skipped ({error})")
print("\nlesson 16 done: every identity above was checked by an assert")
