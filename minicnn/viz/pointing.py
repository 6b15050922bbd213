"""The pointing game: does a map's maximum fall on the object?

For an image whose object mask we know (the generated shapes), a map "points" at its maximum pixel,
and scores a hit when that pixel lies inside the mask grown by TOLERANCE pixels (every pixel within
TOLERANCE in y and in x: a (2T+1) x (2T+1) square neighbourhood). When several pixels share the
maximum (an occlusion map is flat over each stride cell) the map points at the maximum pixel nearest
their centroid; a map that is constant over the whole image points nowhere and counts as a miss.
The centre baseline always points at the image centre.

One implementation, used by minicnn/recipes/pointing_game.py (docs/results/pointing-game.md), the tour and the lessons.
"""
import numpy as np
from scipy.ndimage import binary_dilation

from ..checks import check_finite, check_int_at_least

TOLERANCE = 2  # pixels the object mask is grown by


def grown_mask(mask, tolerance=TOLERANCE):
    """The (H, W) bool mask grown by `tolerance` pixels: a (2t+1) x (2t+1) square around every pixel."""
    square = np.ones((2 * tolerance + 1, 2 * tolerance + 1), dtype=bool)
    return binary_dilation(mask, square)


def pointed_pixel(heat):
    """The (row, col) an (H, W) map points at: its maximum, ties broken towards the maximum pixels'
    centroid; None for a constant map (it points nowhere)."""
    if heat.max() == heat.min():
        return None
    ties = np.argwhere(heat == heat.max())
    nearest = np.argmin(((ties - ties.mean(axis=0)) ** 2).sum(axis=1))
    return tuple(ties[nearest])


def pointing_hits(maps, masks, tolerance=TOLERANCE):
    """maps (N, H, W), masks (N, H, W) bool -> (N,) bool: does each map point inside its grown mask?"""
    maps, masks = np.asarray(maps), np.asarray(masks)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps and masks must both have shape (N, H, W), got {maps.shape} and {masks.shape}")
    if masks.dtype != bool:
        raise TypeError(f"masks must be a bool array (True on the object), got dtype {masks.dtype}")
    check_finite(maps, "maps")
    tolerance = check_int_at_least(tolerance, "tolerance", 0)
    hits = []
    for heat, mask in zip(maps, masks):
        point = pointed_pixel(heat)
        hits.append(point is not None and bool(grown_mask(mask, tolerance)[point]))
    return np.array(hits, dtype=bool)


def centre_maps(n, hw):
    """(n, H, W) maps whose only maximum is the centre pixel (H // 2, W // 2): the baseline."""
    maps = np.zeros((n,) + tuple(hw))
    maps[:, hw[0] // 2, hw[1] // 2] = 1
    return maps
