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
