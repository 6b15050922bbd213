"""The pointing game on held-out shapes images: does each method's map point at the object?

    python -m minicnn.recipes.pointing_game --n 3000 --out docs/results/pointing-game.md   # the docs page
    python -m minicnn.recipes.pointing_game --n 20               # a quick run (default 500 images)
    python -m minicnn.recipes.pointing_game --random             # untrained weights (numbers will be low)

For every image and method we take the map for the TRUE class and score it with
minicnn.viz.pointing: a hit when the map's maximum lies inside the object's mask dilated by 2 px
(ties go to the maximum pixel nearest their centroid; a constant map is a miss). The centre baseline
always points at the image centre.

Models: CAM needs a GAP + linear head, so it runs on shapes_cam; every other method runs on
shapes_vgg; Grad-CAM runs on both, at the ReLU after the last conv layer of each. The methods are
minicnn.evaluate's (DeconvNet sent back from the class score), the tables minicnn.evaluate.pointing's;
`minicnn evaluate --metrics pointing` plays the same game on one model.
Images: make_shapes(n, seed=HELD_OUT_SEED), a seed never used for training.
--out FILE writes the tables as a page that names the command which produced it; hand-written notes
below NOTES_MARKER in an existing FILE are kept.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from minicnn.data import CLASS_NAMES, HELD_OUT_SEED, iter_shapes
from minicnn.evaluate.methods import Options, describe, method_maps
from minicnn.evaluate.pointing import Score, per_class_lines, rule_line, score_maps, table_lines, target_lines
from minicnn.models import load_pretrained, shapes_cam, shapes_vgg
from minicnn.recipes.train_shapes import kept_notes
from minicnn.viz.pointing import centre_maps


NOTES_MARKER = "<!-- hand-written notes: pointing_game.py keeps everything below this line -->"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="number of held-out images (default 500)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="dataset seed of the held-out images")
    parser.add_argument("--out", default=None, help="also write the tables as a Markdown page to this file")
    parser.add_argument("--random", action="store_true", help="use untrained (random) weights")
    parser.add_argument("--weights-dir", default=None, help="folder with shapes_cam.npz / shapes_vgg.npz")
    parser.add_argument("--batch-size", type=int, default=50, help="images per batch")
    parser.add_argument("--smooth", type=int, default=12, help="SmoothGrad: noisy copies per image")
    parser.add_argument("--sigma", type=float, default=0.15, help="SmoothGrad: noise std / (max - min)")
    parser.add_argument("--occlusion-size", type=int, default=12, help="occluding square's side (pixels)")
    parser.add_argument("--occlusion-stride", type=int, default=6, help="occluding square's stride")
    return parser.parse_args(argv)


def load_models(random, weights_dir):
    """{"shapes_cam": net, "shapes_vgg": net} and a note on which weights they hold."""
    if random:
        return {"shapes_cam": shapes_cam(seed=0).eval(), "shapes_vgg": shapes_vgg(seed=0).eval()}, \
            "RANDOM (untrained, seed 0): the numbers below mean nothing about the methods"
    try:
        models = {name: load_pretrained(name, weights_dir) for name in ("shapes_cam", "shapes_vgg")}
    except FileNotFoundError as error:
        print(f"WARNING: trained weights not found ({error}); falling back to RANDOM weights", file=sys.stderr)
        return load_models(True, weights_dir)
    where = weights_dir or "the repository's weights/"
    return models, f"load_pretrained from {where} (checksums verified)"


# the table's rows: (method, model) in order; CAM needs shapes_cam's GAP head, Grad-CAM runs on both
ROWS = [("saliency", "shapes_vgg"), ("SmoothGrad", "shapes_vgg"), ("guided backprop", "shapes_vgg"),
        ("deconvnet", "shapes_vgg"), ("occlusion", "shapes_vgg"), ("CAM", "shapes_cam"),
        ("Grad-CAM", "shapes_cam"), ("Grad-CAM", "shapes_vgg")]


def methods(args, models):
    """[(row name, model name, map function (images, labels) -> (N, H, W), what the map is)] in table order."""
    options = Options(args.smooth, args.sigma, args.occlusion_size, args.occlusion_stride)

    def maps_of(method, net):
        return lambda x, y: method_maps(net, method, x, y, options).map

    rows = [(method, model, maps_of(method, models[model]), describe(method, options)) for method, model in ROWS]
    return rows + [("centre baseline", "-", lambda x, y: centre_maps(len(x), x.shape[2:]), "the image centre")]


def play(args, models, rows):
    """Run every method over the held-out images, batch by batch: ([Score per row], labels (n,), correct)."""
    hits, constant, seconds = [[] for _ in rows], [0] * len(rows), [0.0] * len(rows)
    correct = {name: 0 for name in models}
    labels = []
    for batch in iter_shapes(args.n, seed=args.seed, batch_size=args.batch_size):
        labels.append(batch.labels)
        for name, net in models.items():
            correct[name] += int((net.forward(batch.images).argmax(axis=1) == batch.labels).sum())
        for i, row in enumerate(rows):
            start = time.perf_counter()
            batch_hits, batch_constant = score_maps(row[2](batch.images, batch.labels), batch.masks)
            hits[i].append(batch_hits)
            constant[i] += batch_constant
            seconds[i] += time.perf_counter() - start
        print(f"  {min(batch.indices[-1] + 1, args.n)}/{args.n} images", file=sys.stderr)
    scores = [Score(np.concatenate(h), c, t) for h, c, t in zip(hits, constant, seconds)]
    return scores, np.concatenate(labels), correct


def markdown(args, rows, scores, labels, correct, weights_note):
    """The tables: pointing accuracy with its 95% interval, the targets, and hits per class."""
    n = args.n
    rows = [(method, model, note) for method, model, _, note in rows]
    lines = [
        f"Pointing game on {n} held-out shapes images (make_shapes seed {args.seed}); {rule_line()}. "
        f"Weights: {weights_note}.",
        "Classification accuracy on these images: "
        + ", ".join(f"{name} {100 * c / n:.1f}%" for name, c in correct.items()) + ".",
        "",
    ]
    lines += table_lines(rows, scores) + [""]
    lines += target_lines(rows, scores, n) + [""] + per_class_lines(rows, scores, labels, CLASS_NAMES)
    return "\n".join(lines) + "\n"


def page(argv, table, notes=""):
    """The docs page: a title, the command that produced the tables (from argv), the tables, then notes."""
    command = " ".join(["python -m minicnn.recipes.pointing_game", *argv])
    return (f"# The pointing game\n\nProduced by `{command}` (the tables below are its output; "
            f"re-running it rewrites them and keeps the notes at the end).\n\n{table}{notes}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.n < 1:
        raise SystemExit(f"--n must be >= 1, got {args.n}")
    models, weights_note = load_models(args.random, args.weights_dir)
    rows = methods(args, models)
    scores, labels, correct = play(args, models, rows)
    table = markdown(args, rows, scores, labels, correct, weights_note)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page(argv, table, kept_notes(out, NOTES_MARKER)))
        print(f"page written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
