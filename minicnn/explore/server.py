"""`minicnn explore`: load a model and a dataset, serve the explorer with uvicorn on 127.0.0.1.

    minicnn explore                                   shapes_vgg on 500 fresh held-out shapes images
    minicnn explore --model vgg16 --images DIR        VGG16, its units searched over your images
    minicnn explore --index DIR                       top patches read from a minicnn.index index

The module imports no web framework until the command runs, so `minicnn --help` works without the
`explore` extra; without it the command says in one line what to install.
"""
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import numpy as np

MODELS = ("shapes_vgg", "shapes_cam", "alexnet", "vgg16")
DEFAULT_PORT = 8765
SHAPES_DATASET_SIZE = 500
INSTALL = 'the explorer needs Starlette and uvicorn: pip install "minicnn[explore]"'


def add_command(commands):
    """Add `explore` to the `minicnn` subcommands (cli.build_parser calls this)."""
    explore = commands.add_parser(
        "explore", help="a local web page to explore a model live (predictions, maps, layers, units, every number)",
        description="Start the explorer: a local web app showing what the network says about an image, a "
                    "dataset image or the live camera, every layer's activations, one unit's top patches and "
                    "every number of a convolution. It binds to 127.0.0.1 unless --host says otherwise and "
                    "runs until Ctrl-C.")
    explore.add_argument("--model", choices=MODELS, default="shapes_vgg", help="which network (default: %(default)s)")
    explore.add_argument("--weights", metavar="FILE", help="shapes: a folder with the .npz weights and their .json "
                         "cards, or one .npz; alexnet/vgg16: any weight file minicnn reads (default: the shipped "
                         "shapes weights / the cache of scripts/fetch_weights.py)")
    source = explore.add_mutually_exclusive_group()
    source.add_argument("--images", metavar="DIR", help="a folder of PNG/JPEG images to search a unit's top patches "
                        f"in (default for shapes models: {SHAPES_DATASET_SIZE} fresh held-out shapes images)")
    source.add_argument("--index", metavar="DIR", help="a dataset index written by `minicnn index` (minicnn.index)")
    explore.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    explore.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0: any free one)")
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    explore.set_defaults(run=run)
    return explore


def check_installed():
    """Starlette, uvicorn and python-multipart, or a UserError naming the extra to install."""
    from ..user_input import UserError

    for module in ("starlette", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            raise UserError(INSTALL) from None


# ----------------------------------------------------------------------------------------------
# the model and its dataset


def load_model(name, weights=None):
    """(net, cam_net or None, class names, mode) for --model/--weights, with the CLI's loading and errors."""
    from .. import models, user_input
    from ..data import CLASS_NAMES

    if name in ("alexnet", "vgg16"):
        from ..imagenet import class_names_for

        net, mode = user_input.imagenet_model_and_mode(name, weights)
        return net, None, class_names_for(net[net.names[-1]].params["bias"].shape[0]), mode
    if weights is None or Path(weights).is_dir():
        net = user_input.pretrained(name, weights)
        try:
            cam_net = net if name == "shapes_cam" else user_input.pretrained("shapes_cam", weights)
        except user_input.UserError:
            cam_net = None  # shapes_vgg alone: CAM is left out, Grad-CAM stays
        return net, cam_net, CLASS_NAMES, "shapes"
    build = models.shapes_cam if name == "shapes_cam" else models.shapes_vgg
    try:
        net = build().load_state_dict(user_input.read_weight_file(weights), adopt=True).eval()
    except (ValueError, TypeError) as error:
        raise user_input.UserError(f"{weights} does not hold {name} weights: {error}") from None
    return net, (net if name == "shapes_cam" else None), CLASS_NAMES, "shapes"


def shapes_dataset(n=SHAPES_DATASET_SIZE):
    """n fresh held-out shapes images (the tour's seed and distractor rate) as a Dataset with concept masks."""
    from ..data import CLASS_NAMES, HELD_OUT_SEED, make_shapes
    from ..tour.subject import DISTRACTOR_PROBABILITY
    from .state import Dataset

    batch = make_shapes(n, seed=HELD_OUT_SEED, distractor=DISTRACTOR_PROBABILITY)
    names = tuple(f"shapes seed {HELD_OUT_SEED} #{k} ({CLASS_NAMES[label]})" for k, label in enumerate(batch.labels))
    return Dataset(batch.images, batch.images, names, f"{n} held-out shapes images (make_shapes seed {HELD_OUT_SEED})",
                   batch)


def folder_dataset(folder, explorer_input):
    """Every PNG/JPEG/... image of a folder, made into network inputs by explorer_input(image, path)."""
    from ..user_input import UserError, read_image
    from .state import IMAGE_SUFFIXES, Dataset

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--images {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"--images {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    inputs, displays = [], []
    for path in paths:
        image, _ = read_image(path)
        x, display, _ = explorer_input(image, path)
        inputs.append(x)
        displays.append(display[None])
    return Dataset(np.concatenate(inputs), np.concatenate(displays), tuple(p.name for p in paths),
                   f"{len(paths)} images of {folder}")


def load_index(folder, name, net):
    """minicnn.index.load_index(folder), checked to be an index of this network (name and weights), or a
    UserError saying what is wrong (also when minicnn.index is not installed)."""
    from ..user_input import UserError

    try:
        from ..index import load_index as load
        from ..index.model import weights_sha256
    except ImportError:
        raise UserError("--index needs minicnn.index (the dataset index), which this installation does not have; "
                        "use --images DIR to index a folder on the spot") from None
    try:
        index = load(folder)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"--index {folder}: {error}") from None
    indexed = index.model["name"]
    if indexed != name or index.model["weights_sha256"] != weights_sha256(net):
        which = "other weights" if indexed == name else indexed
        raise UserError(f"--index {folder} indexes {which}, not the {name} being explored: pass --model {indexed} "
                        "(and its --weights), or index this model with `minicnn index`")
    return index


def build_explorer(model="shapes_vgg", weights=None, images=None, index=None, dataset_size=SHAPES_DATASET_SIZE):
    """An Explorer for the command's options (also used by the tests, the screenshots and the benchmark)."""
    from .state import Explorer

    net, cam_net, class_names, mode = load_model(model, weights)
    if index is not None:
        return Explorer(model, net, cam_net, class_names, mode, index=load_index(index, model, net))
    explorer = Explorer(model, net, cam_net, class_names, mode)
    if images is not None:
        explorer.dataset = folder_dataset(images, explorer.network_input)
    elif mode == "shapes":
        explorer.dataset = shapes_dataset(dataset_size)
    return explorer


# ----------------------------------------------------------------------------------------------
# serving


def free_port(host):
    """A port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port(host, port):
    from ..user_input import UserError

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); pass --port N (or --port 0 for "
                            "any free port)") from None


def run(args):
    """The `minicnn explore` command: build the explorer, print the URL, serve until Ctrl-C."""
    check_installed()
    import uvicorn

    from .app import create_app

    port = free_port(args.host) if args.port == 0 else args.port
    check_port(args.host, port)
    explorer = build_explorer(args.model, args.weights, args.images, args.index)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{port}/"
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: other machines on the network can reach the explorer",
              file=sys.stderr)
    print(f"minicnn explore: {explorer.name} at {url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        opener = threading.Timer(1.0, webbrowser.open, args=(url,))
        opener.daemon = True
        opener.start()
    uvicorn.run(create_app(explorer), host=args.host, port=port, log_level="warning")
    print("minicnn explore: stopped", file=sys.stderr)
