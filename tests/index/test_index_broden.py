"""Broden-format datasets: a fixture written here (two pixel categories sharing a label, several PNGs
in one cell, whole-image labels, empty cells) read and dissected == viz.dissection.dissect given the
dense masks built here from the same label arrays; the shapes export dissected == dissect on the same
(byte-rounded) images; a file missing a column, a missing or wrong PNG: an error naming file and row."""
import csv

import numpy as np
import pytest
from PIL import Image

from minicnn import Conv2d, MaxPool2d, Network, ReLU, data, models
from minicnn.cli import main
from minicnn.index import BrodenSource, build_index, dissect_source, write_shapes_broden
from minicnn.index.broden import BrodenError
from minicnn.io.images import load_image
from minicnn.viz.dissection import dissect

SIDE = 16
# label number -> (name, categories it belongs to); 2 is both a color and an object label
LABELS = {1: ("red-c", ["color"]), 2: ("blue-c", ["color", "object"]), 3: ("disc", ["object"]),
          4: ("bar", ["object"]), 5: ("beach-s", ["scene"])}
CATEGORIES = ("color", "object", "scene")


def small_net(seed=0):
    return Network([("conv1", Conv2d(3, 6, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
                    ("conv2", Conv2d(6, 5, 3, padding=1)), ("relu2", ReLU())], seed=seed)


def write_csv(path, rows):
    with open(path, "w", newline="") as stream:
        csv.writer(stream).writerows(rows)


def png_labels(path, labels):
    """Save (h, w) label numbers as a Broden mask: R + 256 * G."""
    Image.fromarray(np.stack([labels % 256, labels // 256, np.zeros_like(labels)], -1).astype(np.uint8)).save(path)


def write_fixture(root, n=7, seed=0):
    """A small Broden dataset; returns the dense truth masks (n, 5, SIDE, SIDE) bool, label order 1..5."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    truth = np.zeros((n, len(LABELS), SIDE, SIDE), dtype=bool)
    rows = [["image", "split", "ih", "iw", "sh", "sw", "scene", "color", "object"]]  # category columns in any order
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        cells = {"color": [], "object": [], "scene": []}
        if i != 3:  # image 3 has no annotation at all
            color = rng.choice([0, 1, 2], (SIDE, SIDE))
            png_labels(root / "images" / f"im{i}_color.png", color)
            cells["color"].append(f"im{i}_color.png")
            objects = [rng.choice([0, 2, 3], (SIDE, SIDE)), rng.choice([0, 4], (SIDE, SIDE), p=[0.7, 0.3])]
            for j, labels in enumerate(objects[: 1 + i % 2]):  # odd images: two object PNGs in one cell
                png_labels(root / "images" / f"im{i}_object{j}.png", labels)
                cells["object"].append(f"im{i}_object{j}.png")
            for number in LABELS:
                truth[i, number - 1] |= color == number
                for labels in objects[: 1 + i % 2]:
                    truth[i, number - 1] |= labels == number
        if i % 3 == 0:
            cells["scene"].append("5")
            truth[i, 4] = True
        rows.append([f"im{i}.png", "train", SIDE, SIDE, SIDE, SIDE] + [";".join(cells[c]) for c in ("scene", "color",
                                                                                                     "object")])
    write_csv(root / "index.csv", rows)
    write_csv(root / "label.csv", [["number", "name", "category", "frequency", "coverage", "syns"], [0, "-", "-", 0, 0, ""]]
              + [[number, name, ";".join(cats), 1, 0.1, ""] for number, (name, cats) in LABELS.items()])
    write_csv(root / "category.csv", [["name", "first", "last", "count", "frequency"]]
              + [[c, 1, 5, 1, 1] for c in CATEGORIES])
    for category in CATEGORIES:
        write_csv(root / f"c_{category}.csv", [["code", "number", "name", "frequency", "coverage"]]
                  + [[code, number, name, 1, 0.1] for code, (number, (name, cats)) in
                     enumerate(((n, v) for n, v in LABELS.items() if category in v[1]), start=1)])
    return truth


def brute_force(net, root, truth, layer, batch_size, quantile):
    images = np.stack([load_image(root / "images" / f"im{i}.png") for i in range(len(truth))])
    batches = [(images[s:s + batch_size], truth[s:s + batch_size]) for s in range(0, len(images), batch_size)]
    return dissect(net, batches, layer, quantile, concept_names=[name for name, _ in LABELS.values()], progress=False)


@pytest.mark.parametrize("layer, quantile", [("relu2", 0.005), ("pool1", 0.2), ("conv1", 0.5)])
def test_a_written_broden_fixture_dissected_equals_dissect_with_its_dense_masks(tmp_path, layer, quantile):
    truth = write_fixture(tmp_path / "broden")
    source = BrodenSource(tmp_path / "broden")
    assert source.concept_names == tuple(name for name, _ in LABELS.values())
    net = small_net()
    got = dissect_source(net, source, [layer], tmp_path / "out", quantile=quantile, batch_size=3, shard_size=3,
                         progress=False)[layer]
    expected = brute_force(net, tmp_path / "broden", truth, layer, 3, quantile)
    np.testing.assert_array_equal(got.thresholds, expected.thresholds)
    np.testing.assert_array_equal(got.iou, expected.iou)
    assert got.table == expected.table
    assert (tmp_path / "out" / f"dissection-{layer}.csv").read_text().count("\n") == 1 + len(got.table)


def test_the_shapes_export_dissected_equals_dissect_on_the_same_images(tmp_path):
    write_shapes_broden(tmp_path / "broden", 24, seed=5)
    net = models.shapes_vgg(seed=3)
    got = dissect_source(net, BrodenSource(tmp_path / "broden"), ["relu2_2", "relu3_2"], tmp_path / "out",
                         batch_size=8, shard_size=8, progress=False)
    shapes = data.make_shapes(24, seed=5)
    shapes.images = np.round(shapes.images * 255).astype(np.uint8).astype(np.float32) / np.float32(255)
    assert BrodenSource(tmp_path / "broden").concept_names == data.concept_names()
    assert BrodenSource(tmp_path / "broden").concept_categories() == data.concept_categories()
    for layer in ("relu2_2", "relu3_2"):
        expected = dissect(net, shapes, layer, batch_size=8, progress=False)
        np.testing.assert_array_equal(got[layer].thresholds, expected.thresholds)
        np.testing.assert_array_equal(got[layer].iou, expected.iou)
        assert got[layer].table == expected.table


def test_a_broden_dataset_can_be_indexed_too(tmp_path):
    write_shapes_broden(tmp_path / "broden", 10, seed=6)
    net = models.shapes_vgg(seed=3)
    index = build_index(net, BrodenSource(tmp_path / "broden"), ["relu3_2"], tmp_path / "idx", k=2, batch_size=4,
                        shard_size=4, progress=False)
    shapes = data.make_shapes(10, seed=6)
    hit = index.top("relu3_2", 0)[0]
    assert index.name_of(hit.image_id) == f"shapes/{hit.image_id:06d}.png"
    np.testing.assert_array_equal(index.display(hit.image_id),
                                  np.round(shapes.images[hit.image_id] * 255).astype(np.uint8) / np.float32(255))


def rewrite_csv(path, change):
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    write_csv(path, change(rows))


def test_a_file_missing_a_column_is_named_with_the_column(tmp_path):
    write_fixture(tmp_path)
    rewrite_csv(tmp_path / "index.csv", lambda rows: [row[:5] + row[6:] for row in rows])  # drop "sw"
    with pytest.raises(BrodenError, match=r"index.csv: line 1 \(the header\) has no column 'sw'"):
        BrodenSource(tmp_path)
    write_fixture(tmp_path / "b")
    rewrite_csv(tmp_path / "b" / "index.csv", lambda rows: [row[:-1] for row in rows])  # drop the object column
    with pytest.raises(BrodenError, match="index.csv: line 1 .* no column 'object'"):
        BrodenSource(tmp_path / "b")
    write_fixture(tmp_path / "c")
    rewrite_csv(tmp_path / "c" / "label.csv", lambda rows: [row[1:] for row in rows])
    with pytest.raises(BrodenError, match="label.csv: line 1 .* no column 'number'"):
        BrodenSource(tmp_path / "c")
    write_fixture(tmp_path / "d")
    (tmp_path / "d" / "c_scene.csv").unlink()
    with pytest.raises(BrodenError, match="c_scene.csv not found"):
        BrodenSource(tmp_path / "d")


def test_a_missing_or_wrong_png_is_named_with_its_row(tmp_path):
    write_fixture(tmp_path / "a")
    (tmp_path / "a" / "images" / "im2_color.png").unlink()
    with pytest.raises(BrodenError, match=r"index.csv: line 4 \(im2.png\), column 'color': mask .*im2_color.png not found"):
        BrodenSource(tmp_path / "a")
    write_fixture(tmp_path / "b")
    png_labels(tmp_path / "b" / "images" / "im4_color.png", np.full((SIDE, SIDE), 3))  # disc is no color label
    source = BrodenSource(tmp_path / "b")
    with pytest.raises(BrodenError, match=r"line 6 \(im4.png\), column 'color': mask .*im4_color.png holds label "
                                          "number 3, which is not a color label"):
        dissect_source(small_net(), source, ["relu2"], tmp_path / "out-b", batch_size=3, shard_size=3, progress=False)
    write_fixture(tmp_path / "c")
    png_labels(tmp_path / "c" / "images" / "im1_color.png", np.ones((SIDE, SIDE - 1), dtype=np.int64))
    with pytest.raises(BrodenError, match=r"line 3 \(im1.png\).*is 16x15, index.csv says sh,sw = \(16, 16\)"):
        dissect_source(small_net(), BrodenSource(tmp_path / "c"), ["relu2"], tmp_path / "out-c", batch_size=3,
                       shard_size=3, progress=False)
    write_fixture(tmp_path / "d")
    rewrite_csv(tmp_path / "d" / "index.csv", lambda rows: rows[:3] + [rows[3][:6] + ["x7", "", ""]] + rows[4:])
    with pytest.raises(BrodenError, match=r"index.csv: line 4, column 'scene': 'x7' is not an integer"):
        BrodenSource(tmp_path / "d")


def test_the_cli_names_the_broken_file_in_one_line(tmp_path, capsys):
    write_fixture(tmp_path / "broden")
    rewrite_csv(tmp_path / "broden" / "index.csv", lambda rows: [row[1:] for row in rows])  # no "image" column
    status = main(["dissect", "--model", "shapes_vgg", "--init-seed", "0", "--layers", "relu3_2", "--broden",
                   str(tmp_path / "broden"), "--out", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert error.startswith("minicnn dissect: error: ") and "index.csv: line 1 (the header) has no column 'image'" in error
