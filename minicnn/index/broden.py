"""Broden-format datasets (Bau et al. 2017, as NetDissect and NetDissect-Lite read them): a reader for
dissection, and a writer that exports the shapes concepts in the same format, so one reader serves both.

A Broden folder holds
    index.csv        image,split,ih,iw,sh,sw,<one column per category>   (columns read by name)
                     a category cell is empty, or a ';'-separated list of label numbers (whole-image
                     labels) or of PNG files whose pixel label is R + 256 * G (0 = unlabelled)
    category.csv     name,first,last,count,frequency
    label.csv        number,name,category,frequency,coverage,syns     (number 0, if present, is "-")
    c_<category>.csv code,number,name,frequency,coverage              (the labels of one category)
    images/          the images and the PNG masks; paths in index.csv are relative to it

The concepts (the dissection's columns) are the labels of label.csv with number >= 1, in the order of
their numbers. L_c(x) is the union of every pixel of image x with
label c in any category's PNG, or the whole image when c is one of x's whole-image labels. The
images are used at their own size (ih x iw, normalised as the model wants, never resized), the
masks at sh x sw; the activations are up-sampled to sh x sw.

    python -m minicnn.index.broden OUT --shapes N --seed S     writes the shapes export
"""
import argparse
import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_int_at_least
from .sources import Batch, Concepts, read_rgb, shapes_preprocessing

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
CATEGORY_COLUMNS = ("name", "first", "last", "count", "frequency")
LABEL_COLUMNS = ("number", "name", "category", "frequency", "coverage", "syns")
CODE_COLUMNS = ("code", "number", "name", "frequency", "coverage")


class BrodenError(ValueError):
    """A Broden file that does not follow the format; the message names the file and the row."""


def read_csv(path, required):
    """The rows of a CSV file as dicts, after checking that every required column is there."""
    path = Path(path)
    if not path.is_file():
        raise BrodenError(f"{path} not found: a Broden dataset needs index.csv, category.csv, label.csv and "
                          "c_<category>.csv for every category")
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        missing = [name for name in required if name not in columns]
        if missing:
            raise BrodenError(f"{path}: line 1 (the header) has no column {', '.join(map(repr, missing))}; "
                              f"it has {columns}")
        return list(reader)


def _int(value, path, line, column):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BrodenError(f"{path}: line {line}, column {column!r}: {value!r} is not an integer") from None


class Row(NamedTuple):
    """One image of index.csv: its file, where it was read (line), and per category the whole-image
    label numbers and the mask PNGs."""

    line: int
    image: str
    whole: tuple   # ((category, label number), ...)
    masks: tuple   # ((category, png name), ...)


class BrodenSource:
    """The images of a Broden dataset, with their concept masks (for dissection) and preprocessing."""

    kind = "broden"

    def __init__(self, root, preprocessing=None):
        self.root = Path(root).resolve()
        self.preprocessing = preprocessing or shapes_preprocessing()
        categories = [row["name"] for row in read_csv(self.root / "category.csv", CATEGORY_COLUMNS)]
        self.labels = self._read_labels()
        self.number_to_concept = {number: c for c, number in enumerate(sorted(self.labels))}
        self.concept_names = tuple(self.labels[number] for number in sorted(self.labels))
        self.category_labels = {category: self._read_codes(category) for category in categories}
        self.rows, self.image_hw, self.seg_hw = self._read_index(categories)

    def _read_labels(self):
        path = self.root / "label.csv"
        labels = {}
        for line, row in enumerate(read_csv(path, LABEL_COLUMNS), start=2):
            number = _int(row["number"], path, line, "number")
            if number >= 1:
                labels[number] = row["name"]
        if not labels:
            raise BrodenError(f"{path}: no label with a number >= 1")
        return labels

    def _read_codes(self, category):
        path = self.root / f"c_{category}.csv"
        numbers = set()
        for line, row in enumerate(read_csv(path, CODE_COLUMNS), start=2):
            number = _int(row["number"], path, line, "number")
            if number not in self.labels:
                raise BrodenError(f"{path}: line {line}: label number {number} is not in label.csv")
            numbers.add(number)
        return numbers

    def _read_index(self, categories):
        path = self.root / "index.csv"
        rows, image_hw, seg_hw = [], None, None
        for line, row in enumerate(read_csv(path, INDEX_COLUMNS + tuple(categories)), start=2):
            sizes = tuple(_int(row[name], path, line, name) for name in ("ih", "iw", "sh", "sw"))
            image_hw, seg_hw = image_hw or sizes[:2], seg_hw or sizes[2:]
            if (sizes[:2], sizes[2:]) != (image_hw, seg_hw):
                raise BrodenError(f"{path}: line {line} ({row['image']}): size ih,iw,sh,sw = {sizes}, but line 2 has "
                                  f"{image_hw + seg_hw}; minicnn needs every image (and every mask) the same size")
            whole, masks = [], []
            for category in categories:
                for entry in (part.strip() for part in (row[category] or "").split(";")):
                    if not entry:
                        continue
                    if entry.lower().endswith(".png"):
                        if not (self.root / "images" / entry).is_file():
                            raise BrodenError(f"{path}: line {line} ({row['image']}), column {category!r}: mask "
                                              f"{self.root / 'images' / entry} not found")
                        masks.append((category, entry))
                    else:
                        number = _int(entry, path, line, category)
                        self._check_label(number, category, f"{path}: line {line} ({row['image']})")
                        whole.append((category, number))
            rows.append(Row(line, row["image"], tuple(whole), tuple(masks)))
        if not rows:
            raise BrodenError(f"{path} lists no image")
        return rows, image_hw, seg_hw

    def _check_label(self, number, category, where):
        if number not in self.category_labels[category]:
            raise BrodenError(f"{where}, column {category!r}: label number {number} is not a {category} label "
                              f"(c_{category}.csv lists {len(self.category_labels[category])} labels)")

    def __len__(self):
        return len(self.rows)

    def concept_categories(self):
        """{concept name: category}: the first category of category.csv whose c_<category>.csv lists it."""
        categories = {}
        for category, numbers in self.category_labels.items():
            for number in sorted(numbers):
                categories.setdefault(self.labels[number], category)
        return categories

    @property
    def input_hw(self):
        return self.image_hw

    def describe(self):
        return {"kind": self.kind, "root": str(self.root), "count": len(self.rows), "concepts": len(self.concept_names)}

    def part(self, start, stop):
        return BrodenPart(str(self.root), tuple(self.rows[start:stop]), start, self.preprocessing, self.image_hw,
                          self.seg_hw, self.number_to_concept, self.category_labels)

    def display(self, image_id):
        return read_rgb(self.root / "images" / self.rows[image_id].image)

    def network_input(self, image_id):
        return self.preprocessing.network_input(self.display(image_id))

    def name_of(self, image_id):
        return self.rows[image_id].image


def decode_labels(path):
    """A Broden mask PNG -> (h, w) int64 pixel labels R + 256 * G."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode not in ("RGB", "RGBA"):
                raise ValueError(f"it is a {picture.mode!r} image; Broden masks are RGB (label = R + 256 * G)")
            pixels = np.asarray(picture.convert("RGB"), dtype=np.int64)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read it as an image ({type(error).__name__}: {error})") from None
    return pixels[:, :, 0] + 256 * pixels[:, :, 1]


class BrodenPart(NamedTuple):
    root: str
    rows: tuple
    first_id: int
    preprocessing: object
    image_hw: tuple
    seg_hw: tuple
    number_to_concept: dict
    category_labels: dict

    def __len__(self):
        return len(self.rows)

    def batches(self, batch_size, with_concepts=False):
        for offset in range(0, len(self.rows), batch_size):
            ids, images, skipped, labels, masks = [], [], [], [], []
            for image_id in range(self.first_id + offset, self.first_id + min(offset + batch_size, len(self.rows))):
                row = self.rows[image_id - self.first_id]
                try:
                    rgb = read_rgb(Path(self.root) / "images" / row.image)
                    if rgb.shape[1:] != self.image_hw:
                        raise ValueError(f"it is {rgb.shape[1]}x{rgb.shape[2]}, index.csv says {self.image_hw}")
                except ValueError as error:
                    skipped.append((image_id, row.image, str(error)))
                    continue
                ids.append(image_id)
                images.append(self.preprocessing.network_input(rgb))
                if with_concepts:
                    concept_labels, concept_masks = self.concepts_of(row)
                    labels.append(concept_labels)
                    masks.append(concept_masks)
            concepts = Concepts(self.seg_hw, labels, masks) if with_concepts else None
            stacked = np.stack(images) if images else np.zeros((0, 3, *self.image_hw), np.float32)
            yield Batch(np.array(ids, dtype=np.int64), stacked, skipped, concepts)

    def concepts_of(self, row):
        """(concept indices (m,), masks (m, sh, sw) bool) of one index.csv row: each concept once, the
        union of its pixels over every category's PNG, the whole image for a whole-image label."""
        union = {}
        for category, number in row.whole:
            union[number] = np.ones(self.seg_hw, dtype=bool)
        index_csv = Path(self.root) / "index.csv"
        for category, name in row.masks:
            path = Path(self.root) / "images" / name
            try:
                pixels = decode_labels(path)
            except (ValueError, FileNotFoundError) as error:
                raise BrodenError(f"{index_csv}: line {row.line} ({row.image}), column {category!r}: mask {path}: "
                                  f"{error}") from None
            if pixels.shape != self.seg_hw:
                raise BrodenError(f"{index_csv}: line {row.line} ({row.image}), column {category!r}: mask {path} is "
                                  f"{pixels.shape[0]}x{pixels.shape[1]}, index.csv says sh,sw = {self.seg_hw}")
            for number in np.unique(pixels[pixels > 0]).tolist():
                if number not in self.category_labels[category]:
                    raise BrodenError(f"{index_csv}: line {row.line} ({row.image}), column {category!r}: mask {path} "
                                      f"holds label number {number}, which is not a {category} label")
                union[number] = union.get(number, np.zeros(self.seg_hw, dtype=bool)) | (pixels == number)
        numbers = sorted(union)
        labels = np.array([self.number_to_concept[n] for n in numbers], dtype=np.int64)
        masks = np.stack([union[n] for n in numbers]) if numbers else np.zeros((0, *self.seg_hw), dtype=bool)
        return labels, masks


# ----------------------------------------------------------------------------------------------
# the shapes concepts as a Broden dataset

def _shapes_label_plan():
    """[(category, [(label number, name), ...]), ...]: the shapes concepts by category
    (minicnn.data.CONCEPT_CATEGORIES), numbered 1.. in the order of minicnn.data.concept_names()."""
    from .. import data

    plan, number = [], 1
    for category, names in data.CONCEPT_CATEGORIES:
        plan.append((category, [(number + i, name) for i, name in enumerate(names)]))
        number += len(names)
    return plan


def _encode(labels):
    """(h, w) label numbers -> (h, w, 3) uint8 RGB with R + 256 * G = label."""
    return np.stack([labels % 256, labels // 256, np.zeros_like(labels)], axis=-1).astype(np.uint8)


def _write_csv(path, columns, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows(rows)


def write_shapes_broden(out, n, seed=0, size=64, distractor=False, batch_size=256):
    """Write images 0 .. n-1 of make_shapes(n, seed, size, distractor) as a Broden dataset in `out`.

    Each image is saved as an 8-bit PNG (so the dataset's images are the generated ones rounded to
    bytes) with one mask PNG per category: object (the ten classes), color, texture, region
    ("background": neither object nor distractor). Label numbers 1, 2, ... follow concept_names().
    Returns the Path of the folder.
    """
    from PIL import Image

    from ..data import iter_shapes

    out = Path(out)
    n = check_int_at_least(n, "n", 1)
    (out / "images").mkdir(parents=True, exist_ok=True)
    plan = _shapes_label_plan()
    count = sum(len(labels) for _, labels in plan)
    pixels = np.zeros(count, dtype=np.int64)  # per label: pixels over the dataset
    images_with = np.zeros(count, dtype=np.int64)
    category_images = np.zeros(len(plan), dtype=np.int64)  # per category: images with any of its labels
    index_rows = []
    for batch in iter_shapes(n, seed=seed, batch_size=batch_size, size=size, distractor=distractor):
        _, masks = batch.concepts()  # (b, 23, S, S), in label-number order
        pixels += masks.sum(axis=(0, 2, 3))
        images_with += masks.any(axis=(2, 3)).sum(axis=0)
        for image, image_masks, index in zip(batch.images, masks, batch.indices):
            stem = f"shapes/{index:06d}"
            (out / "images" / "shapes").mkdir(exist_ok=True)
            Image.fromarray(np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(out / "images" / f"{stem}.png")
            cells, first = [], 0
            for c, (category, labels) in enumerate(plan):
                category_images[c] += image_masks[first:first + len(labels)].any()
                label_map = np.zeros((size, size), dtype=np.int64)
                for offset, (number, _) in enumerate(labels):
                    label_map[image_masks[first + offset]] = number
                first += len(labels)
                Image.fromarray(_encode(label_map)).save(out / "images" / f"{stem}_{category}.png")
                cells.append(f"{stem}_{category}.png")
            index_rows.append([f"{stem}.png", "train", size, size, size, size, *cells])
    _write_csv(out / "index.csv", list(INDEX_COLUMNS) + [category for category, _ in plan], index_rows)
    coverage = pixels / np.maximum(images_with, 1) / (size * size)
    label_rows, category_rows = [[0, "-", "-", 0, 0.0, ""]], []
    for (category, labels), frequency in zip(plan, category_images):
        rows = [[number, name, f"{category}({images_with[number - 1]})", images_with[number - 1],
                 f"{coverage[number - 1]:.6f}", ""] for number, name in labels]
        label_rows += rows
        category_rows.append([category, labels[0][0], labels[-1][0], len(labels), frequency])
        _write_csv(out / f"c_{category}.csv", CODE_COLUMNS,
                   [[code, number, name, images_with[number - 1], f"{coverage[number - 1]:.6f}"]
                    for code, (number, name) in enumerate(labels, start=1)])
    _write_csv(out / "label.csv", LABEL_COLUMNS, label_rows)
    _write_csv(out / "category.csv", CATEGORY_COLUMNS, category_rows)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.index.broden",
                                     description="Write the shapes concepts as a small Broden-format dataset.")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--shapes", type=int, default=500, metavar="N", help="number of images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=12345, help="generator seed (default %(default)s, held out)")
    parser.add_argument("--size", type=int, default=64, help="image side (default %(default)s)")
    args = parser.parse_args(argv)
    print(f"wrote {write_shapes_broden(args.out, args.shapes, args.seed, args.size)}")


if __name__ == "__main__":
    main()
