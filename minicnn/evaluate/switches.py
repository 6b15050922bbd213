"""What the max-pool switches have to do with it: the backward rules with the image's switches or flat ones.

On the way back every rule un-pools with the switches recorded by the forward pass (max_unpool2d).
Under rule "deconvnet" the ReLUs ignore the forward pass and the convolutions multiply by W^T, so the
DeconvNet signal from a class score depends on the image ONLY through the switches; guided backprop
also keeps the ReLUs' forward masks, saliency too (and its gradient is the true one).

The ablation: the same backward pass with "flat" switches, the ones max_pool2d records on a constant
input (ties go to the first position of each window), which carry nothing about the image. Scored:

    pointing           does the map point at the object (minicnn.viz.pointing)
    spearman_edges     Spearman correlation of the map with the image's edges (Sobel gradient
                       magnitude of the image smoothed by a Gaussian of EDGE_SIGMA pixels, max over
                       colour channels): how much the map just draws the image
    spearman_trained   Spearman correlation with the trained network's map with the image's own switches

on the trained network, on a copy whose layers above the last max-pool are re-drawn (the top), and
on a fully re-drawn copy (minicnn.evaluate.randomization).
"""
import numpy as np
from scipy.ndimage import gaussian_filter, sobel

from ..checks import check_choice
from ..layers import MaxPool2d
from ..ops import RELU_RULES, max_pool2d, max_unpool2d
from ..viz.attribution import channel_max_abs, check_images, check_scores, check_targets, eval_mode, one_hot_seed
from ..viz.pointing import pointing_hits
from .randomization import parameter_layers, randomized_copy, spearman

SWITCHES = ("own", "flat")
RULES = {"saliency": "gradient", "guided backprop": "guided", "deconvnet": "deconvnet"}
EDGE_SIGMA = 1.0  # pixels: the shapes images carry independent noise in every pixel


def flat_switches(layer, input_shape):
    """The switches `layer` (a MaxPool2d) records on a constant input of input_shape: the first position of
    every window, the same for every image."""
    return max_pool2d(np.zeros(input_shape), layer.kernel_size, layer.stride, layer.padding)[1]


def backward_signal(net, x, target, rule, switches="own"):
    """d S_target / d x under ReLU `rule` (N, C, H, W), un-pooling with the image's own switches (equal to
    minicnn.viz.attribution.score_gradient) or with flat_switches."""
    check_choice(rule, "rule", RELU_RULES)
    check_choice(switches, "switches", SWITCHES)
    check_images(net, x)
    with eval_mode(net):
        outputs = net.activations(x, net.names)
        scores = check_scores(net, outputs[net.names[-1]])
        grad = one_hot_seed(scores, check_targets(target, len(x), scores.shape[1]))
        for index in range(len(net.names) - 1, -1, -1):
            layer = net.layers[net.names[index]]
            if switches == "flat" and isinstance(layer, MaxPool2d):
                input_shape = outputs[net.names[index - 1]].shape if index else x.shape
                grad = max_unpool2d(grad, flat_switches(layer, input_shape), input_shape[2:])
            else:
                grad = layer.backward(grad, rule=rule, param_grads=False)
    return grad


def edge_maps(x, sigma=EDGE_SIGMA):
    """(N, C, H, W) images -> (N, H, W): the Sobel gradient magnitude of each channel smoothed by a
    Gaussian of `sigma` pixels, max over colour channels."""
    x = gaussian_filter(x.astype(np.float64), sigma=(0, 0, sigma, sigma), mode="nearest")
    return np.hypot(sobel(x, axis=2), sobel(x, axis=3)).max(axis=1)


def top_layers(net):
    """The layers with parameters above the last MaxPool2d (the head: for shapes_vgg fc2 and fc1)."""
    pools = [i for i, name in enumerate(net.names) if isinstance(net.layers[name], MaxPool2d)]
    last = pools[-1] if pools else -1
    return tuple(name for name in parameter_layers(net) if net.names.index(name) > last)


def switch_ablation(net, images, labels, masks, methods=tuple(RULES), seed=0):
    """One row per network (trained, top re-drawn, all re-drawn), method and switches (own, flat): the
    pointing accuracy and the mean Spearman correlation with the image's edges and with the trained map."""
    for method in methods:
        check_choice(method, "method", tuple(RULES))
    networks = [("trained", net), ("top re-drawn", randomized_copy(net, top_layers(net), seed)),
                ("all re-drawn", randomized_copy(net, parameter_layers(net), seed))]
    edges = edge_maps(images)
    reference = {method: channel_max_abs(backward_signal(net, images, labels, RULES[method])) for method in methods}
    rows = []
    for network_name, network in networks:
        for method in methods:
            for switches in SWITCHES:
                maps = channel_max_abs(backward_signal(network, images, labels, RULES[method], switches))
                rows.append({"network": network_name, "method": method, "switches": switches,
                             "pointing": float(pointing_hits(maps, masks).mean()),
                             "spearman_edges": float(np.nanmean([spearman(m, e) for m, e in zip(maps, edges)])),
                             "spearman_trained": float(np.nanmean([spearman(m, r) for m, r in
                                                                   zip(maps, reference[method])]))})
    return rows
