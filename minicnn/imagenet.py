"""ImageNet inputs and outputs: preprocessing as torchvision (and Keras' "caffe" mode) do it, and
the 1000 class names, so predictions print names offline.

    x = preprocess("cat.jpg")                 # (1, 3, 224, 224) float32, torchvision's normalisation
    scores = net.forward(x)                   # (1, 1000) pre-softmax, net from minicnn.models
    top5(scores)                              # [("tabby", 0.41), ("tiger cat", 0.22), ...]

torchvision's evaluation transform, step by step (each function below does one step):

    resize_shorter_side(image, 256)   bilinear with antialiasing: the shorter side becomes 256
    center_crop(image, 224)           the central 224x224 square
    normalize(image, "torch")         [0, 1] RGB -> (x - mean) / std per channel

Keras' VGG16 weights were trained the Caffe way: normalize(image, "caffe") turns RGB into BGR,
scales to 0..255 and subtracts the mean BGR pixel, without dividing by anything.

Images are (3, H, W) float32 RGB in [0, 1], as minicnn.io.images.load_image returns them; a path, a
PIL image or an (H, W, 3) uint8 array is accepted too.
"""
from pathlib import Path

import numpy as np

from . import ops
from .checks import check_array, check_choice
from .io.images import load_image, resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)        # RGB, of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # BGR, of images scaled to [0, 255]
MODES = ("torch", "caffe")

CLASSES_FILE = Path(__file__).resolve().parent / "resources" / "imagenet_classes.txt"


def _read_classes(path=CLASSES_FILE):
    """The class file: one line per class, in class-index order: WordNet id, a tab, its synonyms."""
    wnids, synonyms = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, names = line.split("\t")
        wnids.append(wnid)
        synonyms.append(names)
    if len(wnids) != 1000:
        raise RuntimeError(f"{path} must list 1000 ImageNet classes, it lists {len(wnids)}")
    return tuple(wnids), tuple(synonyms)


def _short_names(synonyms):
    """Each class's first synonym ("tench"); where two classes share it (ignoring case: "crane" the bird
    and the machine, "Cardigan" the corgi and "cardigan" the sweater, "maillot"), each gets its index
    too ("crane (class 134)"), so that every name picks out one class."""
    first = [names.split(", ")[0] for names in synonyms]
    counts = {}
    for name in first:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return tuple(name if counts[name.lower()] == 1 else f"{name} (class {k})" for k, name in enumerate(first))


IMAGENET_WNIDS, IMAGENET_SYNONYMS = _read_classes()  # "n01440764", "tench, Tinca tinca"
MAX_ASPECT_RATIO = 20  # longer side / shorter side: beyond it the 224 x 224 centre crop keeps under 5%

IMAGENET_CLASSES = _short_names(IMAGENET_SYNONYMS)  # "tench", ..., "crane (class 134)", ...


# ----------------------------------------------------------------------------------------------
# Images in, and the three steps of torchvision's transform
# ----------------------------------------------------------------------------------------------

def as_image(image):
    """A path, PIL image, (H, W, 3) uint8 array or (3, H, W) float array -> (3, H, W) float32 in [0, 1]."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"a uint8 image must have shape (H, W, 3), got {image.shape}")
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
    check_array(image, "image", ndim=3)
    if image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W) (RGB, channels first), got {image.shape}")
    return image.astype(np.float32)


def resized_shape(height, width, size):
    """(h, w) with the shorter side = size and the aspect ratio kept, the longer side truncated
    to an integer as torchvision.transforms.Resize(size) does."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_shorter_side(image, size=256):
    """(3, H, W) -> (3, h, w) with min(h, w) = size, bilinear with antialiasing.

    minicnn.io.images.resize: antialiased as torch's F.interpolate(..., mode="bilinear",
    antialias=True), in float32, so no rounding to 8 bits happens on the way.
    """
    check_array(image, "image", ndim=3)
    return resize(image.astype(np.float32, copy=False), resized_shape(image.shape[1], image.shape[2], size))


def center_crop(image, size=224):
    """(3, H, W) -> (3, size, size), the central square (offsets rounded as torchvision does)."""
    check_array(image, "image", ndim=3)
    height, width = image.shape[1:]
    if height < size or width < size:
        raise ValueError(f"image must be at least {size}x{size} to crop, got {height}x{width}")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image[:, top:top + size, left:left + size].copy()


def normalize(image, mode="torch"):
    """(3, H, W) RGB in [0, 1] -> (3, H, W) network input.

    mode "torch": (x - IMAGENET_MEAN) / IMAGENET_STD per channel (torchvision's models).
    mode "caffe": channels reversed to BGR, times 255, minus CAFFE_BGR_MEAN (Keras' VGG16).
    """
    check_array(image, "image", ndim=3)
    check_choice(mode, "mode", MODES)
    if mode == "torch":
        mean, std = _column(IMAGENET_MEAN, image.dtype), _column(IMAGENET_STD, image.dtype)
        return (image - mean) / std
    return image[::-1] * image.dtype.type(255) - _column(CAFFE_BGR_MEAN, image.dtype)


def denormalize(x, mode="torch"):
    """The inverse of normalize: (3, H, W) network input -> (3, H, W) RGB, about [0, 1] (not clipped)."""
    check_array(x, "x", ndim=3)
    check_choice(mode, "mode", MODES)
    if mode == "torch":
        return x * _column(IMAGENET_STD, x.dtype) + _column(IMAGENET_MEAN, x.dtype)
    return ((x + _column(CAFFE_BGR_MEAN, x.dtype)) / x.dtype.type(255))[::-1].copy()


def _column(values, dtype):
    return np.asarray(values, dtype=dtype)[:, None, None]


def preprocess(image, mode="torch", resize=256, crop=224):
    """An image -> (1, 3, crop, crop) float32 network input: resize, centre crop, normalize."""
    rgb = as_image(image)
    return normalize(center_crop(resize_shorter_side(rgb, resize), crop), mode)[None]


# ----------------------------------------------------------------------------------------------
# Scores out
# ----------------------------------------------------------------------------------------------

def topk(scores, k=5, class_names=IMAGENET_CLASSES):
    """The k most probable classes of one image: [(class name, softmax probability), ...].

    scores: (K,) or (1, K) pre-softmax scores of one image, K = len(class_names) (1000 for ImageNet).
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[None]
    check_array(scores, "scores", ndim=2)
    classes = len(class_names)
    if scores.shape != (1, classes):
        raise ValueError(f"scores must be ({classes},) or (1, {classes}) for one image, got {scores.shape}")
    probabilities = ops.softmax(scores.astype(np.float64))[0]
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in best]


def top5(scores):
    """topk(scores, 5)."""
    return topk(scores, 5)


def class_names_for(count):
    """ImageNet's names for 1000 scores; "class 0", "class 1", ... for any other number."""
    return IMAGENET_CLASSES if count == len(IMAGENET_CLASSES) else tuple(f"class {k}" for k in range(count))
