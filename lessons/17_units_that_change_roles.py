# %% [markdown]
# # Lesson 17 — units that change roles: unique detectors, and fine-tuning a network to a new task
#
# Lesson 11 dissected one network: unit by unit, which concept (a shape, a colour, a texture) lights up
# where the unit fires. The lecture ends with two questions Network Dissection (Bau 2017) can answer
# with numbers:
#
# - how many different concepts does a layer detect? The UNIQUE DETECTORS of a category are the
#   distinct concepts of that category that at least one unit detects (IoU > 0.04). Ten units that all
#   detect "disc" count once.
# - what happens to the units when a trained network learns a new task? The paper fine-tuned a network
#   from ImageNet objects to Places scenes and watched units change concept ("dog" -> "waterfall").
#
# Here shapes_vgg, trained to name the SHAPE of the object, was fine-tuned to name its COLOUR
# (`python -m minicnn.recipes.finetune_colour`: the same images, a new 8-way head that starts at zero,
# every layer trained for 3 epochs). Both networks ship with minicnn.
#
# Run: `python lessons/17_units_that_change_roles.py [--out DIR] [--weights DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import output_dir, save, title, weights_dir  # first: it also finds minicnn

from minicnn.data import COLOR_NAMES, HELD_OUT_SEED, concept_categories, make_shapes
from minicnn.evaluate.units import (concept_changes, label_counts, trajectory_figure, unique_detectors,
                                    unique_detectors_figure)
from minicnn.models import load_pretrained, shapes_vgg
from minicnn.train import accuracy
from minicnn.viz.dissection import dissect, top_examples

OUT = output_dir("17_units_that_change_roles")
LAYER = "relu3_2"   # shapes_vgg's last convolution (after its ReLU): 32 units seeing 8 x 8 positions
shape_net = load_pretrained("shapes_vgg", weights_dir())
colour_net = load_pretrained("shapes_vgg_colour", weights_dir())
random_net = shapes_vgg(seed=0).eval()
batch = make_shapes(600, seed=HELD_OUT_SEED, distractor=0.5)
categories = concept_categories()   # {"disc": "object", ..., "red": "color", ..., "striped": "texture", ...}

# %% [markdown]
# ## 1. Two networks, one architecture, two tasks
# The fine-tuned network answers a different question about the same images. How far did its weights
# move? For each layer, the relative change ||W_colour - W_shape|| / ||W_shape||.

# %%
title("the two tasks, and how far each layer moved")
print(f"shapes_vgg names the shape:         {accuracy(shape_net, batch.images, batch.labels):.1%}")
print(f"shapes_vgg_colour names the colour: {accuracy(colour_net, batch.images, batch.colors):.1%}")
assert accuracy(colour_net, batch.images, batch.colors) > 0.95
shape_state, colour_state = shape_net.state_dict(), colour_net.state_dict()
for key in shape_state:
    if key.endswith(".weight") and key in colour_state and shape_state[key].shape == colour_state[key].shape:
        moved = np.linalg.norm(colour_state[key] - shape_state[key]) / np.linalg.norm(shape_state[key])
        print(f"  {key:15s} moved {moved:6.1%}")

# %% [markdown]
# ## 2. Dissect the same layer of both
# Each unit's label is its best concept when that IoU passes 0.04, else nothing ("-").

# %%
title(f"dissection of {LAYER} before and after fine-tuning")
before = dissect(shape_net, batch, LAYER, progress=False)
after = dissect(colour_net, batch, LAYER, progress=False)
changes = concept_changes(before, after)
print(f"{len(changes)} of {len(before.table)} units change label")
for change in changes[:12]:
    print(f"  unit {change.unit:2d}: {change.before or '-':>14s} ({change.iou_before:.2f}) -> "
          f"{change.after or '-':<8s} ({change.iou_after:.2f})")
print("units per category before:", label_counts(before, categories))
print("units per category after: ", label_counts(after, categories))
assert len(changes) >= len(before.table) // 2                     # most units took a new role
assert label_counts(after, categories)["color"] > label_counts(before, categories)["color"]
save(trajectory_figure([before, after], ["shapes_vgg", "fine-tuned to colour"], categories), OUT, "trajectory")

# %% [markdown]
# ## 3. One unit, before and after
# The images where one unit fires most, with the pixels above its threshold outlined: the same unit,
# the same images to choose from, two networks.

# %%
title("one unit's top images, before and after")
unit = max(changes, key=lambda c: c.iou_before + c.iou_after).unit
fig, axes = plt.subplots(2, 5, figsize=(9, 4))
for row, (name, net, dissection) in enumerate((("shapes_vgg", shape_net, before), ("colour", colour_net, after))):
    _, order, masks = top_examples(net, batch.images, LAYER, dissection, [unit], k=5)[0]
    label = dissection.table[unit]
    for ax, index, mask in zip(axes[row], order, masks):
        ax.imshow(batch.images[index].transpose(1, 2, 0))
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1)
        ax.set_title(f"{batch.class_names[index]}, {COLOR_NAMES[batch.colors[index]]}", fontsize=7)
        ax.axis("off")
    axes[row, 0].text(-8, 32, f"{name}\n{label.concept} {label.iou:.2f}", ha="right", va="center", fontsize=8)
save(fig, OUT, "one_unit")

# %% [markdown]
# ## 4. Unique detectors by category
# Count the distinct concepts, not the units. A network with random weights is the baseline: a unit
# can pass 0.04 by chance, mostly on colours, which are present in every pixel of the object.

# %%
title("unique detectors by category")
rows = []
for name, dissection in (("shapes_vgg", before), ("shapes_vgg_colour", after),
                         ("random weights", dissect(random_net, batch, LAYER, progress=False))):
    found = unique_detectors(dissection, categories)
    rows.append((name, found))
    print(f"{name:18s}", "; ".join(f"{c} {len(n)}" for c, n in found.items()))
assert len(rows[0][1]["object"]) > len(rows[1][1]["object"])    # shape concepts lost ...
assert len(rows[1][1]["color"]) > len(rows[0][1]["color"])      # ... colour concepts gained
save(unique_detectors_figure(rows, categories), OUT, "unique_detectors")
