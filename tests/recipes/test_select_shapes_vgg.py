"""minicnn/recipes/select_shapes_vgg.py: the bar it applies, and one row measured end to end on a small budget."""
import functools

import numpy as np
import pytest
from minicnn.recipes import select_shapes_vgg, train_shapes

from minicnn import data, models


def test_the_bar_needs_every_class_both_pointing_scores_and_every_class_model():
    classes, pointing, probabilities = list(data.CLASS_NAMES), {"grad_cam": 0.90, "occlusion": 0.97}, np.full(10, 0.9)
    assert select_shapes_vgg.meets_bar(classes, pointing, probabilities)  # the bounds themselves pass
    assert not select_shapes_vgg.meets_bar(classes[1:], pointing, probabilities)
    assert not select_shapes_vgg.meets_bar(classes, dict(pointing, grad_cam=0.899), probabilities)
    assert not select_shapes_vgg.meets_bar(classes, dict(pointing, occlusion=0.5), probabilities)
    assert not select_shapes_vgg.meets_bar(classes, pointing, np.r_[probabilities[:9], 0.899])


@pytest.mark.slow
def test_a_row_for_an_untrained_network(tmp_path, monkeypatch):
    """Random weights, 40 images, 3 ascent steps: the row reads the card, lists exactly the classes the
    count leaves out, and an untrained network does not meet the bar."""
    net = models.shapes_vgg(seed=5)
    card = {"model": "shapes_vgg", "training": {"init_seed": 5}, "test_accuracy": 0.1}
    train_shapes.write_model(net, card, tmp_path)
    monkeypatch.setattr(select_shapes_vgg, "DISSECTION_IMAGES", 40)
    monkeypatch.setattr(select_shapes_vgg, "POINTING_IMAGES", 40)
    monkeypatch.setattr(select_shapes_vgg, "class_model", functools.partial(select_shapes_vgg.class_model, steps=3))
    cells = [cell.strip() for cell in select_shapes_vgg.measure(tmp_path).strip("|").split("|")]
    assert len(cells) == 11
    seed, accuracy, found, missing = cells[:4]
    assert (seed, accuracy) == ("5", "10.00%")
    missing = [] if missing == "-" else missing.split(", ")
    assert set(missing) <= set(data.CLASS_NAMES) and int(found) == len(data.CLASS_NAMES) - len(missing)
    assert cells[9] == "no"
