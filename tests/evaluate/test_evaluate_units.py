"""Unique detectors and concept changes (minicnn.evaluate.units) on dissections whose IoUs are set by hand."""
import numpy as np
import pytest

from minicnn import data
from minicnn.evaluate.units import (concept_changes, label_counts, trajectory_figure, unique_detectors,
                                    unique_detectors_figure, unit_labels)
from minicnn.viz.dissection import Dissection, _table

NAMES = ("disc", "ring", "red", "blue", "striped", "background")
CATEGORIES = {"disc": "object", "ring": "object", "red": "color", "blue": "color", "striped": "texture",
              "background": "region"}


def dissection_of(iou, layer="relu3_2", threshold=0.04):
    """A Dissection whose IoU table is `iou` (units x NAMES)."""
    iou = np.asarray(iou, dtype=np.float64)
    return Dissection(_table(iou, NAMES, threshold), iou, np.zeros(len(iou)), NAMES, layer, 0.005, threshold)


BEFORE = dissection_of([[0.30, 0, 0, 0, 0, 0],        # unit 0: disc
                        [0.20, 0, 0, 0, 0, 0],        # unit 1: disc again
                        [0, 0.01, 0, 0, 0, 0],        # unit 2: ring, below the threshold: no detector
                        [0, 0, 0.10, 0, 0, 0]])       # unit 3: red
AFTER = dissection_of([[0.30, 0, 0, 0, 0, 0],         # unit 0: still disc
                       [0, 0, 0, 0.25, 0, 0],         # unit 1: disc -> blue
                       [0, 0, 0, 0, 0.05, 0],         # unit 2: nothing -> striped
                       [0, 0, 0.03, 0, 0, 0]])        # unit 3: red -> nothing (0.03 is below 0.04)


def test_labels_are_the_detected_concepts_and_none_elsewhere():
    assert unit_labels(BEFORE) == ["disc", "disc", None, "red"]
    assert unit_labels(AFTER) == ["disc", "blue", "striped", None]


def test_unique_detectors_count_distinct_concepts_per_category():
    assert unique_detectors(BEFORE, CATEGORIES) == {"object": ("disc",), "color": ("red",), "texture": (),
                                                    "region": ()}
    assert unique_detectors(AFTER, CATEGORIES) == {"object": ("disc",), "color": ("blue",),
                                                   "texture": ("striped",), "region": ()}


def test_label_counts_add_up_to_the_units():
    counts = label_counts(BEFORE, CATEGORIES)
    assert counts == {"object": 2, "color": 1, "texture": 0, "region": 0, "none": 1}
    assert sum(counts.values()) == len(BEFORE.table)


def test_concept_changes_list_every_unit_whose_label_differs_with_its_ious():
    changes = concept_changes(BEFORE, AFTER)
    assert [(c.unit, c.before, c.after) for c in changes] == [(1, "disc", "blue"), (2, None, "striped"),
                                                             (3, "red", None)]
    assert changes[0].iou_before == pytest.approx(0.20) and changes[0].iou_after == pytest.approx(0.25)
    assert changes[2].iou_after == pytest.approx(0.03)   # how close it came, though no longer a detector
    assert concept_changes(BEFORE, BEFORE) == []


def test_changes_need_the_same_layer_and_units():
    with pytest.raises(ValueError, match="one layer with the same concepts and units"):
        concept_changes(BEFORE, dissection_of(AFTER.iou, layer="relu2_2"))
    with pytest.raises(ValueError, match="4 units.*3 units"):
        concept_changes(BEFORE, dissection_of(AFTER.iou[:3]))
    with pytest.raises(TypeError, match="after must be a minicnn.viz.dissection.Dissection, got dict"):
        concept_changes(BEFORE, {})


def test_a_detected_concept_without_a_category_is_an_error():
    with pytest.raises(ValueError, match="no category for the detected concept 'red'"):
        unique_detectors(BEFORE, {"disc": "object"})


def test_the_shapes_concepts_each_have_one_category():
    categories = data.concept_categories()
    assert tuple(categories) == data.concept_names()
    assert {name for name, category in categories.items() if category == "color"} == set(data.COLOR_NAMES)
    assert [category for category, _ in data.CONCEPT_CATEGORIES] == ["object", "color", "texture", "region"]


def test_the_trajectory_figure_shows_only_the_units_that_change(tmp_path):
    figure = trajectory_figure([BEFORE, AFTER], ["before", "after"], CATEGORIES, tmp_path / "t.png")
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert labels == ["unit 1", "unit 2", "unit 3"] and (tmp_path / "t.png").stat().st_size > 0
    texts = {text.get_text() for text in figure.axes[0].texts}
    assert {"disc 0.20", "blue 0.25", "- 0.01", "striped 0.05", "- 0.03"} <= texts
    with pytest.raises(ValueError, match="one title per dissection"):
        trajectory_figure([BEFORE, AFTER], ["before"], CATEGORIES)


def test_the_unique_detectors_figure_stacks_one_bar_per_network(tmp_path):
    rows = [("before", unique_detectors(BEFORE, CATEGORIES)), ("after", unique_detectors(AFTER, CATEGORIES))]
    figure = unique_detectors_figure(rows, CATEGORIES, tmp_path / "u.png")
    heights = {}
    for patch in figure.axes[0].patches:
        heights[round(patch.get_x() + patch.get_width() / 2)] = heights.get(round(patch.get_x() + patch.get_width() / 2), 0) + patch.get_height()
    assert heights == {0: 2, 1: 3}
