"""minicnn.recipes.pointing_game: batching, intervals and verdicts."""
import numpy as np
import pytest

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


@pytest.mark.parametrize("hits,n", [(0, 5), (3, 7), (2705, 3000), (50, 50)])
def test_the_interval_is_the_wilson_score_interval(hits, n):
    z = 1.959963984540054  # the 97.5% point of the standard normal
    p = hits / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    want = ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))
    np.testing.assert_allclose(pointing_game.wilson_interval(hits, n), want, rtol=1e-9, atol=1e-12)


def test_the_targets_say_met_or_not_and_whether_the_interval_is_clear():
    def score(hit_count, n):
        return pointing_game.Score(np.arange(n) < hit_count, 0, 0.0)

    rows = [("CAM", "shapes_cam", None, ""), ("Grad-CAM", "shapes_vgg", None, ""), ("occlusion", "shapes_vgg", None, ""),
            ("saliency", "shapes_vgg", None, "")]
    lines = pointing_game.target_lines(rows, [score(2900, 3000), score(2694, 3000), score(2600, 3000),
                                              score(10, 3000)], 3000)
    assert lines == [
        "Targets:",
        "- CAM (shapes_cam) >= 90%: met (96.7%; the whole interval is above it).",
        "- Grad-CAM (shapes_vgg) >= 90%: NOT met (89.8%; the interval contains it).",
        "- occlusion (shapes_vgg) >= 90%: NOT met (86.7%; the whole interval is below it).",
    ]


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
