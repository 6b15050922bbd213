"""A generated shapes dataset with ground truth, and image I/O.

Every image is RGB, ``size x size`` (default 64), float32 in [0, 1], stored NCHW. It shows ONE
foreground object of one of ten classes on a cluttered background:

    disc, ring, square, triangle, star, cross, diamond      solid shapes, one flat colour
    striped_patch, checker_patch, dotted_patch              square patches with a texture

The object has a random colour (a named palette colour plus a little jitter), size, position and
rotation. Its radius is 13% to 20% of the image side, so at 64 x 64 every object is 14 to 32
pixels across (everything, textures included, scales with the image size). The background is a smooth gradient between two dull colours plus a faint wave, and
every pixel gets a little Gaussian noise. On request a *distractor* is drawn too: a shape of a
kind that is not one of the ten classes (a bar, a crescent or a corner), in another colour, kept
at least ``DISTRACTOR_GAP`` pixels away from the object.

Because we draw the pictures ourselves we know the truth about every pixel: the object's mask and
box, the distractor's mask, and the concepts (shape, colour, texture, background) used by Network
Dissection. That is what lets us *measure* whether a visualization points at the right place.

How one image is drawn (see ``_draw_image``):

1. Pick the object: class, colour, radius ``r``, rotation angle, centre (far enough from the border
   that the whole object fits inside).
2. Every pixel centre (y, x) gets coordinates in the object's own frame: shift to the centre,
   rotate by minus the angle, divide by ``r``. In that frame each class is a simple test, e.g. the
   disc is ``u**2 + v**2 <= 1``. The test, evaluated on all pixels at once, is the mask.
3. Paint background, distractor, object, then add the noise and clip to [0, 1].

Image ``i`` depends only on ``(seed, start + i)``: its random numbers come from
``np.random.default_rng([seed, start + i])``. So any slice, any batch size, any order of
generation gives the same pictures, and a held-out set is simply another seed.
"""
import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from scipy.ndimage import maximum_filter

from minicnn.checks import check_choice, check_int_at_least

CLASS_NAMES = (
    "disc", "ring", "square", "triangle", "star", "cross", "diamond",
    "striped_patch", "checker_patch", "dotted_patch",
)
COLOR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "magenta", "white")
TEXTURE_NAMES = ("solid", "striped", "checker", "dotted")
DISTRACTOR_NAMES = ("bar", "crescent", "corner")

# RGB of each named colour, in the order of COLOR_NAMES: saturated, so they stand out from the
# dull background.
PALETTE = np.array(
    [
        [0.90, 0.10, 0.10],  # red
        [1.00, 0.55, 0.05],  # orange
        [0.95, 0.90, 0.10],  # yellow
        [0.10, 0.80, 0.15],  # green
        [0.10, 0.85, 0.90],  # cyan
        [0.15, 0.30, 1.00],  # blue
        [0.90, 0.15, 0.85],  # magenta
        [0.95, 0.95, 0.95],  # white
    ],
    dtype=np.float32,
)

HELD_OUT_SEED = 12345   # a dataset seed no shipped model was trained or selected on: evaluations use it
MIN_SIZE = 32           # smallest image side we can draw recognisable objects on
COLOR_JITTER = 0.06     # each channel of the object colour moves by at most this much
NOISE = 0.1             # every pixel and channel gets uniform noise in [-NOISE/2, NOISE/2]
DARK_SHADE = 0.2        # "off" pixels of a textured patch: this fraction of the object colour
DISTRACTOR_GAP = 3      # pixels of background at least between the distractor and the object
RADIUS_RANGE = (0.13, 0.20)             # object radius as a fraction of the image side
DISTRACTOR_RADIUS_RANGE = (0.09, 0.14)  # distractor radius as a fraction of the image side


# ----------------------------------------------------------------------------------------------
# The shapes, each a test on object-frame coordinates (u, v) measured in units of the radius.
# ----------------------------------------------------------------------------------------------

def _disc(u, v):
    """A filled circle of radius 1."""
    return u * u + v * v <= 1.0


def _ring(u, v):
    """A circle of radius 1 with a hole of radius 0.5."""
    rho2 = u * u + v * v
    return (rho2 <= 1.0) & (rho2 >= 0.25)


def _square(u, v):
    """A square of half-side 0.85."""
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85


def _triangle(u, v):
    """An equilateral triangle with circumradius 1.2: inside all three edges (inradius 0.6)."""
    inside = np.ones(u.shape, dtype=bool)
    for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
        # each edge has an outward normal at `angle`; its line lies 0.6 from the centre
        inside &= u * math.cos(angle) + v * math.sin(angle) <= 0.6
    return inside


def _star(u, v, points=5, outer=1.25, inner=0.5):
    """A five-pointed star: tips at radius 1.25, the notches between them at radius 0.5.

    Fold the angle into one half-arm, phi in [0, pi/points] (0 = a tip, pi/points = a notch);
    there the edge is the straight line from the tip T to the notch N, and a point is inside
    when it lies on the same side of that line as the centre.
    """
    half_arm = math.pi / points
    phi = np.mod(np.arctan2(v, u), 2 * half_arm)
    phi = np.minimum(phi, 2 * half_arm - phi)
    rho = np.sqrt(u * u + v * v)
    px, py = rho * np.cos(phi), rho * np.sin(phi)
    tx, ty = outer, 0.0
    nx, ny = inner * math.cos(half_arm), inner * math.sin(half_arm)
    # sign of the cross product (N - T) x (P - T); the centre (0, 0) gives a positive value
    return (nx - tx) * (py - ty) - (ny - ty) * (px - tx) >= 0


def _cross(u, v):
    """A plus sign: two bars of half-length 1 and half-width 0.3."""
    au, av = np.abs(u), np.abs(v)
    return ((au <= 1.0) & (av <= 0.3)) | ((av <= 1.0) & (au <= 0.3))


def _diamond(u, v):
    """A rhombus, long half-diagonal 1.25 and short 0.55: more than twice as long as wide, so
    a rotated square never looks like one, and its tips (47 degrees) are sharper than the
    triangle's corners (60 degrees)."""
    return np.abs(u) / 1.25 + np.abs(v) / 0.55 <= 1.0


def _patch(u, v):
    """The outline of every textured patch: a square of half-side 0.9."""
    return np.maximum(np.abs(u), np.abs(v)) <= 0.9


# class name -> (shape test, texture name, extent = largest distance of the shape from its centre)
SHAPES = {
    "disc": (_disc, "solid", 1.0),
    "ring": (_ring, "solid", 1.0),
    "square": (_square, "solid", 0.85 * np.sqrt(2)),
    "triangle": (_triangle, "solid", 1.2),
    "star": (_star, "solid", 1.25),
    "cross": (_cross, "solid", np.hypot(1.0, 0.3)),
    "diamond": (_diamond, "solid", 1.25),
    "striped_patch": (_patch, "striped", 0.9 * np.sqrt(2)),
    "checker_patch": (_patch, "checker", 0.9 * np.sqrt(2)),
    "dotted_patch": (_patch, "dotted", 0.9 * np.sqrt(2)),
}


# ----------------------------------------------------------------------------------------------
# Textures, each a test on object-frame coordinates in PIXELS (they turn with the patch).
# `scale` = size / 64, so a bigger image shows the same pattern at the same relative size;
# `phase` in [0, 1)^2 shifts the pattern so no two patches are cut the same way.
# ----------------------------------------------------------------------------------------------

def _stripes(up, vp, scale, phase):
    """Stripes across u: period 6 px, half of each period lit."""
    period = 6.0 * scale
    return np.mod(up / period + phase[0], 1.0) < 0.5


def _checker(up, vp, scale, phase):
    """A checkerboard of 5 px cells."""
    cell = 5.0 * scale
    iu = np.floor(up / cell + phase[0])
    iv = np.floor(vp / cell + phase[1])
    return np.mod(iu + iv, 2) == 0


def _dots(up, vp, scale, phase):
    """Small round dots, radius 1.5 px, on a square grid of spacing 6 px: far sparser than the
    checker's squares (about a fifth of the patch is lit, against a half)."""
    spacing = 6.0 * scale
    du = (np.mod(up / spacing + phase[0], 1.0) - 0.5) * spacing
    dv = (np.mod(vp / spacing + phase[1], 1.0) - 0.5) * spacing
    return du * du + dv * dv <= (1.5 * scale) ** 2


TEXTURES = {"striped": _stripes, "checker": _checker, "dotted": _dots}


# ----------------------------------------------------------------------------------------------
# Distractors: shapes of kinds that are not classes, so they never change the right answer.
# ----------------------------------------------------------------------------------------------

def _bar(u, v):
    """A long thin bar: half-length 1.2, half-width 0.3."""
    return (np.abs(u) <= 1.2) & (np.abs(v) <= 0.3)


def _crescent(u, v):
    """A disc of radius 1 with a disc of radius 0.85 cut out, shifted by 0.5 to one side."""
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.85 ** 2)


def _corner(u, v):
    """An L: two bars of length 1.2 and width 0.35 meeting at a right angle."""
    u, v = u + 0.4, v + 0.4
    return ((u >= 0) & (u <= 1.2) & (v >= 0) & (v <= 0.35)) | (
        (v >= 0) & (v <= 1.2) & (u >= 0) & (u <= 0.35)
    )


DISTRACTORS = {
    "bar": (_bar, np.hypot(1.2, 0.3)),
    "crescent": (_crescent, 1.0),
    "corner": (_corner, np.hypot(1.2, 0.75)),
}


# ----------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class ShapesBatch:
    """A batch of generated images with their ground truth (n images of side S).

    images:           (n, 3, S, S) float32 in [0, 1]
    labels:           (n,) int64, index into CLASS_NAMES
    masks:            (n, S, S) bool, the object's pixels
    boxes:            (n, 4) int64, (y0, x0, y1, x1) with y0 <= y < y1, x0 <= x < x1: the tight box
                      around the mask, so ``masks[i, y0:y1, x0:x1]`` holds all of it
    colors:           (n,) int64, index into COLOR_NAMES (the object's colour)
    textures:         (n,) int64, index into TEXTURE_NAMES (the object's texture)
    distractor_masks: (n, S, S) bool, the distractor's pixels (all False where there is none);
                      never overlaps the object
    indices:          (n,) int64, the global index of each image: image i was drawn from
                      ``default_rng([seed, indices[i]])``
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    colors: np.ndarray
    textures: np.ndarray
    distractor_masks: np.ndarray
    indices: np.ndarray

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, which):
        """A sub-batch: ``batch[:16]``, ``batch[labels == 3]`` or ``batch[[0, 5, 7]]``."""
        if isinstance(which, (int, np.integer)):
            which = [which]
        return ShapesBatch(**{f.name: getattr(self, f.name)[which] for f in fields(self)})

    @property
    def class_names(self):
        """The class name of every image, e.g. ['star', 'ring', ...]."""
        return [CLASS_NAMES[k] for k in self.labels]

    def concepts(self):
        """(concept names, masks (n, n_concepts, S, S) bool): see concept_masks."""
        return concept_masks(self)

    @property
    def captions(self):
        """Colour and class of every image, e.g. ['red star', 'blue ring', ...]."""
        return [f"{COLOR_NAMES[c]} {CLASS_NAMES[k]}" for c, k in zip(self.colors, self.labels)]


def concatenate(batches):
    """Join a list of ShapesBatch objects into one, in order."""
    batches = list(batches)
    if not batches:
        raise ValueError("concatenate needs at least one ShapesBatch, got an empty list")
    return ShapesBatch(
        **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(ShapesBatch)}
    )


# ----------------------------------------------------------------------------------------------
# Drawing one image
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _pixel_grid(size):
    """Coordinates (y, x) of every pixel centre, each (size, size) float32; read-only."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


def _object_frame(size, cy, cx, angle, radius):
    """Every pixel's (u, v) in the object's frame: centred, rotated by -angle, in radii."""
    y, x = _pixel_grid(size)
    dy, dx = y - cy, x - cx
    c, s = math.cos(angle), math.sin(angle)
    u = (c * dx + s * dy) / radius
    v = (-s * dx + c * dy) / radius
    return u, v


def _pick_color(rng):
    """A palette index and its RGB with a little jitter, shape (3,) float32."""
    color = int(rng.integers(len(COLOR_NAMES)))
    rgb = PALETTE[color] + rng.uniform(-COLOR_JITTER, COLOR_JITTER, 3).astype(np.float32)
    return color, np.clip(rgb, 0.0, 1.0)


def _pick_placement(rng, size, radius_range, extent):
    """A radius, a centre (cy, cx) keeping the whole shape >= 1 px inside, and an angle."""
    radius = size * rng.uniform(*radius_range)
    margin = extent * radius + 1.0
    cy, cx = rng.uniform(margin, size - 1 - margin, 2).tolist()
    angle = rng.uniform(0.0, 2 * math.pi)
    return radius, cy, cx, angle


def _draw_background(rng, size):
    """A smooth clutter, (3, size, size) float32, all values within about [0.2, 0.6].

    A linear gradient between two dull (nearly grey) colours in a random direction, plus a
    faint coloured wave of 1 to 3 periods across the image.
    """
    y, x = _pixel_grid(size)
    grey = rng.uniform(0.25, 0.55, (2, 1))
    start, end = (grey + rng.uniform(-0.05, 0.05, (2, 3))).astype(np.float32)  # colour at each end
    direction = rng.uniform(0, 2 * math.pi)
    along = (math.cos(direction) * (x - size / 2) + math.sin(direction) * (y - size / 2)) / size
    t = np.clip(along + 0.5, 0.0, 1.0)

    wave_direction = rng.uniform(0, 2 * math.pi)
    wavenumber = 2 * math.pi * rng.uniform(1.0, 3.0) / size
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(wavenumber * (math.cos(wave_direction) * x + math.sin(wave_direction) * y) + phase)
    amplitude = rng.uniform(0.0, 0.04, 3).astype(np.float32)
    return start[:, None, None] + (end - start)[:, None, None] * t + amplitude[:, None, None] * wave


def _draw_object(rng, size, classes):
    """Pick and draw the object. Returns (label, color, texture, mask, rgb pixels (3,S,S))."""
    label = CLASS_NAMES.index(classes[int(rng.integers(len(classes)))])
    shape_test, texture_name, extent = SHAPES[CLASS_NAMES[label]]
    color, rgb = _pick_color(rng)
    radius, cy, cx, angle = _pick_placement(rng, size, RADIUS_RANGE, extent)
    phase = rng.uniform(0.0, 1.0, 2).tolist()

    u, v = _object_frame(size, cy, cx, angle, radius)
    mask = shape_test(u, v)
    if texture_name == "solid":
        lit = np.ones_like(mask)
    else:
        lit = TEXTURES[texture_name](u * radius, v * radius, size / 64, phase)
    pixels = np.where(lit[None], rgb[:, None, None], DARK_SHADE * rgb[:, None, None])
    return label, color, TEXTURE_NAMES.index(texture_name), mask, pixels


def _draw_distractor(rng, size, object_mask, object_color, tries=20):
    """A distractor mask of a random kind, and its colour (not the object's), shape (3,).

    The position is drawn again (up to `tries` times) until the distractor keeps DISTRACTOR_GAP
    pixels away from the object; if it never does (about 1 image in 2,000), the try that came
    least close is kept and its pixels that are too close are removed.
    """
    kind = DISTRACTOR_NAMES[int(rng.integers(len(DISTRACTOR_NAMES)))]
    shape_test, extent = DISTRACTORS[kind]
    other_colors = [c for c in range(len(COLOR_NAMES)) if c != object_color]
    rgb = PALETTE[other_colors[int(rng.integers(len(other_colors)))]]
    near_object = _dilate(object_mask, DISTRACTOR_GAP)
    best_mask, best_overlap = None, None
    for _ in range(tries):
        radius, cy, cx, angle = _pick_placement(rng, size, DISTRACTOR_RADIUS_RANGE, extent)
        mask = shape_test(*_object_frame(size, cy, cx, angle, radius))
        overlap = np.count_nonzero(mask & near_object)
        if best_overlap is None or overlap < best_overlap:
            best_mask, best_overlap = mask, overlap
        if overlap == 0:
            break
    return best_mask & ~near_object, rgb


def _dilate(mask, pixels):
    """Grow a (S, S) bool mask by `pixels` in every direction (a square neighbourhood)."""
    return maximum_filter(mask, size=2 * pixels + 1)


def _draw_image(seed, index, size, classes, distractor, out):
    """Draw image number `index` into `out` (3, S, S). Returns (label, color, texture, mask,
    distractor_mask).

    The random numbers are drawn in a fixed order: object, background, noise, then distractor.
    So the same (seed, index) gives the same object and background with or without distractor.
    """
    rng = np.random.default_rng([seed, index])
    label, color, texture, mask, object_pixels = _draw_object(rng, size, classes)
    image = _draw_background(rng, size)
    noise = (rng.random((3, size, size), dtype=np.float32) - np.float32(0.5)) * np.float32(NOISE)

    distractor_mask = np.zeros((size, size), dtype=bool)
    if distractor > 0 and rng.random() < distractor:
        distractor_mask, distractor_rgb = _draw_distractor(rng, size, mask, color)
        image = np.where(distractor_mask[None], distractor_rgb[:, None, None], image)

    image = np.where(mask[None], object_pixels, image) + noise
    np.clip(image, 0.0, 1.0, out=out)
    return label, color, texture, mask, distractor_mask


def _tight_boxes(masks):
    """(n, 4) int64 boxes (y0, x0, y1, x1), end-exclusive, around each (S, S) mask."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    size_y, size_x = masks.shape[1:]
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
    y1, x1 = size_y - rows[:, ::-1].argmax(axis=1), size_x - cols[:, ::-1].argmax(axis=1)
    return np.stack([y0, x0, y1, x1], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def _check_generator_args(n, seed, size, start, distractor, classes):
    """Validate make_shapes' arguments; return (n, seed, size, start, distractor, classes)."""
    n = check_int_at_least(n, "n", 0)
    seed = check_int_at_least(seed, "seed", 0)
    size = check_int_at_least(size, "size", MIN_SIZE)
    start = check_int_at_least(start, "start", 0)
    if not isinstance(distractor, (bool, int, float, np.floating)) or not 0 <= distractor <= 1:
        raise ValueError(
            f"distractor must be True, False or a probability in [0, 1], got {distractor!r}"
        )
    if classes is None:
        classes = CLASS_NAMES
    elif isinstance(classes, str):
        raise TypeError(f"classes must be a list of class names, got the string {classes!r}")
    else:
        classes = tuple(classes)
        if not classes:
            raise ValueError(f"classes must name at least one class of {list(CLASS_NAMES)}, got []")
        for name in classes:
            check_choice(name, "each name in classes", CLASS_NAMES)
    return n, seed, size, start, float(distractor), classes


def make_shapes(n, seed=0, size=64, distractor=False, start=0, classes=None):
    """Generate images start, ..., start + n - 1 of the shapes dataset with this seed.

    n:          number of images (0 is allowed and gives an empty batch)
    seed:       int >= 0; another seed is another dataset (use one for training, one held out)
    size:       image side in pixels, >= 32
    distractor: False, True (every image gets a distractor) or a probability in [0, 1]
    start:      global index of the first image: ``make_shapes(n, start=k)`` is the same as
                ``make_shapes(k + n)[k:]``
    classes:    None for all ten, or a list of names from CLASS_NAMES to draw from (the labels
                still index CLASS_NAMES)
    Returns a ShapesBatch.
    """
    n, seed, size, start, distractor, classes = _check_generator_args(
        n, seed, size, start, distractor, classes
    )
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    distractor_masks = np.empty((n, size, size), dtype=bool)
    labels, colors, textures = (np.empty(n, dtype=np.int64) for _ in range(3))
    for i in range(n):
        labels[i], colors[i], textures[i], masks[i], distractor_masks[i] = _draw_image(
            seed, start + i, size, classes, distractor, out=images[i]
        )
    return ShapesBatch(
        images=images,
        labels=labels,
        masks=masks,
        boxes=_tight_boxes(masks),
        colors=colors,
        textures=textures,
        distractor_masks=distractor_masks,
        indices=np.arange(start, start + n, dtype=np.int64),
    )


def iter_shapes(n, seed=0, batch_size=256, start=0, **kwargs):
    """Yield the n images of ``make_shapes(n, seed, start=start, **kwargs)`` in ShapesBatch
    chunks of `batch_size` (the last may be smaller), so a large set never sits in memory."""
    n = check_int_at_least(n, "n", 0)
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    start = check_int_at_least(start, "start", 0)
    for offset in range(0, n, batch_size):
        yield make_shapes(min(batch_size, n - offset), seed=seed, start=start + offset, **kwargs)


# ----------------------------------------------------------------------------------------------
# Concepts for Network Dissection
# ----------------------------------------------------------------------------------------------

# The concepts by category (Broden's category names): the shape classes are objects, "background" a region.
CONCEPT_CATEGORIES = (("object", CLASS_NAMES), ("color", COLOR_NAMES), ("texture", TEXTURE_NAMES),
                      ("region", ("background",)))


def concept_names():
    """The names of all concepts, in the order of concept_masks' second axis: every shape class,
    every colour, every texture, then "background" (CONCEPT_CATEGORIES' order). All names are distinct."""
    return tuple(name for _, names in CONCEPT_CATEGORIES for name in names)


def concept_categories():
    """{concept name: its category} for every concept: "object", "color", "texture" or "region"."""
    return {name: category for category, names in CONCEPT_CATEGORIES for name in names}


def concept_masks(batch):
    """Pixel masks of every concept in every image: (names, masks (n, n_concepts, S, S) bool).

    A shape class, colour or texture concept is the object's mask in the images whose object has
    that class, colour or texture, and empty elsewhere. "background" is every pixel that belongs
    neither to the object nor to the distractor.
    """
    if not isinstance(batch, ShapesBatch):
        raise TypeError(f"batch must be a ShapesBatch (from make_shapes), got {type(batch).__name__}")
    n = len(batch)
    # (n, n_concepts) bool: does image i have concept k at all?
    has_concept = np.concatenate(
        [
            batch.labels[:, None] == np.arange(len(CLASS_NAMES)),
            batch.colors[:, None] == np.arange(len(COLOR_NAMES)),
            batch.textures[:, None] == np.arange(len(TEXTURE_NAMES)),
        ],
        axis=1,
    )
    object_concepts = batch.masks[:, None] & has_concept[:, :, None, None]
    background = ~(batch.masks | batch.distractor_masks)
    masks = np.concatenate([object_concepts, background.reshape(n, 1, *background.shape[1:])], axis=1)
    return concept_names(), masks
