"""A decoder that draws shapes from a code: train models.shapes_autoencoder on shape masks, then walk
between the codes of two shapes and draw every step.

    python -m minicnn.recipes.shape_codes                       # figure to a temp folder
    python -m minicnn.recipes.shape_codes --train-size 2000 --epochs 4 --out /tmp/codes

The masks of make_shapes (the object only, at --side pixels) go in, a code of --code-size numbers
comes out of the layer "code", and two transposed convolutions draw the mask back (per-pixel
cross-entropy, 2 classes). Then, for pairs of held-out shapes a and b of different classes, the codes
(1 - t) code(a) + t code(b), t = 0 ... 1, are drawn: what lies between a star and a ring.
Prints the IoU of the drawn masks on the held-out images and writes <out>/shape_codes.png.
Trained in seconds each time, so nothing is shipped.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from minicnn import data, models, plot
from minicnn.train import Adam, iou_per_class, minibatches, segmentation_confusion, train_epoch

STEPS = 7  # drawings per walk, both ends included


def mask_set(n, seed, side):
    """(inputs (n, 1, side, side) float32 masks, targets (n, side, side) int64, labels) of make_shapes."""
    batch = data.make_shapes(n, seed=seed, size=side)
    return batch.masks[:, None].astype(np.float32), batch.masks.astype(np.int64), batch.labels


def train(args):
    """The trained autoencoder and the held-out IoU of the shape class."""
    inputs, targets, _ = mask_set(args.train_size, args.data_seed, args.side)
    net = models.shapes_autoencoder(args.code_size, args.side, seed=args.seed)
    optimizer = Adam(net, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    steps = -(-len(inputs) // args.batch_size)
    for epoch in range(args.epochs):
        loss, pixel_accuracy = train_epoch(net, optimizer, minibatches(inputs, targets, args.batch_size, rng), steps,
                                           f"epoch {epoch + 1}/{args.epochs}", progress=False,
                                           loss="pixel_cross_entropy")
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, pixel accuracy {pixel_accuracy:.4f}", flush=True)
    return net


def walk(net, a, b, steps=STEPS):
    """Drawings (steps, side, side) in [0, 1] (the probability of 'inside') of the codes between masks a and b."""
    codes = net.forward(np.stack([a, b]), upto="code")
    t = np.linspace(0.0, 1.0, steps, dtype=codes.dtype)[:, None]
    scores = net.forward((1 - t) * codes[0] + t * codes[1], after="code")
    inside = scores[:, 1] - scores[:, 0]
    return 0.5 * (1.0 + np.tanh(inside / 2))   # softmax over the two channels, the second one (= sigmoid)


def pairs_of_classes(labels, count):
    """`count` pairs (i, j) of image indices whose classes differ, walking through the classes present."""
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"the held-out images hold one class only ({present}); draw more of them (--test-size)")
    offset = max(1, len(present) // 2)
    firsts = {k: int(np.flatnonzero(labels == k)[0]) for k in present}
    return [(firsts[present[k % len(present)]], firsts[present[(k + offset) % len(present)]]) for k in range(count)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--code-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=4, help="walks drawn in the figure")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "minicnn-shape-codes")
    args = parser.parse_args(argv)
    net = train(args)
    inputs, targets, labels = mask_set(args.test_size, data.HELD_OUT_SEED, args.side)
    iou = iou_per_class(segmentation_confusion(net, inputs, targets, 2))
    print(f"held-out masks ({args.test_size}, seed {data.HELD_OUT_SEED}): IoU inside {iou[1]:.4f}, "
          f"outside {iou[0]:.4f}")
    pairs = pairs_of_classes(labels, args.pairs)
    drawings = np.concatenate([walk(net, inputs[i], inputs[j]) for i, j in pairs])
    fig, axes = plot.grid_figure(len(drawings), ncols=STEPS, cell_inches=1.3)
    for ax, drawing, index in zip(axes, drawings, range(len(drawings))):
        ax.imshow(drawing, cmap="gray", vmin=0, vmax=1)
        i, j = pairs[index // STEPS]
        step = index % STEPS
        if step in (0, STEPS - 1):
            ax.set_title(data.CLASS_NAMES[labels[i] if step == 0 else labels[j]], fontsize=8)
    fig.suptitle(f"decoding (1 - t) code(a) + t code(b), t = 0 ... 1 ({args.code_size}-number codes)", fontsize=10)
    path = args.out / "shape_codes.png"
    plot.save_figure(fig, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
