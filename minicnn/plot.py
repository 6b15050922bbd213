"""Figures for the tour, the docs and the lessons: plain functions, each returns a matplotlib Figure.

Every function takes an optional ``path``: when given, the figure is also saved there as a PNG.
The figures are built with ``matplotlib.figure.Figure`` directly (rendered by the Agg backend), not
with pyplot: nothing is opened on screen, nothing accumulates in pyplot's list of open figures,
and it works the same on a machine without a display. In a notebook the returned Figure shows
itself when it is the last value of a cell.
"""
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


OBJECT_OUTLINE = "white"
DISTRACTOR_OUTLINE = "black"
# the lecture's board colours: row 0 'no weight' (white), then the weights w1 (blue), w2 (green),
# w3 (purple), w4 (yellow); also the four parity classes of a stride-2 transposed convolution
WEIGHT_COLOURS = np.array([[1.0, 1.0, 1.0], [0.55, 0.75, 0.95], [0.6, 0.85, 0.6], [0.8, 0.7, 0.95], [0.98, 0.85, 0.45]])


def to_hwc(image):
    """A (3, H, W) or (1, H, W) image as (H, W, 3) or (H, W), the layout imshow expects."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (3, H, W) or (1, H, W), got {image.shape}")
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def save_figure(fig, path, dpi=100):
    """Save `fig` as a PNG at `path` (parent folders are created) when `path` is not None."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def grid_figure(count, ncols=None, cell_inches=1.6):
    """A Figure with a grid of at least `count` axes, ticks off. Returns (fig, axes as a flat list)."""
    ncols = ncols or math.ceil(math.sqrt(count))
    nrows = max(1, math.ceil(count / ncols))
    fig = Figure(figsize=(ncols * cell_inches, nrows * (cell_inches + 0.25)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes:
        ax.set_axis_off()
    return fig, axes


def sample_grid(batch, n=16, path=None, show_masks=True, ncols=None):
    """The first `n` images of a ShapesBatch in a grid, each titled with its colour and class.

    With show_masks, the object's mask is outlined in white and the distractor's (if any) in
    black, so one can check that the ground truth sits exactly on the drawn object.
    """
    if not all(hasattr(batch, name) for name in ("images", "captions", "masks", "distractor_masks")):
        raise TypeError(f"batch must be a ShapesBatch (from minicnn.data.make_shapes), got {type(batch).__name__}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    n = min(int(n), len(batch))
    if n == 0:
        raise ValueError("batch is empty: there is nothing to show")
    fig, axes = grid_figure(n, ncols)
    captions = batch.captions
    for i, ax in enumerate(axes[:n]):
        ax.imshow(to_hwc(batch.images[i]), vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(captions[i], fontsize=8)
        if show_masks:
            _outline(ax, batch.masks[i], OBJECT_OUTLINE)
            _outline(ax, batch.distractor_masks[i], DISTRACTOR_OUTLINE)
    fig.tight_layout()
    return save_figure(fig, path)


def _outline(ax, mask, color):
    """Draw the boundary of a (H, W) bool mask on `ax` (nothing if the mask is empty)."""
    if mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=color, linewidths=0.8)


# ----------------------------------------------------------------------------------------------
# attribution: heat maps laid over images


def display_image(image_chw):
    """A (C, H, W) image as imshow wants it; values outside [0, 1] are min-max scaled into it."""
    image = to_hwc(np.asarray(image_chw, dtype=np.float64))
    low, high = image.min(), image.max()
    if low < 0 or high > 1:
        image = (image - low) / max(high - low, 1e-12)
    return image


def heatmap_overlay(image_chw, heat_hw, ax=None, alpha=0.5, title=None, signed=None):
    """Draw a (H, W) heat map over a (C, H, W) image on `ax` (a new Figure if None); returns the Figure.

    signed=True: a diverging colour map centred at 0 (red = positive, blue = negative, e.g. occlusion's
    drop, where blue means covering helped); signed=False: from 0 (dark) to the map's max (jet).
    None: signed when this map has a negative value.
    """
    image, heat = display_image(image_chw), np.asarray(heat_hw, dtype=np.float64)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat_hw must have the image's size {image.shape[:2]}, got shape {heat.shape}")
    if ax is None:
        ax = Figure(figsize=(3, 3)).subplots()
        ax.set_axis_off()
    ax.imshow(image, interpolation="nearest")
    if heat.min() < 0 if signed is None else signed:
        limit = max(np.abs(heat).max(), 1e-12)
        ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha, interpolation="nearest")
    else:
        ax.imshow(heat, cmap="jet", vmin=0, vmax=max(heat.max(), 1e-12), alpha=alpha, interpolation="nearest")
    if title is not None:
        ax.set_title(title, fontsize=8)
    return ax.figure


def attribution_figure(images, maps_by_method, path=None, alpha=0.5):
    """One row per image: the image, then each method's (H, W) map laid over it (one column each).

    images (N, C, H, W); maps_by_method {"saliency": (N, H, W) array, "CAM": ..., ...}. A column whose
    maps have any negative value is drawn signed in every row, so one colour means one thing per method.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
    for method, maps in maps_by_method.items():
        if np.shape(maps) != (len(images),) + images.shape[2:]:
            raise ValueError(f"maps for {method!r} must have shape {(len(images),) + images.shape[2:]}, "
                             f"got {np.shape(maps)}")
    columns = ["image"] + list(maps_by_method)
    signed = {method: bool(np.min(maps) < 0) for method, maps in maps_by_method.items()}
    fig = Figure(figsize=(1.7 * len(columns), 1.8 * len(images)))
    axes = fig.subplots(len(images), len(columns), squeeze=False)
    for row, image in enumerate(images):
        for col, method in enumerate(columns):
            ax = axes[row, col]
            ax.set_axis_off()
            title = method if row == 0 else None
            if method == "image":
                ax.imshow(display_image(image), interpolation="nearest")
                if title:
                    ax.set_title(title, fontsize=8)
            else:
                heatmap_overlay(image, maps_by_method[method][row], ax=ax, alpha=alpha, title=title,
                                signed=signed[method])
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# inside the network: synthesized images, embeddings, neighbours, dissection


def image_grid(images, titles=None, path=None, ncols=None):
    """A grid of (C, H, W) images (an (N, C, H, W) array or a list; sizes may differ), e.g. the
    results of gradient ascent or DeepDream. Values outside [0, 1] are min-max scaled per image."""
    images = list(images)
    if not images:
        raise ValueError("images is empty: there is nothing to show")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}), got {len(titles)}")
    fig, axes = grid_figure(len(images), ncols)
    for i, image in enumerate(images):
        axes[i].imshow(display_image(image), interpolation="nearest")
        if titles is not None:
            axes[i].set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def embedding_figure(coords, images, labels, class_names, path=None, thumbnails=80, zoom=0.35, seed=0):
    """A 2-D embedding (t-SNE) as a scatter coloured by label, with small thumbnails of some images.

    coords (N, 2); images (N, C, H, W); labels (N,) ints indexing class_names. `thumbnails` images
    (chosen at random with `seed`) are drawn at their points, framed in their class colour.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    coords, labels = np.asarray(coords), np.asarray(labels)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(images) or labels.shape != (len(coords),):
        raise ValueError(f"coords must be (N, 2) with one image and one label per row; got coords {coords.shape}, "
                         f"{len(images)} images, labels {labels.shape}")
    colors = _class_colors(len(class_names))
    fig = Figure(figsize=(8, 7))
    ax = fig.subplots()
    for k, name in enumerate(class_names):
        chosen = labels == k
        if chosen.any():
            ax.scatter(coords[chosen, 0], coords[chosen, 1], s=8, color=colors[k], label=name)
    shown = np.random.default_rng(seed).permutation(len(coords))[:thumbnails]
    for i in shown:
        box = OffsetImage(display_image(images[i]), zoom=zoom)
        ax.add_artist(AnnotationBbox(box, coords[i], frameon=True, pad=0.1,
                                     bboxprops=dict(edgecolor=colors[labels[i]], linewidth=1.2)))
    ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def _class_colors(count):
    """`count` distinct colours (matplotlib's tab10, then tab20)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(count)]


def neighbors_figure(images, query_index, neighbors, titles=None, path=None):
    """Two rows: the query image, then its nearest neighbours in feature space (top) and in pixel
    space (bottom). neighbors: the result of minicnn.viz.embedding.nearest_neighbors; titles: an
    optional label per image of `images` (e.g. its class name), shown with each distance."""
    rows = [("feature space", neighbors.feature, neighbors.feature_distances),
            ("pixel space", neighbors.pixel, neighbors.pixel_distances)]
    k = len(neighbors.feature)
    fig = Figure(figsize=(1.5 * (k + 1), 3.6))
    axes = fig.subplots(2, k + 1, squeeze=False)
    for row, (name, indices, distances) in enumerate(rows):
        axes[row, 0].imshow(display_image(images[query_index]), interpolation="nearest")
        label = "" if titles is None else f"\n{titles[query_index]}"
        axes[row, 0].set_title(f"query ({name}){label}", fontsize=7)
        for col, (i, d) in enumerate(zip(indices, distances), start=1):
            axes[row, col].imshow(display_image(images[i]), interpolation="nearest")
            label = "" if titles is None else f"{titles[i]}\n"
            axes[row, col].set_title(f"{label}d={d:.3g}", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)


def dissection_figure(dissection, images, examples, path=None):
    """One row per unit of `examples` (minicnn.viz.dissection.top_examples): its label and IoU, then
    the images where it fires most, the pixels above its threshold T_k outlined in white and the rest
    dimmed. The title is the dissection's summary ("N of K units ... are detectors")."""
    k = max(len(indices) for _, indices, _ in examples)
    fig = Figure(figsize=(1.5 * k + 1.6, 1.6 * len(examples) + 0.4))
    axes = fig.subplots(len(examples), k + 1, squeeze=False)
    for row, (unit, indices, masks) in enumerate(examples):
        info = dissection.table[unit]
        verdict = "detector" if info.is_detector else "not a detector"
        axes[row, 0].text(0.0, 0.5, f"unit {unit}\n{info.concept}\nIoU {info.iou:.3f}\n({verdict})",
                          fontsize=8, va="center")
        for col, (i, mask) in enumerate(zip(indices, masks), start=1):
            image = display_image(images[i])
            axes[row, col].imshow(image * np.where(mask, 1.0, 0.35)[:, :, None], interpolation="nearest")
            _outline(axes[row, col], mask, OBJECT_OUTLINE)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(dissection.summary, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# inside the network: filters as pictures, dataset search beside DeconvNet (Zeiler & Fergus)


def filters_figure(filter_tiles, path=None, max_filters=32, max_channels=16):
    """Draw the tiles of minicnn.viz.filters.filters_grid.

    Colour tiles (the first layer): one small RGB picture per filter, in a square-ish grid.
    Grey tiles (a deeper layer): one row per filter, one column per input channel -- at most
    max_filters rows and max_channels columns -- to show how little a deeper filter says when drawn.
    Each filter is min-max normalised on its own (see minicnn.viz.filters.min_max_per_filter).
    """
    tiles, name = filter_tiles.tiles, filter_tiles.layer
    f, c, kh, kw = filter_tiles.weight.shape
    if filter_tiles.colour:
        fig, axes = grid_figure(len(tiles), cell_inches=0.9)
        for ax, tile in zip(axes, tiles):
            ax.imshow(tile, vmin=0, vmax=1, interpolation="nearest")
        fig.suptitle(f"{name}: {f} filters of {c} x {kh} x {kw}, each shown as a colour image", fontsize=9)
    else:
        rows, cols = min(f, max_filters), min(c, max_channels)
        fig = Figure(figsize=(0.45 * cols + 0.8, 0.45 * rows + 0.6))
        axes = fig.subplots(rows, cols, squeeze=False)
        for r in range(rows):
            for col in range(cols):
                axes[r, col].imshow(tiles[r, col], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                axes[r, col].set_axis_off()
        fig.suptitle(f"{name}: {f} filters x {c} input channels of {kh} x {kw} (showing {rows} x {cols}); "
                     f"row = filter, column = input channel", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _in_field(crop_hwc, box, unclipped_box, fill=1.0):
    """Place a crop clipped at the image border where it belongs in its full receptive field
    (the part outside the image is `fill`, white by default). Returns (size_h, size_w, channels)."""
    top, bottom, left, right = box
    field_top, field_bottom, field_left, field_right = unclipped_box
    canvas = np.full((field_bottom - field_top, field_right - field_left, crop_hwc.shape[2]), fill)
    canvas[top - field_top:bottom - field_top, left - field_left:right - field_left] = crop_hwc
    return canvas


def _image_tile(crop_chw):
    """An image crop (C, h, w) as an (h, w, C) picture (min-max scaled only if outside [0, 1])."""
    tile = display_image(crop_chw)
    return tile[:, :, None] if tile.ndim == 2 else tile


def signal_picture(signal_chw):
    """A signed signal (C, h, w), e.g. a DeconvNet reconstruction or a guided-backprop signal, as a
    (C, h, w) picture in [0, 1] with 0 at mid-grey: 0.5 + r / (2 max|r|) (all zero: plain grey)."""
    signal = np.asarray(signal_chw, dtype=np.float64)
    scale = np.abs(signal).max()
    return 0.5 + signal / (2 * scale) if scale > 0 else np.full_like(signal, 0.5)


def _tile_block(subfig, tiles, title, ncols):
    """A grid of equally sized (h, w, C) tiles in a subfigure, titled."""
    nrows = max(1, math.ceil(len(tiles) / ncols))
    axes = subfig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(tiles):]:
        ax.set_axis_off()
    for ax, tile in zip(axes, tiles):
        ax.imshow(tile[..., 0] if tile.shape[2] == 1 else tile, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # a thin frame: the receptive field's full extent
            spine.set_edgecolor("0.7")
    subfig.suptitle(title, fontsize=8)


def top_patches_figure(patches, reconstructions=None, path=None, ncols=3):
    """Zeiler & Fergus' figure: for each unit its top patches in a grid (3 x 3 for k = 9) and, beside
    it, the DeconvNet reconstruction of each patch in the same places.

    patches: the list of Patch from minicnn.viz.search.top_patches (one unit), or {title: list of
    Patch} for several units (one row per unit). reconstructions: None, or the same structure holding,
    for each patch, its minicnn.viz.search.Deconvnet result (or just the reconstruction's crop).
    Tiles are drawn at the receptive field's full size: a crop clipped at the image border sits where
    it belongs in its field, the outside left white. Each reconstruction is scaled on its own,
    0.5 + r / (2 max|r|): mid-grey is 0.
    """
    units = patches if isinstance(patches, dict) else {"top patches": patches}
    if reconstructions is not None and not isinstance(reconstructions, dict):
        reconstructions = {"top patches": reconstructions}
    if not units or any(len(hits) == 0 for hits in units.values()):
        raise ValueError("patches is empty (or a unit has no patches): there is nothing to show")
    columns = 1 if reconstructions is None else 2
    rows_per_unit = max(math.ceil(len(hits) / ncols) for hits in units.values())
    fig = Figure(figsize=(columns * (1.2 * ncols + 0.4), len(units) * (1.2 * rows_per_unit + 0.5)))
    subfigs = fig.subfigures(len(units), columns, squeeze=False)
    for row, (title, hits) in enumerate(units.items()):
        tiles = [_in_field(_image_tile(p.crop), p.box, p.unclipped_box) for p in hits]
        _tile_block(subfigs[row, 0], tiles, f"{title}: top {len(hits)} patches", ncols)
        if reconstructions is not None:
            recons = reconstructions[title]
            if len(recons) != len(hits):
                raise ValueError(f"unit {title!r} has {len(hits)} patches but {len(recons)} reconstructions")
            pictures = [signal_picture(getattr(r, "crop", r)).transpose(1, 2, 0) for r in recons]  # (h, w, C)
            tiles = [_in_field(picture, p.box, p.unclipped_box, fill=0.5) for p, picture in zip(hits, pictures)]
            _tile_block(subfigs[row, 1], tiles, f"{title}: DeconvNet reconstructions", ncols)
    return save_figure(fig, path)
