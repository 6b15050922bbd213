"""minicnn.recipes.unique_detectors: its table, CSV and figure, and a network dissected over a Broden dataset."""
import csv

import numpy as np

from minicnn import data, models
from minicnn.evaluate.units import unique_detectors
from minicnn.index.broden import write_shapes_broden
from minicnn.recipes import unique_detectors as recipe
from minicnn.viz.dissection import dissect


def test_every_network_gets_a_row_and_the_broden_row_equals_dissect_on_the_same_images(tmp_path):
    write_shapes_broden(tmp_path / "broden", 24, seed=5)
    assert recipe.main(["--n", "16", "--out", str(tmp_path / "out"), "--broden", str(tmp_path / "broden"),
                        "--broden-model", "shapes_vgg"]) == 0
    with open(tmp_path / "out" / "unique_detectors.csv") as stream:
        rows = list(csv.DictReader(stream))
    titles = [title for title, _, _ in recipe.SHAPES_NETWORKS] + ["shapes_vgg (Broden)"]
    assert [row["network"] for row in rows] == [t for t in titles for _ in data.CONCEPT_CATEGORIES]
    # the Broden export holds the images as 8-bit PNGs: dissect the same rounded images directly
    shapes = data.make_shapes(24, seed=5)
    shapes.images = np.round(shapes.images * 255).astype(np.uint8).astype(np.float32) / np.float32(255)
    expected = unique_detectors(dissect(models.load_pretrained("shapes_vgg"), shapes, "relu3_2", progress=False),
                                data.concept_categories())
    got = {row["category"]: tuple(filter(None, row["concepts"].split(";"))) for row in rows
           if row["network"] == "shapes_vgg (Broden)"}
    assert got == expected
    assert all(int(row["unique_detectors"]) == len(tuple(filter(None, row["concepts"].split(";")))) for row in rows)
    table = (tmp_path / "out" / "unique_detectors.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(titles)   # header + a row each
    assert (tmp_path / "out" / "unique_detectors.png").stat().st_size > 0
