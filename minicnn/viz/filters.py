"""Filters as pictures: why the first layer's weights can be looked at and the deeper ones cannot.

A unit of a conv layer computes w . x + b for the patch x under it, and

    w . x = |w| |x| cos(theta)

so among patches of the same length the largest response goes to x = w / |w|: the filter is a
TEMPLATE of what it detects (lecture section 6). For the first layer, x is a patch of pixels, so w
(C = 3 colour channels, kh x kw) can be drawn as a small colour image of the patch it likes best.

A deeper filter (F, C, kh, kw) multiplies C feature maps of the layer below, not colours. Drawing it
gives C grey kh x kw tiles per filter, each a template over one map whose meaning we do not know:
shapes_vgg's conv3_1 alone has 32 filters x 16 input channels = 512 tiles of 3 x 3 numbers, none of
which looks like anything. That is why the lecture turns to dataset search and DeconvNet for deeper units.

    filters_grid(net, layer) -> FilterTiles   arrays ready for imshow (plot.filters_figure draws them)
"""
from typing import NamedTuple

import numpy as np

from ..layers import Conv2d


class FilterTiles(NamedTuple):
    """A conv layer's weights as pictures, every value scaled into [0, 1] for display.

    tiles:   colour: (F, kh, kw, 3), one RGB picture per filter (first layer with C = 3);
             grey:   (F, C, kh, kw), one grey picture per (filter, input channel)
    colour:  True for colour tiles, False for grey ones
    layer:   the layer's name
    weight:  the raw weights (F, C, kh, kw), a copy
    """

    tiles: np.ndarray
    colour: bool
    layer: str
    weight: np.ndarray


def conv_layers(net):
    """Names of the Conv2d layers of a Network, in order."""
    return [name for name in net.names if isinstance(net[name], Conv2d)]


def min_max_per_filter(weight):
    """(F, ...) -> values scaled into [0, 1] separately for each filter f:

        t_f = (w_f - min(w_f)) / (max(w_f) - min(w_f))     (a constant filter becomes 0.5 everywhere)

    An increasing affine map per filter: the pattern (which weights are larger) is kept exactly, the
    absolute scale is not -- a strong and a weak filter look equally bright, and a weight of 0 is not
    a fixed grey (it sits wherever 0 falls between that filter's min and max).
    """
    flat = weight.reshape(len(weight), -1).astype(np.float64)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    spread = high - low
    scaled = np.divide(flat - low, spread, out=np.full_like(flat, 0.5), where=spread > 0)
    return scaled.reshape(weight.shape)


def filters_grid(net, layer):
    """The weights of Conv2d `layer` as display-ready tiles (see FilterTiles).

    The first conv layer of the network, when it reads 3 channels (the RGB image), gives colour tiles
    (F, kh, kw, 3): filter f's weights with the colour axis moved last. Any other conv layer gives grey
    tiles (F, C, kh, kw): one tile per input channel. Either way each FILTER is min-max normalised on
    its own over all its values (min_max_per_filter), so the tiles of one filter are comparable with
    each other but not with those of another filter.
    """
    convs = conv_layers(net)
    if layer not in net.names:
        raise KeyError(f"unknown layer {layer!r}; the conv layers of this network are {convs}")
    if layer not in convs:
        raise ValueError(f"layer {layer!r} is a {type(net[layer]).__name__}, which has no filters; "
                         f"pick a conv layer: {convs}")
    weight = net[layer].params["weight"].copy()
    scaled = min_max_per_filter(weight)
    colour = layer == convs[0] and weight.shape[1] == 3
    tiles = scaled.transpose(0, 2, 3, 1) if colour else scaled
    return FilterTiles(tiles, colour, layer, weight)
