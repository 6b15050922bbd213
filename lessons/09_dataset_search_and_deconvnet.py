# %% [markdown]
# # Lesson 9 — what does one unit respond to? Filters, dataset search, DeconvNet
#
# The attribution lessons asked which pixels explain a class score. This lesson looks INSIDE the
# network, at one unit: one channel of one convolutional layer. The lecture (section 6) gives three
# ways to see what such a unit responds to:
#
# 1. draw its weights -- a filter is a template, but only the first layer's templates are pictures;
# 2. dataset search -- run many images, keep the nine where the unit fires most (scored by its
#    MAXIMUM over positions), and crop each image to the receptive field of the winning position;
# 3. DeconvNet (Zeiler & Fergus 2014) -- send that single maximum back to the pixels with the
#    network's own backward pass, ReLU rule "deconvnet": un-pool with the switches, ReLU on the
#    signal, transposed filters.
#
# Everything runs on shapes_vgg, the small VGG trained on the shapes dataset (minicnn.models), and
# on held-out images it never saw.
#
# Run: `python lessons/09_dataset_search_and_deconvnet.py [--out DIR] [--weights DIR]`
# (--weights: a folder holding shapes_vgg.npz and its model card; default: the repository's weights/)

# %%
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
from _common import output_dir, save, show, title, weights_dir
from scipy.ndimage import binary_dilation

from minicnn import ops
from minicnn.data import CLASS_NAMES, COLOR_NAMES, HELD_OUT_SEED, iter_shapes, make_shapes
from minicnn.models import load_pretrained, shapes_vgg
from minicnn.plot import filters_figure, top_patches_figure
from minicnn.shapes import receptive_field
from minicnn.viz.filters import filters_grid
from minicnn.viz.search import deconvnet, max_activation_seed, top_patches_for_channels

OUT = output_dir("09_dataset_search_and_deconvnet")
WEIGHTS = weights_dir()

net = load_pretrained("shapes_vgg", WEIGHTS)
N_IMAGES = 1000        # how many held-out images the dataset search looks at
print(net)


def held_out(index):
    """Held-out image number `index` as a ShapesBatch of one: image n depends only on (seed, n)."""
    return make_shapes(1, seed=HELD_OUT_SEED, start=index)


# %% [markdown]
# ## 1. Filters as pictures
# A unit computes w . x + b over the patch x under it, and w . x = |w| |x| cos(theta): among patches
# of the same length, the largest response goes to x = w / |w|. So a filter is a picture of the patch
# it likes best -- IF x is a patch of pixels. conv1_1's filters are 3 x 3 x 3: tiny colour images.
# conv2_1's filters are C x 3 x 3 over conv1's C feature maps, which are not colours.

# %%
title("first-layer filters are colour templates")
first, second = filters_grid(net, "conv1_1"), filters_grid(net, "conv2_1")
print(f"conv1_1: weight {first.weight.shape} -> {len(first.tiles)} colour tiles of {first.tiles.shape[1:]}")
print(f"conv2_1: weight {second.weight.shape} -> {second.tiles.shape[0]} x {second.tiles.shape[1]} grey tiles "
      f"of {second.tiles.shape[2:]}")
n_first, n_second = net["conv1_2"].out_channels, net["conv2_1"].out_channels
assert first.colour and first.tiles.shape == (net["conv1_1"].out_channels, 3, 3, 3)
assert not second.colour and second.tiles.shape == (n_second, n_first, 3, 3)

# The template claim, checked on the trained filters: the unit-length patch w / |w| gets w . x = |w|,
# more than any of 20000 random unit-length patches and more than any (unit-length) patch of real images.
rng = np.random.default_rng(2014)  # not 0: shapes_vgg(seed=0) draws its random weights from that stream
random_patches = rng.standard_normal((20000, 27))
random_patches /= np.linalg.norm(random_patches, axis=1, keepdims=True)
images = make_shapes(50, seed=HELD_OUT_SEED).images.astype(np.float64)
real_patches = np.stack([images[:, :, r:r + 3, s:s + 3].reshape(len(images), -1)
                         for r in range(0, 62, 4) for s in range(0, 62, 4)]).reshape(-1, 27)
real_patches = real_patches / np.linalg.norm(real_patches, axis=1, keepdims=True)
for f, w in enumerate(first.weight.reshape(len(first.weight), -1).astype(np.float64)):
    norm = np.linalg.norm(w)
    assert np.isclose((w / norm) @ w, norm)
    assert (random_patches @ w).max() < norm and (real_patches @ w).max() < norm
    if f < 4:
        print(f"  filter {f}: |w| = {norm:.3f}; best random unit patch {(random_patches @ w).max():.3f}; "
              f"best real unit patch {(real_patches @ w).max():.3f}")
print(f"for all {len(first.weight)} filters, the template w / |w| beats every random and every real patch of the same length")
save(filters_figure(first), OUT, "filters_conv1_1")
save(filters_figure(second), OUT, "filters_conv2_1")

# %% [markdown]
# The grey tiles of conv2_1 are honest but useless: each row is one filter, each column its 3 x 3
# weights over one of conv1's maps, and nothing tells us what those maps mean. To see what a
# deeper unit responds to we must look at the images that drive it.
#
# ## 2. Score a unit by its maximum, not its sum
# The forum's example (lesson 5 works it through): a 6 x 6 image, left half 10, right half 0, and the
# vertical-edge filter with rows (1, 0, -1). The map sums to +240; on the mirror image, to -240.
# After the ReLU the mirror image's unit is silent (max 0); image a's fires at 30 -- at one of eight
# positions, each of which names a 3 x 3 patch. The sum names no patch at all.

# %%
title("the forum example: max vs sum")
image_a = np.zeros((1, 1, 6, 6))
image_a[..., :3] = 10.0
vertical = np.array([[[[1.0, 0.0, -1.0]] * 3]])
a = ops.conv2d(image_a, vertical)[0, 0]
b = ops.conv2d(image_a[..., ::-1].copy(), vertical)[0, 0]
show("a = vertical filter on image a", a)
print(f"sum a = {a.sum():g}, sum b = {b.sum():g}; after ReLU: max a = {ops.relu(a).max():g}, "
      f"max b = {ops.relu(b).max():g}; positions where a fires: {int((a == a.max()).sum())}")
assert (a.sum(), b.sum()) == (240, -240)
assert (ops.relu(a).max(), ops.relu(b).max()) == (30, 0) and (a == 30).sum() == 8

# %% [markdown]
# ## 3. How much of the image one unit sees
# r_l = r_{l-1} + (k_l - 1) j_{l-1} and j_l = j_{l-1} s_l: every 3 x 3 conv adds 2 jumps, every
# 2 x 2 pool adds 1 jump and doubles the jump. The crop of a dataset-search hit is this box.

# %%
title("receptive fields of shapes_vgg")
fields = {f.name: f for f in receptive_field(net, upto="pool3")}
for f in fields.values():
    if not f.name.startswith("relu"):
        print(f"  {f.name:>8}: sees {f.size[0]:2d} x {f.size[1]:2d} pixels, jump {f.jump[0]:2d}, "
              f"unit (0, 0) starts at pixel {f.start[0]}")
expected_sizes = {"conv1_1": 3, "conv1_2": 5, "pool1": 6, "conv2_1": 10, "conv2_2": 14, "pool2": 16,
                  "conv3_1": 24, "conv3_2": 32, "pool3": 36}
assert all(fields[name].size == (size, size) for name, size in expected_sizes.items())
assert fields["relu2_2"].size == (14, 14) and fields["relu3_2"].size == (32, 32)

# %% [markdown]
# ## 4. Dataset search
# Stream 1000 held-out images through the network (iter_shapes hands them over 200 at a time; only
# the current nine best per unit are kept), for every channel of relu2_2 (14 x 14 fields) and of
# relu3_2 (32 x 32 fields) at once. For each unit we ask: do its nine images share a class?
# "purity" = the share of the nine that belong to the most common class. Nine images drawn at random
# share one too, by chance, so we measure that baseline on the same 1000 labels.

# %%
LAYERS = ("relu2_2", "relu3_2")
labels = []  # filled while the first search streams the images past: labels[n] is image n's class


def held_out_stream():
    """The held-out images, 200 at a time, noting each batch's labels on the way."""
    for batch in iter_shapes(N_IMAGES, seed=HELD_OUT_SEED, batch_size=200):
        if len(labels) < N_IMAGES:
            labels.extend(batch.labels)
        yield batch


search = {}
for layer in LAYERS:
    title(f"dataset search at {layer}")
    channels = range(net.forward(held_out(0).images, upto=layer).shape[1])
    search[layer] = top_patches_for_channels(net, held_out_stream(), layer, channels, k=9)
    size = fields[layer].size
    interior = 0
    for channel, hits in search[layer].items():
        activations = [p.activation for p in hits]
        assert len(hits) == 9 and activations == sorted(activations, reverse=True)
        for p in hits:
            top, bottom, left, right = p.box
            assert p.crop.shape == (3, bottom - top, right - left)   # the crop IS the (clipped) box
            assert bottom - top <= size[0] and right - left <= size[1]
            if p.box == p.unclipped_box:                              # not cut by the border:
                assert p.crop.shape[1:] == size                       # exactly the receptive field
                interior += 1
    total = 9 * len(search[layer])
    print(f"{total} crops; {interior} lie inside the image and are exactly {size[0]} x {size[1]} = the "
          f"receptive field; the other {total - interior} are cut by the border")

    # one number re-checked by hand: the best hit's activation, recomputed on its image alone
    best = search[layer][0][0]
    again = net.forward(held_out(best.index).images, upto=layer)[0, 0]
    assert np.isclose(again.max(), best.activation, rtol=1e-5) and again[best.position] == again.max()


def purity(classes):
    """(share of the most common class among `classes`, that class)."""
    value, count = Counter(classes).most_common(1)[0]
    return count / len(classes), value


def most_selective(scores, units, count=4):
    """Up to `count` units with the purest top 9, each with a different majority class."""
    chosen, classes = [], set()
    for c in sorted(units, key=lambda c: -scores[c][0]):
        if scores[c][1] not in classes and len(chosen) < count:
            chosen.append(c)
            classes.add(scores[c][1])
    return chosen


labels = np.array(labels)
assert len(labels) == N_IMAGES
chance = np.mean([purity(np.random.default_rng(t).choice(labels, 9, replace=False))[0] for t in range(2000)])
print(f"\nchance: nine random held-out images share their most common class at {chance:.2f} on average")
selective, mean_purity = {}, {}
for layer in LAYERS:
    scores = {c: purity(labels[[p.index for p in hits]]) for c, hits in search[layer].items()}
    live = [c for c, hits in search[layer].items() if hits[0].activation > 0]
    selective[layer] = most_selective(scores, live)
    mean_purity[layer] = np.mean([scores[c][0] for c in live])
    print(f"\n{layer}: {len(live)} of {len(search[layer])} units fire on some image; mean class purity of "
          f"their top 9: {mean_purity[layer]:.2f} (chance {chance:.2f})")
    print("  the purest units, one per class:")
    for c in selective[layer]:
        hits = search[layer][c]
        classes = [CLASS_NAMES[labels[p.index]] for p in hits]
        assert all(held_out(p.index).labels[0] == labels[p.index] for p in hits)  # image n is (seed, n)
        colours = [COLOR_NAMES[held_out(p.index).colors[0]] for p in hits]
        print(f"  unit {c:2d}: purity {scores[c][0]:.2f} ({CLASS_NAMES[scores[c][1]]}), max {hits[0].activation:.2f}")
        print(f"           classes {classes}")
        print(f"           colours {colours}")

# %% [markdown]
# ### A control: the same search on an untrained network
# Colour, brightness and size alone can group images (a unit that likes white finds nine white
# objects, often of one kind), so purity above chance does not by itself show that a unit learned
# shapes. The same search through shapes_vgg with random weights shows how much purity comes free.

# %%
title("control: dataset search at relu3_2 of an untrained shapes_vgg")
untrained = shapes_vgg(seed=0).eval()
control = top_patches_for_channels(untrained, held_out_stream(), "relu3_2", range(net["conv3_2"].out_channels), k=9)
control_purity = np.mean([purity(labels[[p.index for p in hits]])[0]
                          for hits in control.values() if hits[0].activation > 0])
print(f"mean class purity at relu3_2: trained {mean_purity['relu3_2']:.2f}, untrained {control_purity:.2f}, "
      f"chance {chance:.2f}")
assert mean_purity["relu3_2"] > control_purity

# %% [markdown]
# ## 5. DeconvNet: which pixels of the patch made the unit fire?
# For every hit above: forward its image to the layer, keep the channel's maximum, zero every other
# activation of the layer (all channels, all positions), and run net.backward with rule "deconvnet"
# down to the pixels. The seed has exactly one non-zero, so the reconstruction can only be non-zero
# inside the receptive field of that position: the crop loses nothing.
#
# "Exactly zero" needs the exact algorithm. By default a 3x3 stride-1 convolution in float32 runs as
# Winograd's F(4x4, 3x3) (lesson 13), whose transforms mix the 16 outputs of a tile: where a tile
# straddles the box, pixels outside it receive values at rounding level (about 1e-7 of the largest)
# instead of 0. So this section runs the network with algorithm "im2col", and checks once that the
# Winograd reconstruction is the same up to that rounding.

# %%
title("DeconvNet projections of the top patches")
first = search[LAYERS[-1]][selective[LAYERS[-1]][0]][0]
fast = deconvnet(net, held_out(first.index).images, LAYERS[-1], selective[LAYERS[-1]][0]).reconstruction
net.set_conv_algorithm("im2col")
exact = deconvnet(net, held_out(first.index).images, LAYERS[-1], selective[LAYERS[-1]][0]).reconstruction
print(f"Winograd vs im2col, largest difference / largest value: {np.abs(fast - exact).max() / np.abs(exact).max():.1e}")
assert np.abs(fast - exact).max() <= 1e-5 * np.abs(exact).max()
reconstructions, on_object, object_area = {}, {}, {}
for layer in LAYERS:
    on_object[layer], object_area[layer] = [], []
    for c in selective[layer]:
        unit = f"{layer} unit {c}"
        reconstructions[unit] = []
        inside_share, area_share = [], []
        for p in search[layer][c]:
            sample = held_out(p.index)
            result = deconvnet(net, sample.images, layer, c)
            seed, position = max_activation_seed(net.forward(sample.images, upto=layer), c)
            assert np.count_nonzero(seed) == 1 and position == result.position == p.position
            assert np.isclose(result.activation, p.activation, rtol=1e-5) and result.box == p.box
            top, bottom, left, right = result.box
            outside = np.ones(sample.images.shape[2:], dtype=bool)
            outside[top:bottom, left:right] = False
            assert not result.reconstruction[:, outside].any()  # zero outside the receptive field
            reconstructions[unit].append(result)
            # how much of the reconstruction falls on the object (its mask, dilated by 2 px)?
            energy = np.abs(result.reconstruction).sum(axis=0)
            near_object = binary_dilation(sample.masks[0], iterations=2)
            if energy.sum() > 0:
                inside_share.append(energy[near_object].sum() / energy.sum())
                area_share.append(near_object[top:bottom, left:right].mean())
        print(f"  {unit}: all 9 seeds have one non-zero, all 9 reconstructions are zero outside the box; "
              f"|reconstruction| on the object: {np.mean(inside_share):.2f} (the object covers "
              f"{np.mean(area_share):.2f} of the boxes)")
        on_object[layer] += inside_share
        object_area[layer] += area_share
    print(f"{layer}: share of |reconstruction| on the object {np.mean(on_object[layer]):.2f}, share of the "
          f"boxes the object covers {np.mean(object_area[layer]):.2f}")
# the 32 x 32 fields of relu3_2 hold much background, yet the signal comes back mostly onto the object
assert np.mean(on_object["relu3_2"]) > np.mean(object_area["relu3_2"])

for layer in LAYERS:
    units = {f"{layer} unit {c}": search[layer][c] for c in selective[layer]}
    save(top_patches_figure(units, {u: reconstructions[u] for u in units}), OUT, f"top_patches_{layer}")

# %% [markdown]
# One full picture: the whole image, the receptive field of the winning position, and the whole
# reconstruction -- zero (grey) everywhere outside the box.

# %%
layer, c = LAYERS[-1], selective[LAYERS[-1]][0]
p = search[layer][c][0]
result = reconstructions[f"{layer} unit {c}"][0]
fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
axes[0].imshow(held_out(p.index).images[0].transpose(1, 2, 0))
signal = result.reconstruction
axes[1].imshow((0.5 + signal / (2 * np.abs(signal).max())).transpose(1, 2, 0))
top, bottom, left, right = p.box
for ax in axes:
    ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                               edgecolor="red", linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].set_title(f"held-out image {p.index}\n{layer} unit {c} fires {p.activation:.2f} at {p.position}", fontsize=8)
axes[1].set_title("DeconvNet reconstruction (grey = 0)\nreceptive field in red", fontsize=8)
save(fig, OUT, "deconvnet_whole_image")

print("\nA unit is scored by its maximum; its nine best patches are its receptive field's view of the nine "
      "best images, and the DeconvNet shows which of those pixels made it fire.")
