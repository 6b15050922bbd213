"""minicnn.recipes.finetune_colour: the starting network, what a run writes, and that its seed reproduces it."""
import csv
import json

import numpy as np
import pytest

from minicnn import data, models
from minicnn.io import load_weights
from minicnn.recipes import finetune_colour

QUICK = ["--train-size", "96", "--test-size", "40", "--epochs", "2", "--batch-size", "32", "--dissect-images", "24",
         "--dissect-every", "2", "--layers", "relu3_2"]


def test_the_start_is_shapes_vgg_with_a_zero_colour_head():
    net, base = finetune_colour.start_network(seed=0), models.load_pretrained("shapes_vgg")
    state, base_state = net.state_dict(), base.state_dict()
    assert net["fc2"].params["weight"].shape == (len(data.COLOR_NAMES), 128) == (models.SHAPES_COLORS, 128)
    assert not state["fc2.weight"].any() and not state["fc2.bias"].any()
    for key in base_state:
        if not key.startswith("fc2."):
            np.testing.assert_array_equal(state[key], base_state[key])
            assert not np.shares_memory(state[key], base_state[key])


def test_the_colour_task_labels_each_image_by_its_objects_colour():
    batch = finetune_colour.colour_task(50, seed=3, distractor=0.5)
    shapes = data.make_shapes(50, seed=3, distractor=0.5)
    np.testing.assert_array_equal(batch.labels, shapes.colors)
    np.testing.assert_array_equal(batch.images, shapes.images)


def test_checkpoints_are_the_start_every_n_steps_and_the_end():
    assert finetune_colour.checkpoints(10, 4) == [0, 4, 8, 10]
    assert finetune_colour.checkpoints(8, 4) == [0, 4, 8]
    assert finetune_colour.checkpoints(3, 40) == [0, 3]


def run(folder, seed, *extra):
    status = finetune_colour.main(QUICK + ["--seed", str(seed), "--out", str(folder / "w"), "--report", str(folder / "r"),
                                           *extra])
    assert status == 0
    return load_weights(folder / "w" / "shapes_vgg_colour.npz"), json.loads((folder / "w" / "shapes_vgg_colour.json").read_text())


def test_a_run_writes_a_loadable_model_card_and_the_units_report_and_its_seed_reproduces_it(tmp_path, capsys):
    first, card = run(tmp_path / "a", seed=4)
    again, card_again = run(tmp_path / "b", 4, "--compare-to", str(tmp_path / "a" / "w"))
    assert "difference +0.00 points (within 0.5); the same file bit for bit: True" in capsys.readouterr().out
    other, _ = run(tmp_path / "c", seed=5)
    assert all(np.array_equal(first[key], again[key]) for key in first)          # the same seed: the same weights
    assert card["sha256"] == card_again["sha256"]
    assert not all(np.array_equal(first[key], other[key]) for key in first)      # another seed: other weights
    net = models.load_pretrained("shapes_vgg_colour", tmp_path / "a" / "w")
    assert card["test_accuracy"] == card["history"][-1]["test_accuracy"]
    assert [entry["step"] for entry in card["history"]] == [0, 2, 4, 6]           # 3 steps per epoch, 2 epochs
    assert card["fine_tuned_from"]["sha256"] == models.sha256_of_file(models.pretrained_paths("shapes_vgg", None)[0])
    test = finetune_colour.colour_task(40, seed=1001, distractor=0.5)
    accuracy = float((net.forward(test.images).argmax(axis=1) == test.labels).mean())
    assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-5)
    assert "--seed 4" in card["reproduce"] and "--train-size 96" in card["reproduce"]
    with open(tmp_path / "a" / "r" / "units.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4 * 32 and {row["step"] for row in rows} == {"0", "2", "4", "6"}
    assert "units change label" in (tmp_path / "a" / "r" / "units.md").read_text()
    assert (tmp_path / "a" / "r" / "trajectory_relu3_2.png").stat().st_size > 0


def test_the_recipe_will_not_overwrite_weights_without_being_told(tmp_path, capsys):
    (tmp_path / "shapes_vgg_colour.npz").write_bytes(b"shipped")
    with pytest.raises(SystemExit):
        finetune_colour.main(QUICK + ["--out", str(tmp_path)])
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "shapes_vgg_colour.npz").read_bytes() == b"shipped"
