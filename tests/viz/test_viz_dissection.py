"""Embeddings, nearest neighbours, Network Dissection and dead units, each against a brute-force or
hand-built ground truth: neighbours == an explicit loop, t-SNE keeps far-apart classes apart, a unit
built to detect red is found to detect red with IoU 1, IoU == counting pixel by pixel, a unit killed
with a bias of -1000 is dead."""

import numpy as np
import pytest

from minicnn import Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU, data
from minicnn.viz.dissection import dead_units, dissect, top_examples, unit_maxima
from minicnn.viz.embedding import embed, features, nearest_neighbors

SOLID = ["disc", "ring", "square", "triangle", "star", "cross", "diamond"]


def small_net(seed=0, size=16):
    return Network([
        ("conv1", Conv2d(3, 6, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(6, 8, 3, padding=1)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()), ("fc", Linear(8 * (size // 4) ** 2, 5)), ("relu_fc", ReLU()),
    ], seed=seed)


def random_images(n, seed, size=16):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 3, size, size)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# features and nearest neighbours


def test_features_are_the_flattened_layer_output_whatever_the_batch_size():
    net, images = small_net(), random_images(11, 0)
    expected = net.forward(images, upto="relu2").reshape(11, -1)
    for batch_size in (1, 4, 128):
        np.testing.assert_allclose(features(net, images, "relu2", batch_size=batch_size), expected, rtol=1e-6)


@pytest.mark.parametrize("query,k", [(0, 1), (7, 5), (19, 19)])
def test_nearest_neighbors_equal_brute_force(query, k):
    net, images = small_net(seed=1), random_images(20, 1)
    images[3] = images[7]  # a duplicate: distance 0 in both spaces
    found = nearest_neighbors(net, images, "relu_fc", query, k, batch_size=6)
    for indices, distances, vector in ((found.feature, found.feature_distances,
                                        lambda i: net.forward(images[i:i + 1])[0]),
                                       (found.pixel, found.pixel_distances, lambda i: images[i].ravel())):
        brute = sorted((float(np.linalg.norm(vector(i).astype(np.float64) - vector(query))), i)
                       for i in range(20) if i != query)[:k]
        np.testing.assert_array_equal(indices, [i for _, i in brute])
        np.testing.assert_allclose(distances, [d for d, _ in brute], rtol=1e-5, atol=1e-6)
    if query == 7:
        assert found.pixel[0] == 3 and found.pixel_distances[0] == 0


def test_nearest_neighbors_errors():
    net, images = small_net(), random_images(5, 0)
    with pytest.raises(ValueError, match="query_index 5 is out of range: there are 5 images"):
        nearest_neighbors(net, images, "relu2", 5, 2)
    with pytest.raises(ValueError, match="k must be at most 4"):
        nearest_neighbors(net, images, "relu2", 0, 5)
    with pytest.raises(KeyError, match="unknown layer"):
        nearest_neighbors(net, images, "relu9", 0, 2)


def test_embed_errors():
    net, images = small_net(), random_images(6, 0)
    with pytest.raises(ValueError, match=r"pca_dims must be an int >= 2, got -1"):
        embed(net, images, "relu2", pca_dims=-1)
    with pytest.raises(ValueError, match=r"perplexity must be a finite number > 0, got 0.0"):
        embed(net, images, "relu2", perplexity=0)
    with pytest.raises(ValueError, match=r"t-SNE needs at least 4 images, got 3"):
        embed(net, images[:3], "relu2")


def test_embed_gives_finite_coordinates_and_keeps_far_classes_apart():
    """Dark images with a vertical bar vs bright images with a horizontal bar: two clusters in 2-D."""
    rng = np.random.default_rng(2)
    n = 30
    labels = np.arange(n) % 2
    images = rng.uniform(0, 0.15, size=(n, 3, 16, 16)).astype(np.float32)
    images[labels == 0, :, :, 6:10] += 0.8
    images[labels == 1] += 0.5
    images[labels == 1, :, 6:10, :] += 0.4
    coords = embed(small_net(seed=3), images, "relu2", seed=0)
    assert coords.shape == (n, 2) and np.all(np.isfinite(coords))
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    assert np.all(labels[nearest] == labels)  # every point's nearest neighbour is of its class
    within = max(distances[labels == k][:, labels == k][np.isfinite(distances[labels == k][:, labels == k])].max()
                 for k in (0, 1))
    between = distances[labels == 0][:, labels == 1].min()
    assert between > 0.5 * within


# ----------------------------------------------------------------------------------------------
# Network Dissection


def red_detector(pool=False):
    """A 1x1 conv whose single channel computes red - 2 green - blue, then ReLU (and a max-pool).

    On the shapes images this is largest exactly on red objects (red ~ (0.9, 0.1, 0.1) gives 0.6;
    every other palette colour and the dull background give less)."""
    conv = Conv2d(3, 1, 1)
    conv.params["weight"][0, :, 0, 0] = [1.0, -2.0, -1.0]
    layers = [("conv", conv), ("relu", ReLU())] + ([("pool", MaxPool2d(2))] if pool else [])
    return Network(layers)


@pytest.fixture(scope="module")
def solid_shapes():
    return data.make_shapes(120, seed=5, classes=SOLID)


def test_dissect_finds_a_hand_built_red_detector_with_iou_one(solid_shapes):
    names, masks = data.concept_masks(solid_shapes)
    red_fraction = masks[:, names.index("red")].mean()  # quantile = the share of red pixels
    assert red_fraction > 0
    result = dissect(red_detector(), solid_shapes, "relu", quantile=red_fraction, progress=False)
    row = result.table[0]
    assert row.concept == "red" and row.is_detector
    assert row.iou == pytest.approx(1.0, abs=0.01)
    assert result.summary == "1 of 1 units of relu are detectors (IoU > 0.04)"
    # through a max-pool and back up: still red, a little blurred at the edges
    pooled = dissect(red_detector(pool=True), solid_shapes, "pool", quantile=red_fraction, progress=False)
    assert pooled.table[0].concept == "red" and pooled.table[0].iou > 0.6


def brute_force_iou(net, images, masks, layer, quantile):
    """IoU(k, c) counted pixel by pixel, image by image, with torch's bilinear up-sampling."""
    torch = pytest.importorskip("torch")
    activations = net.forward(images, upto=layer).astype(np.float64)
    n, units = activations.shape[:2]
    thresholds = [np.quantile(activations[:, k].ravel(), 1 - quantile) for k in range(units)]
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(activations), size=images.shape[2:],
                                                mode="bilinear", align_corners=False).numpy()
    iou = np.zeros((units, masks.shape[1]))
    for k in range(units):
        for c in range(masks.shape[1]):
            intersection = union = 0
            for i in range(n):
                fires = upsampled[i, k] > thresholds[k]
                intersection += np.logical_and(fires, masks[i, c]).sum()
                union += np.logical_or(fires, masks[i, c]).sum()
            iou[k, c] = intersection / union if union else 0.0
    return iou, np.array(thresholds)


def test_iou_equals_brute_force_and_does_not_depend_on_batching():
    rng = np.random.default_rng(6)
    net = small_net(seed=7, size=32).astype(np.float64)
    images = rng.uniform(0, 1, size=(9, 3, 32, 32))
    masks = rng.uniform(size=(9, 4, 32, 32)) < np.array([0.02, 0.1, 0.3, 0.0])[None, :, None, None]
    names = ["a", "b", "c", "never"]
    expected_iou, expected_thresholds = brute_force_iou(net, images, masks, "relu2", 0.05)
    for batches in ([(images, masks)], [(images[:4], masks[:4]), (images[4:], masks[4:])],
                    [(images[i:i + 1], masks[i:i + 1]) for i in range(9)]):
        result = dissect(net, batches, "relu2", quantile=0.05, concept_names=names, progress=False)
        np.testing.assert_allclose(result.thresholds, expected_thresholds, rtol=1e-10)
        np.testing.assert_allclose(result.iou, expected_iou, rtol=1e-10, atol=1e-12)
        assert [row.concept for row in result.table] == [names[c] for c in expected_iou.argmax(axis=1)]
        assert np.all(result.iou[:, 3] == 0)


def test_dissect_reads_a_shapes_batch_a_list_or_a_function_alike(solid_shapes):
    net = red_detector(pool=True)
    small = solid_shapes[:40]
    whole = dissect(net, small, "pool", batch_size=16, progress=False)
    as_list = dissect(net, [small[:25], small[25:]], "pool", progress=False)
    as_function = dissect(net, lambda: data.iter_shapes(40, seed=5, batch_size=7, classes=SOLID), "pool",
                          progress=False)
    for other in (as_list, as_function):
        np.testing.assert_allclose(other.iou, whole.iou, rtol=1e-12)
    with pytest.raises(TypeError, match="reads it twice"):
        dissect(net, data.iter_shapes(40, seed=5), "pool", progress=False)


def test_top_examples_are_the_images_where_the_unit_fires_most(solid_shapes):
    net = red_detector()
    names, masks = data.concept_masks(solid_shapes)
    result = dissect(net, solid_shapes, "relu", quantile=masks[:, names.index("red")].mean(), progress=False)
    [(unit, indices, unit_masks)] = top_examples(net, solid_shapes.images, "relu", result, [0], k=3)
    assert unit == 0 and unit_masks.shape == (3, 64, 64)
    assert all(data.COLOR_NAMES[solid_shapes.colors[i]] == "red" for i in indices)


def test_dissect_errors(solid_shapes):
    with pytest.raises(ValueError, match="quantile must lie strictly between 0 and 1"):
        dissect(red_detector(), solid_shapes, "relu", quantile=0, progress=False)
    with pytest.raises(KeyError, match="unknown layer"):
        dissect(red_detector(), solid_shapes, "conv5", progress=False)
    with pytest.raises(ValueError, match="concept_names"):
        dissect(red_detector(), [(solid_shapes.images, data.concept_masks(solid_shapes)[1])], "relu",
                progress=False)
    with pytest.raises(ValueError, match=r"iou_threshold must be a finite number >= 0 and <= 1, got nan"):
        dissect(red_detector(), solid_shapes, "relu", iou_threshold=np.nan, progress=False)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got 0"):
        dissect(red_detector(), solid_shapes, "relu", batch_size=0, progress=False)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got -1"):
        dead_units(red_detector(), solid_shapes.images, "relu", batch_size=-1)
    with pytest.raises(ValueError, match=r"eps must be a finite number, got nan"):
        dead_units(red_detector(), solid_shapes.images, "relu", eps=np.nan)


# ----------------------------------------------------------------------------------------------
# dead units


def test_dead_units_finds_the_channel_killed_by_a_large_negative_bias():
    net = small_net(seed=8)
    net["conv1"].params["bias"][:] = 0.1   # every other unit of relu1 fires somewhere
    net["conv1"].params["bias"][4] = -1e3  # channel 4 can never open its ReLU
    images = random_images(16, 9)
    np.testing.assert_array_equal(dead_units(net, images, "relu1"), [4])
    maxima = unit_maxima(net, images, "relu1", batch_size=5)
    np.testing.assert_allclose(maxima, net.forward(images, upto="relu1").max(axis=(0, 2, 3)), rtol=1e-6)
    assert maxima[4] == 0
    # eps: a unit whose largest activation stays below eps counts as dead too
    weakest = int(np.argsort(maxima)[1])
    assert set(dead_units(net, images, "relu1", eps=float(maxima[weakest]))) == {4, weakest}


# ----------------------------------------------------------------------------------------------
# the shipped model


@pytest.fixture(scope="module")
def shapes_vgg_dissection():
    from minicnn.models import load_pretrained

    net = load_pretrained("shapes_vgg")
    return dissect(net, lambda: data.iter_shapes(600, seed=data.HELD_OUT_SEED, batch_size=50), "relu3_2", progress=False)


def test_dissect_shapes_vgg_finds_a_detector_for_every_shape_class(shapes_vgg_dissection):
    """Issue 5: at relu3_2 of the shipped shapes_vgg, every shape class has a unit whose best concept is
    that class with IoU above 0.04 (like the paper's "81/256", the summary says how many are detectors)."""
    result = shapes_vgg_dissection
    print(result.summary)
    missing = [name for name in data.CLASS_NAMES if not result.units_for(name)]
    assert not missing, f"no detector unit for {missing}; {result.summary}"
    assert len(result.detectors) >= 16, result.summary
