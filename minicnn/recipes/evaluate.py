"""`minicnn evaluate`: can we trust the maps? Every method scored on held-out shapes images.

    minicnn evaluate --model shapes_vgg --n 50 --out eval/
    minicnn evaluate --model shapes_cam --methods cam gradcam --metrics pointing deletion --out eval/
    python -m minicnn.recipes.evaluate ...      (the same)

Writes DIR/<metric>.csv (a header row, one row per method, or per method and step), DIR/evaluation.md
(the tables) and figures (maps.png, curves.png, randomization.png, randomization_similarity.png).
The metrics are minicnn.evaluate's; randomization needs scikit-image and segmentation PyMaxflow
(pip install 'minicnn[evaluate]').
"""
import argparse
import importlib.util
import shlex
import sys
import time

from minicnn.data import HELD_OUT_SEED
from minicnn.evaluate import METRICS, Options, Settings, evaluate
from minicnn.evaluate.report import write_results
from minicnn.models import load_pretrained

# what to type -> the method's name in minicnn.evaluate
METHOD_NAMES = {"saliency": "saliency", "smoothgrad": "SmoothGrad", "guided": "guided backprop",
                "deconvnet": "deconvnet", "occlusion": "occlusion", "cam": "CAM", "gradcam": "Grad-CAM"}
NEEDS = {"randomization": ("skimage", "scikit-image"), "segmentation": ("maxflow", "PyMaxflow")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=["shapes_cam", "shapes_vgg"],
                        help="the shipped classifier to evaluate")
    parser.add_argument("--weights-dir", default=None, help="a folder with <model>.npz and its card (default: shipped)")
    parser.add_argument("--permuted-weights", default=None, metavar="DIR",
                        help="randomization: also compare with <model>.npz in DIR, trained on permuted labels "
                             "(python -m minicnn.recipes.train_shapes --permute-labels 0 --out DIR)")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), metavar="METHOD",
                        help=f"from {', '.join(METHOD_NAMES)} (default: all that apply; cam needs shapes_cam)")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), metavar="METRIC",
                        help=f"from {', '.join(METRICS)} (default: all)")
    parser.add_argument("--n", type=int, default=50, help="held-out images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="their dataset seed (default %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the CSVs, evaluation.md and figures")
    parser.add_argument("--modes", nargs="*", default=["cascade", "independent"], choices=["cascade", "independent"],
                        help="randomization: cascade and/or independent (none: only the --permuted-weights test)")
    parser.add_argument("--batch-size", type=int, default=25, help="images per batch (default %(default)s)")
    parser.add_argument("--steps", type=int, default=32, help="deletion / insertion steps (default %(default)s)")
    parser.add_argument("--fill", default="blur", help="deletion / insertion fill: blur, mean or a grey level")
    parser.add_argument("--smooth", type=int, default=12, help="SmoothGrad: noisy copies per image")
    parser.add_argument("--occlusion-size", type=int, default=12, help="occluding square's side (pixels)")
    parser.add_argument("--occlusion-stride", type=int, default=6, help="occluding square's stride")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m.lower() not in METHOD_NAMES]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHOD_NAMES)}")
    unknown = [m for m in args.metrics if m not in METRICS]
    if unknown:
        parser.error(f"--metrics: unknown {unknown}; choose from {', '.join(METRICS)}")
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    for metric, (module, package) in NEEDS.items():
        if metric in args.metrics and importlib.util.find_spec(module) is None:
            parser.error(f"--metrics {metric} needs {package}: pip install 'minicnn[evaluate]'")
    try:
        args.fill = float(args.fill)
    except ValueError:
        pass
    return args


def settings_of(args):
    options = Options(smooth=args.smooth, occlusion_size=args.occlusion_size, occlusion_stride=args.occlusion_stride)
    return Settings(n=args.n, seed=args.seed, batch_size=args.batch_size, options=options, steps=args.steps,
                    fill=args.fill, modes=tuple(dict.fromkeys(args.modes)))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    net = load_pretrained(args.model, args.weights_dir)
    settings = settings_of(args)
    methods = list(dict.fromkeys(METHOD_NAMES[m.lower()] for m in args.methods))
    started = time.perf_counter()
    permuted = None if args.permuted_weights is None else load_pretrained(args.model, args.permuted_weights)
    try:
        results = evaluate(net, args.model, methods, list(dict.fromkeys(args.metrics)), settings, permuted)
    except ValueError as error:  # e.g. only CAM asked of a network without a GAP head
        raise SystemExit(f"minicnn evaluate: error: {error}") from None
    command = "minicnn evaluate " + " ".join(shlex.quote(a) for a in argv)
    write_results(results, settings, args.out, command)
    skipped = "".join(f"; skipped {m}: {why}" for m, why in results.skipped.items())
    print(f"wrote {args.out}/evaluation.md and {len(results.rows)} CSV files in "
          f"{time.perf_counter() - started:.0f} s{skipped}")


if __name__ == "__main__":
    main()
