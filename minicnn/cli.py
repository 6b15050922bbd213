"""The `minicnn` command (also `python -m minicnn`).

    minicnn tour                        every method of the lecture on the shipped shapes models,
                                        as PNG figures and one index.html (see minicnn.tour)
    minicnn explain IMAGE               top-5 predictions and the attribution maps of one image
    minicnn explore [...]               a local web page to explore a model live (see minicnn.explore)
    minicnn train shapes [...]          train the shapes models (minicnn.recipes.train_shapes)
    minicnn bench [...]                 minicnn against PyTorch, each alone (minicnn.recipes.bench)
    minicnn evaluate --model NAME ...   can we trust the maps? pointing, deletion, insertion, randomization,
                                        segmentation, switches (minicnn.recipes.evaluate over minicnn.evaluate)
    minicnn index / dissect [...]       dataset search / Network Dissection over a whole image
                                        collection, resumable, local or on Dask (see minicnn.index)

`minicnn COMMAND --help` explains each. A mistake in what you give the command (a missing image,
a weight file for another model, an unknown class) ends it with one line saying what is wrong and
a non-zero exit status, never a Python traceback.
"""
import argparse
import contextlib
import importlib
import sys
import time
from pathlib import Path

import numpy as np

from .explain import METHODS, Prepared, attribution_map, method_title, parse_methods
from .user_input import (MODELS, SHAPES_SIZE, UserError, class_probabilities, imagenet_input, imagenet_model_and_mode,
                         imagenet_notes, load_fine_tuned, load_shapes_models, read_image, resolve_target,
                         shapes_input)




# ----------------------------------------------------------------------------------------------
# the commands


def note(text):
    print(f"note: {text}", file=sys.stderr)


def prepare_shapes(args, image):
    from .data import CLASS_NAMES

    box = occlusion_box(args, (12, 4), SHAPES_SIZE)
    cam_net, net = load_shapes_models(args.weights)
    x, notes = shapes_input(image, args.image)
    name = "shapes_cam" if net is cam_net else "shapes_vgg"
    return Prepared(name, net, cam_net, x, x, CLASS_NAMES, box, notes)


def prepare_imagenet(args, image):
    from .imagenet import class_names_for

    box = occlusion_box(args, (48, 16), 224)
    notes = imagenet_notes(Path(args.image).name, image.shape[1:])
    net, mode = imagenet_model_and_mode(args.model, args.weights)
    x, display = imagenet_input(image, mode)
    names = class_names_for(net[net.names[-1]].params["bias"].shape[0])
    return Prepared(args.model, net, None, x, display, names, box, notes)


def occlusion_box(args, default, side):
    """(size, stride) of the occluding square from --occlusion-size/--occlusion-stride, checked."""
    size = default[0] if args.occlusion_size is None else args.occlusion_size
    stride = default[1] if args.occlusion_stride is None else args.occlusion_stride
    if not 1 <= size <= side or stride < 1:
        raise UserError(f"the occluding square must be 1 to {side} pixels with a stride >= 1 (the network sees "
                        f"{side}x{side} images), got size {size}, stride {stride}")
    return size, stride


def explain_command(args):
    methods = parse_methods(args.methods)
    out = Path(args.out or f"{Path(args.image).stem}_explained.png")
    if out.is_dir() or str(args.out or "").endswith(("/", "\\")):
        raise UserError(f"--out must name the figure file to write (e.g. {out / 'explained.png'}), got the folder {out}")
    if not out.suffix:
        out = out.with_suffix(".png")  # matplotlib would add it anyway: say the name it really writes
    image, notes = read_image(args.image)
    prepared = (prepare_shapes if args.model == "shapes" else prepare_imagenet)(args, image)
    for text in notes + prepared.notes:
        note(text)
    scores = prepared.net.forward(prepared.x)[0]
    target = resolve_target(args.target, prepared.class_names) if args.target else int(scores.argmax())
    methods = methods_for(methods, prepared, args)
    from .imagenet import topk

    predictions = topk(scores, 5, prepared.class_names)
    print(f"top-5 predictions of {prepared.name}:")
    width = max(len(name) for name, _ in predictions)
    for rank, (name, probability) in enumerate(predictions, start=1):
        print(f"  {rank}. {name:{width}s} {100 * probability:6.2f}%")
    maps = {method_title(m, prepared): attribution_map(m, prepared, target)[None] for m in methods}
    p_target = class_probabilities(scores)[target]
    title = f"{prepared.name}: maps for class {prepared.class_names[target]!r} (p = {p_target:.3f})"
    save_explanation(prepared.display, maps, title, out)
    print(f"wrote {out}")


def methods_for(methods, prepared, args):
    """The methods to run: CAM needs a GAP + linear network; left out with a note unless asked for."""
    if "cam" not in methods or prepared.cam_net is not None:
        return methods
    which = args.model if args.weights is None or args.model != "shapes" else f"the network in {args.weights}"
    if args.methods != DEFAULT_METHODS:
        raise UserError(f"cam needs a network ending in global average pooling + one linear layer, and {which} "
                        "has none: use gradcam instead (it works for any network)")
    note(f"CAM left out: {which} has no global-average-pooling + linear head (Grad-CAM works for any network)")
    return [m for m in methods if m != "cam"]


def save_explanation(display, maps, title, out):
    from . import plot

    fig = plot.attribution_figure(display, maps)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        plot.save_figure(fig, out)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot write {out}: {error}") from None


def tour_command(args):
    from . import tour

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if args.model == "shapes":
        if args.images:
            raise UserError("--images is for --model alexnet|vgg16; the shapes tour generates its own images")
        cam_net, net = load_shapes_models(args.weights)
        subject = tour.shapes_subject(cam_net, net, tour.SHAPES_FAST if args.fast else tour.SHAPES_BUDGET,
                                      fine_tuned=load_fine_tuned(args.weights))
    else:
        subject = imagenet_subject(args, tour)
    started = time.perf_counter()
    index, results = tour.run_tour(subject, out, progress=not args.quiet)
    skipped = [r.title for r in results if r.skipped]
    print(f"wrote {index} ({sum(len(r.items) for r in results)} figures and tables) in "
          f"{time.perf_counter() - started:.0f} s" + (f"; not shown: {', '.join(skipped)}" if skipped else ""))


def imagenet_subject(args, tour):
    if not args.images:
        raise UserError(f"--model {args.model} needs your own images: --images FILE [FILE ...]")
    net, mode = imagenet_model_and_mode(args.model, args.weights)
    inputs, displays = [], []
    for path in args.images:
        image, notes = read_image(path)
        for text in notes + imagenet_notes(Path(path).name, image.shape[1:]):
            note(text)
        x, display = imagenet_input(image, mode)
        inputs.append(x)
        displays.append(display)
    budget = tour.IMAGENET_FAST if args.fast else tour.IMAGENET_BUDGET
    return tour.imagenet_subject(args.model, net, np.concatenate(inputs), np.concatenate(displays), mode, budget)


def recipe_command(recipe, argv, program):
    """Run minicnn.recipes.<recipe>'s main(argv), its usage lines calling it `program`."""
    module = importlib.import_module(f"minicnn.recipes.{recipe}")
    with program_name(program):
        return module.main(argv) or 0


@contextlib.contextmanager
def program_name(name):
    """Let the recipe's argparse call itself `name` in its usage lines."""
    saved = sys.argv[0]
    sys.argv[0] = name
    try:
        yield
    finally:
        sys.argv[0] = saved


# ----------------------------------------------------------------------------------------------
# arguments

DEFAULT_METHODS = ",".join(METHODS)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn", description="minicnn: see every number a CNN computes, and the methods that look inside one.",
        epilog="Run `minicnn COMMAND --help` for the options of each command.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tour = commands.add_parser(
        "tour", help="run every method of the lecture and write a gallery (PNG figures + index.html)",
        description="Run every visualization method of the lecture, in its order, and write the figures and one "
                    "index.html. With no options: the shipped shapes models on freshly generated held-out images.")
    tour.add_argument("--out", default="minicnn-tour", metavar="DIR",
                      help="folder for the figures and index.html (default: %(default)s)")
    tour.add_argument("--model", choices=MODELS, default="shapes", help="which network (default: %(default)s)")
    tour.add_argument("--weights", metavar="FILE", help="shapes: a folder with shapes_cam.npz/shapes_vgg.npz and their "
                      ".json cards, or one .npz; alexnet/vgg16: any weight file minicnn reads (.pth, .safetensors, "
                      ".npz, Keras .h5; default: the cache of `python -m minicnn.recipes.fetch_weights`)")
    tour.add_argument("--images", nargs="+", metavar="FILE", help="your images (alexnet/vgg16 only)")
    tour.add_argument("--fast", action="store_true", help="a tiny tour (few images, few steps), for tests")
    tour.add_argument("--quiet", action="store_true", help="no progress output")
    tour.set_defaults(run=tour_command)

    explain = commands.add_parser(
        "explain", help="top-5 predictions and attribution maps for one image",
        description="Print the top-5 predictions for IMAGE and write one figure with each method's map laid over it.")
    explain.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, ...)")
    explain.add_argument("--model", choices=MODELS, default="shapes", help="which network (default: %(default)s)")
    explain.add_argument("--weights", metavar="FILE", help="as for `minicnn tour --weights`")
    explain.add_argument("--target", metavar="CLASS",
                         help="the class to explain, by name or index (default: the top-1 prediction)")
    explain.add_argument("--methods", default=DEFAULT_METHODS,
                         help=f"comma-separated, from {', '.join(METHODS)} (default: all; cam only for shapes)")
    explain.add_argument("--out", metavar="FILE", help="the figure to write (default: IMAGE's name + _explained.png)")
    explain.add_argument("--occlusion-size", type=int, metavar="PX", help="occluding square's side (default 12 / 48)")
    explain.add_argument("--occlusion-stride", type=int, metavar="PX", help="its stride (default 4 / 16)")
    explain.set_defaults(run=explain_command)

    train = commands.add_parser(
        "train", help="train the shapes models (minicnn.recipes.train_shapes)",
        description="`minicnn train shapes [options]` runs minicnn.recipes.train_shapes with those options; "
                    "`minicnn train shapes --help` lists them.")
    train.add_argument("what", choices=["shapes"], help="what to train")
    bench = commands.add_parser(
        "bench", help="time minicnn against PyTorch, each alone in its own process (minicnn.recipes.bench)",
        description="`minicnn bench [options]` runs minicnn.recipes.bench; `minicnn bench --help` lists its options.")
    evaluate = commands.add_parser(
        "evaluate", help="score every attribution method: sanity checks, faithfulness, segmentation",
        description="`minicnn evaluate --model NAME [options] --out DIR` runs minicnn.recipes.evaluate; "
                    "`minicnn evaluate --help` lists its options.")
    for command in (train, bench, evaluate):
        command.set_defaults(run=None)
    from .explore.server import add_command as add_explore_command  # no web framework imported here
    from .index.command import add_commands as add_index_commands

    add_explore_command(commands)
    add_index_commands(commands, UserError)
    return parser


def main(argv=None):
    """The console script `minicnn`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            return recipe_command("bench", argv[1:], "minicnn bench")
        if argv[:1] == ["evaluate"]:
            return recipe_command("evaluate", argv[1:], "minicnn evaluate")
        if argv[:2] == ["train", "shapes"]:
            return recipe_command("train_shapes", argv[2:], "minicnn train shapes")
        args = build_parser().parse_args(argv)
        args.run(args)
        return 0
    except UserError as error:
        command = argv[0] if argv else ""
        print(f"minicnn {command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minicnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
