"""The pointing game's tables (minicnn.evaluate.pointing): the Wilson interval and the verdicts."""
import numpy as np
import pytest

from minicnn.evaluate.pointing import Score, csv_rows, score_maps, table_lines, target_lines, wilson_interval


@pytest.mark.parametrize("hits,n", [(0, 5), (3, 7), (2705, 3000), (50, 50)])
def test_the_interval_is_the_wilson_score_interval(hits, n):
    z = 1.959963984540054  # the 97.5% point of the standard normal
    p = hits / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    want = ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))
    np.testing.assert_allclose(wilson_interval(hits, n), want, rtol=1e-9, atol=1e-12)


def score(hit_count, n):
    return Score(np.arange(n) < hit_count, 0, 0.0)


def test_the_targets_say_met_or_not_and_whether_the_interval_is_clear():
    rows = [("CAM", "shapes_cam", ""), ("Grad-CAM", "shapes_vgg", ""), ("occlusion", "shapes_vgg", ""),
            ("saliency", "shapes_vgg", "")]
    lines = target_lines(rows, [score(2900, 3000), score(2694, 3000), score(2600, 3000), score(10, 3000)], 3000)
    assert lines == [
        "Targets:",
        "- CAM (shapes_cam) >= 90%: met (96.7%; the whole interval is above it).",
        "- Grad-CAM (shapes_vgg) >= 90%: NOT met (89.8%; the interval contains it).",
        "- occlusion (shapes_vgg) >= 90%: NOT met (86.7%; the whole interval is below it).",
    ]


def test_the_table_names_the_rows_that_do_not_beat_the_baseline():
    rows = [("saliency", "m", "a | b"), ("CAM", "m", ""), ("centre baseline", "-", "")]
    lines = table_lines(rows, [score(3, 10), score(8, 10), score(5, 10)])
    assert lines[2] == "| saliency | m | a \\| b | 30.0% | 10.8-60.3% | 3/10 | 0 | 0.0 |"
    assert lines[-1] == "Not above the centre baseline: saliency (m)."
    assert csv_rows(rows[:1], [score(3, 10)])[0]["accuracy"] == 0.3


def test_score_maps_counts_hits_and_constant_maps():
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[:, 0, 0] = True
    maps = np.zeros((3, 5, 5))
    maps[0, 0, 1] = 1  # next to the object: a hit
    maps[1, 4, 4] = 1  # far: a miss; maps[2] is constant: a miss
    hits, constant = score_maps(maps, masks)
    assert hits.tolist() == [True, False, False] and constant == 1
