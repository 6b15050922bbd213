"""minicnn.recipes.train_shapes: what it writes, what it refuses, and the warm-up schedule."""

import numpy as np
import pytest

from helpers import WEIGHTS

from minicnn.recipes import train_shapes


def test_train_script_will_not_overwrite_weights_without_being_told(tmp_path, capsys):
    (tmp_path / "shapes_vgg.npz").write_bytes(b"shipped")
    with pytest.raises(SystemExit):
        train_shapes.main(["--model", "shapes_vgg", "--out", str(tmp_path), "--train-size", "8"])
    assert "shapes_vgg.npz already exist(s)" in capsys.readouterr().err
    assert (tmp_path / "shapes_vgg.npz").read_bytes() == b"shipped"


def test_train_script_rewrites_the_table_and_keeps_the_notes(tmp_path):
    shipped = WEIGHTS
    for card in shipped.glob("*.json"):
        (tmp_path / card.name).write_text(card.read_text())
    (tmp_path / "README.md").write_text(f"old table\n\n{train_shapes.NOTES_MARKER}\n\nA note by hand.\n")
    train_shapes.write_readme(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "old table" not in text and "| shapes_vgg | 281,746 |" in text
    assert text.endswith(f"\n\n{train_shapes.NOTES_MARKER}\n\nA note by hand.\n")


def test_warmup_sets_the_learning_rate_of_every_step_and_then_lets_it_be():
    class Recorder:
        lr = None

    optimizer, seen = Recorder(), []
    for epoch, lr in enumerate((1.0, 0.5)):  # two epochs of 4 steps, a warm-up of 6 steps
        for _ in train_shapes.with_warmup(range(4), optimizer, lr, 4 * epoch, 6):
            seen.append(optimizer.lr)
    np.testing.assert_allclose(seen, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 0.5 * 5 / 6, 0.5, 0.5, 0.5])
    assert train_shapes.schedule_name(0) == "cosine per epoch"
    assert train_shapes.schedule_name(6) == "cosine per epoch, linear warm-up over the first 6 steps"


def test_train_script_refuses_a_negative_warmup(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_shapes.main(["--model", "shapes_vgg", "--out", str(tmp_path), "--warmup-steps", "-1"])
    assert "--warmup-steps must be >= 0, got -1" in capsys.readouterr().err


def test_permute_labels_trains_on_a_seeded_permutation_of_the_training_labels(tmp_path, monkeypatch):
    """The data randomization test's network: the same recipe, the training labels shuffled (test labels kept)."""
    from minicnn import data, models

    seen = {}

    def record(name, args, train_set, test_set):
        seen.update(train=train_set.labels.copy(), test=test_set.labels.copy(), args=args)
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(train_shapes, "train_one", record)
    with pytest.raises(KeyboardInterrupt):
        train_shapes.main(["--model", "shapes_cam", "--out", str(tmp_path), "--train-size", "40", "--test-size", "10",
                           "--permute-labels", "7"])
    true = data.make_shapes(40, seed=1, distractor=0.5).labels
    np.testing.assert_array_equal(seen["train"], np.random.default_rng(7).permutation(true))
    assert not np.array_equal(seen["train"], true)
    np.testing.assert_array_equal(seen["test"], data.make_shapes(10, seed=1001, distractor=0.5).labels)
    card = train_shapes.model_card("shapes_cam", models.shapes_cam(seed=0), seen["args"], data.make_shapes(2),
                                   data.make_shapes(2), [{"test_accuracy": 0.1}], 1.0)
    assert card["data"]["labels_permuted_by_seed"] == 7
    assert "--permute-labels 7" in card["reproduce"]
