"""Class activation maps: where in the last feature maps is the evidence for class c?

CAM (Zhou 2016) needs a network that ends in global average pooling and ONE linear layer. With A the
last conv volume (K maps of h x w), w^c the linear layer's row for class c and b_c its bias:

    S_c = sum_k w_k^c * (1 / hw) sum_ij A_k(i, j) + b_c          (GAP, then the linear layer)
        = (1 / hw) sum_ij [ sum_k w_k^c A_k(i, j) ] + b_c          (swap the two sums)
        = mean_ij M_c(i, j) + b_c,      M_c(i, j) = sum_k w_k^c A_k(i, j)

M_c is the class activation map: its mean over positions plus the bias IS the class score, so each
position's share of the score is visible. Up-sampled to the image size it is laid over the image.

Grad-CAM (Selvaraju 2017) works for any network and any layer L with a (K, h, w) output A:

    alpha_k = (1 / hw) sum_ij d S_c / d A_k(i, j)      (one backward pass from S_c down to L)
    map     = ReLU( sum_k alpha_k A_k )

On a GAP + linear network with L = the GAP's input, d S_c / d A_k(i, j) = w_k^c / hw, so
alpha_k = w_k^c / hw and Grad-CAM = ReLU(M_c) / hw: CAM, rectified and scaled.
"""
from typing import NamedTuple

import numpy as np
from scipy.ndimage import zoom

from ..layers import Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, ReLU
from .attribution import (
    check_images,
    check_scores,
    check_targets,
    eval_mode,
    forward_checked,
    one_hot_seed,
)


class Cam(NamedTuple):
    """map (N, h, w): M_c at the last conv volume's size; upsampled (N, H, W) or None;
    weights (N, K): w^c, the linear layer's row for each image's target; bias (N,): b_c;
    layer: the name of the layer whose output is A (the GAP's input)."""

    map: np.ndarray
    upsampled: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    layer: str


class GradCam(NamedTuple):
    """map (N, h, w): ReLU(sum_k alpha_k A_k) at layer's size; upsampled (N, H, W) or None;
    weights (N, K): alpha_k, the spatial mean of d S_c / d A_k; layer: the layer's name."""

    map: np.ndarray
    upsampled: np.ndarray
    weights: np.ndarray
    layer: str


# ----------------------------------------------------------------------------------------------
# CAM


def cam(net, x, target, upsample=True):
    """Class activation map of a network that ends in GlobalAvgPool2d + one Linear.

    x (N, C, H, W), target an int or one per image. Returns Cam(map (N, h, w), upsampled (N, H, W)
    bilinear, or None when upsample=False, weights, bias, layer). mean(map) + bias == the score S_c.
    """
    check_images(net, x)
    gap_name, fc_name = gap_linear_head(net)
    before_gap = _layer_before(net, gap_name)
    with eval_mode(net):
        volume = x if before_gap is None else forward_checked(net, x, upto=before_gap)  # A: (N, K, h, w)
        pooled = net.forward(volume, after=before_gap, upto=gap_name)
        scores = check_scores(net, net.forward(pooled, after=gap_name))
        _check_identity_path(net, gap_name, fc_name, pooled)
    targets = check_targets(target, len(x), scores.shape[1])
    fc = net[fc_name]
    weights = fc.params["weight"][targets]  # (N, K): row w^c for each image
    bias = fc.params["bias"][targets] if "bias" in fc.params else np.zeros(len(x), dtype=scores.dtype)
    class_map = np.einsum("nk,nkhw->nhw", weights, volume)  # M_c(i, j) = sum_k w_k^c A_k(i, j)
    upsampled = upsample_bilinear(class_map, x.shape[2:]) if upsample else None
    return Cam(class_map, upsampled, weights, bias, before_gap or "input")


def gap_linear_head(net):
    """Names (gap, fc) of the network's GlobalAvgPool2d and final Linear, or a clear error.

    The network must END in one Linear; between the last GlobalAvgPool2d and it only Flatten,
    Dropout (the identity in eval mode) and ReLU (checked at run time to change nothing) may stand.
    """
    names = net.names
    kinds = ", ".join(f"{name} ({type(net.layers[name]).__name__})" for name in names[-6:])
    ending = f"this network ends in: {'... ' if len(names) > 6 else ''}{kinds}"
    advice = "; use grad_cam(net, x, target, layer) instead, which works for any network"
    if not isinstance(net.layers[names[-1]], Linear):
        raise ValueError(f"cam needs a network ending in GlobalAvgPool2d + one Linear, but {ending}{advice}")
    gaps = [i for i, name in enumerate(names) if isinstance(net.layers[name], GlobalAvgPool2d)]
    if not gaps:
        raise ValueError(f"cam needs a GlobalAvgPool2d before the final Linear, found none: {ending}{advice}")
    between = names[gaps[-1] + 1:-1]
    others = [f"{name} ({type(net.layers[name]).__name__})" for name in between
              if not isinstance(net.layers[name], (Flatten, Dropout, ReLU))]
    if others:
        raise ValueError(
            f"cam needs the GlobalAvgPool2d {names[gaps[-1]]!r} followed directly by one Linear "
            f"(only Flatten, Dropout or a ReLU that changes nothing between them), but found {others} "
            f"between them: {ending}{advice}"
        )
    return names[gaps[-1]], names[-1]


def _check_identity_path(net, gap_name, fc_name, pooled):
    """A ReLU between GAP and fc is allowed only if it is the identity here: the pooled values >= 0."""
    between = net.names[net.names.index(gap_name) + 1:net.names.index(fc_name)]
    relus = [name for name in between if isinstance(net.layers[name], ReLU)]
    if relus and (pooled < 0).any():
        raise ValueError(
            f"cam: the ReLU {relus[0]!r} between {gap_name!r} and {fc_name!r} is not the identity on this input "
            f"(the pooled features have negative values, min {pooled.min():.3g}), so the score is not "
            "sum_k w_k^c mean(A_k) + b_c; use grad_cam instead"
        )


def _layer_before(net, name):
    """The name of the layer just before `name` (None if `name` is the first: its input is the image)."""
    index = net.names.index(name)
    return net.names[index - 1] if index > 0 else None


# ----------------------------------------------------------------------------------------------
# Grad-CAM


def grad_cam(net, x, target, layer, upsample=True):
    """Grad-CAM at `layer` (any layer with a (N, K, h, w) output) for any network ending in scores.

    A = output of `layer`; one backward pass from the one-hot seed at the scores down to A gives
    G = d S_c / d A (N, K, h, w); alpha = G.mean over (h, w); map = ReLU(sum_k alpha_k A_k).
    Returns GradCam(map (N, h, w), upsampled (N, H, W) or None, weights alpha (N, K), layer).
    """
    check_images(net, x)
    _check_volume_layer(net, layer)
    with eval_mode(net):
        volume = forward_checked(net, x, upto=layer)
        if volume.ndim != 4:
            raise ValueError(
                f"grad_cam needs a layer whose output is a (N, K, h, w) volume, but {layer!r} gives shape "
                f"{volume.shape}; choose one of {net.spatial_layers()}"
            )
        scores = check_scores(net, net.forward(volume, after=layer))
        targets = check_targets(target, len(x), scores.shape[1])
        gradient = net.backward(one_hot_seed(scores, targets), after=layer, param_grads=False)
    alpha = gradient.mean(axis=(2, 3))  # (N, K)
    class_map = np.maximum(np.einsum("nk,nkhw->nhw", alpha, volume), 0)
    upsampled = upsample_bilinear(class_map, x.shape[2:]) if upsample else None
    return GradCam(class_map, upsampled, alpha, layer)


def _check_volume_layer(net, layer):
    """`layer` must name a layer before the last one (the scores have no spatial maps)."""
    if not isinstance(layer, str) or layer not in net.names:
        raise KeyError(f"unknown layer {layer!r}; layers with feature maps are {net.spatial_layers()}")
    if layer == net.names[-1]:
        raise ValueError(
            f"layer {layer!r} is the last layer (the scores); choose a layer with feature maps, one of {net.spatial_layers()}"
        )


def last_conv_layer(net):
    """The usual Grad-CAM layer: the last Conv2d before the head, or the ReLU right after it."""
    candidates = net.spatial_layers()
    convs = [i for i, name in enumerate(candidates) if isinstance(net.layers[name], Conv2d)]
    if not convs:
        raise ValueError(f"the network has no Conv2d before its head; its layers are {net.names}")
    i = convs[-1]
    if i + 1 < len(candidates) and isinstance(net.layers[candidates[i + 1]], ReLU):
        i += 1
    return candidates[i]


# ----------------------------------------------------------------------------------------------
# up-sampling


def upsample_bilinear(maps, size):
    """Bilinear up-sampling of maps (N, h, w) to (N, H, W), pixel centres aligned as in PyTorch's
    F.interpolate(mode="bilinear", align_corners=False): output pixel y samples the map at
    (y + 0.5) * h / H - 0.5, clamped to the border. (scipy.ndimage.zoom, order=1, grid_mode=True.)"""
    h, w = maps.shape[1:]
    H, W = size
    return zoom(maps, (1, H / h, W / w), order=1, grid_mode=True, mode="nearest")
