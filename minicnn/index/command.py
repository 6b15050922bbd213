"""`minicnn index` and `minicnn dissect`: the dataset index from the command line.

    minicnn index --model vgg16 --layers features_22,features_29 --images ~/photos --k 9 --out idx
    minicnn index --model shapes_vgg --layers relu3_2 --shapes 2000 --seed 1 --out idx --scheduler dask --workers 2
    minicnn dissect --model shapes_vgg --layers relu3_2 --broden shapes_broden --out dis

Both resume an unfinished run in --out with the same settings and refuse a folder holding another.
"""
import functools
import time
from pathlib import Path

from .model import MODEL_NAMES


def add_commands(commands, user_error):
    """Add the `index` and `dissect` sub-commands to cli.build_parser's sub-parsers; a mistake of the
    user's is raised as `user_error` (user_input.UserError: one line, exit status 2)."""
    index = commands.add_parser(
        "index", help="dataset search over an image collection: the top-k images of every unit, resumable",
        description="One forward pass per batch updates the top-k images of every channel of every layer named; the "
                    "index is written to --out (.npz shards + manifest.json) and read with minicnn.load_index(DIR).")
    _common_arguments(index)
    index.add_argument("--k", type=int, default=9, help="images kept per unit (default: %(default)s)")
    index.set_defaults(run=functools.partial(index_command, user_error=user_error))
    dissect = commands.add_parser(
        "dissect", help="Network Dissection over a Broden dataset or the shapes, streamed and resumable",
        description="Exact per-unit top-quantile thresholds in two passes, then IoU tallies of every unit and concept; "
                    "the tables go to --out/dissection-<layer>.csv.")
    _common_arguments(dissect, images=False)
    dissect.add_argument("--quantile", type=float, default=0.005, help="top quantile T_k (default: %(default)s)")
    dissect.add_argument("--iou-threshold", type=float, default=0.04, help="detector threshold (default: %(default)s)")
    dissect.set_defaults(run=functools.partial(dissect_command, user_error=user_error))


def _common_arguments(parser, images=True):
    parser.add_argument("--model", choices=MODEL_NAMES, required=True, help="which network")
    parser.add_argument("--weights", metavar="FILE", help="a weight file minicnn reads (default: the shipped shapes "
                        "weights, or the fetch_weights cache for alexnet/vgg16)")
    parser.add_argument("--init-seed", type=int, metavar="S", help="random weights drawn with seed S (benchmarks)")
    parser.add_argument("--layers", required=True, metavar="L1,L2", help="comma-separated layer names")
    sources = parser.add_mutually_exclusive_group(required=True)
    if images:
        sources.add_argument("--images", metavar="DIR", help="a folder of .jpg/.jpeg/.png files (searched recursively)")
    sources.add_argument("--shapes", type=int, metavar="N", help="N generated shapes images (with --seed)")
    sources.add_argument("--broden", metavar="DIR", help="a Broden-format dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes generator (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder of the index (resumed if unfinished)")
    parser.add_argument("--scheduler", choices=("local", "dask"), default="local",
                        help="local: this process; dask: a LocalCluster of --workers processes, or --address")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default: %(default)s)")
    parser.add_argument("--address", metavar="tcp://HOST:PORT", help="join this Dask scheduler (implies --scheduler dask)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="images per forward pass (default 64, or 8 at 224)")
    parser.add_argument("--shard-size", type=int, metavar="S", help="images per shard, a multiple of B (default 16 B)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _user_errors(run, user_error):
    """Turn what a user can get wrong (files, names, sizes, a missing extra) into `user_error`."""
    try:
        return run()
    except (ValueError, KeyError, OSError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        raise user_error(message) from None


def _setup(args):
    from .broden import BrodenSource
    from .model import ModelSpec, loaded
    from .sources import FolderSource, ShapesSource

    spec = ModelSpec(args.model, args.weights, args.init_seed)
    _, preprocessing = loaded(spec)
    if getattr(args, "images", None):
        source = FolderSource(args.images, preprocessing)
    elif args.shapes is not None:
        source = ShapesSource(args.shapes, args.seed)
    else:
        source = BrodenSource(args.broden, preprocessing)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    scheduler = "dask" if args.address else args.scheduler
    options = dict(batch_size=args.batch_size, shard_size=args.shard_size, scheduler=scheduler, workers=args.workers,
                   address=args.address, progress=not args.quiet)
    return spec, source, layers, options


def index_command(args, user_error):
    from .run import build_index

    started = time.perf_counter()
    spec, source, layers, options = _user_errors(lambda: _setup(args), user_error)
    index = _user_errors(lambda: build_index(spec, source, layers, args.out, k=args.k, **options), user_error)
    seconds = time.perf_counter() - started
    print(f"indexed {index.num_images} images for layers {', '.join(index.layers)} in {seconds:.0f} s "
          f"({index.num_images / seconds:.1f} images/s); read it with minicnn.load_index({str(args.out)!r})")
    _report_skipped(index.skipped)


def dissect_command(args, user_error):
    from .run import dissect_source
    from .store import read_manifest

    spec, source, layers, options = _user_errors(lambda: _setup(args), user_error)
    results = _user_errors(lambda: dissect_source(spec, source, layers, args.out, args.quantile, args.iou_threshold,
                                                  **options), user_error)
    for layer, dissection in results.items():
        print(f"{dissection.summary}; table: {Path(args.out) / f'dissection-{layer}.csv'}")
    _report_skipped(read_manifest(args.out)["skipped"])


def _report_skipped(skipped):
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s) (listed in manifest.json under \"skipped\"):")
        for entry in skipped[:20]:
            print(f"  {entry['name']}: {entry['reason']}")
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more")
