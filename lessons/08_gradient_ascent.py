# %% [markdown]
# # Lesson 8 — gradient ascent: the image a class (or a unit) would like to see
#
# Training changes the weights to lower a loss, with the image fixed. Turn it around: keep the
# weights fixed and change the IMAGE to raise a score. Simonyan, Vedaldi & Zisserman (2014):
#
#     x* = argmax_x  S_c(x) - lambda ||x||^2
#
# S_c is the class score BEFORE the softmax; we start from the zero image (of a mean-subtracted
# input: the average image) and add the mean back at the end. Each step is one forward pass and one
# backward pass from S_c to the pixels -- the saliency map of lesson 6, used to climb instead of to
# look. Yosinski et al. (2015) showed the same works for any unit, and that a few regularizers make
# the pictures far more readable: decay, blur, clipping small pixels, jitter.
#
# Run: `python lessons/08_gradient_ascent.py [--out DIR]`  (needs the shipped shapes_vgg weights)

# %%
import numpy as np
from _common import output_dir, save, title, weights_dir

from minicnn import data, ops
from minicnn.models import load_pretrained
from minicnn.plot import image_grid
from minicnn.viz.ascent import activation_max, class_model, high_frequency_energy

OUT = output_dir("08_gradient_ascent")
WEIGHTS = weights_dir()
net = load_pretrained("shapes_vgg", WEIGHTS)
sample = data.make_shapes(500, seed=2024)
MEAN = sample.images.mean(axis=(0, 2, 3))  # the dataset's mean colour, (3,)
print(f"shapes_vgg, images (3, 64, 64); dataset mean colour {np.round(MEAN, 3)}")

# %% [markdown]
# ## One class model per class
# From a mid-grey image (mean=0.5, close to the dataset's mean colour printed above; pass mean= to
# start from the exact mean), 200 steps of gradient ascent on S_c - lambda ||x||^2 with Yosinski's
# regularizers (class_model's defaults): each step moves the pixels by 0.05 on average (the gradient
# is divided by its mean absolute value), then decay x <- 0.99 x, a Gaussian blur every 2 steps, a
# random shift of up to 4 pixels before each step; pixels stay in [0, 1]. Then we ask the network
# what it sees.

# %%
title("class model visualization, one image per class")
models = [class_model(net, c, progress=False) for c in range(len(data.CLASS_NAMES))]
probabilities = []
for c, (name, result) in enumerate(zip(data.CLASS_NAMES, models)):
    p = ops.softmax(result.output[None])[0]
    probabilities.append(p[c])
    print(f"  {name:>14}: S_c {result.objective[0]:7.2f} -> {result.objective[-1]:7.2f}   p(c) = {p[c]:.3f}")
    assert result.objective[-1] > result.objective[0]  # the ascent climbed
assert min(probabilities) >= 0.9  # the network takes every class model for its class
save(image_grid([r.image for r in models], titles=[f"{n}\np={p:.2f}" for n, p in
                                                   zip(data.CLASS_NAMES, probabilities)], ncols=5),
     OUT, "class_models")

# %% [markdown]
# ## The objective rises
# The trace is S_c step by step. With jitter each step sees a shifted image and the blur smooths
# away part of each step's gain, so it wobbles, but it climbs.

# %%
title("the objective trace of one class model")
trace = models[0].objective
print("S_c every 25 steps:", np.round(trace[::25], 2))
assert trace[-1] > trace[0] and np.mean(np.diff(trace) > 0) > 0.5

# %% [markdown]
# ## Without the regularizers
# The same ascent with no decay, no blur, no jitter (only the small L2 penalty) happily uses
# high-frequency patterns, tiny checkerboards no shape image has, which still move the score -- and
# still convince the network. We measure the share of spectral energy above half the Nyquist
# frequency, and how many of these class models the network takes for their class.
#
# (Pre-softmax has a second catch: every score of a ReLU network grows with the image's contrast, so
# "more c" need not make c the top class. On a less well trained shapes network we saw p(c) end near
# 0 for several classes; on this one the count below says how often it happens.)

# %%
title("plain ascent vs regularized ascent")
plain = [class_model(net, c, decay=0.0, blur_every=0, jitter=0, progress=False)
         for c in range(len(data.CLASS_NAMES))]
plain_p = [ops.softmax(r.output[None])[0, c] for c, r in enumerate(plain)]
energy_plain = np.mean([high_frequency_energy(r.image - 0.5) for r in plain])
energy_regularized = np.mean([high_frequency_energy(r.image - 0.5) for r in models])
print(f"high-frequency share of the energy: plain {energy_plain:.3f}, regularized {energy_regularized:.3f}")
print(f"classes whose plain class model has p(c) >= 0.9: {sum(p >= 0.9 for p in plain_p)} of {len(plain_p)}")
print("  p(c) of the plain class models:", " ".join(f"{p:.2f}" for p in plain_p))
assert energy_regularized < energy_plain
save(image_grid([r.image for r in plain], titles=[f"{n}\np={p:.2f}" for n, p in zip(data.CLASS_NAMES, plain_p)],
                ncols=5), OUT, "class_models_plain")

# %% [markdown]
# ## Any unit, not only classes
# The same loop maximizes the mean activation of one channel of a hidden layer (Yosinski 2015),
# starting from faint noise (a flat image leaves many units silent, with zero gradient). A unit that
# faint noise leaves shut as well has zero gradient too and never moves: we skip it and take the next
# most active unit of its layer. Early layers ask for colours and edges repeated everywhere; deeper
# ones for larger parts.

# %%
title("activation maximization of hidden units")
activity = {layer: net.forward(sample.images[:100], upto=layer).mean(axis=(0, 2, 3))
            for layer in ("relu1_2", "relu2_2", "relu3_2")}
images, titles = [], []
for layer, mean_activity in activity.items():
    grown = 0
    for channel in (int(c) for c in np.argsort(-mean_activity)):  # the most active units first
        result = activation_max(net, layer, channel, progress=False)
        if result.objective[0] == 0:  # shut on faint noise too: zero gradient, it cannot rise
            print(f"  {layer}[{channel}]: silent on the start image (zero gradient), skipped")
            continue
        rose = result.objective[-1] - result.objective[0]
        print(f"  {layer}[{channel}]: mean activation {result.objective[0]:.3f} -> {result.objective[-1]:.3f}")
        assert rose > 0
        images.append(result.image)
        titles.append(f"{layer}[{channel}]")
        grown += 1
        if grown == 4:  # the 4 most active units of each layer that the start image opens
            break
save(image_grid(images, titles=titles, ncols=4), OUT, "units")
