"""Weak segmentation from a map: threshold it, or cut a graph seeded by it; IoU with the true mask.

Threshold: the object is every pixel whose map value is above the map's `quantile` (0.8: the top
20% of the pixels).

Graph cut (Simonyan et al. 2014 seeded GraphCut with their saliency maps): with m the map scaled to
[0, 1], pixels with m above its `high` quantile are object seeds and those below its `low` quantile
background seeds. A labelling L (1 = object) costs

    E(L) = sum_p [ L_p (1 - m_p) + (1 - L_p) m_p ]                 every pixel follows its map value
         + sum_(p, q) w_pq [L_p != L_q]                            4-neighbours, a cut costs w_pq
         + HARD * (seeds labelled against their seed)

    w_pq = smoothness * exp(-beta ||I_p - I_q||^2),  beta = 1 / (2 mean over neighbours ||I_p - I_q||^2)

so the boundary prefers to run where the image's colour changes (Boykov & Jolly 2001). HARD exceeds
the cost of any labelling that obeys every seed, so no minimum breaks a seed. The minimum is an s-t
minimum cut (source = object), found by PyMaxflow (the `evaluate` extra).
"""
from typing import NamedTuple

import numpy as np

from ..checks import check_array, check_number, check_shape


class CutTerms(NamedTuple):
    """The energy of a labelling, (H, W) each: object_cost (cost of labelling the pixel object),
    background_cost, right (w between the pixel and its right neighbour; 0 in the last column),
    down (w to the pixel below; 0 in the last row)."""

    object_cost: np.ndarray
    background_cost: np.ndarray
    right: np.ndarray
    down: np.ndarray


def threshold_mask(heat, quantile=0.8):
    """(H, W) bool: the pixels whose value is above the map's `quantile` (none for a constant map)."""
    quantile = check_number(quantile, "quantile", low=0, high=1)
    return heat > np.quantile(heat, quantile)


def iou(predicted, truth):
    """|predicted & truth| / |predicted | truth| of two bool masks of one shape (1.0 when both are empty)."""
    if predicted.shape != truth.shape or predicted.dtype != bool or truth.dtype != bool:
        raise ValueError(f"predicted and truth must be bool masks of one shape, got {predicted.dtype} "
                         f"{predicted.shape} and {truth.dtype} {truth.shape}")
    union = np.count_nonzero(predicted | truth)
    return 1.0 if union == 0 else np.count_nonzero(predicted & truth) / union


def cut_terms(heat, image, low=0.3, high=0.9, smoothness=0.5):
    """The CutTerms of map heat (H, W) on image (C, H, W), seeds at the map's low and high quantiles."""
    check_array(image, "image", ndim=3)
    check_shape(np.asarray(heat), "heat", image.shape[1:])
    low = check_number(low, "low", low=0, high=1)
    high = check_number(high, "high", low=low, high=1, low_open=True)
    smoothness = check_number(smoothness, "smoothness", low=0)
    span = heat.max() - heat.min()
    m = (heat - heat.min()) / span if span > 0 else np.zeros(heat.shape)
    image = image.astype(np.float64)
    right = np.zeros(heat.shape)
    down = np.zeros(heat.shape)
    right[:, :-1] = ((image[:, :, 1:] - image[:, :, :-1]) ** 2).sum(axis=0)
    down[:-1, :] = ((image[:, 1:, :] - image[:, :-1, :]) ** 2).sum(axis=0)
    pairs = np.concatenate([right[:, :-1].ravel(), down[:-1, :].ravel()])
    beta = 1 / (2 * pairs.mean()) if pairs.mean() > 0 else 0.0
    right[:, :-1] = smoothness * np.exp(-beta * right[:, :-1])
    down[:-1, :] = smoothness * np.exp(-beta * down[:-1, :])
    object_cost, background_cost = 1 - m, m.copy()
    hard = heat.size + right.sum() + down.sum() + 1  # more than every labelling that obeys the seeds costs
    if span > 0:
        background_cost[m >= np.quantile(m, high)] = hard  # object seeds
        object_cost[m <= np.quantile(m, low)] = hard       # background seeds
    return CutTerms(object_cost, background_cost, right, down)


def cut_energy(labels, terms):
    """E(L) of a bool labelling (H, W) (True = object) under CutTerms."""
    labels = labels.astype(bool)
    unary = np.where(labels, terms.object_cost, terms.background_cost).sum()
    cut_right = (labels[:, 1:] != labels[:, :-1]) * terms.right[:, :-1]
    cut_down = (labels[1:, :] != labels[:-1, :]) * terms.down[:-1, :]
    return float(unary + cut_right.sum() + cut_down.sum())


def minimum_cut(terms):
    """The labelling (H, W) bool (True = object) of least cut_energy, by an s-t minimum cut (PyMaxflow).

    Source = object: a pixel left on the sink side pays its source edge (background_cost), one on the
    source side its sink edge (object_cost); neighbours split by the cut pay w_pq."""
    try:
        import maxflow
    except ImportError as error:
        raise ImportError("the graph cut needs PyMaxflow: pip install 'minicnn[evaluate]'") from error
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(terms.object_cost.shape)
    graph.add_grid_edges(nodes, weights=terms.right, structure=np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]),
                         symmetric=True)
    graph.add_grid_edges(nodes, weights=terms.down, structure=np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]),
                         symmetric=True)
    graph.add_grid_tedges(nodes, terms.background_cost, terms.object_cost)
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)  # get_grid_segments: True on the sink (background) side


def graph_cut_mask(heat, image, low=0.3, high=0.9, smoothness=0.5):
    """(H, W) bool: the object by a graph cut seeded by the map's low and high quantiles (see the module)."""
    return minimum_cut(cut_terms(heat, image, low, high, smoothness))
