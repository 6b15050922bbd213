"""Attribution: which pixels of the input made the network give this class score?

Three answers from the lecture (section 5), each a short function over Network forward/backward:

    saliency(net, x, target)          Simonyan 2014: the gradient of the PRE-softmax score S_c with
                                      respect to the pixels, map = max over colour channels of |dS_c/dx|
                                      (smooth=n: SmoothGrad, the mean map over n noisy copies)
    guided_backprop(net, x, target)   Springenberg 2015: the same backward pass, ReLU rule "guided"
    occlusion(net, x, target, ...)    Zeiler & Fergus 2014: cover a square, watch p(target) drop

Saliency and guided backprop are ONE backward pass each: start from the one-hot seed e_c at the
scores (dS_c/dS = e_c) and run net.backward down to the image with a ReLU rule. Occlusion uses no
gradient at all, only many forward passes.

Shapes: x is (N, C, H, W) float32/float64 (the network's dtype); target is an int (the same class
for every image) or one int per image. Maps are (N, H, W).
"""
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_array, check_choice, check_finite, check_int_at_least, check_number
from ..ops import RELU_RULES, softmax
from ..shapes import check_geometry, conv_output_size


class Saliency(NamedTuple):
    """map (N, H, W): max over channels of |dS_c/dx| (SmoothGrad: its mean over the noisy copies);
    gradient (N, C, H, W): the raw signed gradient dS_c/dx (SmoothGrad: its mean over the copies)."""

    map: np.ndarray
    gradient: np.ndarray


class GuidedBackprop(NamedTuple):
    """signal (N, C, H, W): what reaches the pixels under the "guided" rule (show it as an image);
    map (N, H, W): max over channels of |signal|."""

    signal: np.ndarray
    map: np.ndarray


class Occlusion(NamedTuple):
    """probability (N, Ph, Pw): p(target) with the square at each position;
    drop (N, Ph, Pw): base_probability - probability (positive where covering hurts);
    heatmap (N, H, W): at each pixel, the mean drop over the squares that covered it (0 if none did);
    base_probability (N,): p(target) of the unoccluded image."""

    probability: np.ndarray
    drop: np.ndarray
    heatmap: np.ndarray
    base_probability: np.ndarray


# ----------------------------------------------------------------------------------------------
# checks and small helpers shared by the attribution and CAM functions


@contextmanager
def eval_mode(net):
    """Run the block with every layer in evaluation mode (Dropout is the identity), then restore each
    layer's own mode: a visualization never leaves the network changed."""
    modes = {name: layer.training for name, layer in net.layers.items()}
    net.eval()
    try:
        yield net
    finally:
        for name, layer in net.layers.items():
            layer.training = modes[name]


def check_images(net, x, name="x"):
    """Check that x is a non-empty (N, C, H, W) float batch of finite values, with the network's dtype and
    channel count."""
    net.check_input_dtype(check_array(x, name, ndim=4), name)
    for layer_name in net.names:
        channels = getattr(net.layers[layer_name], "in_channels", None)
        if channels is not None:
            if x.shape[1] != channels:
                raise ValueError(
                    f"{name} has shape {x.shape} with {x.shape[1]} channels, but the first layer "
                    f"{layer_name!r} expects {channels}: {name} must be (N, {channels}, H, W)"
                )
            break
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {x.shape}): there is nothing to explain")
    return check_finite(x, name)  # a NaN pixel would turn every map into NaN or zeros


def forward_checked(net, x, after=None, upto=None):
    """net.forward, with any shape error re-raised to say which input did not fit the network."""
    try:
        return net.forward(x, after=after, upto=upto)
    except ValueError as error:
        where = "the image" if after is None else f"the output of {after!r}"
        raise ValueError(f"an input of shape {x.shape} (as {where}) does not fit this network: {error}") from error


def check_scores(net, scores):
    """The network's output must be class scores (N, K)."""
    if scores.ndim != 2:
        raise ValueError(
            f"the last layer {net.names[-1]!r} gives shape {scores.shape}, not class scores (N, classes): "
            "attribution needs a network that ends in class scores"
        )
    return scores


def check_targets(target, n, num_classes):
    """An int, or one int per image, each in [0, num_classes) -> an int64 array (n,)."""
    valid = f"an int in [0, {num_classes}) or one such int per image ({n} images)"
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be {valid}, got the bool {target!r}")
    if isinstance(target, (int, np.integer)):
        targets = np.full(n, int(target), dtype=np.int64)
    else:
        targets = np.asarray(target)
        if targets.dtype == bool or not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"target must be {valid}, got {target!r}")
        if targets.shape != (n,):
            raise ValueError(f"target must be {valid}, got shape {targets.shape}")
        targets = targets.astype(np.int64)
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if bad.size:
        raise ValueError(
            f"target {bad[0]} is out of range: this network has {num_classes} classes, "
            f"valid targets are 0 to {num_classes - 1}"
        )
    return targets


def one_hot_seed(scores, targets):
    """The gradient at the scores that starts the backward pass from S_c: e_c for each image.

    d S_c / d scores = e_c, so backward from this seed gives d S_c / d (anything below). Each image's
    score depends only on its own input, so one batched backward gives every image's gradient.
    """
    seed = np.zeros_like(scores)
    seed[np.arange(len(targets)), targets] = 1
    return seed


def channel_max_abs(signal):
    """(N, C, H, W) -> (N, H, W): max over the colour channels of |signal| (Simonyan's map)."""
    return np.abs(signal).max(axis=1)


# ----------------------------------------------------------------------------------------------
# gradient methods


def score_gradient(net, x, target, rule="gradient"):
    """d S_target / d x (N, C, H, W) by one backward pass from the one-hot seed at the scores.

    rule "gradient" is the true gradient; "guided" and "deconvnet" change only what the ReLUs pass
    back. S is the PRE-softmax score: p(c) can rise just because other scores fall, S_c cannot.
    """
    check_choice(rule, "rule", RELU_RULES)
    check_images(net, x)
    with eval_mode(net):
        scores = check_scores(net, forward_checked(net, x))
        targets = check_targets(target, len(x), scores.shape[1])
        return net.backward(one_hot_seed(scores, targets), rule=rule, param_grads=False)


def saliency(net, x, target, smooth=0, sigma=0.15, seed=0):
    """Saliency map (Simonyan 2014): M(i, j) = max_c |d S_target / d x(c, i, j)|, shape (N, H, W).

    smooth=0: one backward pass. smooth=n > 0: SmoothGrad (Smilkov 2017): draw n noisy copies
    x + eps, eps ~ Normal(0, std^2) with std = sigma * (max(x) - min(x)) for each image (seeded by
    `seed`: np.random.default_rng(seed).standard_normal(x.shape) per copy, in order), and average
    the n maps (and the n raw gradients). Returns Saliency(map, gradient).
    """
    check_images(net, x)
    smooth = check_int_at_least(smooth, "smooth", 0)
    if smooth == 0:
        gradient = score_gradient(net, x, target)
        return Saliency(channel_max_abs(gradient), gradient)
    sigma = check_number(sigma, "sigma", low=0)
    rng = np.random.default_rng(seed)
    std = sigma * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))  # (N,): noise level per image
    map_sum, gradient_sum = 0.0, 0.0
    for _ in range(smooth):
        noise = rng.standard_normal(x.shape) * std[:, None, None, None]
        gradient = score_gradient(net, (x + noise).astype(x.dtype), target)
        map_sum = map_sum + channel_max_abs(gradient)
        gradient_sum = gradient_sum + gradient
    return Saliency(map_sum / smooth, gradient_sum / smooth)


def guided_backprop(net, x, target):
    """Guided backpropagation (Springenberg 2015): the backward pass from S_target with ReLU rule
    "guided": at every ReLU pass g * [forward input > 0] * [g > 0]; max-pool still un-pools with its
    switches, conv still multiplies by W^T. Returns GuidedBackprop(signal (N, C, H, W), map (N, H, W))."""
    signal = score_gradient(net, x, target, rule="guided")
    return GuidedBackprop(signal, channel_max_abs(signal))


# ----------------------------------------------------------------------------------------------
# occlusion


def occlusion(net, x, target, size, stride, fill="mean", batch_size=64, progress=True, on_progress=None):
    """Occlusion sensitivity (Zeiler & Fergus 2014): slide a square of `fill` over each image.

    The square (size = k or (kh, kw)) moves like a convolution window without padding: position
    (i, j) covers rows i*sh ... i*sh + kh - 1 and columns j*sw ... j*sw + kw - 1, so there are
    Ph = (H - kh) // sh + 1 by Pw = (W - kw) // sw + 1 positions. At each we record p(target)
    (softmax) of the occluded image and the drop from the unoccluded p.
    fill: "mean" (each image's per-channel mean colour) or a number (e.g. 0.5 for grey).

    heatmap (N, H, W): each pixel gets the MEAN drop over all squares that cover it (pixels no square
    covers, at the bottom/right when the stride does not fit, get 0). Positive = covering it hurts.
    Probabilities are computed in float64 whatever x's dtype: for a confident float32 network the
    softmax rounds to exactly 1.0 (when 1 - p < 6e-8), so every square would record a drop of 0 and
    the map would be flat (measured on shapes_vgg: 15 of 200 held-out images; none in float64).

    Occluded copies are built and run `batch_size` at a time, whatever N, H, W: memory stays at
    batch_size images. on_progress: None, or a function called as on_progress(done, total) after each
    batch (the explorer's progress bar). Returns Occlusion(probability, drop, heatmap, base_probability).
    """
    check_images(net, x)
    (kh, kw), (sh, sw), _ = check_geometry(size, stride, 0, name="size")
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    n, _, h, w = x.shape
    if kh > h or kw > w:
        raise ValueError(f"size {(kh, kw)} is larger than the images, which are {(h, w)}")
    fill_colors = _fill_colors(x, fill)  # (N, C)
    ph, pw = conv_output_size(h, kh, sh), conv_output_size(w, kw, sw)
    with eval_mode(net):
        base = _probabilities(net, x, batch_size)
        targets = check_targets(target, n, base.shape[1])
        base_probability = base[np.arange(n), targets]
        probability = np.empty((n, ph, pw), dtype=np.float64)
        total = n * ph * pw
        with tqdm(total=total, desc="occlusion", unit="image", disable=not progress) as bar:
            for start in range(0, total, batch_size):
                # job number k = (image, i, j) in C order: image k // (Ph Pw), square (i, j) within it
                image, i, j = np.unravel_index(np.arange(start, min(start + batch_size, total)), (n, ph, pw))
                occluded = x[image]  # fancy indexing makes a copy: the caller's x is never written
                for b in range(len(image)):
                    rows, cols = slice(i[b] * sh, i[b] * sh + kh), slice(j[b] * sw, j[b] * sw + kw)
                    occluded[b, :, rows, cols] = fill_colors[image[b], :, None, None]
                p = softmax(net.forward(occluded).astype(np.float64))
                probability[image, i, j] = p[np.arange(len(image)), targets[image]]
                bar.update(len(image))
                if on_progress is not None:
                    on_progress(start + len(image), total)
    drop = base_probability[:, None, None] - probability
    heatmap = mean_over_covering_squares(drop, (h, w), (kh, kw), (sh, sw))
    return Occlusion(probability, drop, heatmap, base_probability)


def mean_over_covering_squares(values, image_hw, size, stride):
    """values (N, Ph, Pw), one per square position -> (N, H, W): at each pixel the mean of the values
    of the squares covering it; 0 where no square does."""
    (kh, kw), (sh, sw) = size, stride
    total = np.zeros((len(values),) + tuple(image_hw), dtype=values.dtype)
    count = np.zeros(image_hw, dtype=np.int64)
    for i in range(values.shape[1]):
        for j in range(values.shape[2]):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            total[:, rows, cols] += values[:, i, j, None, None]
            count[rows, cols] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _fill_colors(x, fill):
    """The colour painted in the square, one per image and channel: (N, C)."""
    if isinstance(fill, str):
        check_choice(fill, "fill", ("mean",))
        return x.mean(axis=(2, 3))
    fill = check_number(fill, "fill (a grey level, or 'mean')")
    if abs(fill) > float(np.finfo(x.dtype).max):
        raise ValueError(f"fill {fill!r} does not fit the images' dtype {x.dtype}")
    return np.full(x.shape[:2], fill, dtype=x.dtype)


def _probabilities(net, x, batch_size):
    """softmax(scores) of x in float64, run batch_size images at a time: (N, K)."""
    chunks = [check_scores(net, forward_checked(net, x[k:k + batch_size])) for k in range(0, len(x), batch_size)]
    return softmax(np.concatenate(chunks).astype(np.float64))
