# %% [markdown]
# # Lesson 15 — learned upsampling: a transposed convolution that learns, and its checkerboard
#
# Lessons 2 and 3 used the transposed convolution to go back through a trained network (W^T y). A
# segmentation network or a GAN's generator uses the same operation forwards, as a layer whose
# weights are trained to make a larger image: `ConvTranspose2d`. This lesson checks that the layer is
# the op with a weight (and that its backward pass is the forward convolution), counts why kernel 3 at
# stride 2 draws a checkerboard while kernel 4 does not, compares "resize, then convolve", and trains
# the three upsamplers on one task to see whether the checkerboard survives training.
#
# Run: `python lessons/15_learned_upsampling.py [--out DIR]`

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import grid, output_dir, save, show, title

from minicnn import Conv2d, ConvTranspose2d, Network, Upsample, data, ops
from minicnn.matrix import parity_classes, taps_per_phase
from minicnn.train import Adam

OUT = output_dir("15_learned_upsampling")
rng = np.random.default_rng(0)

# %% [markdown]
# ## The layer is the op, with a weight that learns
# ConvTranspose2d(in, out, k) keeps its weight as (in, out, k, k), PyTorch's layout. That is exactly the
# (F, C, k, k) of the convolution it transposes (F = in, C = out), so the forward pass is
# conv_transpose2d with the weight as it is, and the gradient with respect to the input is the forward
# convolution with the same weight: the duality of lesson 2, read the other way.

# %%
title("ConvTranspose2d = conv_transpose2d(x, weight); its input gradient = conv2d(dy, weight)")
layer = ConvTranspose2d(3, 2, 4, stride=2, padding=1, rng=rng, dtype=np.float64)
x = rng.standard_normal((1, 3, 5, 5))
y = layer.forward(x)
print(f"weight {layer.params['weight'].shape} (in, out, kh, kw); x {x.shape} -> y {y.shape}")
assert y.shape == (1, 2, 10, 10)  # (5 - 1) * 2 - 2 * 1 + 4 = 10: kernel 4, stride 2, padding 1 doubles the side
assert np.array_equal(y, ops.conv_transpose2d(x, layer.params["weight"], layer.params["bias"], 2, 1))
dy = rng.standard_normal(y.shape)
dx = layer.backward(dy)
assert np.allclose(dx, ops.conv2d(dy, layer.params["weight"], stride=2, padding=1))
print(f"<y, dy> = {np.vdot(y, dy):.6f} = <x, dx> = {np.vdot(x, dx):.6f}  (no bias: the adjoint identity)")
assert np.isclose(np.vdot(y, dy), np.vdot(x, dx))  # the bias is zero at initialisation

# %% [markdown]
# ## The checkerboard, counted
# Lesson 3: at stride 2 every output pixel belongs to one of four phases (row mod 2, column mod 2), and
# each phase meets the weights of only one parity class of the kernel. A 3 x 3 kernel's classes hold
# 4, 2, 2 and 1 weights; a 4 x 4 kernel's hold 4 each. So with kernel 3 the four phases sum different
# numbers of weights: feed it a flat input and even all-ones weights draw a checkerboard.

# %%
title("how many weights each output phase sums")
for kernel in (3, 4):
    counts = np.outer(taps_per_phase(kernel, 2, 1), taps_per_phase(kernel, 2, 1))
    sizes = {r: c.size for r, c in parity_classes(np.ones((1, 1, kernel, kernel)), 2).items()}
    print(f"kernel {kernel}, stride 2, padding 1: phases (0,0) (0,1) (1,0) (1,1) sum {counts.ravel().tolist()} "
          f"weights; parity classes hold {sizes}")
    assert sorted(counts.ravel()) == sorted(sizes.values())
assert np.outer(taps_per_phase(3, 2, 1), taps_per_phase(3, 2, 1)).tolist() == [[1, 2], [2, 4]]
assert set(np.outer(taps_per_phase(4, 2, 1), taps_per_phase(4, 2, 1)).ravel()) == {4}


def flat_response(upsampler):
    """The output of an upsampler whose every weight is 1 on an all-ones 6x6 input (interior 8x8)."""
    for key, value in upsampler.named_parameters().items():
        value[...] = 0.0 if key.endswith("bias") else 1.0
    return upsampler.forward(np.ones((1, 1, 6, 6)))[0, 0, 2:-2, 2:-2]


UPSAMPLERS = {
    "transposed k3 s2": lambda: Network([("up", ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1,
                                                                  dtype=np.float64))], seed=0),
    "transposed k4 s2": lambda: Network([("up", ConvTranspose2d(1, 1, 4, stride=2, padding=1,
                                                                  dtype=np.float64))], seed=0),
    "resize + conv k3": lambda: Network([("resize", Upsample(2, "nearest")),
                                         ("conv", Conv2d(1, 1, 3, padding=1, dtype=np.float64))], seed=0),
}
flat = {name: flat_response(make()) for name, make in UPSAMPLERS.items()}
for name, response in flat.items():
    show(f"{name}, all-ones weights, all-ones input", response[:4, :4])
assert sorted(np.unique(flat["transposed k3 s2"])) == [1, 2, 4]  # the checkerboard: 1, 2 and 4 weights
assert np.unique(flat["transposed k4 s2"]).tolist() == [4.0]
assert np.unique(flat["resize + conv k3"]).tolist() == [9.0]  # every output pixel sums all nine weights

# %% [markdown]
# ## Resizing is a matrix too
# "Resize, then convolve" doubles the side with a fixed linear map (nearest: copy each pixel into a
# 2 x 2 block; bilinear: mix the two nearest source pixels 3 : 1), then lets a stride-1 convolution,
# whose every output sums all its weights, do the learning. The resize is one small matrix per axis,
# y = A_h x A_w^T, and its backward pass is the transpose: dx = A_h^T dy A_w.

# %%
title("the interpolation matrices (4 -> 8 along one axis)")
for mode in ops.UPSAMPLE_MODES:
    matrix = ops.interpolation_matrix(4, 2, mode)
    show(f"{mode}", matrix)
    assert np.allclose(matrix.sum(axis=1), 1.0)  # a flat image stays flat
small = rng.standard_normal((1, 1, 4, 4))
resized = ops.upsample2d(small, 2, "bilinear")
r = rng.standard_normal(resized.shape)
back = ops.upsample2d_backward(r, small.shape, 2, "bilinear")
print(f"<A x, r> = {np.vdot(resized, r):.6f} = <x, A^T r> = {np.vdot(small, back):.6f}")
assert np.isclose(np.vdot(resized, r), np.vdot(small, back))

# %% [markdown]
# ## Training three upsamplers on one task
# The task: given an image averaged down 2x (each 2 x 2 block replaced by its mean), give the image
# back. One input channel, one output channel, each upsampler trained with Adam on 256 grey shapes
# images. A flat image pools to a flat image, so the task itself punishes a checkerboard: a trained
# upsampler must turn a flat input into a flat output. Can kernel 3 learn that? Its phases sum 1, 2,
# 2 and 4 weights; to balance them the lone weight of phase (0, 0) must grow as large as the sum of
# the two of phase (0, 1), and so on. One layer can do it: the parity class sums come out equal.

# %%
title("learn to undo a 2x average pooling")
batch = data.make_shapes(288, seed=3, size=32, distractor=0.5)
grey = batch.images.mean(axis=1, keepdims=True).astype(np.float64)
pooled = ops.avg_pool2d(grey, 2)
train_in, train_out, test_in, test_out = pooled[:256], grey[:256], pooled[256:], grey[256:]


def train_upsampler(name, steps=600):
    """Full-batch Adam on the mean squared error; returns the trained network."""
    net = UPSAMPLERS[name]()
    optimizer = Adam(net, lr=0.03)
    for step in range(steps):
        net.zero_grad()
        error = net.forward(train_in) - train_out
        net.backward(2 * error / error.size)  # d mean(error^2) / d output
        optimizer.step()
    return net


def flat_output(net):
    """The interior of the upsampler's output for an all-ones 6x6 input (a flat image)."""
    return net.forward(np.ones((1, 1, 6, 6)))[0, 0, 2:-2, 2:-2]


trained = {name: train_upsampler(name) for name in UPSAMPLERS}
test_error = {name: float(np.mean((net.forward(test_in) - test_out) ** 2)) for name, net in trained.items()}
for name, net in trained.items():
    values = flat_output(net)
    print(f"{name}: test mean squared error {test_error[name]:.5f}; flat input -> output from "
          f"{values.min():.3f} to {values.max():.3f}")
    assert abs(values.max() - values.min()) < 0.05, "a trained upsampler turns flat into (nearly) flat"
assert max(test_error.values()) < 1.2 * min(test_error.values())  # on this task all three do about as well
learned = trained["transposed k3 s2"]["up"].params["weight"][0, 0]
class_sums = {r: float(c.sum()) for r, c in parity_classes(learned[None, None], 2).items()}
show("learned kernel 3 (its (1, 1) weight alone serves a whole phase)", learned)
print("sum of each parity class:", {r: round(v, 3) for r, v in class_sums.items()})
assert max(class_sums.values()) - min(class_sums.values()) < 0.1  # balanced: 1 weight = 2 weights = 4 weights

# %% [markdown]
# So the checkerboard is not destiny for one layer trained on a task that punishes it. It is the
# starting point, though: untrained, kernel 3 at stride 2 puts about four times as much energy in one
# phase as in another (`python -m minicnn.recipes.checkerboard`, docs/results/checkerboard.md), and in
# a deep decoder, with many channels and a loss that does not look at flat regions, the balance has
# to be learned layer after layer. Odena et al.'s advice follows from the counts: a kernel divisible
# by the stride (shapes_seg uses kernel 4 at stride 2), or resize first and convolve at stride 1.

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(2, 3, figsize=(11, 7.5))
for col, name in enumerate(UPSAMPLERS):
    grid(axes[0, col], flat[name][:6, :6], cmap="Greys", title_text=f"{name}\nall-ones weights and input", vmax=9)
    image = trained[name].forward(test_in[:1])[0, 0]
    axes[1, col].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[1, col].set_title(f"trained: test error {test_error[name]:.4f}", fontsize=10)
    axes[1, col].axis("off")
fig.suptitle("kernel 3 at stride 2 sums 1, 2 or 4 weights per output pixel; training can balance them", fontsize=12)
save(fig, OUT, "checkerboard")
print("\nlesson 15 done: the layer is the op, the counts are the parity classes, and training balanced them")
