"""What a user hands a command (image files, weight files, model and class names), made into the
arrays and networks the library takes. Every mistake raises a UserError whose one line says what is
wrong; the CLI, the explorer and the index commands show it and exit (or answer 4xx) instead of a traceback.
"""
import difflib
from pathlib import Path

import numpy as np

from .imagenet import MAX_ASPECT_RATIO
from .io.images import CONVERTIBLE_MODES, image_mode, load_image, resize

MODELS = ("shapes", "alexnet", "vgg16")
SHAPES_SIZE = 64


class UserError(Exception):
    """Something wrong with what the user gave the command; shown as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------
# reading images


def read_image(path):
    """An image file -> ((3, H, W) float32 RGB in [0, 1], [notes about conversions]), by io.images.load_image.

    Greyscale, palette, RGBA and the like are converted to RGB, with a note; anything that is not an
    image Pillow can read, or a 16/32-bit image (no faithful 8-bit RGB), is a UserError.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"image {path} not found")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    try:
        image = load_image(path)
    except ValueError as error:
        raise UserError(str(error)) from None
    mode = image_mode(path)
    notes = [] if mode == "RGB" else [f"{path.name} is {CONVERTIBLE_MODES[mode]}: converted to RGB"]
    return image, notes


def shapes_input(image, path):
    """A (3, H, W) image -> (1, 3, 64, 64) for the shapes models, and a note if it was resized."""
    if image.shape[1:] == (SHAPES_SIZE, SHAPES_SIZE):
        return image[None], []
    note = (f"{Path(path).name} is {image.shape[2]}x{image.shape[1]}: resized to {SHAPES_SIZE}x{SHAPES_SIZE} "
            "for the shapes models (aspect ratio not kept)")
    return np.clip(resize(image, (SHAPES_SIZE, SHAPES_SIZE)), 0, 1)[None], [note]


def imagenet_input(image, mode):
    """A (3, H, W) image -> (network input (1, 3, 224, 224), the same crop as RGB in [0, 1])."""
    from . import imagenet

    crop = imagenet.center_crop(imagenet.resize_shorter_side(image, 256), 224)
    return imagenet.normalize(crop, mode)[None].astype(np.float32), np.clip(crop, 0, 1)[None]


# ----------------------------------------------------------------------------------------------
# loading networks


def read_weight_file(path):
    """{name: array} from any file minicnn.io.load_weights reads, or a UserError saying what is wrong."""
    from .io import WeightFileError, load_weights

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found")
    try:
        return load_weights(path)
    except WeightFileError as error:  # its message starts with the file's name
        raise UserError(f"cannot read weights from {error}") from None
    except (OSError, ImportError) as error:
        raise UserError(f"cannot read weights from {path}: {error}") from None


def load_shapes_models(weights=None):
    """(shapes_cam or None, the main network) for `--model shapes`.

    weights: None (the shipped weights/), a folder holding shapes_cam.npz and shapes_vgg.npz with
    their .json model cards, or one weight file of either model (then CAM only works if it is shapes_cam).
    """
    if weights is None or Path(weights).is_dir():
        return pretrained("shapes_cam", weights), pretrained("shapes_vgg", weights)
    from . import models

    state = read_weight_file(weights)
    problems = []
    for name, build in (("shapes_cam", models.shapes_cam), ("shapes_vgg", models.shapes_vgg)):
        try:
            net = build().load_state_dict(state).eval()
        except (ValueError, TypeError) as error:
            problems.append(f"as {name}: {error}")
            continue
        return (net if name == "shapes_cam" else None), net
    raise UserError(f"{weights} does not fit the shapes models: " + " || ".join(problems))


def load_fine_tuned(weights=None):
    """shapes_vgg_colour (shapes_vgg fine-tuned to colours) from the shipped weights or the --weights
    folder, or None where there is none (one weight file given, or a folder without it)."""
    from .models import pretrained_paths

    if weights is not None and not Path(weights).is_dir():
        return None
    if not pretrained_paths("shapes_vgg_colour", weights)[0].is_file():
        return None
    return pretrained("shapes_vgg_colour", weights)


def pretrained(name, folder):
    """models.load_pretrained(name, folder) with its errors turned into one-line advice."""
    from . import models
    from .io import WeightFileError

    where = Path(folder) if folder is not None else models.shipped_weights_dir()
    try:
        return models.load_pretrained(name, folder)
    except FileNotFoundError:
        raise UserError(f"no trained {name} weights in {where} ({name}.npz and its model card {name}.json): "
                        "train them with `minicnn train shapes`, or point --weights at a folder that holds "
                        "them") from None
    except (WeightFileError, OSError) as error:
        raise UserError(str(error)) from None


def imagenet_model_and_mode(name, weights=None):
    """(AlexNet or VGG16 with its ImageNet weights, preprocessing mode "torch" or "caffe"): the file
    models.imagenet_weights_file names, read as models.load_imagenet_model reads it, mistakes as UserErrors."""
    from . import models

    try:
        weights = models.imagenet_weights_file(name, weights)
    except FileNotFoundError as error:
        raise UserError(f"no {name} weights: {error}") from None
    state = read_weight_file(weights)
    mode = "caffe" if models.is_keras_vgg16(state) else "torch"
    try:
        net = models.imagenet_model_from_state(name, state, source=str(weights), adopt=True)  # read for it alone
    except (ValueError, TypeError) as error:
        raise UserError(str(error)) from None
    return net.eval(), mode


def class_probabilities(scores):
    """softmax of one image's pre-softmax scores (K,)."""
    from .ops import softmax

    return softmax(scores[None].astype(np.float64))[0]


def resolve_target(target, class_names):
    """--target CLASS (a name, case-insensitive, or an index) -> the class index."""
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    lowered = [name.lower() for name in class_names]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    shared = [name for name in class_names if name.lower().startswith(f"{target.lower()} (class ")]
    if shared:
        raise UserError(f"class {target!r} is ambiguous: it names {' and '.join(map(repr, shared))}; give the full "
                        "name or the index")
    if len(class_names) <= 20:
        valid = ", ".join(class_names)
        raise UserError(f"unknown class {target!r}; valid classes are: {valid} (or an index 0-{len(class_names) - 1})")
    close = difflib.get_close_matches(target.lower(), lowered, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(class_names[lowered.index(c)]) for c in close)}? " if close else ""
    raise UserError(f"unknown class {target!r}; {hint}valid classes are the {len(class_names)} names of "
                    f"minicnn.imagenet.IMAGENET_CLASSES (e.g. 'tabby', 'golden retriever') or an index "
                    f"0-{len(class_names) - 1}")


def imagenet_notes(name, image_hw):
    """What resize-to-256 and the 224 x 224 centre crop do to an image of this size, as notes; an image
    too elongated to crop sensibly (its resized copy would also take gigabytes) is a UserError."""
    short, long = min(image_hw), max(image_hw)
    if long > MAX_ASPECT_RATIO * short:
        raise UserError(f"{name} is {image_hw[1]}x{image_hw[0]}: the 224x224 centre crop of it resized to 256 would "
                        f"keep {100 * 224 / (256 * long / short):.2g}% of its longer side; crop it to a less "
                        "elongated region first")
    notes = []
    if short < 256:
        notes.append(f"{name} is {image_hw[1]}x{image_hw[0]}: enlarged {256 / short:.1f}x so that its shorter side "
                     "is 256 (expect a blurred input)")
    kept = 224 / 256 * short / long
    if kept < 0.5:
        notes.append(f"the 224x224 centre crop keeps {100 * kept:.0f}% of {name}'s longer side")
    return notes
