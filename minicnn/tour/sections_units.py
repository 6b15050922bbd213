"""Tour sections: gradient ascent, dataset search and DeconvNet, neighbours and t-SNE, DeepDream,
dissection, dead units and units that change roles: what single units and whole layers respond to."""
import contextlib

import numpy as np
from matplotlib.figure import Figure

from .. import ops, plot
from ..layers import ReLU
from .parts import Skipped, Table
from .subject import feature_layer, in_rgb_order, search_layers

# ----------------------------------------------------------------------------------------------
# 8. gradient ascent


# Simonyan's objective (the pre-softmax score) with Yosinski's blur and jitter, steps normalised by
# mean |gradient|: recognisable pictures that the network also classifies as their class.
CLASS_MODEL_RECIPE = dict(lr=0.05, l2=1e-3, blur_every=4, blur_sigma=0.5, jitter=2, normalize=True)


def class_models_section(tour):
    from ..viz.ascent import class_model

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
    from ..viz.search import deconvnet, top_patches_for_channels

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
    from ..viz.embedding import nearest_neighbors

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
    from ..viz.embedding import embed

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
    from ..viz.dream import deep_dream

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
    from ..viz.dissection import dissect, top_examples

    subject = tour.subject
    if subject.shapes_batch is None:
        raise Skipped("Network Dissection needs pixel masks of concepts, which only the shapes dataset has")
    batch = subject.shapes_batch[:tour.budget.dissect_images]
    layer = search_layers(subject.net)[-1]
    result = tour.maps[("dissection", layer)] = dissect(subject.net, batch, layer, progress=False)
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
    from ..viz.dissection import unit_maxima

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
# 15. units that change roles when the network is fine-tuned


def fine_tuning_section(tour):
    from ..data import concept_categories
    from ..evaluate.units import concept_changes, counted, trajectory_figure, unique_detectors
    from ..models import shapes_vgg
    from ..viz.dissection import dissect

    subject = tour.subject
    if subject.shapes_batch is None or subject.net_name != "shapes_vgg" or subject.fine_tuned is None:
        raise Skipped("it compares shapes_vgg with shapes_vgg_colour, its copy fine-tuned to name colours, on the "
                      "shapes images (the weights folder has no shapes_vgg_colour)")
    batch, layer, categories = subject.shapes_batch[:tour.budget.dissect_images], "relu3_2", concept_categories()
    networks = {"shapes_vgg": subject.net, "shapes_vgg_colour (fine-tuned)": subject.fine_tuned,
                "shapes_vgg, random weights": shapes_vgg(seed=0).eval()}
    known = {"shapes_vgg": tour.maps.get(("dissection", layer))}   # the Network Dissection section's, if made
    dissections = {name: known.get(name) or dissect(net, batch, layer, progress=False) for name, net in networks.items()}
    before, after = dissections["shapes_vgg"], dissections["shapes_vgg_colour (fine-tuned)"]
    changed = concept_changes(before, after)
    fig = trajectory_figure([before, after], ["shapes_vgg", "fine-tuned to colour"], categories)
    order = list(dict.fromkeys(categories.values()))
    rows = []
    for name, dissection in dissections.items():
        found = unique_detectors(dissection, categories)
        rows.append([name, str(len(dissection.detectors))] + [counted(found[c]) for c in order])
    return [
        tour.panel(fig, "fine_tuning",
                   f"Units that change roles (Bau 2017): shapes_vgg fine-tuned to name the object's colour. "
                   f"{len(changed)} of {len(before.table)} units of {layer} change label on these {len(batch)} "
                   "images; each cell gives a unit's best concept and its IoU (grey: no detector)."),
        Table(["network", "detectors"] + [f"unique {c}" for c in order], rows,
              f"Unique detectors of {layer} by concept category: the distinct concepts some unit detects (IoU > "
              "0.04). docs/results/units.md has the run with every checkpoint and the other networks."),
    ]
