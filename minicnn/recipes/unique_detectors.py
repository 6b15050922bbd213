"""Unique detectors per network, by concept category (Bau et al. 2017's comparison across architectures).

    python -m minicnn.recipes.unique_detectors --out unique-detectors          # the shapes networks
    python -m minicnn.recipes.unique_detectors --out ud --broden BRODEN_DIR --broden-model vgg16

Each network's last convolutional layer (after its ReLU) is dissected (minicnn.viz.dissection) on
--n held-out shapes images (data.HELD_OUT_SEED, distractors half the time): shapes_cam, shapes_vgg,
shapes_vgg_colour (shapes_vgg fine-tuned to name colours, recipes/finetune_colour.py), and the two
architectures with random weights (init seed 0). A unit is a detector of its best concept when the IoU
exceeds 0.04; the unique detectors of a category are the distinct concepts of that category that some
unit detects (minicnn.evaluate.units). With --broden, one more network (--broden-model: vgg16 by default,
weights from --weights or the fetch_weights cache; or alexnet, or a shapes network) is dissected over a
Broden-format dataset (minicnn.index.dissect_source, streamed), its categories those of the dataset.
Writes <out>/unique_detectors.csv (network, layer, category, count, concepts), unique_detectors.md and
unique_detectors.png (bars stacked by category).
"""
import argparse
import csv
import sys
from pathlib import Path

from minicnn import data, models
from minicnn.evaluate.units import counted, label_counts, unique_detectors, unique_detectors_figure
from minicnn.viz.dissection import dissect

# (title, how to build the network, layer dissected): the last ReLU after a convolution of each
SHAPES_NETWORKS = (
    ("shapes_cam", lambda: models.load_pretrained("shapes_cam"), "relu4"),
    ("shapes_vgg", lambda: models.load_pretrained("shapes_vgg"), "relu3_2"),
    ("shapes_vgg_colour", lambda: models.load_pretrained("shapes_vgg_colour"), "relu3_2"),
    ("shapes_cam, random", lambda: models.shapes_cam(seed=0).eval(), "relu4"),
    ("shapes_vgg, random", lambda: models.shapes_vgg(seed=0).eval(), "relu3_2"),
)


def shapes_rows(n, seed, batch_size=64):
    """[(title, layer, Dissection, categories)] of every shapes network on n images of the seed."""
    images = data.make_shapes(n, seed=seed, distractor=0.5)
    rows = []
    for title, build, layer in SHAPES_NETWORKS:
        print(f"dissecting {title} {layer} on {n} images", flush=True)
        rows.append((title, layer, dissect(build(), images, layer, batch_size=batch_size), data.concept_categories()))
    return rows


# the layer dissected over a Broden dataset when --broden-layer is not given
BRODEN_LAYERS = {"vgg16": "features_29", "alexnet": "features_11", "shapes_vgg": "relu3_2", "shapes_cam": "relu4"}


def broden_row(name, weights, broden, layer, out):
    """(title, layer, Dissection, categories) of a network (index.model.MODEL_NAMES) over a Broden dataset."""
    from minicnn.index import BrodenSource, ModelSpec, dissect_source
    from minicnn.index.model import loaded

    spec = ModelSpec(name, None if weights is None else str(weights))
    _, preprocessing = loaded(spec)
    source = BrodenSource(broden, preprocessing)
    dissection = dissect_source(spec, source, [layer], Path(out) / f"dissect-{name}", progress=False)[layer]
    return (f"{name} (Broden)", layer, dissection, source.concept_categories())


def table(rows):
    """The Markdown table: per network, detectors and unique detectors per category (with their names)."""
    categories = list(dict.fromkeys(c for *_, cats in rows for c in cats.values()))
    lines = ["| network | layer | units | detectors | " + " | ".join(f"unique {c}" for c in categories)
             + " | unique in all |", "|---|---|---:|---:|" + "---|" * (len(categories) + 1)]
    for title, layer, dissection, cats in rows:
        found = unique_detectors(dissection, cats)
        cells = [counted(found.get(c, ())) for c in categories]
        total = sum(len(names) for names in found.values())
        lines.append(f"| {title} | {layer} | {len(dissection.table)} | {len(dissection.detectors)} | "
                     + " | ".join(cells) + f" | {total} |")
    return "\n".join(lines) + "\n"


def write_csv(path, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["network", "layer", "category", "unique_detectors", "units_labelled", "concepts"])
        for title, layer, dissection, cats in rows:
            counts = label_counts(dissection, cats)
            for category, names in unique_detectors(dissection, cats).items():
                writer.writerow([title, layer, category, len(names), counts[category], ";".join(names)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="held-out shapes images to dissect on")
    parser.add_argument("--seed", type=int, default=data.HELD_OUT_SEED, help="their data seed")
    parser.add_argument("--out", type=Path, default=Path("unique-detectors"))
    parser.add_argument("--broden", type=Path, help="a Broden-format dataset: one more network is dissected over it")
    parser.add_argument("--broden-model", choices=tuple(BRODEN_LAYERS), default="vgg16", help="that network")
    parser.add_argument("--weights", type=Path, help="its weight file (default: the shipped weights or the "
                                                     "fetch_weights cache)")
    parser.add_argument("--broden-layer", default=None, help="its layer (default: BRODEN_LAYERS)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = shapes_rows(args.n, args.seed)
    if args.broden is not None:
        layer = args.broden_layer or BRODEN_LAYERS[args.broden_model]
        rows.append(broden_row(args.broden_model, args.weights, args.broden, layer, args.out))
    text = table(rows)
    (args.out / "unique_detectors.md").write_text(text)
    write_csv(args.out / "unique_detectors.csv", rows)
    figure_rows = [(title, unique_detectors(dissection, cats)) for title, _, dissection, cats in rows]
    categories = {name: category for *_, cats in rows for name, category in cats.items()}
    unique_detectors_figure(figure_rows, categories, args.out / "unique_detectors.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
