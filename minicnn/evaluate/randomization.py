"""The model-parameter randomization test (Adebayo et al. 2018, "Sanity checks for saliency maps").

If a map explains what the network learned, it must change when the learned parameters are thrown
away. Re-draw the parameters of some layers (each layer's own reset_parameters, the initial
distribution it was trained from, from a seeded generator) and compare each method's map on the
re-drawn network with its map on the trained one:

    cascade       from the top layer down: step k re-draws the top k layers with parameters
    independent   one layer at a time, every other layer keeps its trained values

A map that stays similar while the network's accuracy falls to chance does not depend on what the
network learned. Similarity per image, averaged over images:

    spearman_abs     Spearman rank correlation of |map| and |trained map| (scipy.stats.spearmanr)
    spearman_signed  the same on the signed maps (signs kept: a flipped sign counts)
    ssim             structural similarity (scikit-image's structural_similarity, the `evaluate` extra)
                     of the two |maps|, each scaled to [0, 1] by its own min and max
"""
import copy
from typing import NamedTuple

import numpy as np
from scipy.stats import spearmanr

from ..checks import check_choice, check_int_at_least

MODES = ("cascade", "independent")


class Step(NamedTuple):
    """One randomized network: mode ("cascade" / "independent"), index (1, 2, ...), layers re-drawn."""

    mode: str
    index: int
    layers: tuple

    @property
    def label(self):
        """A column title: the one layer re-drawn (independent), or "down to L" (cascade)."""
        return self.layers[0] if self.mode == "independent" else f"down to {self.layers[-1]}"


def parameter_layers(net):
    """Names of the layers that hold parameters, from the top (the scores) down to the first layer."""
    return [name for name in reversed(net.names) if net.layers[name].params]


def steps(net, mode):
    """The Steps of `mode`: cascade re-draws the top 1, 2, ... layers; independent each layer alone."""
    check_choice(mode, "mode", MODES)
    layers = parameter_layers(net)
    if mode == "cascade":
        return [Step(mode, k, tuple(layers[:k])) for k in range(1, len(layers) + 1)]
    return [Step(mode, k, (name,)) for k, name in enumerate(layers, start=1)]


def randomized_copy(net, layers, seed=0):
    """A copy of net whose `layers` are re-drawn by their own reset_parameters and every other
    parameter is kept; layer L draws from np.random.default_rng([seed, position of L in net.names]),
    so a layer gets the same new values in every step that re-draws it. net is not changed."""
    seed = check_int_at_least(seed, "seed", 0)
    for name in layers:
        if name not in net.layers or not net.layers[name].params:
            raise ValueError(f"layers must name layers with parameters, one of {parameter_layers(net)}; got {name!r}")
    clone = copy.deepcopy(net)
    for name in layers:
        clone.layers[name].reset_parameters(np.random.default_rng([seed, net.names.index(name)]))
    return clone.eval()


def spearman(a, b):
    """Spearman rank correlation of two maps of one shape, flattened (scipy.stats.spearmanr); NaN when
    either map is constant (its ranks carry no order)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"the maps must have one shape, got {np.shape(a)} and {np.shape(b)}")
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def unit_scaled(heat):
    """The map scaled to [0, 1] by its min and max (zeros for a constant map)."""
    span = np.ptp(heat)
    return (heat - heat.min()) / span if span > 0 else np.zeros(np.shape(heat))


def ssim(a, b):
    """Structural similarity of two maps (H, W) after scaling each to [0, 1] (skimage's
    structural_similarity, 7 x 7 windows, data_range 1)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as error:
        raise ImportError("SSIM needs scikit-image: pip install 'minicnn[evaluate]'") from error
    if np.shape(a) != np.shape(b) or np.ndim(a) != 2:
        raise ValueError(f"the maps must be (H, W) of one shape, got {np.shape(a)} and {np.shape(b)}")
    return float(structural_similarity(unit_scaled(a), unit_scaled(b), data_range=1.0))


SIMILARITIES = ("spearman_abs", "spearman_signed", "ssim")


def similarities(trained, randomized):
    """{similarity name: (N,) values} of each image's Maps on the randomized network to its trained Maps."""
    return {
        "spearman_abs": np.array([spearman(np.abs(a), np.abs(b)) for a, b in zip(trained.map, randomized.map)]),
        "spearman_signed": np.array([spearman(a, b) for a, b in zip(trained.signed, randomized.signed)]),
        "ssim": np.array([ssim(np.abs(a), np.abs(b)) for a, b in zip(trained.map, randomized.map)]),
    }
