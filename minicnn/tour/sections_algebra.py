"""Tour sections 1-2: convolution as a matrix (the lecture's board examples) and first-layer filters."""
import numpy as np
from matplotlib.figure import Figure

from .. import ops, plot

# ----------------------------------------------------------------------------------------------
# 1. convolution is a matrix (the lecture's board examples; figures that minicnn.plot does not have)

PARITY_COLOURS = {(0, 0): plot.WEIGHT_COLOURS[1], (0, 1): plot.WEIGHT_COLOURS[2],   # the lecture's blue, green,
                  (1, 0): plot.WEIGHT_COLOURS[3], (1, 1): plot.WEIGHT_COLOURS[4]}   # purple and yellow weights


def draw_cells(ax, colours, labels=None, fontsize=8):
    """Draw an (h, w, 3) array of cell colours as a grid, with an optional (h, w) array of texts."""
    ax.imshow(colours, interpolation="nearest")
    h, w = colours.shape[:2]
    ax.set_xticks(np.arange(w + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(h + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.5)
    ax.tick_params(which="both", length=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels is not None:
        for (i, j), text in np.ndenumerate(labels):
            if text:
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize)


def matrix_1d_figure(path=None):
    """The lecture's 1D convolution as a matrix: 8 inputs, padding 2, filter (w1..w4), stride 2 -> W (5 x 12)."""
    from ..matrix import conv1d_matrix, orthogonality

    n, stride, padding = 8, 2, 2
    which = conv1d_matrix(np.arange(1.0, 5.0), n, stride, padding).astype(int)  # entry k: weight w_k; 0: none
    colours = plot.WEIGHT_COLOURS[which]
    colours[:, [0, 1, n + 2, n + 3]] *= 0.85  # the padding columns
    labels = np.where(which > 0, np.char.add("w", which.astype(str)), "")
    edge = orthogonality(conv1d_matrix(np.array([1.0, 0.0, 0.0, -1.0]), n, stride, padding))
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    draw_cells(ax, colours, labels, fontsize=9)
    ax.set_xticks(range(n + 4), ["0", "0"] + [f"x{i}" for i in range(1, n + 1)] + ["0", "0"])
    ax.set_yticks(range(len(which)), [f"y{i}" for i in range(1, len(which) + 1)])
    ax.set_title(f"y = W x, W is 5 x 12 (grey columns: padding). With the edge filter (+1, 0, 0, -1):\n"
                 f"W W^T = {edge.scale:g} I (deviation {edge.deviation:.2g}): the rows are orthogonal", fontsize=9)
    return plot.save_figure(fig, path)


def polyphase_figure(path=None):
    """The transposed convolution 4x4 -> 6x6 (kernel 4, stride 2, padding 2) in its sub-pixel form:
    zeros inserted, padded to 9x9, the flipped kernel slid at stride 1; each output pixel meets the
    weights of one parity class only, so it is four 2x2 convolutions interleaved."""
    from ..matrix import (
        insert_zeros,
        pad_or_crop,
        polyphase_conv_transpose2d,
        subpixel_conv_transpose2d,
    )

    kernel, stride, padding = 4, 2, 2
    rng = np.random.default_rng(0)
    y = rng.integers(1, 10, (1, 1, 4, 4)).astype(np.float64)
    w = rng.integers(-3, 4, (1, 1, kernel, kernel)).astype(np.float64)
    engine = ops.conv_transpose2d(y, w, stride=stride, padding=padding)
    assert np.allclose(subpixel_conv_transpose2d(y, w, stride=stride, padding=padding), engine)
    assert np.allclose(polyphase_conv_transpose2d(y, w, stride=stride, padding=padding), engine)
    grow = kernel - 1 - padding
    spread = pad_or_crop(pad_or_crop(insert_zeros(y, (stride, stride)), 2, grow, grow), 3, grow, grow)[0, 0]

    kernel_colours = np.array([[PARITY_COLOURS[i % 2, j % 2] for j in range(kernel)] for i in range(kernel)])
    input_colours = np.where((spread != 0)[..., None], 0.78, 1.0) * np.ones(3)
    out = engine[0, 0]
    output_colours = np.array([[PARITY_COLOURS[(i + padding) % stride, (j + padding) % stride]
                                for j in range(out.shape[1])] for i in range(out.shape[0])])
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [4, 9, 6]})
    draw_cells(axes[0], kernel_colours, w[0, 0].astype(int).astype(str))
    axes[0].set_title("the 4x4 filter:\nfour parity classes (colours)", fontsize=9)
    draw_cells(axes[1], input_colours, np.where(spread != 0, spread.astype(int).astype(str), "0"))
    axes[1].set_title("4x4 input, zeros inserted (stride 2 -> 1),\npadded by k - 1 - p = 1: 9x9", fontsize=9)
    draw_cells(axes[2], output_colours, out.astype(int).astype(str))
    axes[2].set_title("6x6 output = W^T y; colour = the one class\nof weights each pixel meets", fontsize=9)
    fig.suptitle("transposed convolution (kernel 4, stride 2, padding 2) = a stride-1 convolution with the "
                 "flipped filter = four 2x2 convolutions, interleaved", fontsize=10)
    fig.tight_layout()
    return plot.save_figure(fig, path)


def conv_as_matrix(tour):
    return [
        tour.panel(matrix_1d_figure(), "matrix_1d",
                   "A convolution is a matrix: the lecture's 1D example (8 inputs, padding 2, 4-tap filter, stride 2) "
                   "is a 5 x 12 matrix W; look at the staircase — every row is the same filter shifted by the stride, "
                   "so W^T (the 'deconvolution') spreads each output back over its window."),
        tour.panel(polyphase_figure(), "transposed_polyphase",
                   "Transposed convolution as an ordinary one: insert zeros, pad, slide the flipped filter; look at the "
                   "colours — each output pixel meets only one parity class of weights, so the layer is four small "
                   "convolutions interleaved (a pixel shuffle)."),
    ]


# ----------------------------------------------------------------------------------------------
# 2. filters as pictures


def first_layer_filters(tour):
    from ..viz.filters import conv_layers, filters_grid

    subject = tour.subject
    first_net = subject.cam_net if subject.cam_net is not None else subject.net
    first = conv_layers(first_net)[0]
    second = conv_layers(subject.net)[1]
    tiles = tour.budget.grey_tiles
    first_filters = filters_grid(first_net, first)
    if first_filters.colour and subject.bgr and first_net is subject.net:  # tiles are (F, kh, kw, BGR)
        first_filters = first_filters._replace(tiles=first_filters.tiles[..., ::-1])
    colour = plot.filters_figure(first_filters)
    grey = plot.filters_figure(filters_grid(subject.net, second), max_filters=tiles, max_channels=tiles)
    return [
        tour.panel(colour, f"filters_{first}",
                   f"First-layer filters ({first}) drawn as colour images: a filter is a template "
                   "(w . x = |w||x| cos theta), so look for the colour blobs and oriented edges it matches best."),
        tour.panel(grey, f"filters_{second}", f"A deeper layer's filters ({second}) as grey tiles, one per input "
                   "channel: they weigh feature maps, not colours, so nothing here is readable — why the lecture "
                   "turns to dataset search and DeconvNet."),
    ]
