"""Deletion and insertion (Petsiuk et al. 2018): does the class probability follow the map's order?

Rank the H*W pixels of each image by its map, highest first (ties in raster order). With `steps`
equal steps, step k (k = 0 ... steps) has changed the first m_k = floor(k * H * W / steps) pixels
of that order (all channels of a pixel at once):

    deletion    start from the image x and replace those pixels by the fill image's pixels
    insertion   start from the fill image and put those pixels of x back

and records p_c, the softmax probability of the target class (float64), giving a curve of
steps + 1 values: deletion goes from p_c(x) to p_c(fill), insertion from p_c(fill) to p_c(x). The
area under the curve over the fraction of pixels changed (trapezoid rule, spacing 1 / steps) scores
the map: a LOW deletion AUC (the probability falls at once) and a HIGH insertion AUC (it rises at
once) mean the map put the pixels that matter first.

The fill image: "blur" (each channel blurred by a Gaussian of std `blur_sigma` pixels, as Petsiuk
et al. did for insertion), "mean" (each image's mean colour) or a grey level.
"""
import numpy as np
from scipy.ndimage import gaussian_filter

from ..checks import check_array, check_choice, check_int_at_least, check_number, check_shape
from ..ops import softmax
from ..viz.attribution import check_images, check_scores, check_targets, eval_mode, forward_checked

FILLS = ("blur", "mean")
BLUR_SIGMA = 5.0  # pixels: on 64 x 64 shapes images an object becomes a faint blob


def pixel_order(maps):
    """maps (N, H, W) -> (N, H*W) flat pixel indices from the highest value down, ties in raster order."""
    flat = maps.reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")


def fill_images(x, fill="blur", blur_sigma=BLUR_SIGMA):
    """The image every pixel is moved to (deletion) or from (insertion), (N, C, H, W) like x."""
    if isinstance(fill, str):
        check_choice(fill, "fill", FILLS)
        if fill == "mean":
            return np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape).astype(x.dtype)
        blur_sigma = check_number(blur_sigma, "blur_sigma", low=0, low_open=True)
        return gaussian_filter(x, sigma=(0, 0, blur_sigma, blur_sigma), mode="nearest").astype(x.dtype)
    fill = check_number(fill, "fill (a grey level, 'blur' or 'mean')")
    return np.full_like(x, fill)


def changed_counts(pixels, steps):
    """How many pixels are changed at each step k = 0 ... steps: floor(k * pixels / steps), (steps + 1,)."""
    return np.arange(steps + 1) * pixels // steps


def probability_curves(net, start, end, targets, maps, steps=32, batch_size=64):
    """p_target as the pixels of `start` are replaced, in the maps' order, by those of `end`.

    start, end (N, C, H, W); maps (N, H, W); returns (N, steps + 1) float64, column k after the first
    changed_counts(H*W, steps)[k] pixels of the order have been replaced."""
    n, c, h, w = start.shape
    order = pixel_order(maps)
    counts = changed_counts(h * w, steps)
    curves = np.empty((n, steps + 1))
    total = n * (steps + 1)
    with eval_mode(net):
        for first in range(0, total, batch_size):
            image, step = np.unravel_index(np.arange(first, min(first + batch_size, total)), (n, steps + 1))
            mixed = start[image].reshape(len(image), c, h * w)  # a copy: start is never written
            source = end[image].reshape(len(image), c, h * w)
            for b in range(len(image)):
                changed = order[image[b], :counts[step[b]]]
                mixed[b][:, changed] = source[b][:, changed]
            scores = check_scores(net, forward_checked(net, mixed.reshape(len(image), c, h, w)))
            p = softmax(scores.astype(np.float64))
            curves[image, step] = p[np.arange(len(image)), targets[image]]
    return curves


def _checked(net, x, target, maps, steps, batch_size):
    check_images(net, x)
    check_shape(check_array(maps, "maps", ndim=3), "maps", (len(x),) + x.shape[2:])
    steps = check_int_at_least(steps, "steps", 1)
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    with eval_mode(net):
        classes = check_scores(net, forward_checked(net, x[:1])).shape[1]
    return check_targets(target, len(x), classes), steps, batch_size


def deletion_curve(net, x, target, maps, steps=32, fill="blur", batch_size=64):
    """(N, steps + 1): p_target while the map's pixels are replaced by the fill's, highest first.
    Column 0 is p_target(x), the last column p_target(fill image)."""
    targets, steps, batch_size = _checked(net, x, target, maps, steps, batch_size)
    return probability_curves(net, x, fill_images(x, fill), targets, maps, steps, batch_size)


def insertion_curve(net, x, target, maps, steps=32, fill="blur", batch_size=64):
    """(N, steps + 1): p_target while the map's pixels of x are put back into the fill image, highest first.
    Column 0 is p_target(fill image), the last column p_target(x)."""
    targets, steps, batch_size = _checked(net, x, target, maps, steps, batch_size)
    return probability_curves(net, fill_images(x, fill), x, targets, maps, steps, batch_size)


def area_under_curve(curves):
    """curves (N, steps + 1) sampled at fractions 0, 1/steps, ..., 1 -> (N,) trapezoid-rule areas:
    (sum of the values - (first + last) / 2) / steps."""
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"curves must have shape (N, steps + 1) with steps >= 1, got {curves.shape}")
    steps = curves.shape[1] - 1
    return (curves.sum(axis=1) - (curves[:, 0] + curves[:, -1]) / 2) / steps
