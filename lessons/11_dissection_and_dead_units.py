# %% [markdown]
# # Lesson 11 — Network Dissection, and dead units
#
# Top-9 patches and deconvolutions (lesson 9) let a person LOOK at a unit and guess what it does.
# Network Dissection (Bau, Zhou, Khosla, Oliva & Torralba, 2017) turns the guess into a measurement,
# given a dataset whose pixels are labelled with concepts:
#
# 1. per unit k, a threshold T_k at the top 0.5% of its activations over the whole dataset;
# 2. per image, the unit's map up-sampled to the image size and binarised: S_k = map > T_k;
# 3. per concept c, IoU(k, c) = sum |S_k AND L_c| / sum |S_k OR L_c| over the dataset;
# 4. the unit's label is its best concept; it is a DETECTOR if that IoU exceeds 0.04.
#
# In the paper, 81 of the 256 conv5 units of AlexNet trained on Places were detectors (unit 79: car,
# IoU 0.13; unit 107: road, IoU 0.15). Our shapes images come with exact concept masks -- every shape
# class, every colour, every texture, the background -- so we can dissect shapes_vgg the same way.
#
# Run: `python lessons/11_dissection_and_dead_units.py [--out DIR]`  (needs the shipped shapes_vgg weights)

# %%
import numpy as np
from _common import output_dir, save, title, weights_dir

from minicnn import Conv2d, Network, ReLU, data
from minicnn.models import load_pretrained
from minicnn.plot import dissection_figure
from minicnn.viz.dissection import dead_units, dissect, top_examples, unit_maxima

OUT = output_dir("11_dissection_and_dead_units")
WEIGHTS = weights_dir()
net = load_pretrained("shapes_vgg", WEIGHTS)
N_IMAGES = 1000
print("concepts:", ", ".join(data.concept_names()))


def dataset():
    """Held-out shapes images, 50 at a time (dissect reads them twice: thresholds, then IoU)."""
    return data.iter_shapes(N_IMAGES, seed=31337, batch_size=50)


# %% [markdown]
# ## First, a unit we built ourselves
# A 1x1 convolution computing red - 2 green - blue fires on red objects and (almost) nowhere else.
# If the quantile is the share of red pixels, the top activations should be exactly the red objects:
# IoU 1 with "red", whatever their shape.

# %%
title("a hand-built red detector")
solid = data.make_shapes(200, seed=5, classes=["disc", "ring", "square", "triangle", "star", "cross", "diamond"])
names, masks = data.concept_masks(solid)
red_share = masks[:, names.index("red")].mean()
conv = Conv2d(3, 1, 1)
conv.params["weight"][0, :, 0, 0] = [1.0, -2.0, -1.0]
red_net = Network([("conv", conv), ("relu", ReLU())])
red = dissect(red_net, solid, "relu", quantile=red_share, progress=False)
print(f"red pixels: {100 * red_share:.2f}% of all pixels; unit 0 -> {red.table[0].concept}, IoU {red.table[0].iou:.3f}")
assert red.table[0].concept == "red" and red.table[0].iou > 0.99

# %% [markdown]
# ## Dissecting shapes_vgg
# The last conv layer, relu3_2: its maps are 16 x 16 (one map pixel steps 4 image pixels), and
# each is up-sampled to 64 x 64 before it is compared with the masks.

# %%
title(f"dissecting relu3_2 over {N_IMAGES} held-out images")
units, map_h, map_w = net.forward(data.make_shapes(1, seed=0).images, upto="relu3_2").shape[1:]
print(f"relu3_2: {units} units, maps {map_h} x {map_w}")
assert (map_h, map_w) == (16, 16)
result = dissect(net, dataset, "relu3_2", progress=False)
print(result.summary)
for row in result.detectors[:15]:
    print(f"  unit {row.unit:2d}: {row.concept:>14}  IoU {row.iou:.3f}")
found = sorted({row.concept for row in result.detectors})
print("concepts with at least one detector:", found)
assert len(result.detectors) == sum(row.iou > 0.04 for row in result.table) > 0
assert all(row.iou == result.iou[row.unit].max() for row in result.table)
kinds = {"class (shape or patch)": data.CLASS_NAMES, "colour": data.COLOR_NAMES, "texture": data.TEXTURE_NAMES}
for kind, concept_list in kinds.items():
    count = sum(row.concept in concept_list for row in result.detectors)
    print(f"  {count} detectors of a {kind} concept")
shape_classes = [name for name in data.CLASS_NAMES if result.units_for(name)]
print(f"shape classes with a detector: {len(shape_classes)} of {len(data.CLASS_NAMES)}")
assert shape_classes == list(data.CLASS_NAMES)  # every class has a unit of its own
# Each class's best detector, and the concept it beat: look-alikes compete for the same units (here a
# star unit also overlaps crosses, a square unit discs, a diamond unit triangles; a textured patch's mask
# is also its texture's, so those two tie). A unit takes the label of the concept it covers best, so a
# class can lose all its units to look-alikes: the network shipped before 2026-12-07 (trained without
# the learning-rate warm-up) had no cross detector, nor had any of the networks retrained before this
# one (docs/results/shapes-vgg.md).
for name in data.CLASS_NAMES:
    best = result.units_for(name)[0]
    runner_up = int(np.argsort(-result.iou[best.unit])[1])
    print(f"  {name:>14}: unit {best.unit:2d}, IoU {best.iou:.3f}; next best concept of that unit: "
          f"{result.concept_names[runner_up]} ({result.iou[best.unit, runner_up]:.3f})")
textures = [max(row.iou for row in result.units_for(name)) for name in data.CLASS_NAMES[-3:]]
print(f"best IoU of the textured patches' detectors: {np.round(textures, 3)}")
assert min(textures) > 0.3  # textures are the easiest concepts for a unit to cover pixel by pixel

# %% [markdown]
# ## Looking at the detectors
# For the best detectors: the images of a sample where each fires most, with the pixels above its
# threshold outlined.

# %%
sample = data.make_shapes(300, seed=31337)
best_units = [row.unit for row in result.detectors[:6]]
examples = top_examples(net, sample.images, "relu3_2", result, best_units, k=5)
for unit, indices, _ in examples:
    print(f"  unit {unit} ({result.table[unit].concept}): top images are {[sample.class_names[i] for i in indices]}")
save(dissection_figure(result, sample.images, examples), OUT, "detectors")

# %% [markdown]
# ## Dead units
# "Whatever the input image, some feature maps are always dark": a unit whose ReLU never opens never
# passes a signal forward nor a gradient back, so it never learns either. We count, per conv layer,
# the units whose activation never exceeds 0 on 500 images.

# %%
title("dead units of shapes_vgg")
images = data.make_shapes(500, seed=99).images
for layer in ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2"):
    dead = dead_units(net, images, layer)
    print(f"  {layer}: {len(dead)} dead of {net.forward(images[:1], upto=layer).shape[1]}  {dead.tolist()}")

# %% [markdown]
# To see the test work, kill one unit ourselves: a bias of -1000 keeps its ReLU shut for any image.

# %%
killed = load_pretrained("shapes_vgg", WEIGHTS)
unit = int(np.argmax(unit_maxima(killed, images, "relu3_2")))  # the liveliest unit
killed["conv3_2"].params["bias"][unit] = -1e3
before = set(dead_units(net, images, "relu3_2"))
after = set(dead_units(killed, images, "relu3_2"))
print(f"killed unit {unit}: dead units now {sorted(map(int, after))} (before {sorted(map(int, before))})")
assert after == before | {unit}
