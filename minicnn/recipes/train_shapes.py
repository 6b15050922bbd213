"""Train the shapes models with minicnn's own trainer and write the weights and their model cards.

    python -m minicnn.recipes.train_shapes                          # both models, the shipped settings
    python -m minicnn.recipes.train_shapes --model shapes_cam --epochs 2 --train-size 2000 --out /tmp/w
    python -m minicnn.recipes.train_shapes --out /tmp/rerun --compare-to weights   # does a re-run reproduce them?
    python -m minicnn.recipes.train_shapes --permute-labels 0 --out /tmp/permuted   # the data randomization test

For each model: generate the training set (data seed --data-seed) and a held-out test set (another
seed), train with Adam and a cosine learning-rate decay (after a linear warm-up, for shapes_vgg),
measure test accuracy, then write <out>/<model>.npz, <out>/<model>.json (the model card:
architecture, data, optimizer, accuracy, training time, SHA-256 of the .npz) and <out>/README.md
(a table of all the cards in <out>).
Same arguments, same weights: every random number comes from the seeds (up to the order in which
the threads add up floating-point sums, which may differ between machines and thread counts).
--permute-labels SEED: train on the training labels shuffled by np.random.default_rng(SEED).permutation
(Adebayo et al. 2018's data randomization test; the test accuracy, on the true labels, should be chance).
--compare-to DIR: after training, compare each model's test accuracy with the card DIR/<model>.json
and exit with status 1 if they differ by more than REPRODUCE_TOLERANCE (half a percentage point).
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import data, models
from minicnn.io import save_weights
from minicnn.train import Adam, accuracy, minibatches, train_epoch

NOTES_MARKER = "<!-- hand-written notes: train_shapes.py keeps everything below this line -->"
TEST_SEED_OFFSET = 1000  # the held-out set uses data seed + 1000: never seen in training
REPRODUCE_TOLERANCE = 0.005  # a re-run's test accuracy must be within this of the card it is compared to
# The shipped settings per model (each is overridden by its command-line option when given):
# the CAM network (global average pooling, no fully connected layers) learns slower and needs more epochs;
# shapes_vgg warms its learning rate up over its first epoch (313 steps of 64 of the 20,000 images),
# without which some init seeds stall (weights/README.md).
MODEL_DEFAULTS = {
    "shapes_cam": {"epochs": 20, "lr": 3e-3, "warmup_steps": 0},
    "shapes_vgg": {"epochs": 12, "lr": 2e-3, "warmup_steps": 313},
}


def cosine_lr(base_lr, epoch, epochs):
    """Learning rate for an epoch: base_lr * (1 + cos(pi * epoch / epochs)) / 2, from base_lr towards 0."""
    return base_lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def with_warmup(batches, optimizer, lr, first_step, warmup_steps):
    """Yield the batches; before each, optimizer.lr = lr * min(1, (t + 1) / warmup_steps) at global step t
    (counting from first_step): a linear warm-up from lr / warmup_steps, then lr itself."""
    for step, batch in enumerate(batches, start=first_step):
        optimizer.lr = lr * min(1.0, (step + 1) / warmup_steps)
        yield batch


def train_one(name, args, train_set, test_set):
    """Train one model, writing the weights and model card after every epoch; returns the last card."""
    net = models.PRETRAINED[name](seed=args.seed)
    optimizer = Adam(net, lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    steps = -(-len(train_set.labels) // args.batch_size)
    history = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        epoch_lr = optimizer.lr = cosine_lr(args.lr, epoch, args.epochs)
        batches = minibatches(train_set.images, train_set.labels, args.batch_size, rng)
        if epoch * steps < args.warmup_steps:
            batches = with_warmup(batches, optimizer, epoch_lr, epoch * steps, args.warmup_steps)
        loss, train_acc = train_epoch(net, optimizer, batches, steps, f"{name} epoch {epoch + 1}/{args.epochs}")
        test_acc = accuracy(net, test_set.images, test_set.labels)
        history.append({"epoch": epoch + 1, "lr": epoch_lr, "loss": round(loss, 5),
                        "train_accuracy": round(train_acc, 5), "test_accuracy": round(test_acc, 5)})
        print(f"{name} epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, train {train_acc:.4f}, "
              f"test {test_acc:.4f}, {time.perf_counter() - start:.0f} s", flush=True)
        card = write_model(net, model_card(name, net, args, train_set, test_set, history,
                                           time.perf_counter() - start), args.out)
    return card


def schedule_name(warmup_steps):
    """The learning-rate schedule, in words, for the model card."""
    return "cosine per epoch" + (f", linear warm-up over the first {warmup_steps} steps" if warmup_steps else "")


def model_card(name, net, args, train_set, test_set, history, seconds):
    """Everything needed to judge and reproduce the weights (the file hash is added by write_model)."""
    return {
        "model": name,
        "architecture": repr(net),
        "parameters": int(sum(p.size for p in net.named_parameters().values())),
        "data": {"generator": "minicnn.data.make_shapes", "image_size": 64, "classes": list(data.CLASS_NAMES),
                 "train_seed": args.data_seed, "train_size": len(train_set.labels),
                 "test_seed": args.data_seed + TEST_SEED_OFFSET, "test_size": len(test_set.labels),
                 "distractor_probability": args.distractor,
                 **({} if args.permute_labels is None else {"labels_permuted_by_seed": args.permute_labels})},
        "training": {"optimizer": "Adam", "lr": args.lr, "schedule": schedule_name(args.warmup_steps),
                     "weight_decay": args.weight_decay, "batch_size": args.batch_size, "epochs": args.epochs,
                     "epochs_completed": len(history), "init_seed": args.seed, "seconds": round(seconds, 1),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "threads": {key: os.environ.get(key, "default")
                                 for key in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "reproduce": f"python -m minicnn.recipes.train_shapes --model {name} " + " ".join(
            f"--{key.replace('_', '-')} {value}" for key, value in sorted(vars(args).items())
            if key not in ("model", "out") and value is not None),
        "minicnn_version": minicnn.__version__,
    }


def write_model(net, card, out):
    """Save <out>/<model>.npz and its card <out>/<model>.json with the file's SHA-256."""
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / f"{card['model']}.npz"
    save_weights(weights_path, net.state_dict())
    card = dict(card, file=weights_path.name, sha256=models.sha256_of_file(weights_path),
                bytes=weights_path.stat().st_size)
    (out / f"{card['model']}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def test_result(card):
    """A card's headline number: test accuracy (classifiers) or mean IoU (shapes_seg, train_seg.py)."""
    if "test_mean_iou" in card:
        return f"mean IoU {card['test_mean_iou']:.3f}"
    return f"{100 * card['test_accuracy']:.2f}%"


def write_readme(out):
    """<out>/README.md: one table row per model card found in <out>."""
    rows = []
    for path in sorted(out.glob("*.json")):
        card = json.loads(path.read_text())
        training = card["training"]
        rows.append(f"| {card['model']} | {card['parameters']:,} | {card['data']['train_size']:,} "
                    f"(seed {card['data']['train_seed']}) | {training['epochs']} | "
                    f"{test_result(card)} on {card['data']['test_size']:,} (seed "
                    f"{card['data']['test_seed']}) | {training['seconds'] / 60:.1f} min | `{card['sha256'][:12]}…` |")
    text = "\n".join([
        "# Shipped weights",
        "",
        "Trained by minicnn itself with `minicnn/recipes/train_shapes.py` (shapes_seg: `train_seg.py`;",
        "shapes_vgg_colour: `finetune_colour.py`) on the generated shapes dataset (`minicnn.data`, 64x64 RGB, 10",
        "classes; shapes_vgg_colour names the object's 8 colours). Each `.npz` has a model card `.json` beside it with the",
        "architecture, data seeds, optimizer, per-epoch history, the exact command that reproduces it, and",
        "the SHA-256 that `minicnn.models.load_pretrained` checks before loading.",
        "The training script writes this text and the table; it keeps the notes below them. Training time",
        "is wall-clock time as measured on the machine named in each card (its thread settings are recorded",
        "there too).",
        "",
        "| model | parameters | training images | epochs | test result | training time | sha256 |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    (out / "README.md").write_text(text + kept_notes(out / "README.md"))


def kept_notes(readme, marker=NOTES_MARKER):
    """The hand-written notes of an existing page: marker and all that follows it ("" if none)."""
    if not readme.is_file():
        return ""
    existing = readme.read_text()
    return "\n" + existing[existing.index(marker):] if marker in existing else ""


def compare_cards(cards, reference_dir):
    """Print each new card's test accuracy beside the reference card's; True if all are within tolerance."""
    all_close = True
    for card in cards:
        path = reference_dir / f"{card['model']}.json"
        if not path.exists():
            print(f"{card['model']}: no card {path} to compare with")
            all_close = False
            continue
        reference = json.loads(path.read_text())
        difference = card["test_accuracy"] - reference["test_accuracy"]
        close = abs(difference) <= REPRODUCE_TOLERANCE
        all_close &= close
        print(f"{card['model']}: re-run {100 * card['test_accuracy']:.2f}% in {card['training']['seconds'] / 60:.1f} min, "
              f"{path} {100 * reference['test_accuracy']:.2f}%: difference {100 * difference:+.2f} points "
              f"({'within' if close else 'NOT within'} {100 * REPRODUCE_TOLERANCE:.1f}); the same file bit for bit: "
              f"{card['sha256'] == reference.get('sha256')}")
    return all_close


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=list(MODEL_DEFAULTS), choices=list(MODEL_DEFAULTS))
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=None, help="default: per model, see MODEL_DEFAULTS")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: per model, see MODEL_DEFAULTS")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--distractor", type=float, default=0.5, help="probability of a distractor object")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="linear learning-rate warm-up over this many steps (0: none); default: per model, "
                             "see MODEL_DEFAULTS")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--permute-labels", type=int, default=None, metavar="SEED",
                        help="train on the training labels permuted with this seed (the data randomization test)")
    parser.add_argument("--out", type=Path, default=Path("weights"),
                        help="folder for the .npz files, model cards and README.md (default: ./weights, the "
                             "shipped weights when run from the repository's root)")
    parser.add_argument("--overwrite", action="store_true", help="replace model files that are already in --out")
    parser.add_argument("--compare-to", type=Path, default=None,
                        help="a folder of model cards (e.g. weights) whose test accuracy the run must reproduce")
    args = parser.parse_args(argv)
    compare_to, overwrite = args.compare_to, args.overwrite
    del args.compare_to, args.overwrite  # not training settings: kept out of the model card
    if args.warmup_steps is not None and args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    existing = [str(args.out / f"{name}.npz") for name in args.model if (args.out / f"{name}.npz").exists()]
    if existing and not overwrite:
        parser.error(f"{', '.join(existing)} already exist(s); train into another folder with --out DIR, "
                     "or pass --overwrite to replace them")

    start = time.perf_counter()
    train_set = data.make_shapes(args.train_size, seed=args.data_seed, distractor=args.distractor)
    test_set = data.make_shapes(args.test_size, seed=args.data_seed + TEST_SEED_OFFSET, distractor=args.distractor)
    if args.permute_labels is not None:
        train_set.labels = np.random.default_rng(args.permute_labels).permutation(train_set.labels)
    print(f"generated {args.train_size} training and {args.test_size} test images in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    cards = []
    for name in args.model:
        settings = {key: value if getattr(args, key) is None else getattr(args, key)
                    for key, value in MODEL_DEFAULTS[name].items()}
        card = train_one(name, argparse.Namespace(**dict(vars(args), **settings)), train_set, test_set)
        print(f"{name}: test accuracy {100 * card['test_accuracy']:.2f}%, {card['training']['seconds']:.0f} s, "
              f"wrote {args.out / card['file']} ({card['bytes'] / 1e6:.2f} MB)", flush=True)
        cards.append(card)
    write_readme(args.out)
    if compare_to is not None:
        return 0 if compare_cards(cards, compare_to) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
