"""Train shapes_seg (per-pixel classes of the shapes data) with minicnn, and write its weights and model card.

    python -m minicnn.recipes.train_seg                                  # the shipped settings, into ./weights
    python -m minicnn.recipes.train_seg --train-size 2000 --epochs 2 --out /tmp/seg   # a quick run
    python -m minicnn.recipes.train_seg --out /tmp/seg --stop-after 2    # two epochs now ...
    python -m minicnn.recipes.train_seg --out /tmp/seg --resume          # ... the rest later, from the checkpoint

The targets: every pixel of make_shapes' object mask is 1 + its label, every other pixel (the
distractor's included) 0, the background. The encoder starts from the shipped shapes_cam weights
(--encoder, checksum verified), the decoder from He-normal weights (--seed) rescaled layer by layer so
that its outputs have unit standard deviation on the first batch (LSUV: shapes_cam's relu4 maps reach
hundreds, and unscaled scores would start the loss at several nats). For the first --frozen-epochs
only the decoder learns (backward stops at relu4); then all of it, with Adam and a cosine decay of
the learning rate per epoch. After every epoch the weights and the model card go to --out and a
checkpoint (weights, Adam's moments, the shuffling generator) to --checkpoint, so --resume can go on.
After every epoch: mean IoU over the 11 classes on the --test-size held-out images (data seed + 1000).
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import data, models
from minicnn.io import load_weights, save_weights
from minicnn.recipes.train_shapes import TEST_SEED_OFFSET, cosine_lr, write_model, write_readme
from minicnn.train import Adam, iou_per_class, minibatches, segmentation_confusion, train_epoch

MODEL = "shapes_seg"
ENCODER_LAST = "relu4"  # the last layer of the encoder taken from shapes_cam
SEGMENTATION_NAMES = ("background",) + tuple(data.CLASS_NAMES)  # channel k of the scores


def pixel_targets(batch):
    """(N, H, W) int64 per-pixel classes of a ShapesBatch: 1 + label on the object's mask, 0 elsewhere."""
    return np.where(batch.masks, batch.labels[:, None, None] + 1, 0).astype(np.int64)


def mean_iou(net, images, targets):
    """(mean IoU over the classes, IoU of each class) of net's per-pixel argmax."""
    ious = iou_per_class(segmentation_confusion(net, images, targets, models.SEGMENTATION_CLASSES))
    return float(np.nanmean(ious)), ious


def encoder_layers(net):
    return net.names[: net.names.index(ENCODER_LAST) + 1]


def start_network(args, first_images):
    """shapes_seg with shapes_cam's encoder weights and a decoder rescaled to unit output std (LSUV)."""
    net = models.shapes_seg(seed=args.seed)
    encoder = models.load_pretrained("shapes_cam", args.encoder)
    net.load_state_dict({key: value for key, value in encoder.state_dict().items() if not key.startswith("fc.")},
                        strict=False)
    for name in net.names[len(encoder_layers(net)):]:
        layer = net.layers[name]
        if "weight" in layer.params:
            layer.params["weight"] /= net.forward(first_images, upto=name).std()
    return net


class DecoderOnly:
    """What Adam needs of a network (named_parameters, named_gradients), restricted to the decoder: the
    encoder's weights stay as they are while the decoder learns (the frozen epochs)."""

    def __init__(self, net):
        self.net, self.names = net, [key for key in net.named_parameters()
                                     if key.split(".")[0] not in encoder_layers(net)]

    def named_parameters(self):
        params = self.net.named_parameters()
        return {key: params[key] for key in self.names}

    def named_gradients(self):
        grads = self.net.named_gradients()
        return {key: grads[key] for key in self.names}


class FrozenEncoder:
    """The network as train_epoch sees it while the encoder is frozen: backward stops at its output."""

    def __init__(self, net):
        self.net = net

    def __getattr__(self, name):
        return getattr(self.net, name)

    def backward(self, grad, **kwargs):
        return self.net.backward(grad, after=ENCODER_LAST, **kwargs)


def make_optimizer(net, args, frozen):
    optimizer = Adam(net, lr=args.lr, weight_decay=args.weight_decay)
    if frozen:
        optimizer.net = DecoderOnly(net)
    return optimizer


# ---------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, net, optimizer, rng, history, args):
    """Everything --resume needs, in one .npz: the weights, Adam's moments and step, the shuffling
    generator's state, the history and the settings (JSON strings: nothing to unpickle)."""
    arrays = {f"net/{key}": value for key, value in net.state_dict().items()}
    arrays.update({f"m/{key}": value for key, value in optimizer.m.items()})
    arrays.update({f"v/{key}": value for key, value in optimizer.v.items()})
    arrays["t"] = np.array(optimizer.t)
    for key, value in (("rng", rng.bit_generator.state), ("history", history), ("args", settings(args))):
        arrays[key] = np.array(json.dumps(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load_checkpoint(path, args):
    """(net, Adam's state, rng, history) from save_checkpoint's file, which must hold the same settings."""
    with np.load(path, allow_pickle=False) as stored:
        saved = json.loads(str(stored["args"]))
        if saved != settings(args):
            raise SystemExit(f"{path} was made with other settings: {saved}; these are {settings(args)}")
        net = models.shapes_seg(seed=args.seed).load_state_dict(
            {key[4:]: stored[key] for key in stored.files if key.startswith("net/")})
        moments = {part: {key[2:]: stored[key] for key in stored.files if key.startswith(f"{part}/")}
                   for part in ("m", "v")}
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(stored["rng"]))
        return net, (moments, int(stored["t"])), rng, json.loads(str(stored["history"]))


def settings(args):
    """The training settings as a dict (what the model card's reproduce command and a checkpoint record)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in sorted(vars(args).items())
            if key not in ("out", "checkpoint", "resume", "overwrite", "stop_after")}


# ---------------------------------------------------------------------------------------------- training


def model_card(net, args, train_size, test, history, seconds, encoder_sha):
    mean, ious = test
    return {
        "model": MODEL,
        "architecture": repr(net),
        "parameters": int(sum(p.size for p in net.named_parameters().values())),
        "outputs": {"channels": list(SEGMENTATION_NAMES),
                    "targets": "1 + label on make_shapes' object mask, 0 (background) elsewhere, distractors included"},
        "data": {"generator": "minicnn.data.make_shapes", "image_size": 64, "classes": list(data.CLASS_NAMES),
                 "train_seed": args.data_seed, "train_size": train_size,
                 "test_seed": args.data_seed + TEST_SEED_OFFSET, "test_size": args.test_size,
                 "distractor_probability": args.distractor},
        "init": {"encoder": f"shapes_cam's conv1-conv4 (sha256 {encoder_sha})",
                 "decoder": f"He normal (seed {args.seed}), each layer rescaled to unit output std on the first batch"},
        "training": {"optimizer": "Adam", "lr": args.lr, "schedule": "cosine per epoch",
                     "frozen_encoder_epochs": args.frozen_epochs, "weight_decay": args.weight_decay,
                     "batch_size": args.batch_size, "epochs": args.epochs, "epochs_completed": len(history),
                     "init_seed": args.seed, "seconds": round(seconds, 1),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "threads": {key: os.environ.get(key, "default")
                                 for key in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
        "test_mean_iou": round(mean, 5),
        "test_iou_per_class": {name: round(float(iou), 5) for name, iou in zip(SEGMENTATION_NAMES, ious)},
        "history": history,
        "reproduce": "python -m minicnn.recipes.train_seg " + " ".join(
            f"--{key.replace('_', '-')} {value}" for key, value in settings(args).items() if value is not None),
        "minicnn_version": minicnn.__version__,
    }


def train(args):
    """Train (or resume) shapes_seg; write weights + card after every epoch; return the last card."""
    start = time.perf_counter()  # the card's seconds count data generation and testing too
    train_set = data.make_shapes(args.train_size, seed=args.data_seed, distractor=args.distractor)
    test_set = data.make_shapes(args.test_size, seed=args.data_seed + TEST_SEED_OFFSET, distractor=args.distractor)
    train_targets, test_targets = pixel_targets(train_set), pixel_targets(test_set)
    print(f"generated {args.train_size} training and {args.test_size} test images in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    encoder_sha = models.sha256_of_file(models.pretrained_paths("shapes_cam", args.encoder)[0])
    if args.resume and args.checkpoint.is_file():
        net, (moments, steps_done), rng, history = load_checkpoint(args.checkpoint, args)
        print(f"resumed from {args.checkpoint} after epoch {len(history)}", flush=True)
    else:
        net, moments, steps_done, history = start_network(args, train_set.images[: args.batch_size]), None, 0, []
        rng = np.random.default_rng(args.seed)
    seconds_before = history[-1]["seconds"] if history else 0.0
    steps = -(-args.train_size // args.batch_size)
    card, optimizer = None, None
    last_epoch = args.epochs if args.stop_after is None else min(args.epochs, len(history) + args.stop_after)
    for epoch in range(len(history), last_epoch):
        frozen = epoch < args.frozen_epochs
        if optimizer is None or epoch == args.frozen_epochs:  # a fresh Adam when the encoder starts learning
            optimizer = make_optimizer(net, args, frozen)
            if moments is not None and epoch != args.frozen_epochs:  # resumed within a phase: its moments
                optimizer.m.update(moments["m"])
                optimizer.v.update(moments["v"])
                optimizer.t = steps_done
            moments = None
        optimizer.lr = epoch_lr = cosine_lr(args.lr, epoch, args.epochs)
        batches = minibatches(train_set.images, train_targets, args.batch_size, rng)
        loss, pixel_accuracy = train_epoch(FrozenEncoder(net) if frozen else net, optimizer, batches, steps,
                                           f"{MODEL} epoch {epoch + 1}/{args.epochs}", loss="pixel_cross_entropy")
        test = mean_iou(net, test_set.images, test_targets)
        seconds = seconds_before + time.perf_counter() - start
        history.append({"epoch": epoch + 1, "lr": epoch_lr, "frozen_encoder": frozen, "loss": round(loss, 5),
                        "train_pixel_accuracy": round(pixel_accuracy, 5), "test_mean_iou": round(test[0], 5),
                        "seconds": round(seconds, 1)})
        print(f"{MODEL} epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, pixel accuracy {pixel_accuracy:.4f}, "
              f"mean IoU {test[0]:.4f} on {args.test_size} test images, {seconds:.0f} s", flush=True)
        save_checkpoint(args.checkpoint, net, optimizer, rng, history, args)
        card = write_model(net, model_card(net, args, args.train_size, test, history, seconds, encoder_sha), args.out)
    return card


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--frozen-epochs", type=int, default=1, help="epochs in which only the decoder learns")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--distractor", type=float, default=0.5, help="probability of a distractor object")
    parser.add_argument("--seed", type=int, default=0, help="decoder initialisation and shuffling seed")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--encoder", type=Path, default=None,
                        help="folder with the shapes_cam weights that start the encoder (default: the shipped ones)")
    parser.add_argument("--out", type=Path, default=Path("weights"), help="folder for shapes_seg.npz and its card")
    parser.add_argument("--checkpoint", type=Path, default=models.weights_cache_dir() / "shapes_seg_checkpoint.npz")
    parser.add_argument("--resume", action="store_true", help="go on from --checkpoint (same settings)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs of this run (resume later with --resume)")
    parser.add_argument("--overwrite", action="store_true", help="replace a shapes_seg.npz already in --out")
    args = parser.parse_args(argv)
    if (args.out / f"{MODEL}.npz").exists() and not (args.overwrite or args.resume):
        parser.error(f"{args.out / MODEL}.npz already exists; train into another folder with --out DIR, "
                     "or pass --overwrite to replace it")
    card = train(args)
    if card is None:
        print(f"nothing to do: {args.checkpoint} has all {args.epochs} epochs already", flush=True)
        return 0
    write_readme(args.out)
    print(f"{MODEL}: mean IoU {card['test_mean_iou']:.4f} on {args.test_size} test images after epoch "
          f"{card['training']['epochs_completed']}/{args.epochs}, {card['training']['seconds']:.0f} s, "
          f"wrote {args.out / card['file']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
