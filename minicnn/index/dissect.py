"""Network Dissection that streams: the numbers of minicnn.viz.dissection.dissect without keeping the
activations, in three passes whose partial results ADD across shards.

Threshold T_k = np.quantile(a_k, 1 - quantile) over every image and position (linear interpolation
between the order statistics x_(r) and x_(r+1), r = floor((M - 1)(1 - quantile)), M values per unit),
found EXACTLY in two passes by radix selection on the bits of the floats:

    key(a)  the float32's bits as an unsigned int, flipped so that a < b  <=>  key(a) < key(b)
    pass 1  count the values of each unit by the top 16 bits of their key (sign, exponent and 7 bits
            of mantissa): at most 65,536 buckets a unit, stored sparse; counts of shards add
    then    for each unit, the buckets holding ranks r and r + 1 (a cumulative sum of the counts)
    pass 2  count the values in those one or two buckets by their full 32-bit key: from the counts,
            the values at ranks r and r + 1 exactly; counts of shards add
    T_k     np.quantile([x_(r), x_(r+1)], gamma) with numpy's own gamma = (M-1)(1-q) - r, so the
            interpolation is numpy's, bit for bit

Memory is bounded by the number of distinct buckets and keys met (at most K x 65,536 each), never by
the number of images. Pass 3 tallies intersection(k, c) = sum_x |S_k(x) AND L_c(x)|, the unit areas
|S_k| and the concept areas |L_c| as int64 counts, which add across shards (Concepts lists each
image's concepts sparsely, so a Broden image with 10 of its 1,200 labels costs 10 masks).
"""
from typing import NamedTuple

import numpy as np

from ..viz.dissection import unit_segmentations

PREFIX_BITS = 16
KEY_BITS = 32


class Counts(NamedTuple):
    """Sparse counts per unit: units (m,) int64, keys (m,) uint64, counts (m,) int64, sorted by
    (unit, key), each pair once."""

    units: np.ndarray
    keys: np.ndarray
    counts: np.ndarray


def check_float32(activation, layer):
    if activation.dtype != np.float32:
        raise TypeError(f"streaming dissection works on float32 activations (their 32-bit keys); layer {layer!r} "
                        f"gives {activation.dtype}: use net.astype(np.float32)")
    return activation


def order_keys(values):
    """float32 array -> uint64 keys (< 2**32) ordered like the values: key(a) < key(b) iff a < b
    (-0.0 gets the key just below +0.0; NaN is not expected)."""
    bits = values.view(np.uint32).astype(np.uint64)
    negative = bits >= 1 << 31
    return np.where(negative, (1 << 32) - 1 - bits, bits + (1 << 31)).astype(np.uint64)


def values_from_keys(keys):
    """The inverse of order_keys: uint64 keys -> float32 values."""
    keys = np.asarray(keys, dtype=np.uint64)
    bits = np.where(keys >= 1 << 31, keys - (1 << 31), (1 << 32) - 1 - keys)
    return bits.astype(np.uint32).view(np.float32)


def _combined(units, keys):
    return (units.astype(np.uint64) << np.uint64(KEY_BITS)) | keys


def _split(combined, counts):
    return Counts((combined >> np.uint64(KEY_BITS)).astype(np.int64), combined & np.uint64((1 << KEY_BITS) - 1),
                  counts.astype(np.int64))


def count_pairs(units, keys):
    """Counts of each (unit, key) pair: units, keys 1-D of the same length, keys < 2**32."""
    return _split(*np.unique(_combined(units, keys), return_counts=True))


def add_counts(a, b):
    """The counts of a and b together (the union of their pairs, counts added)."""
    unique, inverse = np.unique(np.concatenate([_combined(a.units, a.keys), _combined(b.units, b.keys)]),
                                return_inverse=True)
    counts = np.zeros(len(unique), dtype=np.int64)
    np.add.at(counts, inverse, np.concatenate([a.counts, b.counts]))
    return _split(unique, counts)


def _unit_keys(activation):
    """activation (n, K, h, w) -> (units, keys), one entry per value."""
    n, k = activation.shape[:2]
    keys = order_keys(np.ascontiguousarray(activation))
    units = np.broadcast_to(np.arange(k, dtype=np.int64)[None, :, None, None], activation.shape)
    return units.ravel(), keys.ravel()


def prefix_counts(activation):
    """Pass 1 of one batch: Counts of (unit, top 16 bits of the key)."""
    units, keys = _unit_keys(activation)
    return count_pairs(units, keys >> np.uint64(KEY_BITS - PREFIX_BITS))


def bucket_counts(activation, buckets):
    """Pass 2 of one batch: Counts of (unit, full key) for the values whose prefix is one of the unit's
    buckets; buckets (K, 2) uint64."""
    units, keys = _unit_keys(activation)
    prefix = keys >> np.uint64(KEY_BITS - PREFIX_BITS)
    wanted = (prefix == buckets[units, 0]) | (prefix == buckets[units, 1])
    return count_pairs(units[wanted], keys[wanted])


class Ranks(NamedTuple):
    """What pass 2 looks for, per unit (K,): the ranks r and r + 1 (0-based, ascending), numpy's gamma,
    the buckets (K, 2) holding them and the number of values below each bucket (K, 2)."""

    ranks: np.ndarray
    gamma: np.ndarray
    buckets: np.ndarray
    below: np.ndarray


def quantile_ranks(prefixes, channels, quantile):
    """From pass 1's Counts of a layer with `channels` units -> Ranks for the level 1 - quantile."""
    ranks, gammas = np.zeros((channels, 2), np.int64), np.zeros(channels)
    buckets, below = np.zeros((channels, 2), np.uint64), np.zeros((channels, 2), np.int64)
    for unit in range(channels):
        mine = prefixes.units == unit
        cumulative = np.cumsum(prefixes.counts[mine])
        total = int(cumulative[-1])
        virtual = (total - 1) * np.asanyarray(1 - quantile)  # numpy's virtual index, float64
        low = int(np.floor(virtual))
        if virtual >= total - 1:  # numpy takes the largest value then
            low, gamma = total - 1, 0.0
        else:
            gamma = float(virtual - np.floor(virtual))
        ranks[unit] = (low, min(low + 1, total - 1))
        gammas[unit] = gamma
        for side, rank in enumerate(ranks[unit]):
            j = int(np.searchsorted(cumulative, rank, side="right"))
            buckets[unit, side] = prefixes.keys[mine][j]
            below[unit, side] = cumulative[j - 1] if j else 0
    return Ranks(ranks, gammas, buckets, below)


def thresholds_from_counts(ranks, keys):
    """From pass 2's Counts -> T_k (K,) float32, equal to np.quantile(a_k, 1 - quantile)."""
    thresholds = np.zeros(len(ranks.ranks), dtype=np.float32)
    prefix = keys.keys >> np.uint64(KEY_BITS - PREFIX_BITS)
    for unit in range(len(ranks.ranks)):
        pair = []
        for side in range(2):
            mine = (keys.units == unit) & (prefix == ranks.buckets[unit, side])
            cumulative = ranks.below[unit, side] + np.cumsum(keys.counts[mine])
            j = int(np.searchsorted(cumulative, ranks.ranks[unit, side], side="right"))
            pair.append(values_from_keys(keys.keys[mine][j]))
        thresholds[unit] = np.quantile(np.array(pair, dtype=np.float32), float(ranks.gamma[unit]))
    return thresholds


class Tally(NamedTuple):
    """Pass 3's counts: intersection (K, C), unit_area (K,), concept_area (C,), all int64."""

    intersection: np.ndarray
    unit_area: np.ndarray
    concept_area: np.ndarray


def tally_batch(activation, thresholds, concepts, n_concepts):
    """Pass 3 of one batch: S_k = up-sampled A_k > T_k at concepts.seg_hw, counted against each image's
    concept masks. activation (n, K, h, w); concepts a sources.Concepts for the same n images."""
    n, k = activation.shape[:2]
    segments = unit_segmentations(activation, thresholds, concepts.seg_hw).reshape(n, k, -1)
    intersection = np.zeros((k, n_concepts), dtype=np.int64)
    concept_area = np.zeros(n_concepts, dtype=np.int64)
    for segment, labels, masks in zip(segments, concepts.labels, concepts.masks):
        if len(labels):
            flat = masks.reshape(len(labels), -1).astype(np.float64)
            intersection[:, labels] += np.rint(segment.astype(np.float64) @ flat.T).astype(np.int64)
            concept_area[labels] += masks.reshape(len(labels), -1).sum(axis=1)
    return Tally(intersection, segments.sum(axis=(0, 2)).astype(np.int64), concept_area)


def add_tallies(a, b):
    return Tally(*(x + y for x, y in zip(a, b)))
