"""Quantifying units: unique detectors by concept category, and units that change concept when a network
is fine-tuned (Bau, Zhou, Khosla, Oliva & Torralba 2017, "Network Dissection", sections 3.2 and 3.4).

A unit's LABEL is the concept of its Network Dissection row when that row is a detector (IoU above the
threshold), and None when the unit detects nothing. From the labels of one layer:

    unique detectors of category g = the distinct concepts of category g that label at least one unit

(the paper's comparison across architectures: a network with more unique detectors has disentangled
more concepts, however many units share each). Between two dissections of one layer (the same units,
before and after fine-tuning) a unit CHANGES when its label differs: "disc" -> "red", "disc" -> None
(it stopped detecting) or None -> "red" (it started).
"""
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..plot import save_figure
from ..viz.dissection import Dissection

NO_DETECTOR = "0.85"   # the figures' grey for a unit that detects nothing


def _check_dissection(dissection, name):
    if not isinstance(dissection, Dissection):
        raise TypeError(f"{name} must be a minicnn.viz.dissection.Dissection, got {type(dissection).__name__}")


def unit_labels(dissection):
    """The label of every unit, in unit order: its best concept if it is a detector, else None."""
    _check_dissection(dissection, "dissection")
    return [row.concept if row.is_detector else None for row in dissection.table]


def unique_detectors(dissection, categories):
    """{category: sorted tuple of the distinct concepts that label at least one unit}, one entry for every
    category of `categories` ({concept name: category}, e.g. minicnn.data.concept_categories()), empty
    tuples included. A detected concept missing from `categories` is an error."""
    _check_dissection(dissection, "dissection")
    found = {category: set() for category in dict.fromkeys(categories.values())}
    for label in unit_labels(dissection):
        if label is None:
            continue
        if label not in categories:
            raise ValueError(f"categories has no category for the detected concept {label!r}; it names "
                             f"{len(categories)} concepts, e.g. {list(categories)[:3]}")
        found[categories[label]].add(label)
    return {category: tuple(sorted(names)) for category, names in found.items()}


def counted(names):
    """A table cell for some concepts: their number and names, e.g. "3 (cyan, red, white)" or "0 (-)"."""
    return f"{len(names)} ({', '.join(names) or '-'})"


class ConceptChange(NamedTuple):
    """One unit whose label differs between two dissections: label and best IoU before and after (the
    best IoU is kept for a unit labelled None: how close it came)."""

    unit: int
    before: object   # a concept name, or None
    iou_before: float
    after: object
    iou_after: float


def concept_changes(before, after):
    """The ConceptChange of every unit whose label differs between two dissections of one layer, in unit
    order. The two must dissect the same layer with the same concepts and number of units."""
    _check_dissection(before, "before")
    _check_dissection(after, "after")
    if (before.layer, before.concept_names, len(before.table)) != (after.layer, after.concept_names, len(after.table)):
        raise ValueError(f"before and after must dissect one layer with the same concepts and units; got "
                         f"{before.layer!r} ({len(before.table)} units, {len(before.concept_names)} concepts) and "
                         f"{after.layer!r} ({len(after.table)} units, {len(after.concept_names)} concepts)")
    changes = []
    for label_before, label_after, row_before, row_after in zip(unit_labels(before), unit_labels(after),
                                                                before.table, after.table):
        if label_before != label_after:
            changes.append(ConceptChange(row_before.unit, label_before, row_before.iou, label_after, row_after.iou))
    return changes


def label_counts(dissection, categories):
    """{category: number of units labelled with a concept of that category} plus "none": the units that
    detect nothing. The counts add up to the number of units."""
    counts = dict.fromkeys(dict.fromkeys(categories.values()), 0)
    counts["none"] = 0
    for label in unit_labels(dissection):
        counts["none" if label is None else categories[label]] += 1
    return counts


def category_colors(categories):
    """{category: an RGB colour}, tab10's colours in the order the categories first appear."""
    return dict(zip(dict.fromkeys(categories.values()), colormaps["tab10"].colors))


def trajectory_figure(dissections, titles, categories, path=None):
    """A grid of one layer's units (rows) over the dissections in training order (columns): each cell
    names the unit's label and IoU, coloured by the label's category (grey: no detector). Units whose
    label never changes are left out. Returns the Figure (saved to `path` if given)."""
    if len(dissections) != len(titles) or not dissections:
        raise ValueError(f"give one title per dissection, at least one; got {len(dissections)} dissections and "
                         f"{len(titles)} titles")
    labels = np.array([unit_labels(d) for d in dissections], dtype=object).T          # (units, steps)
    moving = [unit for unit in range(labels.shape[0]) if len(set(labels[unit])) > 1]
    colors = category_colors(categories)
    rows = max(len(moving), 1)
    figure = Figure(figsize=(1.7 * len(titles) + 2.2, 0.32 * rows + 0.9))
    axes = figure.subplots()
    for r, unit in enumerate(moving):
        for step, dissection in enumerate(dissections):
            label, iou = labels[unit, step], dissection.table[unit].iou
            color = NO_DETECTOR if label is None else colors[categories[label]]
            axes.add_patch(Rectangle((step, r), 1, 1, facecolor=color, edgecolor="white"))
            axes.text(step + 0.5, r + 0.5, f"{label or '-'} {iou:.2f}", ha="center", va="center", fontsize=7)
    axes.set_xlim(0, len(titles))
    axes.set_ylim(rows, 0)
    axes.set_xticks(np.arange(len(titles)) + 0.5, titles, fontsize=8)
    axes.set_yticks(np.arange(len(moving)) + 0.5, [f"unit {u}" for u in moving], fontsize=7)
    axes.tick_params(length=0)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colors.values()] + [Rectangle((0, 0), 1, 1, color=NO_DETECTOR)]
    axes.legend(handles, list(colors) + ["no detector"], fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title(f"{dissections[0].layer}: the {len(moving)} units whose label changes (label and IoU)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def unique_detectors_figure(rows, categories, path=None):
    """Bars of unique detectors per network, stacked by category (like the paper's comparison across
    architectures). rows: [(network title, {category: tuple of concepts})]. Returns the Figure (saved
    to `path` if given)."""
    figure = Figure(figsize=(1.2 * len(rows) + 2.5, 3.2))
    axes = figure.subplots()
    bottom = np.zeros(len(rows))
    for category, color in category_colors(categories).items():
        counts = np.array([len(found.get(category, ())) for _, found in rows])
        axes.bar(range(len(rows)), counts, bottom=bottom, color=color, label=category)
        bottom += counts
    axes.set_xticks(range(len(rows)), [title for title, _ in rows], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("unique detectors")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return save_figure(figure, path)
