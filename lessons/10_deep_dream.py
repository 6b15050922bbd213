# %% [markdown]
# # Lesson 10 — DeepDream: set a layer's gradient equal to its activation
#
# Gradient ascent (lesson 8) raises ONE number. DeepDream (Mordvintsev, Olah & Tyka, 2015) raises a
# whole layer at once, starting from a real image: forward to the layer, set the layer's gradient
# equal to its activation, back-propagate to the pixels, update, repeat. Why "equal to its
# activation"? Because that is the gradient of
#
#     E(x) = 1/2 sum_i f_i(x)^2        dE/df_i = f_i
#
# so each step is gradient ascent on the energy of the layer: whatever the layer sees a little of,
# it will see more of after the step -- and the image changes to show it.
#
# Run: `python lessons/10_deep_dream.py [--out DIR]`  (needs the shipped shapes_vgg weights)

# %%
import numpy as np
from _common import output_dir, save, title, weights_dir

from minicnn import data
from minicnn.models import load_pretrained
from minicnn.plot import image_grid
from minicnn.viz.dream import deep_dream, dream_gradient

OUT = output_dir("10_deep_dream")
WEIGHTS = weights_dir()
net = load_pretrained("shapes_vgg", WEIGHTS)
batch = data.make_shapes(4, seed=7)
print("images:", batch.class_names)

# %% [markdown]
# ## The seed IS the activation
# Check the claim on a real image: back-propagating the activation itself gives the gradient of
# 1/2 sum f^2. A finite difference on one pixel, in float64, says the same.

# %%
title("d(1/2 sum f^2)/dx by backward(seed = f) and by finite differences")
net64 = load_pretrained("shapes_vgg", WEIGHTS).astype(np.float64)
image = batch.images[0].astype(np.float64)
energy, gradient = dream_gradient(net64, image, "relu2_2")
c, i, j = np.unravel_index(np.argmax(np.abs(gradient)), gradient.shape)
eps = 1e-5
plus, minus = image.copy(), image.copy()
plus[c, i, j] += eps
minus[c, i, j] -= eps
numeric = (dream_gradient(net64, plus, "relu2_2")[0] - dream_gradient(net64, minus, "relu2_2")[0]) / (2 * eps)
print(f"E = {energy:.3f}; at pixel ({c}, {i}, {j}): backward {gradient[c, i, j]:.6f}, finite difference {numeric:.6f}")
assert np.isclose(gradient[c, i, j], numeric, rtol=1e-4)

# %% [markdown]
# ## The recipe
# 10 steps per octave, 4 octaves 1.4 x apart (64, 46, 33, 24 pixels: each 1.4 x smaller, rounded): dreaming
# starts small so that large structures form, and the detail added at each octave is zoomed up to
# the next. Each step is normalized by the mean |gradient|, the image is rolled by a random offset
# (jitter) before the step and rolled back after, pixels stay in [0, 1]. The original moved pixels by
# 1.5 grey levels (of 255) per step on large photos; our 64 x 64 pictures need a stronger push to show
# much in 40 steps, so we use 6 -- with 1.5 the energy's rise within an octave can be smaller than
# the wobble the random shifts cause (each step measures E on a differently shifted image).

# %%
title("dreaming at two depths")
results = {}
for layer in ("relu2_2", "relu3_2"):
    for k, picture in enumerate(batch.images):
        result = deep_dream(net, picture, layer, step_size=6.0, progress=False)
        results[(layer, k)] = result
        per_octave = result.objective.reshape(len(result.octave_shapes), -1)
        if k == 0:
            print(f"{layer}: octave sizes {result.octave_shapes}")
        print(f"  {layer} image {k} ({batch.class_names[k]}): E first -> last step of each octave: "
              + ", ".join(f"{a:.0f}->{b:.0f}" for a, b in per_octave[:, [0, -1]]))
        assert np.all(per_octave[:, -1] > per_octave[:, 0])  # within each octave the energy rises
        change = np.abs(result.image - picture).mean()
        assert 0 < change < 0.5
images = list(batch.images) + [results[("relu2_2", k)].image for k in range(4)] + \
    [results[("relu3_2", k)].image for k in range(4)]
titles = [f"{n}" for n in batch.class_names] + ["relu2_2"] * 4 + ["relu3_2"] * 4
save(image_grid(images, titles=titles, ncols=4), OUT, "dreams")

# %% [markdown]
# ## Dreaming from nothing
# Start from a flat grey image with a little noise: there is nothing to amplify but the noise, and
# what grows is what the layer is tuned to -- edges and colour blobs at relu2_2, parts of shapes at
# relu3_2. (The original video used clouds: whatever looked a little like a dog became a dog.)

# %%
title("dreaming from noise")
noise = (0.5 + 0.05 * np.random.default_rng(0).standard_normal((3, 64, 64))).astype(np.float32)
from_noise = [deep_dream(net, noise, layer, steps=20, step_size=6.0, progress=False)
              for layer in ("relu2_2", "relu3_2")]
for layer, result in zip(("relu2_2", "relu3_2"), from_noise):
    print(f"  {layer}: E {result.objective[0]:.1f} -> {result.objective[-1]:.1f}")
    assert result.objective[-1] > result.objective[0]
save(image_grid([noise] + [r.image for r in from_noise], titles=["start", "relu2_2", "relu3_2"]), OUT, "from_noise")
