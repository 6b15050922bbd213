"""Fine-tune shapes_vgg to name the object's colour, and dissect its units before, during and after.

    python -m minicnn.recipes.finetune_colour --out /tmp/colour --report /tmp/colour-units   # the shipped settings
    python -m minicnn.recipes.finetune_colour --out /tmp/rerun --report /tmp/r --compare-to weights

The new task is built from the same images as shapes_vgg's (make_shapes, data seed 1, distractors half
the time): the label is the colour of the object (minicnn.data.COLOR_NAMES, 8 classes), not its shape,
and a distractor always has another colour, so the network must still find the object. The network is
shapes_vgg_colour: every layer starts from the shipped shapes_vgg's weights except fc2, a new 128 -> 8
head drawn from --seed; all layers train (Adam, cosine decay per epoch, weight decay).

At every checkpoint (before the first step, every --dissect-every steps, and after the last) the recipe
dissects --layers on --dissect-images held-out images (data.HELD_OUT_SEED) and measures the colour
accuracy on the test set. Writes
    <out>/shapes_vgg_colour.npz, .json   the weights and their model card (load_pretrained finds them)
    <report>/units.csv                   step, layer, unit, concept, iou, is_detector: every checkpoint
    <report>/units.md                    the units that change concept, and the detector counts per step
    <report>/trajectory_<layer>.png      those units over the checkpoints
Same arguments, same weights: every random number comes from --seed and the data seeds (up to the order
in which several threads add floating-point sums; one thread reproduces the files bit for bit).
"""
import argparse
import csv
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import data, models
from minicnn.evaluate.units import concept_changes, counted, label_counts, trajectory_figure, unique_detectors
from minicnn.recipes.train_shapes import TEST_SEED_OFFSET, compare_cards, cosine_lr, write_model, write_readme
from minicnn.train import Adam, accuracy, minibatches, train_epoch
from minicnn.viz.dissection import dissect

MODEL = "shapes_vgg_colour"
BASE = "shapes_vgg"


def colour_task(n, seed, distractor):
    """make_shapes images labelled by the colour of their object: a ShapesBatch whose labels are its colors."""
    batch = data.make_shapes(n, seed=seed, distractor=distractor)
    batch.labels = batch.colors.copy()
    return batch


def start_network(seed, base_dir=None):
    """shapes_vgg_colour with every parameter but fc2's copied from the shipped shapes_vgg, fc2 zero."""
    net = models.shapes_vgg_colour(seed=seed)
    base = models.load_pretrained(BASE, base_dir).state_dict()
    net.load_state_dict({key: value for key, value in base.items() if not key.startswith("fc2.")}, strict=False)
    for param in net.layers["fc2"].params.values():
        param[...] = 0
    return net


def checkpoints(total_steps, every):
    """The steps after which the network is dissected: 0 (before training), every `every` steps, the last."""
    return sorted({0, total_steps, *range(every, total_steps, every)})


def scheduled_batches(optimizer, train_set, args, rng):
    """All training batches of all epochs in order; before each epoch, optimizer.lr = its cosine rate."""
    for epoch in range(args.epochs):
        optimizer.lr = cosine_lr(args.lr, epoch, args.epochs)
        yield from minibatches(train_set.images, train_set.labels, args.batch_size, rng)


def dissect_layers(net, dissection_set, layers):
    """{layer: Dissection} of `layers` on the held-out dissection images."""
    return {layer: dissect(net, dissection_set, layer, progress=False) for layer in layers}


def finetune(args, train_set, test_set, dissection_set):
    """Fine-tune, dissecting at each checkpoint. Returns (net, history, {step: {layer: Dissection}}, seconds)."""
    net = start_network(args.seed, args.base_weights)
    optimizer = Adam(net, lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = -(-len(train_set.labels) // args.batch_size)
    total = steps_per_epoch * args.epochs
    batches = scheduled_batches(optimizer, train_set, args, rng)
    history, dissections, done, start = [], {}, 0, time.perf_counter()
    for step in checkpoints(total, args.dissect_every):
        loss, train_acc = (train_epoch(net, optimizer, itertools.islice(batches, step - done), step - done,
                                       f"steps {done + 1}-{step} of {total}") if step > done else (None, None))
        done = step
        dissections[step] = dissect_layers(net, dissection_set, args.layers)
        test_acc = accuracy(net, test_set.images, test_set.labels)
        history.append({"step": step, "epoch": round(step / steps_per_epoch, 3),
                        "loss": None if loss is None else round(loss, 5),
                        "train_accuracy": None if train_acc is None else round(train_acc, 5),
                        "test_accuracy": round(test_acc, 5),
                        "detectors": {layer: len(d.detectors) for layer, d in dissections[step].items()}})
        print(f"step {step}/{total}: test colour accuracy {test_acc:.4f}, detectors "
              + ", ".join(f"{layer} {len(d.detectors)}" for layer, d in dissections[step].items())
              + f", {time.perf_counter() - start:.0f} s", flush=True)
    return net, history, dissections, time.perf_counter() - start


def model_card(net, args, train_set, test_set, history, seconds):
    """Everything needed to judge and reproduce the fine-tuned weights (write_model adds the file hash)."""
    base_path, _ = models.pretrained_paths(BASE, args.base_weights)
    return {
        "model": MODEL,
        "architecture": repr(net),
        "parameters": int(sum(p.size for p in net.named_parameters().values())),
        "fine_tuned_from": {"model": BASE, "sha256": models.sha256_of_file(base_path),
                            "kept": "every parameter but fc2's; fc2 (128 -> 8) starts at zero"},
        "data": {"generator": "minicnn.data.make_shapes", "image_size": 64, "labels": "the object's colour",
                 "classes": list(data.COLOR_NAMES), "train_seed": args.data_seed, "train_size": len(train_set.labels),
                 "test_seed": args.data_seed + TEST_SEED_OFFSET, "test_size": len(test_set.labels),
                 "distractor_probability": args.distractor},
        "training": {"optimizer": "Adam", "lr": args.lr, "schedule": "cosine per epoch", "layers": "all",
                     "weight_decay": args.weight_decay, "batch_size": args.batch_size, "epochs": args.epochs,
                     "epochs_completed": args.epochs, "init_seed": args.seed, "seconds": round(seconds, 1),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "threads": {key: os.environ.get(key, "default")
                                 for key in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "reproduce": "python -m minicnn.recipes.finetune_colour " + " ".join(
            f"--{key.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in sorted(vars(args).items())
            if key not in ("out", "report", "base_weights", "dissect_images", "dissect_every", "layers")),
        "minicnn_version": minicnn.__version__,
    }


def write_units_csv(path, dissections):
    """One row per (checkpoint step, layer, unit): its best concept, IoU and whether it is a detector."""
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["step", "layer", "unit", "concept", "iou", "is_detector"])
        for step, layers in dissections.items():
            for layer, dissection in layers.items():
                writer.writerows([step, layer, row.unit, row.concept, f"{row.iou:.6f}", int(row.is_detector)]
                                 for row in dissection.table)


def units_markdown(dissections, history, categories):
    """The report: detector counts per checkpoint and category, then per layer the units that change."""
    steps = list(dissections)
    first, last = steps[0], steps[-1]
    lines = ["| step | epoch | test colour accuracy | " + " | ".join(
        f"{layer}: {' / '.join(label_counts(dissections[first][layer], categories))}" for layer in dissections[first])
        + " |", "|---:|---:|---:|" + "---|" * len(dissections[first])]
    for entry in history:
        counts = [" / ".join(str(v) for v in label_counts(d, categories).values())
                  for d in dissections[entry["step"]].values()]
        lines.append(f"| {entry['step']} | {entry['epoch']:g} | {100 * entry['test_accuracy']:.2f}% | "
                     + " | ".join(counts) + " |")
    for layer in dissections[first]:
        before, after = dissections[first][layer], dissections[last][layer]
        changes = concept_changes(before, after)
        lines += ["", f"### {layer}: {len(changes)} of {len(before.table)} units change label (step {first} -> {last})",
                  "", "| unit | before | IoU | after | IoU |", "|---:|---|---:|---|---:|"]
        lines += [f"| {c.unit} | {c.before or '-'} | {c.iou_before:.3f} | {c.after or '-'} | {c.iou_after:.3f} |"
                  for c in changes]
        for title, dissection in (("before", before), ("after", after)):
            found = unique_detectors(dissection, categories)
            lines.append(f"\nunique detectors {title}: " + "; ".join(
                f"{category} {counted(names)}" for category, names in found.items()))
    return "\n".join(lines) + "\n"


def write_report(report, dissections, history):
    """<report>/units.csv, units.md and one trajectory figure per layer; returns the Markdown."""
    report.mkdir(parents=True, exist_ok=True)
    categories = data.concept_categories()
    write_units_csv(report / "units.csv", dissections)
    text = units_markdown(dissections, history, categories)
    (report / "units.md").write_text(text)
    titles = [f"step {step}" for step in dissections]
    for layer in next(iter(dissections.values())):
        trajectory_figure([d[layer] for d in dissections.values()], titles, categories, report / f"trajectory_{layer}.png")
    return text


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--distractor", type=float, default=0.5, help="probability of a distractor object")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks and the shuffling")
    parser.add_argument("--data-seed", type=int, default=1, help="training images (shapes_vgg's); test: +1000")
    parser.add_argument("--layers", nargs="+", default=["relu2_2", "relu3_2"], help="layers to dissect")
    parser.add_argument("--dissect-images", type=int, default=1000, help="held-out images for each dissection")
    parser.add_argument("--dissect-every", type=int, default=40, help="dissect after every this many steps")
    parser.add_argument("--base-weights", type=Path, default=None,
                        help="folder (or .npz) of the shapes_vgg to start from (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=Path("weights"), help="folder for the weights and model card")
    parser.add_argument("--report", type=Path, default=Path("finetune-colour"), help="folder for the units report")
    parser.add_argument("--overwrite", action="store_true", help="replace a shapes_vgg_colour.npz already in --out")
    parser.add_argument("--compare-to", type=Path, default=None,
                        help="a folder with a shapes_vgg_colour.json whose test accuracy the run must reproduce")
    args = parser.parse_args(argv)
    for name in ("train_size", "test_size", "epochs", "batch_size", "dissect_images", "dissect_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if (args.out / f"{MODEL}.npz").exists() and not args.overwrite:
        parser.error(f"{args.out / (MODEL + '.npz')} already exists; write into another folder with --out DIR, or "
                     "pass --overwrite to replace it")
    return args


def main(argv=None):
    args = parse_args(argv)
    compare_to, report = args.compare_to, args.report
    del args.compare_to, args.overwrite
    train_set = colour_task(args.train_size, args.data_seed, args.distractor)
    test_set = colour_task(args.test_size, args.data_seed + TEST_SEED_OFFSET, args.distractor)
    dissection_set = data.make_shapes(args.dissect_images, seed=data.HELD_OUT_SEED, distractor=args.distractor)
    net, history, dissections, seconds = finetune(args, train_set, test_set, dissection_set)
    card = write_model(net, model_card(net, args, train_set, test_set, history, seconds), args.out)
    write_readme(args.out)
    print(write_report(report, dissections, history))
    print(f"{MODEL}: test colour accuracy {100 * card['test_accuracy']:.2f}% on {args.test_size} images, "
          f"{seconds:.0f} s; wrote {args.out / card['file']} and {report}/units.md", flush=True)
    return 0 if compare_to is None or compare_cards([card], compare_to) else 1


if __name__ == "__main__":
    sys.exit(main())
