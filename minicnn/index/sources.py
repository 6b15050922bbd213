"""Where the images come from: a folder of image files, the shapes generator (and a Broden dataset,
minicnn.index.broden).

Every source is a numbered list: image id i = 0, 1, ..., len(source) - 1 names the same image every
time. A run cuts the ids into shards [start, stop); `source.part(start, stop)` is a small picklable
object that reads just those images (a Dask worker gets the part, never the whole listing), and
`part.batches(batch_size)` yields Batch(ids, images, skipped, concepts) for the ids
start, start + batch_size, ... -- the same batches whoever reads them, so any split into shards made
of whole batches runs exactly the forward passes of one single pass.

A file that cannot be read as an image is not an error: it is left out of its batch and listed in
`skipped` as (image id, file name, reason).
"""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_choice, check_int_at_least
from ..imagenet import MAX_ASPECT_RATIO

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class Batch(NamedTuple):
    """Images ready for the network, and what could not be read.

    ids:      (n,) int64, the image ids of the rows of `images`
    images:   (n, C, H, W) float32 network input
    skipped:  [(image id, file name, reason), ...] for the ids of this batch that could not be read
    concepts: None, or Concepts for dissection (one entry per row of `images`)
    """

    ids: np.ndarray
    images: np.ndarray
    skipped: list
    concepts: object = None


class Concepts(NamedTuple):
    """Ground-truth concept masks of a batch, sparse: each image lists only the concepts it has.

    seg_hw:  (sh, sw), the size of every mask (the activations are up-sampled to it)
    labels:  per image, an int64 array (m,) of concept indices (columns of the dissection)
    masks:   per image, a bool array (m, sh, sw): masks[j] is the pixels of concept labels[j]
    """

    seg_hw: tuple
    labels: list
    masks: list


class Preprocessing(NamedTuple):
    """How a model wants its images: an RGB image in [0, 1] -> shorter side resized to `resize`
    (bilinear, antialiased), the central `size` x `size` square kept, then normalised:
    kind "shapes" keeps RGB in [0, 1]; kind "imagenet" applies minicnn.imagenet.normalize(mode)."""

    kind: str
    size: int
    resize: int
    mode: str = None

    def display(self, rgb):
        """(3, H, W) RGB in [0, 1] -> (3, size, size) RGB in [0, 1]: what the network sees, shown."""
        from ..imagenet import center_crop, resize_shorter_side

        if min(rgb.shape[1:]) != self.resize:
            rgb = np.clip(resize_shorter_side(rgb, self.resize), 0, 1)
        return center_crop(rgb, self.size)

    def network_input(self, display):
        """(3, size, size) RGB in [0, 1] -> (3, size, size) float32 network input."""
        from ..imagenet import normalize

        if self.kind == "imagenet":
            return normalize(display, self.mode).astype(np.float32)
        return display.astype(np.float32)

    def describe(self):
        return dict(self._asdict())


def shapes_preprocessing(size=64):
    """The shapes models' images: RGB in [0, 1], size x size."""
    return Preprocessing("shapes", size, size)


def imagenet_preprocessing(mode="torch"):
    """torchvision's ImageNet transform: shorter side 256, centre crop 224, normalize(mode)."""
    check_choice(mode, "mode", ("torch", "caffe"))
    return Preprocessing("imagenet", 224, 256, mode)


def read_rgb(path):
    """(3, H, W) float32 RGB in [0, 1] (minicnn.data.load_image), or ValueError saying why not."""
    from ..io.images import load_image

    try:
        rgb = load_image(path)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    short, long = min(rgb.shape[1:]), max(rgb.shape[1:])
    if long > MAX_ASPECT_RATIO * short:
        raise ValueError(f"{path} is {rgb.shape[2]}x{rgb.shape[1]}, more than {MAX_ASPECT_RATIO} times longer "
                         "than wide: its centre crop would show almost nothing of it")
    return rgb


def _stack(images, dtype=np.float32):
    return np.stack(images).astype(dtype, copy=False) if images else np.zeros((0, 3, 1, 1), dtype)


# ----------------------------------------------------------------------------------------------
# a folder of image files


def list_images(root):
    """Every .jpg/.jpeg/.png file under `root` (any depth, any case of the suffix), as POSIX paths
    relative to root, sorted: the position in this list is the image id."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"images folder {str(root)!r} is not an existing folder")
    names = sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                   if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not names:
        raise ValueError(f"images folder {str(root)!r} holds no .jpg, .jpeg or .png file (searched every sub-folder)")
    return names


class FolderSource:
    """The image files under a folder (list_images), each read with Pillow and preprocessed."""

    kind = "images"

    def __init__(self, root, preprocessing, names=None):
        self.root = Path(root).resolve()
        self.names = list_images(self.root) if names is None else list(names)
        self.preprocessing = preprocessing

    def __len__(self):
        return len(self.names)

    @property
    def input_hw(self):
        return (self.preprocessing.size, self.preprocessing.size)

    def describe(self):
        """What the manifest records: the folder, the number of files and a checksum of their names."""
        listing = hashlib.sha256("\n".join(self.names).encode()).hexdigest()
        return {"kind": self.kind, "root": str(self.root), "count": len(self.names), "listing_sha256": listing}

    def part(self, start, stop):
        return FolderPart(str(self.root), tuple(self.names[start:stop]), start, self.preprocessing)

    def display(self, image_id):
        """(3, size, size) RGB in [0, 1]: image `image_id` as the network sees it, before normalising."""
        return self.preprocessing.display(read_rgb(self.root / self.names[image_id]))

    def network_input(self, image_id):
        return self.preprocessing.network_input(self.display(image_id))

    def name_of(self, image_id):
        return self.names[image_id]


class FolderPart(NamedTuple):
    """Files names[0], names[1], ... with image ids first_id, first_id + 1, ..."""

    root: str
    names: tuple
    first_id: int
    preprocessing: Preprocessing

    def __len__(self):
        return len(self.names)

    def batches(self, batch_size, with_concepts=False):
        if with_concepts:
            raise ValueError("a folder of images has no concept masks to dissect with: use a Broden dataset "
                             "(--broden DIR) or the shapes (--shapes N)")
        for offset in range(0, len(self.names), batch_size):
            ids, images, skipped = [], [], []
            for image_id in range(self.first_id + offset, self.first_id + min(offset + batch_size, len(self.names))):
                name = self.names[image_id - self.first_id]
                try:
                    display = self.preprocessing.display(read_rgb(Path(self.root) / name))
                except ValueError as error:
                    skipped.append((image_id, name, str(error)))
                    continue
                ids.append(image_id)
                images.append(self.preprocessing.network_input(display))
            yield Batch(np.array(ids, dtype=np.int64), _stack(images), skipped)


# ----------------------------------------------------------------------------------------------
# the shapes generator


class ShapesSource:
    """Images 0 .. n - 1 of minicnn.data.make_shapes(n, seed, size, distractor): image id = the
    generator's index, and the concept masks of minicnn.data.concept_masks for dissection."""

    kind = "shapes"

    def __init__(self, n, seed=0, size=64, distractor=False):
        self.n = check_int_at_least(n, "n", 1)
        self.seed = check_int_at_least(seed, "seed", 0)
        self.size = check_int_at_least(size, "size", 32)
        self.distractor = float(distractor)
        self.preprocessing = shapes_preprocessing(self.size)

    def __len__(self):
        return self.n

    @property
    def input_hw(self):
        return (self.size, self.size)

    def describe(self):
        return {"kind": self.kind, "n": self.n, "seed": self.seed, "size": self.size, "distractor": self.distractor}

    @property
    def concept_names(self):
        from ..data import concept_names

        return concept_names()

    def part(self, start, stop):
        return ShapesPart(self.seed, self.size, self.distractor, start, stop)

    def display(self, image_id):
        return self.part(image_id, image_id + 1).make(image_id, image_id + 1).images[0]

    network_input = display

    def name_of(self, image_id):
        return f"shapes seed {self.seed} image {image_id}"


class ShapesPart(NamedTuple):
    seed: int
    size: int
    distractor: float
    start: int
    stop: int

    def __len__(self):
        return self.stop - self.start

    def make(self, start, stop):
        from ..data import make_shapes

        return make_shapes(stop - start, seed=self.seed, size=self.size, distractor=self.distractor, start=start)

    def batches(self, batch_size, with_concepts=False):
        for first in range(self.start, self.stop, batch_size):
            shapes = self.make(first, min(first + batch_size, self.stop))
            concepts = None
            if with_concepts:
                _, masks = shapes.concepts()
                present = [np.flatnonzero(image_masks.any(axis=(1, 2))) for image_masks in masks]
                concepts = Concepts((self.size, self.size), present,
                                    [image_masks[labels] for image_masks, labels in zip(masks, present)])
            yield Batch(shapes.indices, shapes.images, [], concepts)


# ----------------------------------------------------------------------------------------------
# images already in memory


class ArraySource:
    """The rows of an (N, C, H, W) float array, already network input: image id = row. The array is
    pickled with each part, so keep it for small sets (tests, examples); it is not re-opened from a
    manifest (load_index(...).top works, crops need `images` again)."""

    kind = "array"

    def __init__(self, images, preprocessing=None):
        from ..checks import check_array

        self.images = check_array(images, "images", ndim=4)
        self.preprocessing = preprocessing or shapes_preprocessing(images.shape[2])

    def __len__(self):
        return len(self.images)

    @property
    def input_hw(self):
        return self.images.shape[2:]

    def describe(self):
        return {"kind": self.kind, "count": len(self.images), "shape": list(self.images.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest()}

    def part(self, start, stop):
        return ArrayPart(self.images[start:stop], start)


class ArrayPart(NamedTuple):
    images: np.ndarray
    first_id: int

    def __len__(self):
        return len(self.images)

    def batches(self, batch_size, with_concepts=False):
        if with_concepts:
            raise ValueError("an array of images has no concept masks to dissect with: use a Broden dataset or the shapes")
        for offset in range(0, len(self.images), batch_size):
            chunk = self.images[offset:offset + batch_size]
            yield Batch(np.arange(self.first_id + offset, self.first_id + offset + len(chunk), dtype=np.int64), chunk, [])
