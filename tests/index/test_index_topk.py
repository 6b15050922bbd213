"""The per-batch top-k of every channel, and its merge, against brute force:

- merging the batches' top-k tables in random groups and a random order == one pass == top_patches
  run channel by channel (minicnn.viz.search, the plain per-channel scan), including ties (duplicate
  images: equal scores go to the lower image id);
- build_index with any shard size (whole batches) == top_patches for every channel of every layer,
  boxes and crops included;
- merge_topk is commutative and associative, bit for bit.
"""
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import Conv2d, MaxPool2d, Network, ReLU
from minicnn.index import build_index
from minicnn.index.sources import ArraySource
from minicnn.index.topk import EMPTY_ID, batch_topk, merge_topk
from minicnn.viz.search import top_patches, top_patches_for_channels

LAYERS = ("relu1", "pool1", "relu2")


def small_net(seed):
    return Network([("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
                    ("conv2", Conv2d(4, 5, 3, padding=1)), ("relu2", ReLU())], seed=seed)


@st.composite
def image_sets(draw, max_images=14):
    """(images (n, 3, 8, 8) float32 drawn from a pool of 4 so that some repeat, their seed)."""
    seed = draw(st.integers(0, 2**16))
    pool = np.random.default_rng(seed).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    picks = draw(st.lists(st.integers(0, 3), min_size=1, max_size=max_images))
    return pool[picks], seed


def hits_of(table, channel):
    """[(image id, (i, j), activation)] of one channel of a TopK, unfilled slots left out."""
    return [(int(n), (int(i), int(j)), float(a))
            for n, a, (i, j) in zip(table.ids[channel], table.activations[channel], table.positions[channel])
            if n != EMPTY_ID]


def patch_hits(patches):
    return [(p.index, p.position, p.activation) for p in patches]


@settings(max_examples=40, deadline=None)
@given(image_sets(), st.integers(1, 5), st.integers(1, 8), st.data())
def test_random_shard_splits_merged_equal_one_pass_equal_brute_force(images_and_seed, batch_size, k, data):
    images, seed = images_and_seed
    net = small_net(seed % 5)
    starts = list(range(0, len(images), batch_size))
    tables = []
    for start in starts:
        outputs = net.activations(images[start:start + batch_size], list(LAYERS))
        ids = np.arange(start, start + len(outputs["relu2"]))
        tables.append({layer: batch_topk(outputs[layer], ids, k) for layer in LAYERS})
    cuts = sorted(data.draw(st.sets(st.sampled_from(range(1, len(starts) + 1)), max_size=len(starts)), "cuts")
                  | {len(starts)})
    shards = [tables[a:b] for a, b in zip([0] + cuts, cuts) if b > a]
    order = data.draw(st.permutations(range(len(shards))), "order")

    def merged(groups):
        total = None
        for group in groups:
            for table in group:
                total = table if total is None else {layer: merge_topk(total[layer], table[layer]) for layer in LAYERS}
        return total

    def merged_shards():
        parts = [merged([shard]) for shard in shards]
        return merged([[parts[i] for i in order]])

    one_pass, split = merged([tables]), merged_shards()
    for layer in LAYERS:
        for array_a, array_b in zip(one_pass[layer], split[layer]):
            np.testing.assert_array_equal(array_a, array_b)
        channels = one_pass[layer].ids.shape[0]
        brute = top_patches_for_channels(net, images, layer, range(channels), k=k, batch_size=batch_size,
                                         progress=False)
        for channel in range(channels):
            expected = patch_hits(top_patches(net, images, layer, channel, k=k, batch_size=batch_size, progress=False))
            assert hits_of(one_pass[layer], channel) == expected == patch_hits(brute[channel])


@settings(max_examples=12, deadline=None)
@given(image_sets(max_images=12), st.integers(1, 4), st.integers(1, 4), st.integers(1, 6))
def test_build_index_with_any_shard_size_equals_top_patches(images_and_seed, batch_size, batches_per_shard, k):
    images, seed = images_and_seed
    net = small_net(seed % 5)
    with tempfile.TemporaryDirectory() as folder:
        index = build_index(net, ArraySource(images), list(LAYERS), folder, k=k, batch_size=batch_size,
                            shard_size=batch_size * batches_per_shard, progress=False)
        for layer in LAYERS:
            for channel in range(index.channels(layer)):
                expected = top_patches(net, images, layer, channel, k=k, batch_size=batch_size, progress=False)
                hits = index.top(layer, channel)
                assert [(h.image_id, h.position, h.activation, h.box) for h in hits] == \
                       [(p.index, p.position, p.activation, p.box) for p in expected]
                assert [h.activation for h in hits] == sorted((h.activation for h in hits), reverse=True)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 6), st.integers(1, 4))
def test_merge_is_commutative_and_associative(seed, k, ties):
    rng = np.random.default_rng(seed)
    maps = np.round(rng.uniform(0, ties, (9, 3, 2, 2))).astype(np.float32)  # few distinct values: many ties
    a, b, c = (batch_topk(maps[i:i + 3], np.arange(i, i + 3), k) for i in (0, 3, 6))
    for x, y in zip(merge_topk(a, b), merge_topk(b, a)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(merge_topk(merge_topk(a, b), c), merge_topk(a, merge_topk(b, c))):
        np.testing.assert_array_equal(x, y)
    whole = batch_topk(maps, np.arange(9), k)
    for x, y in zip(merge_topk(merge_topk(c, a), b), whole):
        np.testing.assert_array_equal(x, y)


def test_ties_go_to_the_lower_image_id_and_short_sets_leave_slots_empty():
    maps = np.zeros((3, 1, 2, 2), dtype=np.float32)
    maps[:, 0, 1, 0] = 5.0  # three equal scores, each at (1, 0)
    table = merge_topk(batch_topk(maps[2:], np.array([7]), 4), batch_topk(maps[:2], np.array([9, 3]), 4))
    assert hits_of(table, 0) == [(3, (1, 0), 5.0), (7, (1, 0), 5.0), (9, (1, 0), 5.0)]
    assert table.ids[0, 3] == EMPTY_ID and table.activations[0, 3] == -np.inf


def test_merging_tables_of_different_layers_is_refused():
    maps = np.zeros((2, 3, 2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="different layers or different k"):
        merge_topk(batch_topk(maps, np.arange(2), 2), batch_topk(maps[:, :2], np.arange(2), 2))
