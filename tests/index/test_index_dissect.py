"""Streaming dissection, piece by piece: the float keys keep the order of the values and invert; the
two-pass radix selection over any split of the values == np.quantile, bit for bit (hypothesis; ties,
zeros, negative values, one value); counts add like one pass; the three passes over the shapes ==
viz.dissection.dissect; a float64 network is refused with advice."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import data, models
from minicnn.index import ShapesSource, dissect_source, load_dissection
from minicnn.index.dissect import (add_counts, bucket_counts, order_keys, prefix_counts, quantile_ranks,
                                   thresholds_from_counts, values_from_keys)
from minicnn.viz.dissection import dissect


@st.composite
def activations(draw):
    """(n, K, h, w) float32 with ties, zeros, negative values and a wide range of magnitudes."""
    seed = draw(st.integers(0, 2**16))
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 10.0 ** draw(st.integers(-6, 6))
    kind = draw(st.sampled_from(["plain", "relu", "rounded", "constant"]))
    if kind == "relu":
        values = np.maximum(values, 0)
    elif kind == "rounded":
        values = np.round(values / values.std()) if values.std() > 0 else values
    elif kind == "constant":
        values = np.full(shape, values.flat[0])
    return values.astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(activations(), st.sampled_from([0.005, 0.01, 0.2, 0.5, 0.75, 1 / 3, 0.999]), st.data())
def test_two_pass_thresholds_over_any_split_equal_np_quantile(a, quantile, data):
    cuts = sorted(data.draw(st.sets(st.integers(1, len(a)), max_size=3), "cuts") | {len(a)})
    pieces = [a[s:e] for s, e in zip([0] + cuts, cuts) if e > s]
    order = data.draw(st.permutations(range(len(pieces))), "order")
    prefixes = [prefix_counts(pieces[i]) for i in order]
    total = prefixes[0]
    for counts in prefixes[1:]:
        total = add_counts(total, counts)
    one_pass = prefix_counts(a)
    for x, y in zip(total, one_pass):
        np.testing.assert_array_equal(x, y)
    ranks = quantile_ranks(total, a.shape[1], quantile)
    selected = bucket_counts(pieces[0], ranks.buckets)
    for piece in pieces[1:]:
        selected = add_counts(selected, bucket_counts(piece, ranks.buckets))
    expected = np.quantile(a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1), 1 - quantile, axis=1)
    got = thresholds_from_counts(ranks, selected)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=50, deadline=None)
@given(activations())
def test_keys_keep_the_order_of_the_values_and_invert(a):
    values = np.concatenate([a.ravel(), np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45], np.float32)])
    keys = order_keys(values)
    assert keys.dtype == np.uint64 and keys.max() < 2**32
    np.testing.assert_array_equal(values_from_keys(keys).view(np.uint32), values.view(np.uint32))
    ordered = values[np.argsort(keys, kind="stable")]
    assert np.all(ordered[:-1] <= ordered[1:])  # sorting by key sorts the values


def test_the_three_streamed_passes_equal_dissect_on_the_shapes(tmp_path):
    net = models.shapes_vgg(seed=4)
    got = dissect_source(net, ShapesSource(40, seed=11), ["relu1_2", "relu3_2"], tmp_path, batch_size=8,
                         shard_size=16, progress=False)
    shapes = data.make_shapes(40, seed=11)
    for layer in ("relu1_2", "relu3_2"):
        expected = dissect(net, shapes, layer, batch_size=8, progress=False)
        np.testing.assert_array_equal(got[layer].thresholds, expected.thresholds)
        np.testing.assert_array_equal(got[layer].iou, expected.iou)
        assert got[layer].table == expected.table and got[layer].concept_names == expected.concept_names
    reread = load_dissection(tmp_path, iou_threshold=0.2)["relu3_2"]
    np.testing.assert_array_equal(reread.iou, got["relu3_2"].iou)
    assert reread.iou_threshold == 0.2 and reread.detectors == [row._replace(is_detector=row.iou > 0.2)
                                                                for row in got["relu3_2"].detectors if row.iou > 0.2]


def test_a_float64_network_and_a_folder_of_images_are_refused(tmp_path):
    with pytest.raises(TypeError, match="the network's parameters are float64.*net.astype"):
        dissect_source(models.shapes_vgg(seed=4).astype(np.float64), ShapesSource(4), ["relu3_2"], tmp_path / "a",
                       batch_size=4, progress=False)
    from minicnn.index.sources import ArraySource

    with pytest.raises(ValueError, match="needs concept masks"):
        dissect_source(models.shapes_vgg(seed=4), ArraySource(np.zeros((2, 3, 64, 64), np.float32)), ["relu3_2"],
                       tmp_path / "b", progress=False)
