"""Tests of the shapes dataset (minicnn.data) and its sample-grid figure.

What we hold the generator to: it is reproducible (a function of seed and index only), its masks
are exactly the drawn object, its boxes are tight, every class / colour / texture occurs, and
the concept masks for Network Dissection agree with the object masks.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from PIL import Image
from scipy.ndimage import binary_dilation

from minicnn import data
from minicnn.data import (
    CLASS_NAMES,
    COLOR_NAMES,
    TEXTURE_NAMES,
    ShapesBatch,
    concatenate,
    concept_masks,
    concept_names,
    iter_shapes,
    make_shapes,
)


def assert_same_batch(a, b):
    for name in ("images", "labels", "masks", "boxes", "colors", "textures", "distractor_masks", "indices"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.fixture(scope="module")
def big():
    """3,000 images, half of them with a distractor: enough for every class, colour, texture."""
    return make_shapes(3000, seed=11, distractor=0.5)


# the reference for the slicing tests: 40 images, some with a distractor
REFERENCE = make_shapes(40, seed=5, distractor=0.5)


# ----------------------------------------------------------------------------------------------
# Reproducibility
# ----------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_arrays():
    assert_same_batch(make_shapes(20, seed=3, distractor=True), make_shapes(20, seed=3, distractor=True))


def test_different_seed_gives_different_images():
    a, b = make_shapes(20, seed=3), make_shapes(20, seed=4)
    assert not np.array_equal(a.images, b.images)
    assert not np.array_equal(a.labels, b.labels)


@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 39), data_=st.data())
def test_start_gives_the_tail_of_a_longer_set(start, data_):
    n = data_.draw(st.integers(0, 40 - start))
    part = make_shapes(n, seed=5, distractor=0.5, start=start)
    assert_same_batch(part, REFERENCE[start:start + n])
    np.testing.assert_array_equal(part.indices, np.arange(start, start + n))


@settings(max_examples=15, deadline=None)
@given(batch_size=st.integers(1, 45), n=st.integers(1, 40))
def test_iter_shapes_concatenated_equals_make_shapes(batch_size, n):
    chunks = list(iter_shapes(n, seed=5, batch_size=batch_size, distractor=0.5))
    assert all(len(c) <= batch_size for c in chunks)
    assert_same_batch(concatenate(chunks), REFERENCE[:n])


def test_iter_shapes_with_start_and_nothing_to_do():
    assert_same_batch(concatenate(iter_shapes(10, seed=5, batch_size=4, start=30, distractor=0.5)), REFERENCE[30:])
    assert list(iter_shapes(0)) == []


def test_distractor_changes_only_its_own_pixels():
    plain, cluttered = make_shapes(30, seed=2), make_shapes(30, seed=2, distractor=True)
    for name in ("labels", "masks", "boxes", "colors", "textures"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(cluttered, name))
    outside = ~cluttered.distractor_masks[:, None].repeat(3, axis=1)
    np.testing.assert_array_equal(plain.images[outside], cluttered.images[outside])


def test_a_subset_of_classes_keeps_the_global_labels():
    batch = make_shapes(60, seed=1, classes=["ring", "star"])
    assert set(batch.labels) == {CLASS_NAMES.index("ring"), CLASS_NAMES.index("star")}


# ----------------------------------------------------------------------------------------------
# Types, shapes, ranges
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 80])
def test_dtypes_shapes_and_range(size):
    batch = make_shapes(12, seed=0, size=size, distractor=True)
    assert batch.images.shape == (12, 3, size, size) and batch.images.dtype == np.float32
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert batch.masks.shape == batch.distractor_masks.shape == (12, size, size)
    assert batch.masks.dtype == batch.distractor_masks.dtype == bool
    assert batch.boxes.shape == (12, 4)
    for name in ("labels", "boxes", "colors", "textures", "indices"):
        assert getattr(batch, name).dtype == np.int64, name
    assert batch.masks.any(axis=(1, 2)).all() and batch.distractor_masks.any(axis=(1, 2)).all()


def test_empty_batch():
    batch = make_shapes(0)
    assert len(batch) == 0 and batch.images.shape == (0, 3, 64, 64) and batch.boxes.shape == (0, 4)


# ----------------------------------------------------------------------------------------------
# Masks and boxes are the drawn object
# ----------------------------------------------------------------------------------------------

def test_masks_are_inside_the_image_and_not_cut(big):
    assert big.masks.any(axis=(1, 2)).all()
    for border in (big.masks[:, 0, :], big.masks[:, -1, :], big.masks[:, :, 0], big.masks[:, :, -1]):
        assert not border.any()


def test_boxes_are_tight(big):
    for mask, (y0, x0, y1, x1) in zip(big.masks, big.boxes):
        assert 0 <= y0 < y1 <= mask.shape[0] and 0 <= x0 < x1 <= mask.shape[1]
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # encloses the mask
        assert mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()


def test_objects_are_at_least_14_pixels_across(big):
    heights, widths = big.boxes[:, 2] - big.boxes[:, 0], big.boxes[:, 3] - big.boxes[:, 1]
    assert np.maximum(heights, widths).min() >= 14


def test_mask_pixels_are_the_object_colour_and_its_border_is_not(big):
    """Inside the mask every pixel is the object colour (lit) or, in a textured patch, its dark
    shade, up to the noise; the pixels just outside the mask are never the object colour."""
    tolerance = data.NOISE + 1e-5
    for i in range(0, len(big), 3):
        image, mask = big.images[i], big.masks[i]
        inside = image[:, mask]
        lit = inside.max(axis=0) > 0.5
        lit_color = inside[:, lit].mean(axis=1)
        assert np.abs(lit_color - data.PALETTE[big.colors[i]]).max() <= data.COLOR_JITTER + 0.03
        assert np.ptp(inside[:, lit], axis=1).max() <= tolerance
        if big.textures[i] == TEXTURE_NAMES.index("solid"):
            assert lit.all()
        else:
            assert 0.1 < lit.mean() < 0.9, "a textured patch has both lit and dark pixels"
            dark = inside[:, ~lit]
            assert np.ptp(dark, axis=1).max() <= tolerance
            assert np.abs(dark.mean(axis=1) - data.DARK_SHADE * lit_color).max() <= 0.05
        border = binary_dilation(mask) & ~mask
        assert (np.abs(image[:, border] - lit_color[:, None]).max(axis=0) > tolerance).all()


def test_distractor_keeps_away_from_the_object(big):
    with_distractor = big.distractor_masks.any(axis=(1, 2))
    assert 0.4 < with_distractor.mean() < 0.6  # distractor=0.5
    for mask, other in zip(big.masks, big.distractor_masks):
        near = binary_dilation(mask, np.ones((3, 3), bool), iterations=data.DISTRACTOR_GAP)
        assert not (near & other).any()
    assert not make_shapes(10, seed=1).distractor_masks.any()


# ----------------------------------------------------------------------------------------------
# Coverage and concepts
# ----------------------------------------------------------------------------------------------

def test_every_class_colour_and_texture_appears_a_few_hundred_times(big):
    assert np.bincount(big.labels, minlength=len(CLASS_NAMES)).min() >= 200
    assert np.bincount(big.colors, minlength=len(COLOR_NAMES)).min() >= 200
    assert np.bincount(big.textures, minlength=len(TEXTURE_NAMES)).min() >= 200
    # colour is independent of class: every (class, colour) pair occurs
    pairs = np.zeros((len(CLASS_NAMES), len(COLOR_NAMES)), int)
    np.add.at(pairs, (big.labels, big.colors), 1)
    assert pairs.min() > 0


def test_concept_masks_agree_with_the_object_masks(big):
    batch = big[:400]
    names, masks = concept_masks(batch)
    assert names == concept_names() and len(set(names)) == len(names)
    assert masks.shape == (400, len(names), 64, 64) and masks.dtype == bool
    for i in range(len(batch)):
        present = {
            CLASS_NAMES[batch.labels[i]],
            COLOR_NAMES[batch.colors[i]],
            TEXTURE_NAMES[batch.textures[i]],
        }
        for k, name in enumerate(names[:-1]):
            expected = batch.masks[i] if name in present else np.zeros_like(batch.masks[i])
            np.testing.assert_array_equal(masks[i, k], expected, err_msg=name)
    background = masks[:, names.index("background")]
    np.testing.assert_array_equal(background, ~(batch.masks | batch.distractor_masks))
    assert masks.any(axis=(0, 2, 3)).all(), "every concept occurs somewhere"


def test_batch_indexing():
    one = REFERENCE[3]
    assert isinstance(one, ShapesBatch) and len(one) == 1 and one.images.shape == (1, 3, 64, 64)
    rings = REFERENCE[REFERENCE.labels == CLASS_NAMES.index("ring")]
    assert set(rings.class_names) <= {"ring"}


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n=-1), ValueError, r"n must be an int >= 0, got -1"),
        (dict(n=2.5), TypeError, r"n must be an int >= 0, got float 2.5"),
        (dict(n=True), TypeError, r"n must be an int"),
        (dict(n=1, size=16), ValueError, r"size must be an int >= 32, got 16"),
        (dict(n=1, seed=-3), ValueError, r"seed must be an int >= 0, got -3"),
        (dict(n=1, start=-1), ValueError, r"start must be an int >= 0, got -1"),
        (dict(n=1, distractor=2), ValueError, r"distractor must be .* got 2"),
        (dict(n=1, classes=["disc", "dsic"]), ValueError, r"each name in classes must be one of .* got 'dsic'"),
        (dict(n=1, classes="disc"), TypeError, r"classes must be a list of class names"),
        (dict(n=1, classes=[]), ValueError, r"classes must name at least one class"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_shapes(**kwargs)


def test_bad_iter_and_concept_arguments():
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got 0"):
        next(iter_shapes(5, batch_size=0))
    with pytest.raises(TypeError, match=r"batch must be a ShapesBatch"):
        concept_masks(np.zeros((2, 3, 64, 64)))


# ----------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------

def test_sample_grid_figure(tmp_path):
    from minicnn.plot import sample_grid

    fig = sample_grid(REFERENCE, n=6, path=tmp_path / "grid.png")
    assert isinstance(fig, Figure)
    assert sum(ax.images != [] for ax in fig.axes) == 6
    assert Image.open(tmp_path / "grid.png").size[0] > 100
    with pytest.raises(TypeError, match="batch must be a ShapesBatch"):
        sample_grid(REFERENCE.images)
