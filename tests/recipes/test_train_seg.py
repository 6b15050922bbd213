"""minicnn.recipes.train_seg: the targets, the frozen encoder, resuming from a checkpoint, and the card."""
import json

import numpy as np

from minicnn import data, models
from minicnn.io import load_weights
from minicnn.recipes import train_seg


def test_pixel_targets_put_each_object_in_its_class_channel():
    batch = data.make_shapes(6, seed=3, distractor=1.0)
    targets = train_seg.pixel_targets(batch)
    assert targets.shape == (6, 64, 64) and targets.dtype == np.int64
    for i in range(6):
        np.testing.assert_array_equal(targets[i][batch.masks[i]], batch.labels[i] + 1)
        assert not targets[i][~batch.masks[i]].any()   # the distractor is background
        assert batch.distractor_masks[i].any()
    assert train_seg.SEGMENTATION_NAMES[1 + batch.labels[0]] == batch.class_names[0]


def run(tmp_path, name, *extra):
    out = tmp_path / name
    arguments = ["--train-size", "40", "--test-size", "8", "--batch-size", "20", "--epochs", "2",
                 "--out", str(out), "--checkpoint", str(out / "checkpoint.npz"), *extra]
    assert train_seg.main(arguments) == 0
    return out


def test_a_resumed_run_equals_an_uninterrupted_one_and_the_frozen_epoch_keeps_the_encoder(tmp_path):
    straight = run(tmp_path, "straight")
    halfway = run(tmp_path, "halfway", "--stop-after", "1")
    after_one = load_weights(halfway / "shapes_seg.npz")
    cam = models.load_pretrained("shapes_cam").state_dict()
    for key, value in cam.items():   # epoch 1 trains the decoder only
        if not key.startswith("fc."):
            np.testing.assert_array_equal(after_one[key], value)
    assert not np.array_equal(after_one["up1.weight"], models.shapes_seg(seed=0).state_dict()["up1.weight"])
    run(tmp_path, "halfway", "--resume")
    resumed, uninterrupted = load_weights(halfway / "shapes_seg.npz"), load_weights(straight / "shapes_seg.npz")
    assert sorted(resumed) == sorted(uninterrupted)
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key])
    assert not np.array_equal(uninterrupted["conv1.weight"], cam["conv1.weight"])   # epoch 2 trains all
    card = json.loads((straight / "shapes_seg.json").read_text())
    assert card["training"]["epochs_completed"] == 2 and len(card["history"]) == 2
    assert set(card["test_iou_per_class"]) == set(train_seg.SEGMENTATION_NAMES)
    net = models.load_pretrained("shapes_seg", straight)   # the card's checksum fits the file
    images = data.make_shapes(8, seed=1001, distractor=0.5)
    mean, _ = train_seg.mean_iou(net, images.images, train_seg.pixel_targets(images))
    assert round(mean, 5) == card["test_mean_iou"] == card["history"][-1]["test_mean_iou"]
    assert "| shapes_seg | 98,955 | 40 (seed 1) | 2 | mean IoU" in (straight / "README.md").read_text()
