"""The pointing game on held-out shapes images: does each method's map point at the object?

    python -m minicnn.recipes.pointing_game --n 3000 --out docs/results/pointing-game.md   # the docs page
    python -m minicnn.recipes.pointing_game --n 20               # a quick run (default 500 images)
    python -m minicnn.recipes.pointing_game --random             # untrained weights (numbers will be low)

For every image and method we take the map for the TRUE class and score it with
minicnn.viz.pointing: a hit when the map's maximum lies inside the object's mask dilated by 2 px
(ties go to the maximum pixel nearest their centroid; a constant map is a miss). The centre baseline
always points at the image centre.

Models: CAM needs a GAP + linear head, so it runs on shapes_cam; every other method runs on
shapes_vgg; Grad-CAM runs on both, at the ReLU after the last conv layer of each.
Images: make_shapes(n, seed=HELD_OUT_SEED), a seed never used for training.
--out FILE writes the tables as a page that names the command which produced it; hand-written notes
below NOTES_MARKER in an existing FILE are kept.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.stats import binomtest

from minicnn.data import CLASS_NAMES, HELD_OUT_SEED, iter_shapes
from minicnn.models import load_pretrained, shapes_cam, shapes_vgg
from minicnn.recipes.train_shapes import kept_notes
from minicnn.viz.attribution import guided_backprop, occlusion, saliency
from minicnn.viz.cam import cam, grad_cam, last_conv_layer
from minicnn.viz.search import deconvnet
from minicnn.viz.pointing import TOLERANCE, centre_maps, pointed_pixel, pointing_hits



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


# ----------------------------------------------------------------------------------------------
# models


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


# ----------------------------------------------------------------------------------------------
# the methods: each maps (net, images, labels) to one (N, H, W) map per image


def methods(args, models):
    """[(row name, model name, map function, what the map is)] in table order."""
    vgg, cam_net = models["shapes_vgg"], models["shapes_cam"]
    vgg_layer, cam_layer = last_conv_layer(vgg), last_conv_layer(cam_net)
    rows = [
        ("saliency", "shapes_vgg", lambda x, y: saliency(vgg, x, y).map, "max over channels of abs(dS/dx)"),
        ("SmoothGrad", "shapes_vgg",
         lambda x, y: saliency(vgg, x, y, smooth=args.smooth, sigma=args.sigma).map,
         f"mean of {args.smooth} saliency maps, sigma {args.sigma}"),
        ("guided backprop", "shapes_vgg", lambda x, y: guided_backprop(vgg, x, y).map, "max over channels of abs(guided signal)"),
        ("deconvnet", "shapes_vgg", lambda x, y: deconvnet_maps(vgg, x, vgg_layer),
         f"strongest channel of {vgg_layer}, max over channels of abs(reconstruction)"),
        ("occlusion", "shapes_vgg",
         lambda x, y: occlusion(vgg, x, y, args.occlusion_size, args.occlusion_stride, progress=False).heatmap,
         f"mean drop of p(class), square {args.occlusion_size}, stride {args.occlusion_stride}, mean fill"),
        ("CAM", "shapes_cam", lambda x, y: cam(cam_net, x, y).upsampled, f"sum_k w_k A_k at {cam_layer}, bilinear"),
        ("Grad-CAM", "shapes_cam", lambda x, y: grad_cam(cam_net, x, y, cam_layer).upsampled, f"at {cam_layer}"),
        ("Grad-CAM", "shapes_vgg", lambda x, y: grad_cam(vgg, x, y, vgg_layer).upsampled, f"at {vgg_layer}"),
        ("centre baseline", "-", lambda x, y: centre_maps(len(x), x.shape[2:]), "the image centre"),
    ]
    return rows


def deconvnet_maps(net, images, layer):
    """DeconvNet from the channel of `layer` with the largest maximum activation, per image."""
    activations = net.forward(images, upto=layer)
    channels = activations.max(axis=(2, 3)).argmax(axis=1)
    maps = []
    for image, channel in zip(images, channels):
        reconstruction = deconvnet(net, image[None], layer, int(channel)).reconstruction  # (C, H, W)
        maps.append(np.abs(reconstruction).max(axis=0))
    return np.stack(maps)


# ----------------------------------------------------------------------------------------------
# playing and scoring


TARGET = 0.90  # the target pointing accuracy for these methods:
TARGETED = {("CAM", "shapes_cam"), ("Grad-CAM", "shapes_cam"), ("Grad-CAM", "shapes_vgg"), ("occlusion", "shapes_vgg")}


class Score(NamedTuple):
    """One method over the held-out images: hits (n,) bool, one per image; constant maps; seconds."""

    hits: np.ndarray
    constant: int
    seconds: float

    @property
    def total(self):
        return int(self.hits.sum())


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
            maps = row[2](batch.images, batch.labels)
            hits[i].append(pointing_hits(maps, batch.masks))
            constant[i] += sum(pointed_pixel(m) is None for m in maps)
            seconds[i] += time.perf_counter() - start
        print(f"  {min(batch.indices[-1] + 1, args.n)}/{args.n} images", file=sys.stderr)
    scores = [Score(np.concatenate(h), c, t) for h, c, t in zip(hits, constant, seconds)]
    return scores, np.concatenate(labels), correct


def wilson_interval(hits, n):
    """The 95% Wilson score interval of a hit rate hits / n (scipy.stats.binomtest): (low, high)."""
    interval = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def markdown(args, rows, scores, labels, correct, weights_note):
    """The README's tables: pointing accuracy with its 95% interval, the targets, and hits per class."""
    n = args.n
    lines = [
        f"Pointing game on {n} held-out shapes images (make_shapes seed {args.seed}); "
        f"hit = the map's maximum lies in the object mask dilated by {TOLERANCE} px. Weights: {weights_note}.",
        "Classification accuracy on these images: "
        + ", ".join(f"{name} {100 * c / n:.1f}%" for name, c in correct.items()) + ".",
        "",
        "| method | model | map | pointing accuracy | 95% interval | hits | constant maps | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (method, model, _, note), score in zip(rows, scores):
        note = note.replace("|", "\\|")  # a bare | would end the table cell
        hit = score.total
        low, high = wilson_interval(hit, n)
        lines.append(f"| {method} | {model} | {note} | {100 * hit / n:.1f}% | {100 * low:.1f}-{100 * high:.1f}% "
                     f"| {hit}/{n} | {score.constant} | {score.seconds:.1f} |")
    baseline = scores[-1].total
    below = [f"{method} ({model})" for (method, model, _, _), score in zip(rows[:-1], scores[:-1])
             if score.total <= baseline]
    lines += ["", "Not above the centre baseline: " + (", ".join(below) if below else "none") + ".", ""]
    lines += target_lines(rows, scores, n) + [""] + per_class_lines(rows, scores, labels)
    return "\n".join(lines) + "\n"


def page(argv, table, notes=""):
    """The docs page: a title, the command that produced the tables (from argv), the tables, then notes."""
    command = " ".join(["python -m minicnn.recipes.pointing_game", *argv])
    return (f"# The pointing game\n\nProduced by `{command}` (the tables below are its output; "
            f"re-running it rewrites them and keeps the notes at the end).\n\n{table}{notes}")


def target_lines(rows, scores, n):
    """One line per target: met or not by the point estimate, and whether the 95% interval is clear of it."""
    lines = []
    for (method, model, _, _), score in zip(rows, scores):
        if (method, model) not in TARGETED:
            continue
        hit = score.total
        low, high = wilson_interval(hit, n)
        verdict = "met" if hit / n >= TARGET else "NOT met"
        sure = "the whole interval is above it" if low >= TARGET else (
            "the whole interval is below it" if high < TARGET else "the interval contains it")
        lines.append(f"- {method} ({model}) >= {100 * TARGET:.0f}%: {verdict} ({100 * hit / n:.1f}%; {sure}).")
    return ["Targets:"] + lines


def per_class_lines(rows, scores, labels):
    """Pointing accuracy of every method on the images of each class (where the misses are)."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    header = "| method | model | " + " | ".join(f"{name} ({count})" for name, count in zip(CLASS_NAMES, counts)) + " |"
    lines = ["Pointing accuracy per class (images of that class in brackets):", "", header,
             "|---|---|" + "---:|" * len(CLASS_NAMES)]
    for (method, model, _, _), score in zip(rows, scores):
        hits = np.bincount(labels, weights=score.hits, minlength=len(CLASS_NAMES))
        cells = [f"{100 * h / c:.0f}%" if c else "-" for h, c in zip(hits, counts)]
        lines.append(f"| {method} | {model} | " + " | ".join(cells) + " |")
    return lines


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
