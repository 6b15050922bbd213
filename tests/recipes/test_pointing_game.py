"""minicnn.recipes.pointing_game: batching (its tables are minicnn.evaluate.pointing's, tested in
tests/evaluate/test_evaluate_pointing.py)."""
import numpy as np

from minicnn.recipes import pointing_game
from minicnn.viz.pointing import pointing_hits


def test_the_script_scores_every_image_as_one_unbatched_call_would():
    from minicnn import data

    args = pointing_game.parse_args(["--n", "7", "--batch-size", "3", "--random", "--smooth", "2"])
    models, _ = pointing_game.load_models(True, None)
    rows = [row for row in pointing_game.methods(args, models) if row[0] in ("saliency", "centre baseline")]
    scores, labels, _ = pointing_game.play(args, models, rows)
    batch = data.make_shapes(7, seed=args.seed)
    np.testing.assert_array_equal(labels, batch.labels)
    for (_, _, method, _), score in zip(rows, scores):
        want = pointing_hits(method(batch.images, batch.labels), batch.masks)
        np.testing.assert_array_equal(score.hits, want)


def test_the_page_it_writes_names_its_command_and_keeps_the_notes(tmp_path):
    page = tmp_path / "pointing-game.md"
    page.write_text(f"# an older run\n\n| old | table |\n\n{pointing_game.NOTES_MARKER}\n\nA note by hand.\n")
    argv = ["--n", "2", "--random", "--smooth", "1", "--batch-size", "2", "--out", str(page)]
    pointing_game.main(argv)
    text = page.read_text()
    assert text.startswith("# The pointing game\n\nProduced by `python -m minicnn.recipes.pointing_game "
                           + " ".join(argv) + "`")
    assert "Pointing game on 2 held-out shapes images" in text and "| old | table |" not in text
    assert text.endswith(f"\n\n{pointing_game.NOTES_MARKER}\n\nA note by hand.\n")
