"""Dataset search for every unit at once: one forward pass per batch updates the top k of every
channel of every requested layer (the Deep Visualization Toolbox's find_max_acts).

Each image n scores s_n = max_ij A_c[n](i, j) for channel c (minicnn.viz.search.top_patches: the
maximum, not the sum), at (i*, j*) = the first argmax in row-major order. A channel keeps the k
images with the highest score; equal scores go to the LOWER image id. That order is total (ids are
unique), so

    top_k(A union B) = top_k(top_k(A) union top_k(B))

exactly: shards can be searched apart, in any order, on any machine, and merged -- the result is
the single pass's, bit for bit.
"""
from typing import NamedTuple

import numpy as np

from ..viz.search import channel_maximum

EMPTY_ID = -1  # an unfilled slot (fewer than k images seen so far): activation -inf, position (-1, -1)


class TopK(NamedTuple):
    """The k best images of each of the K channels of one layer, best first along each row.

    ids:         (K, k) int64 image ids (EMPTY_ID in unfilled slots)
    activations: (K, k) the scores s_n, the layer's dtype (-inf in unfilled slots)
    positions:   (K, k, 2) int64 (i*, j*) in the layer's feature map ((-1, -1) in unfilled slots)
    """

    ids: np.ndarray
    activations: np.ndarray
    positions: np.ndarray

    @property
    def k(self):
        return self.ids.shape[1]


def empty_topk(channels, k, dtype=np.float32):
    """A TopK with every slot unfilled."""
    return TopK(np.full((channels, k), EMPTY_ID, dtype=np.int64), np.full((channels, k), -np.inf, dtype=dtype),
                np.full((channels, k, 2), -1, dtype=np.int64))


def merge_topk(a, b):
    """The k best of a's and b's candidates per channel: score descending, image id ascending on ties.

    a, b: TopK of the same layer (same K and k) whose images are different (disjoint ids)."""
    if a.ids.shape != b.ids.shape:
        raise ValueError(f"cannot merge top-k tables of shapes {a.ids.shape} and {b.ids.shape}: "
                         "they come from different layers or different k")
    return _best(TopK(*(np.concatenate([x, y], axis=1) for x, y in zip(a, b))), a.k)


def _best(candidates, k):
    """The first k columns of each row of `candidates` once sorted: score descending, id ascending."""
    unfilled = candidates.ids == EMPTY_ID  # sorted after every real image, whatever its id
    ids_key = np.where(unfilled, np.iinfo(np.int64).max, candidates.ids)
    order = np.lexsort((ids_key, -candidates.activations), axis=1)[:, :k]
    return TopK(np.take_along_axis(candidates.ids, order, axis=1),
                np.take_along_axis(candidates.activations, order, axis=1),
                np.take_along_axis(candidates.positions, order[:, :, None], axis=1))


def batch_topk(feature_maps, ids, k):
    """The top k of one batch: feature_maps (n, K, h, w) of the images with ids (n,) -> TopK."""
    n, channels = feature_maps.shape[:2]
    values, positions = channel_maximum(feature_maps.reshape(n * channels, *feature_maps.shape[2:]))
    candidates = TopK(np.ascontiguousarray(np.broadcast_to(ids[None, :], (channels, n)), dtype=np.int64),
                      values.reshape(n, channels).T.copy(),
                      positions.reshape(n, channels, 2).transpose(1, 0, 2).astype(np.int64))
    return _best(_padded(candidates, k), k)


def _padded(candidates, k):
    """Candidates with at least k columns (unfilled ones appended), so merge_topk keeps k."""
    missing = k - candidates.ids.shape[1]
    if missing <= 0:
        return candidates
    pad = empty_topk(candidates.ids.shape[0], missing, candidates.activations.dtype)
    return TopK(*(np.concatenate([c, p], axis=1) for c, p in zip(candidates, pad)))
