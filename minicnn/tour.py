"""`minicnn tour`: the whole lecture as a gallery of figures, made by running every method for real.

    from minicnn import tour
    subject = tour.shapes_subject(cam_net, vgg_net, tour.SHAPES_BUDGET)   # nets from models.load_pretrained
    tour.run_tour(subject, "tour-out")                                    # PNG figures + index.html

A tour runs the sections of the lecture in order (SECTIONS below). Each section is a short function
that calls the library (minicnn.matrix, minicnn.viz.*) and draws with minicnn.plot; it returns the
panels it made (a PNG and a one-line caption: what the method is, what to look at) or raises
Skipped with the reason it does not apply (CAM on a network without global average pooling,
dissection without ground-truth masks, a module that is not installed). index.html shows them all.

How much work each section does (images, steps, copies) is set by a Budget: the tour keeps the
library's defaults and only asks for less of it, so the whole gallery stays quick.
"""
import contextlib
import html
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from . import ops, plot
from .layers import Dropout, Linear, MaxPool2d, ReLU
from .network import Network
from .viz import pointing

HELD_OUT_SEED = 12345       # a shapes dataset seed never used for training (as in minicnn/recipes/pointing_game.py)
DISTRACTOR_PROBABILITY = 0.5  # as in the training set: half the images have a distractor shape


class Skipped(Exception):
    """A section that cannot be made for this model or these images; the message says why."""


class Panel(NamedTuple):
    """One figure of the gallery: its file name (in the output folder) and a one-line caption."""

    file: str
    caption: str


class Table(NamedTuple):
    """A small table of the gallery: column names, rows of strings, and a caption."""

    header: list
    rows: list
    caption: str


# ----------------------------------------------------------------------------------------------
# how much work: sizes and steps


@dataclass(frozen=True)
class Budget:
    """How much each section computes. The library's defaults are larger; the tour asks for less."""

    shown: int = 6                 # images per attribution figure
    pointing: int = 30             # images whose maps are computed (and scored by the pointing game)
    smooth: int = 10               # SmoothGrad: noisy copies per image
    occlusion: tuple = (12, 6)     # occluding square's side and stride, in pixels
    ascent_steps: int = 80         # gradient-ascent steps per class model
    ascent_classes: int = 10       # how many class models
    search_images: int = 400       # images the dataset search looks through
    units_per_layer: int = 3       # units shown per layer in the dataset search
    top_k: int = 9                 # patches per unit in the dataset search
    grey_tiles: int = 16           # filters (rows) and input channels (columns) shown for a deeper layer
    neighbour_images: int = 300    # images searched for nearest neighbours
    tsne_images: int = 300         # points in the t-SNE map
    dream_images: int = 3          # images dreamed
    dream_steps: int = 6           # DeepDream steps per octave
    dream_octaves: int = 3
    dissect_images: int = 300      # images of the Network Dissection


SHAPES_BUDGET = Budget()
SHAPES_FAST = Budget(shown=2, pointing=3, smooth=2, occlusion=(16, 16), ascent_steps=2, ascent_classes=3,
                     search_images=16, units_per_layer=1, top_k=4, grey_tiles=4, neighbour_images=10,
                     tsne_images=10, dream_images=1, dream_steps=1, dream_octaves=1, dissect_images=12)
IMAGENET_BUDGET = Budget(shown=4, pointing=4, smooth=4, occlusion=(48, 24), ascent_steps=20, ascent_classes=2,
                         search_images=64, units_per_layer=2, neighbour_images=64, tsne_images=64, dream_images=1,
                         dream_steps=4, dream_octaves=2, dissect_images=0)
IMAGENET_FAST = Budget(shown=1, pointing=1, smooth=1, occlusion=(112, 112), ascent_steps=1, ascent_classes=1,
                       search_images=4, units_per_layer=1, top_k=4, grey_tiles=4, neighbour_images=4,
                       tsne_images=4, dream_images=1, dream_steps=1, dream_octaves=1, dissect_images=0)


# ----------------------------------------------------------------------------------------------
# what the tour looks at


def identity(image):
    return image


@dataclass
class Subject:
    """The networks and images of a tour.

    net:          the network most methods run on (shapes_vgg, AlexNet, VGG16)
    cam_net:      a network ending in global average pooling + one linear layer, for CAM (or None)
    class_names:  one name per class score
    images:       (N, 3, H, W) network inputs: the attribution maps are made for these
    display:      the same images as RGB in [0, 1], to be shown
    targets:      (N,) the class each map explains (the true class, or the predicted one)
    masks:        (N, H, W) bool object masks (shapes only: the pointing game), or None
    pool:         (M, 3, H, W) more network inputs: dataset search, neighbours, t-SNE, dead units
    pool_display: the pool as RGB in [0, 1]
    pool_labels:  (M,) a class per pool image (true or predicted)
    shapes_batch: the pool as a ShapesBatch with its concept masks (shapes only: dissection), or None
    to_display:   network input (3, H, W) -> RGB in [0, 1] (to show synthesized images)
    input_range:  (low, high) of valid network-input values: numbers, or (3,) arrays (one per channel)
    ascent_mean:  where gradient ascent starts (a number or a per-channel mean, in network-input units)
    description:  one line for the top of index.html
    net_name, cam_net_name: what to call the two networks in tables
    bgr:          the network's input channels are blue, green, red (Keras' caffe mode): signals and
                  first-layer filters in the network's channel order are flipped before they are shown
    """

    name: str
    net: Network
    cam_net: Optional[Network]
    class_names: tuple
    images: np.ndarray
    display: np.ndarray
    targets: np.ndarray
    masks: Optional[np.ndarray]
    pool: np.ndarray
    pool_display: np.ndarray
    pool_labels: np.ndarray
    shapes_batch: object
    budget: Budget
    to_display: Callable = identity
    input_range: tuple = (0.0, 1.0)
    ascent_mean: object = 0.5
    description: str = ""
    net_name: str = "shapes_vgg"
    cam_net_name: str = "shapes_cam"
    bgr: bool = False


def in_rgb_order(subject, signal_chw):
    """A (3, H, W) signal in the network's channel order -> RGB order (reversed for a BGR network)."""
    return signal_chw[::-1] if subject.bgr else signal_chw


def one_per_class_first(labels):
    """An order of the indices 0..N-1 that starts with the first image of each class, then the rest:
    the first few images of a figure then show different classes."""
    firsts = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return np.array(firsts + rest)


def shapes_subject(cam_net, net, budget=SHAPES_BUDGET, seed=HELD_OUT_SEED):
    """A tour of the shapes models on freshly generated held-out images (dataset seed `seed`)."""
    from .data import CLASS_NAMES, make_shapes

    size = max(budget.pointing, budget.search_images, budget.neighbour_images, budget.tsne_images,
               budget.dissect_images, budget.dream_images, 10)
    batch = make_shapes(size, seed=seed, distractor=DISTRACTOR_PROBABILITY)
    batch = batch[one_per_class_first(batch.labels)]
    shown = batch[:budget.pointing]
    net_name = "shapes_cam" if net is cam_net else "shapes_vgg"
    names = net_name + (" and shapes_cam (for CAM)" if cam_net is not None and cam_net is not net else "")
    return Subject(
        name="shapes", net=net, cam_net=cam_net, class_names=CLASS_NAMES,
        images=shown.images, display=shown.images, targets=shown.labels, masks=shown.masks,
        pool=batch.images, pool_display=batch.images, pool_labels=batch.labels, shapes_batch=batch,
        budget=budget, net_name=net_name, ascent_mean=batch.images.mean(axis=(0, 2, 3)),
        description=f"{names} on {size} freshly generated 64x64 shapes images (make_shapes seed {seed}, "
                    f"never seen in training); maps explain each image's true class",
    )


def imagenet_subject(name, net, images, display, mode="torch", budget=IMAGENET_BUDGET, class_names=None):
    """A tour of AlexNet or VGG16 on your own images: images (N, 3, 224, 224) preprocessed for the
    network (minicnn.imagenet.preprocess with `mode`), display the same crops as RGB in [0, 1].
    The maps explain each image's top-1 predicted class."""
    from . import imagenet

    scores = predict(net, images)
    names = class_names or class_names_for(scores.shape[1])
    black, white = np.zeros((3, 1, 1), np.float32), np.ones((3, 1, 1), np.float32)
    low, high = imagenet.normalize(black, mode).ravel(), imagenet.normalize(white, mode).ravel()  # per channel
    predicted = scores.argmax(axis=1)
    return Subject(
        name=name, net=net, cam_net=None, class_names=names, images=images, display=display,
        targets=predicted, masks=None, pool=images, pool_display=display, pool_labels=predicted,
        shapes_batch=None, budget=budget,
        to_display=lambda x: np.clip(imagenet.denormalize(x.astype(np.float32), mode), 0, 1),
        input_range=(low, high), ascent_mean=0.0, net_name=name, cam_net_name="-", bgr=(mode == "caffe"),
        description=f"{name} on {len(images)} image(s) of yours ({mode} preprocessing, 224x224 centre crop); "
                    f"maps explain each image's top-1 predicted class",
    )


def class_names_for(count):
    """ImageNet's names for 1000 scores; "class 0", "class 1", ... for any other number."""
    from .imagenet import IMAGENET_CLASSES

    return IMAGENET_CLASSES if count == len(IMAGENET_CLASSES) else tuple(f"class {k}" for k in range(count))


def predict(net, images, batch_size=32):
    """Pre-softmax scores (N, K) of the images, batch_size at a time, in eval mode."""
    net.eval()
    return np.concatenate([net.forward(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


# ----------------------------------------------------------------------------------------------
# which layers to look at (works for the shapes models, AlexNet and VGG16 alike)


def search_layers(net, count=3):
    """Up to `count` layers for dataset search: the ReLU closing each block (the one before a max-pool,
    and the last one with a receptive field), spread from the first block to the last."""
    from .viz.search import spatial_layers

    spatial = spatial_layers(net)
    closing = [name for name, after in zip(spatial, spatial[1:] + [None])
               if isinstance(net[name], ReLU) and (after is None or isinstance(net[after], MaxPool2d))]
    relus = [name for name in spatial if isinstance(net[name], ReLU)]
    if relus and relus[-1] not in closing:
        closing.append(relus[-1])
    if len(closing) <= count:
        return closing
    picks = np.linspace(0, len(closing) - 1, count).round().astype(int)
    return [closing[i] for i in picks]


def feature_layer(net):
    """The vector the classifier reads: the output of the layer before the last Linear (Dropout
    skipped), e.g. shapes_vgg's relu_fc1, shapes_cam's gap, AlexNet's fc7."""
    linears = [i for i, name in enumerate(net.names) if isinstance(net[name], Linear)]
    i = linears[-1] - 1
    while i > 0 and isinstance(net[net.names[i]], Dropout):
        i -= 1
    return net.names[i]


# ----------------------------------------------------------------------------------------------
# the tour: run the sections, write the figures and index.html


@dataclass
class Tour:
    """A tour in progress: the subject, the output folder, and maps computed once, shared by sections."""

    subject: Subject
    out: Path
    maps: dict = field(default_factory=dict)
    number: int = 0

    @property
    def budget(self):
        return self.subject.budget

    def path(self, name):
        """The path of figure `name` of the current section, e.g. 03_saliency.png."""
        return self.out / f"{self.number:02d}_{name}.png"

    def panel(self, figure, name, caption):
        """Save a matplotlib Figure as self.path(name) and return its Panel."""
        path = self.path(name)
        plot.save_figure(figure, path)
        return Panel(path.name, caption)


class SectionResult(NamedTuple):
    """What one section produced: its Panels and Tables, or the reason it was skipped, and its time."""

    key: str
    title: str
    lesson: str
    items: list
    skipped: Optional[str]
    seconds: float


def run_tour(subject, out, progress=True):
    """Run every section for `subject`, write the PNG figures and index.html into `out`.

    Returns (path of index.html, list of SectionResult). A section that does not apply is listed in
    index.html with the reason, and the tour goes on.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tour = Tour(subject, out)
    results = []
    started = time.perf_counter()
    bar = tqdm(SECTIONS, desc="tour", unit="section", disable=not progress, file=sys.stderr)
    for number, (key, title, lesson, make) in enumerate(bar, start=1):
        tour.number = number  # figures of this section are called NN_name.png
        bar.set_description(f"tour: {title}")
        results.append(run_section(tour, key, title, lesson, make))
        if progress:
            tqdm.write(f"[{number:2d}/{len(SECTIONS)}] {describe(results[-1])}", file=sys.stderr)
    bar.close()
    seconds = time.perf_counter() - started
    gallery = gallery_figure(out, results, out / GALLERY)
    index = out / "index.html"
    index.write_text(index_html(subject, results, seconds, gallery is not None), encoding="utf-8")
    return index, results


GALLERY = "gallery.png"  # one picture of the whole tour: the first figure of every section


def gallery_figure(out, results, path, ncols=5, thumbnail=360):
    """A contact sheet of the tour: the first figure of each section that made one, shrunk to fit a
    `thumbnail`-pixel square, under its section's title. Saved at `path`; returns the Figure (None if
    no section made a figure)."""
    from PIL import Image

    firsts = [(r.title, next(item.file for item in r.items if isinstance(item, Panel))) for r in results
              if any(isinstance(item, Panel) for item in r.items)]
    if not firsts:
        return None
    fig, axes = plot.grid_figure(len(firsts), ncols=ncols, cell_inches=2.6)
    for ax, (title, file) in zip(axes, firsts):
        with Image.open(out / file) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((thumbnail, thumbnail))
            ax.imshow(np.asarray(picture))
        ax.set_title(title, fontsize=9)
    fig.suptitle("minicnn tour: one figure from each section (all of them in index.html)", fontsize=11)
    return plot.save_figure(fig, path)


def run_section(tour, key, title, lesson, make):
    """Run one section; a Skipped, or an optional package that is not installed (e.g. scikit-learn for
    t-SNE), becomes its note. A broken import inside minicnn itself is an error, not a note."""
    start = time.perf_counter()
    skipped, items = None, []
    try:
        items = make(tour)
    except Skipped as reason:
        skipped = str(reason)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "minicnn":
            raise
        skipped = f"a package it needs is not installed ({error})"
    return SectionResult(key, title, lesson, items, skipped, time.perf_counter() - start)


def describe(result):
    """One line per finished section for the terminal."""
    if result.skipped:
        return f"{result.title}: skipped ({result.skipped})"
    files = [item.file for item in result.items if isinstance(item, Panel)]
    return f"{result.title}: {len(files)} figure(s) in {result.seconds:.1f} s"


# ----------------------------------------------------------------------------------------------
# 1. convolution is a matrix (the lecture's board examples; figures that minicnn.plot does not have)

WEIGHT_COLOURS = np.array([[1.0, 1.0, 1.0], [0.55, 0.75, 0.95], [0.6, 0.85, 0.6], [0.8, 0.7, 0.95], [0.98, 0.85, 0.45]])
PARITY_COLOURS = {(0, 0): WEIGHT_COLOURS[1], (0, 1): WEIGHT_COLOURS[2],   # the lecture's blue, green,
                  (1, 0): WEIGHT_COLOURS[3], (1, 1): WEIGHT_COLOURS[4]}   # purple and yellow weights


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
    from .matrix import conv1d_matrix, orthogonality

    n, stride, padding = 8, 2, 2
    which = conv1d_matrix(np.arange(1.0, 5.0), n, stride, padding).astype(int)  # entry k: weight w_k; 0: none
    colours = WEIGHT_COLOURS[which]
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
    from .matrix import insert_zeros, pad_or_crop, polyphase_conv_transpose2d, subpixel_conv_transpose2d

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
    from .viz.filters import conv_layers, filters_grid

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


# ----------------------------------------------------------------------------------------------
# 3-7. attribution: maps computed once for subject.images, shown for the first few


def attribution(tour, method):
    """compute_attribution(subject, method), computed once per tour and then reused."""
    if method not in tour.maps:
        tour.maps[method] = compute_attribution(tour.subject, method)
    return tour.maps[method]


CAM_NET_METHODS = ("CAM", "Grad-CAM (CAM net)")  # the maps made of subject.cam_net, not subject.net


def cam_methods(subject):
    """CAM, and Grad-CAM on the CAM network and on the main one (once if they are the same network)."""
    if subject.cam_net is None:
        return ["Grad-CAM"]
    if subject.cam_net is subject.net:
        return ["CAM", "Grad-CAM"]
    return ["CAM", "Grad-CAM (CAM net)", "Grad-CAM"]


def compute_attribution(subject, method):
    """One method's maps (N, H, W) for subject.images and subject.targets ("guided signal": (N, 3, H, W))."""
    from .viz.attribution import guided_backprop, occlusion, saliency
    from .viz.cam import cam, grad_cam, last_conv_layer

    net, x, targets, budget = subject.net, subject.images, subject.targets, subject.budget
    if method == "saliency":
        return saliency(net, x, targets).map
    if method == "SmoothGrad":
        return saliency(net, x, targets, smooth=budget.smooth).map
    if method == "occlusion":
        size, stride = budget.occlusion
        return occlusion(net, x, targets, size, stride, batch_size=32, progress=False).heatmap
    if method == "CAM":
        return cam(subject.cam_net, x, targets).upsampled
    if method == "Grad-CAM":
        return grad_cam(net, x, targets, last_conv_layer(net)).upsampled
    if method == "Grad-CAM (CAM net)":
        return grad_cam(subject.cam_net, x, targets, last_conv_layer(subject.cam_net)).upsampled
    if method == "guided backprop":
        return guided_backprop(net, x, targets).map
    if method == "guided signal":
        return guided_backprop(net, x, targets).signal
    raise ValueError(f"unknown attribution method {method!r}")


def attribution_panel(tour, name, methods, caption):
    """attribution_figure of the first budget.shown images with the maps of `methods`, titled by target."""
    subject, k = tour.subject, tour.budget.shown
    maps = {method: attribution(tour, method)[:k] for method in methods}
    fig = plot.attribution_figure(subject.display[:k], maps)
    targets = ", ".join(subject.class_names[t] for t in subject.targets[:k])
    fig.suptitle(f"rows, top to bottom: {targets}", fontsize=8)
    fig.tight_layout()
    return tour.panel(fig, name, caption)


def saliency_section(tour):
    return [attribution_panel(
        tour, "saliency", ["saliency", "SmoothGrad"],
        "Saliency (Simonyan 2014): |d class score / d pixel|, max over colours — which pixels would change the "
        f"score most; look at the object's outline lighting up. SmoothGrad averages {tour.budget.smooth} noisy "
        "copies: less speckle.")]


def occlusion_section(tour):
    size, stride = tour.budget.occlusion
    return [attribution_panel(
        tour, "occlusion", ["occlusion"],
        f"Occlusion (Zeiler & Fergus 2014): a {size}x{size} square of the image's mean colour slides with stride "
        f"{stride}; we record how much p(class) drops: red = covering it hurts (the evidence), blue = it helps.")]


def cam_section(tour):
    subject = tour.subject
    if subject.cam_net is None:
        panel = attribution_panel(
            tour, "grad_cam", ["Grad-CAM"],
            f"Grad-CAM (Selvaraju 2017) at the last conv layer: feature maps weighted by their mean gradient. "
            f"CAM itself is not shown: {subject.net_name} has no global-average-pooling + linear head.")
        return [panel]
    return [attribution_panel(
        tour, "cam", cam_methods(subject),
        "CAM (Zhou 2016) on the GAP network: sum_k w_k^c A_k, whose mean plus the bias IS the class score; "
        "Grad-CAM weights the maps by their mean gradient, on the CAM net (= CAM, rectified) and on "
        f"{subject.net_name}. "
        "Look for a blob on the object, none on the distractor.")]


def guided_section(tour):
    subject, k = tour.subject, tour.budget.shown
    signals = [plot.signal_picture(in_rgb_order(subject, signal)) for signal in attribution(tour, "guided signal")[:k]]
    titles = [subject.class_names[t] for t in subject.targets[:k]]
    return [
        attribution_panel(tour, "guided_map", ["saliency", "guided backprop"],
                          "Guided backpropagation (Springenberg 2015): the backward pass with ReLUs that pass only "
                          "positive signal where the forward pass was positive; sharper than plain saliency."),
        tour.panel(plot.image_grid(signals, titles=titles), "guided_signal",
                   "The guided signal itself, shown as an image (0 is grey): look for the object's edges and "
                   "texture reproduced in colour, the background grey."),
    ]


def pointing_section(tour):
    subject = tour.subject
    if subject.masks is None:
        raise Skipped("the pointing game needs object masks, which only the shapes dataset has; "
                      "see the README's table (minicnn/recipes/pointing_game.py) for the shapes models")
    methods = ["saliency", "SmoothGrad", "guided backprop", "occlusion"] + cam_methods(subject)
    n = len(subject.images)
    rows = []
    for method in methods:
        hits = pointing.pointing_hits(attribution(tour, method), subject.masks)
        model = subject.cam_net_name if method in CAM_NET_METHODS else subject.net_name
        rows.append([method, model, f"{hits.sum()}/{n}", f"{100 * hits.mean():.0f}%"])
    centre = pointing.pointing_hits(pointing.centre_maps(n, subject.images.shape[2:]), subject.masks)
    rows.append(["centre baseline", "-", f"{centre.sum()}/{n}", f"{100 * centre.mean():.0f}%"])
    overview = [m for m in ["saliency", "guided backprop", "occlusion", "CAM", "Grad-CAM"] if m in methods]
    return [
        tour.panel(plot.sample_grid(subject.shapes_batch, n=n), "ground_truth",
                   "The ground truth: each generated image with its object's exact mask outlined in white (a "
                   "distractor, when there is one, in black). A map scores a hit when its maximum lies inside "
                   f"the white outline grown by {pointing.TOLERANCE} px."),
        Table(["method", "model", "hits", "pointing accuracy"], rows,
              f"Pointing game on these {n} held-out images: a hit when the map's maximum falls inside the object "
              f"(mask grown by {pointing.TOLERANCE} px). Half of these images have a distractor shape, which "
              "also moves the centre baseline; the README's table (python -m minicnn.recipes.pointing_game --n 3000) "
              "uses 3000 images without distractors and 12 SmoothGrad copies, so its numbers differ."),
        attribution_panel(tour, "all_methods", overview,
                          "Every attribution method side by side on the same images: which ones point at the "
                          "object, which ones also light up the distractor or the background?"),
    ]


# ----------------------------------------------------------------------------------------------
# 8. gradient ascent


# Simonyan's objective (the pre-softmax score) with Yosinski's blur and jitter, steps normalised by
# mean |gradient|: recognisable pictures that the network also classifies as their class.
CLASS_MODEL_RECIPE = dict(lr=0.05, l2=1e-3, blur_every=4, blur_sigma=0.5, jitter=2, normalize=True)


def class_models_section(tour):
    from .viz.ascent import class_model

    subject, budget = tour.subject, tour.budget
    classes = (range(min(budget.ascent_classes, len(subject.class_names))) if subject.name == "shapes"
               else list(dict.fromkeys(subject.targets.tolist()))[:budget.ascent_classes])
    shape = subject.images.shape[1:]
    low, high = subject.input_range
    pictures, titles = [], []
    for target in classes:
        result = class_model(subject.net, int(target), steps=budget.ascent_steps, shape=tuple(shape),
                             mean=subject.ascent_mean, pixel_range=(low, high), progress=False, **CLASS_MODEL_RECIPE)
        probability = ops.softmax(result.output[None].astype(np.float64))[0, target]
        pictures.append(subject.to_display(result.image))
        titles.append(f"{subject.class_names[target]}\np={probability:.2f}")
    return [tour.panel(plot.image_grid(pictures, titles=titles, ncols=min(5, len(pictures))), "class_models",
                       f"Class models (Simonyan 2014): {budget.ascent_steps} steps of gradient ascent on the "
                       "pre-softmax score from the mean image, with blur and jitter (Yosinski 2015); look for the "
                       "class's shape and texture drawn by the network itself, and p(class) near 1.")]


# ----------------------------------------------------------------------------------------------
# 9. dataset search and DeconvNet


def distinct_units(net, images, labels, layer, count):
    """`count` channels of `layer` to show: the strongest ones (by their largest activation on `images`),
    skipping a channel whose best image has the class of an already chosen one's, so the units differ."""
    per_image = net.forward(images, upto=layer).max(axis=(2, 3))   # (N, K): each channel's maximum per image
    strength, best_image = per_image.max(axis=0), per_image.argmax(axis=0)
    ranked = [int(c) for c in np.argsort(-strength, kind="stable")]
    chosen, classes = [], set()
    for c in ranked:
        if labels[best_image[c]] not in classes:
            chosen.append(c)
            classes.add(labels[best_image[c]])
    chosen += [c for c in ranked if c not in chosen]   # too few classes: fill with the next strongest
    return chosen[:count]


def search_section(tour):
    from .viz.search import deconvnet, top_patches_for_channels

    subject, budget = tour.subject, tour.budget
    pool = subject.pool[:budget.search_images]
    k = min(budget.top_k, len(pool))
    panels = []
    for layer in search_layers(subject.net):
        channels = distinct_units(subject.net, pool[:128], subject.pool_labels, layer, budget.units_per_layer)
        found = top_patches_for_channels(subject.net, pool, layer, channels, k=k, progress=False)
        patches, reconstructions = {}, {}
        for channel, hits in found.items():
            title = f"{layer} unit {channel}"
            patches[title] = [shown_crop(hit, subject.pool_display) for hit in hits]
            reconstructions[title] = [in_rgb_order(subject, deconvnet(subject.net, pool[hit.index][None], layer,
                                                                      channel).crop) for hit in hits]
        caption = (f"{layer}: for each unit, the top {k} of {len(pool)} images by its MAXIMUM activation, cropped to "
                   "the receptive field, beside the DeconvNet reconstruction of that maximum (un-pool with switches, "
                   "ReLU, transposed filters); look at what the patches share.")
        panels.append(tour.panel(plot.top_patches_figure(patches, reconstructions), f"search_{layer}", caption))
    return panels


def shown_crop(hit, display):
    """A dataset-search hit with its crop taken from the display images (RGB in [0, 1])."""
    top, bottom, left, right = hit.box
    return hit._replace(crop=display[hit.index][:, top:bottom, left:right])


# ----------------------------------------------------------------------------------------------
# 10-11. the dataset as the network sees it


def pool_titles(subject, count):
    return [subject.class_names[label] for label in subject.pool_labels[:count]]


def neighbours_section(tour):
    from .viz.embedding import nearest_neighbors

    subject = tour.subject
    images = subject.pool[:tour.budget.neighbour_images]
    if len(images) < 2:
        raise Skipped("nearest neighbours need at least 2 images")
    layer = feature_layer(subject.net)
    panels = []
    for query in range(min(2, len(images))):
        found = nearest_neighbors(subject.net, images, layer, query, k=min(6, len(images) - 1))
        fig = plot.neighbors_figure(subject.pool_display[:len(images)], query, found,
                                    titles=pool_titles(subject, len(images)))
        caption = (f"Nearest neighbours of a query among {len(images)} images, by the {layer} vector (top) and by raw "
                   "pixels (bottom): feature space finds the same class whatever the colour and place; pixel space "
                   "finds the same colours.")
        panels.append(tour.panel(fig, f"neighbours_{query}", caption))
    return panels


def one_thread_for_scikit_learn():
    """A context in which scikit-learn's OpenMP code runs on one thread. Its t-SNE threads otherwise
    spin-wait for cores the rest of the machine is using: 10x slower on a busy 2-core machine."""
    try:
        import sklearn.manifold  # noqa: F401  (loads its OpenMP library, so that the limit reaches it)
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it there is no t-SNE anyway
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def tsne_section(tour):
    from .viz.embedding import embed

    subject = tour.subject
    images = subject.pool[:tour.budget.tsne_images]
    if len(images) < 4:
        raise Skipped(f"t-SNE needs at least 4 images, got {len(images)}")
    layer = feature_layer(subject.net)
    with one_thread_for_scikit_learn():
        coords = embed(subject.net, images, layer, seed=0)
    fig = plot.embedding_figure(coords, subject.pool_display[:len(images)], subject.pool_labels[:len(images)],
                                subject.class_names, thumbnails=min(80, len(images)))
    return [tour.panel(fig, "tsne", f"t-SNE of the {layer} vectors of {len(images)} images: near points have near "
                       "vectors; look for one island per class.")]


# ----------------------------------------------------------------------------------------------
# 12. DeepDream


def dream_section(tour):
    from .viz.dream import deep_dream

    subject, budget = tour.subject, tour.budget
    layers = search_layers(subject.net)[-2:] if subject.name == "shapes" else search_layers(subject.net)[1:2]
    low, high = subject.input_range
    jitter = max(1, subject.images.shape[-1] // 8)
    pictures, titles = [], []
    for image in subject.pool[:budget.dream_images]:
        pictures.append(subject.to_display(image))
        titles.append("image")
        for layer in layers:
            result = deep_dream(subject.net, image, layer, steps=budget.dream_steps,
                                step_size=6.0 * float(np.mean(np.subtract(high, low))),
                                octaves=budget.dream_octaves, jitter=jitter, pixel_range=(low, high), progress=False)
            pictures.append(subject.to_display(result.image))
            titles.append(f"dream at {layer}")
    return [tour.panel(plot.image_grid(pictures, titles=titles, ncols=len(layers) + 1), "deep_dream",
                       f"DeepDream (Mordvintsev 2015): the gradient of a layer is set to its own activation and the "
                       f"image climbs it ({budget.dream_octaves} octave(s) x {budget.dream_steps} steps); look at what "
                       "each layer amplifies — edges and blobs early, shape parts later.")]


# ----------------------------------------------------------------------------------------------
# 13-14. dissection and dead units


def best_unit_per_concept(dissection, count):
    """Up to `count` units to show: the best detector of each concept, best first (then the next best units)."""
    ranked = dissection.detectors or sorted(dissection.table, key=lambda row: -row.iou)
    chosen, concepts = [], set()
    for row in ranked:
        if row.concept not in concepts:
            chosen.append(row.unit)
            concepts.add(row.concept)
    chosen += [row.unit for row in ranked if row.unit not in chosen]
    return chosen[:count]


def dissection_section(tour):
    from .viz.dissection import dissect, top_examples

    subject = tour.subject
    if subject.shapes_batch is None:
        raise Skipped("Network Dissection needs pixel masks of concepts, which only the shapes dataset has")
    batch = subject.shapes_batch[:tour.budget.dissect_images]
    layer = search_layers(subject.net)[-1]
    result = dissect(subject.net, batch, layer, progress=False)
    units = best_unit_per_concept(result, count=5)
    examples = top_examples(subject.net, batch.images[:100], layer, result, units, k=min(5, len(batch)))
    fig = plot.dissection_figure(result, batch.images[:100], examples)
    caption = (f"Network Dissection (Bau 2017) of {layer} on {len(batch)} images: each unit's top-0.5% activations, "
               "up-sampled, against every concept's mask (shape, colour, texture, background). "
               f"{result.summary}; look at the outlined pixels sitting on one concept.")
    return [tour.panel(fig, "dissection", caption)]


def dead_units_figure(maxima_by_layer, path=None):
    """One bar chart per layer: each unit's largest activation over the images, dead units (never > 0) in red."""
    fig = Figure(figsize=(9, 1.2 * len(maxima_by_layer) + 0.5))
    axes = np.atleast_1d(fig.subplots(len(maxima_by_layer), 1))
    for ax, (layer, maxima) in zip(axes, maxima_by_layer.items()):
        order = np.argsort(-maxima, kind="stable")
        dead = maxima[order] <= 0
        colours = np.where(dead, "tab:red", "tab:blue")
        ax.bar(np.arange(len(maxima)), np.maximum(maxima[order], 0), color=colours, width=1.0)
        ax.plot(np.flatnonzero(dead), np.zeros(dead.sum()), "|", color="tab:red", markersize=10)
        ax.set_ylabel(layer, fontsize=8)
        ax.set_title(f"{layer}: {dead.sum()} of {len(maxima)} units never fire", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("units, sorted by their largest activation over all images and positions", fontsize=8)
    fig.tight_layout()
    return plot.save_figure(fig, path)


def dead_units_section(tour):
    from .viz.dissection import unit_maxima

    subject = tour.subject
    images = subject.pool[:max(tour.budget.dissect_images, tour.budget.neighbour_images)]
    layers = [name for name in subject.net.names if isinstance(subject.net[name], ReLU)]
    maxima = {layer: unit_maxima(subject.net, images, layer) for layer in layers}
    dead = sum(int((m <= 0).sum()) for m in maxima.values())
    total = sum(len(m) for m in maxima.values())
    fig = dead_units_figure(maxima)
    return [tour.panel(fig, "dead_units", f"Dead units: {dead} of {total} ReLU units never fire on these "
                       f"{len(images)} images (red): units (a feature map in a conv layer, one number in a "
                       "fully connected one) that stay dark for every input, capacity the network does not use.")]


# ----------------------------------------------------------------------------------------------
# the sections in the lecture's order: (key, heading, lesson, function)

SECTIONS = [
    ("matrix", "Convolution is a matrix",
     "01_convolution_is_a_matrix.py, 02_transposed_convolution.py, 03_deconvolution_in_2d.py", conv_as_matrix),
    ("filters", "First-layer filters", "05_filters_are_templates.py, 09_dataset_search_and_deconvnet.py",
     first_layer_filters),
    ("saliency", "Saliency and SmoothGrad", "06_saliency_and_occlusion.py", saliency_section),
    ("occlusion", "Occlusion", "06_saliency_and_occlusion.py", occlusion_section),
    ("cam", "CAM and Grad-CAM", "07_class_activation_maps.py", cam_section),
    ("guided", "Guided backpropagation", "06_saliency_and_occlusion.py", guided_section),
    ("pointing", "Pointing game", "minicnn/recipes/pointing_game.py (the README's table)", pointing_section),
    ("ascent", "Gradient ascent: class models", "08_gradient_ascent.py", class_models_section),
    ("search", "Dataset search and DeconvNet", "09_dataset_search_and_deconvnet.py", search_section),
    ("neighbours", "Nearest neighbours", "12_embeddings.py", neighbours_section),
    ("tsne", "t-SNE", "12_embeddings.py", tsne_section),
    ("dream", "DeepDream", "10_deep_dream.py", dream_section),
    ("dissection", "Network Dissection", "11_dissection_and_dead_units.py", dissection_section),
    ("dead", "Dead units", "11_dissection_and_dead_units.py", dead_units_section),
]


# ----------------------------------------------------------------------------------------------
# index.html

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
nav a { margin-right: 0.8em; }
section { border-top: 1px solid #ccc; margin-top: 2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.95em; color: #333; }
.skipped { color: #a33; }
.meta { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""


def index_html(subject, results, seconds, with_gallery=False):
    """The gallery page: the contact sheet (if made), then a heading per section, each figure with its
    caption, skipped sections' reasons."""
    escape = html.escape
    nav = " ".join(f'<a href="#{r.key}">{escape(r.title)}</a>' for r in results)
    body = ["<h1>minicnn tour: visualizing CNNs</h1>",
            f"<p>{escape(subject.description)}.</p>",
            f'<p class="meta">{len(results)} sections in {seconds:.0f} s. Each section names the lesson '
            f"(in lessons/) that explains it step by step.</p>",
            f"<nav>{nav}</nav>"]
    if with_gallery:
        body.append(f'<figure><img src="{GALLERY}" alt="the whole tour at a glance"><figcaption>The tour at a '
                    "glance: the first figure of every section. Each is shown full size below.</figcaption></figure>")
    for number, result in enumerate(results, start=1):
        body.append(section_html(number, result))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>minicnn tour</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def section_html(number, result):
    escape = html.escape
    parts = [f'<section id="{result.key}">', f"<h2>{number}. {escape(result.title)}</h2>",
             f'<p class="meta">lesson: {escape(result.lesson)} · {result.seconds:.1f} s</p>']
    if result.skipped:
        parts.append(f'<p class="skipped">Not shown: {escape(result.skipped)}.</p>')
    for item in result.items:
        parts.append(table_html(item) if isinstance(item, Table) else
                     f'<figure><img src="{escape(item.file)}" alt="{escape(result.title)}">'
                     f"<figcaption>{escape(item.caption)}</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def table_html(table):
    escape = html.escape
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><tr>{head}</tr>{rows}</table>\n<p>{escape(table.caption)}</p>"
