"""Network Dissection (Bau, Zhou, Khosla, Oliva & Torralba 2017), and dead units.

Does a unit (one channel of a conv layer) detect a human concept -- "disc", "red", "striped"? Ask the
data: where the unit fires strongly, is the concept there, and only there?

1. Threshold. For unit k, T_k is the top-`quantile` level of its activations a_k(x, i, j) over every
   image and every position of the dataset:  P(a_k > T_k) = quantile  (0.005: the top half percent).
2. Segment. Up-sample each activation map A_k(x) to the image size (bilinear) and binarise it:
   S_k(x) = A_k(x)^up > T_k, a mask of the pixels where the unit fires.
3. Score. With L_c(x) the ground-truth mask of concept c in image x, summed over the whole dataset,

       IoU(k, c) = sum_x |S_k(x) AND L_c(x)| / sum_x |S_k(x) OR L_c(x)|

4. Label. Each unit gets its best concept argmax_c IoU(k, c); it is a DETECTOR of that concept when
   the IoU exceeds `iou_threshold` (0.04 in the paper, where 81 of the 256 conv5 units of a Places
   AlexNet were detectors).

The dataset is read twice. Pass 1 runs the network and keeps the layer's activations at their own
resolution (N x K x h x w values; for 2,000 images of a 64-channel 8 x 8 layer that is 33 MB of
float32) and takes EXACT per-unit quantiles of them with np.quantile. Pass 2 reads the concept masks
again, batch by batch, and accumulates the intersection and both areas as integer counts, so IoU is
exact whatever the batch size; the up-sampled maps exist only one batch at a time.

`dead_units`: the lecture's last insight -- a feature map that stays dark for every input (its ReLU
never opens) is a unit the network does not use.
"""
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_array, check_int_at_least, check_number
from .attribution import check_images, eval_mode, forward_checked
from .cam import upsample_bilinear


class DissectionRow(NamedTuple):
    """One unit: its best concept, that IoU, and whether the IoU exceeds the threshold."""

    unit: int
    concept: str
    iou: float
    is_detector: bool


class Dissection(NamedTuple):
    """table: one DissectionRow per unit, in unit order; iou (K, n_concepts): every IoU(k, c);
    thresholds (K,): T_k; concept_names: the columns of iou; layer, quantile, iou_threshold: the
    settings. `detectors` lists the detector rows by decreasing IoU; `summary` says how many."""

    table: list
    iou: np.ndarray
    thresholds: np.ndarray
    concept_names: tuple
    layer: str
    quantile: float
    iou_threshold: float

    @property
    def detectors(self):
        return sorted((row for row in self.table if row.is_detector), key=lambda row: -row.iou)

    @property
    def summary(self):
        """E.g. "12 of 64 units of conv3 are detectors (IoU > 0.04)"."""
        return (f"{len(self.detectors)} of {len(self.table)} units of {self.layer} are detectors "
                f"(IoU > {self.iou_threshold:g})")

    def units_for(self, concept):
        """The detector rows whose concept is `concept`, by decreasing IoU."""
        return [row for row in self.detectors if row.concept == concept]


# ----------------------------------------------------------------------------------------------
# Network Dissection


def dissect(net, dataset, layer, quantile=0.005, iou_threshold=0.04, batch_size=32, concept_names=None,
            progress=True):
    """Network Dissection of every unit (channel) of `layer`; returns a Dissection.

    dataset, read twice (see the module docstring), is one of
      - a ShapesBatch (minicnn.data.make_shapes; anything with .images and .concepts()): cut into
        `batch_size` images at a time, its concept masks from its .concepts();
      - a function returning a fresh iterable of batches, e.g. lambda: data.iter_shapes(2000, seed=1);
      - a list (or tuple) of batches.
    A batch is a ShapesBatch or a pair (images (n, C, H, W), masks (n, n_concepts, H, W) bool); with
    pairs, pass concept_names (one name per mask channel).
    """
    if not 0 < check_number(quantile, "quantile") < 1:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile!r}")
    iou_threshold = check_number(iou_threshold, "iou_threshold", low=0, high=1)
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    net._index(layer)  # a clear KeyError for an unknown layer
    with eval_mode(net):
        activations = [forward_checked(net, check_images(net, images, "images"), upto=layer)
                       for images, _, _ in _batches(dataset, batch_size, concept_names, "pass 1: activations",
                                                    progress)]
    if not activations:
        raise ValueError("dataset yielded no batches: there is nothing to dissect")
    if activations[0].ndim != 4:
        raise ValueError(f"dissect needs a layer with feature maps (N, K, h, w); {layer!r} gives shape "
                         f"{activations[0].shape[1:]} per image")
    thresholds = unit_thresholds(activations, quantile)
    counts, names = None, None
    passes = _batches(dataset, batch_size, concept_names, "pass 2: IoU", progress)
    for index, (images, masks, names) in enumerate(passes):
        if index >= len(activations) or len(activations[index]) != len(images):
            raise ValueError("the dataset gave different batches on its second reading; pass a list, a "
                             "ShapesBatch or a function that returns the same batches every time")
        counts = _add_counts(counts, iou_counts(activations[index], thresholds, masks))
    return dissection_from_counts(counts, thresholds, names, layer, quantile, iou_threshold)


def dissection_from_counts(counts, thresholds, concept_names, layer, quantile, iou_threshold):
    """The Dissection of one layer from its pixel counts (intersection (K, C), unit area (K,), concept
    area (C,)) and thresholds T_k (K,); iou_threshold picks the detectors."""
    iou = iou_from_counts(*counts)
    return Dissection(_table(iou, concept_names, iou_threshold), iou, thresholds, tuple(concept_names), layer,
                      quantile, iou_threshold)


def unit_thresholds(activations, quantile):
    """T_k with P(a_k > T_k) = quantile over all images and positions: (K,).

    activations: a list of (n, K, h, w) arrays (the batches of pass 1). np.quantile at level
    1 - quantile, linear interpolation between the two nearest order statistics.
    """
    per_unit = np.concatenate([a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1) for a in activations], axis=1)
    return np.quantile(per_unit, 1 - quantile, axis=1)


def unit_segmentations(activation, thresholds, image_hw):
    """S_k = up-sampled A_k > T_k: activation (n, K, h, w) -> bool (n, K, H, W), bilinear up-sampling."""
    n, k, h, w = activation.shape
    upsampled = upsample_bilinear(activation.reshape(n * k, h, w), image_hw).reshape(n, k, *image_hw)
    return upsampled > thresholds.reshape(1, k, 1, 1)


def iou_counts(activation, thresholds, masks, units_per_chunk=None):
    """Pixel counts of one batch: (intersection (K, C), unit area (K,), concept area (C,)), int64.

    activation (n, K, h, w); masks (n, C, H, W) bool. intersection[k, c] = sum |S_k AND L_c| is one
    matrix product of the flattened masks. Units go `units_per_chunk` at a time (default: as many as
    keep about 4 million up-sampled values in memory).
    """
    n, k = activation.shape[:2]
    image_hw = masks.shape[2:]
    pixels = int(np.prod(image_hw))
    chunk = units_per_chunk or max(1, 4_000_000 // max(n * pixels, 1))
    concepts = masks.transpose(0, 2, 3, 1).reshape(n * pixels, -1).astype(np.float64)  # (n*P, C)
    intersection = np.empty((k, concepts.shape[1]), dtype=np.int64)
    unit_area = np.empty(k, dtype=np.int64)
    for start in range(0, k, chunk):
        units = slice(start, min(start + chunk, k))
        segments = unit_segmentations(activation[:, units], thresholds[units], image_hw)  # (n, k', H, W)
        flat = segments.transpose(1, 0, 2, 3).reshape(segments.shape[1], n * pixels).astype(np.float64)
        intersection[units] = np.rint(flat @ concepts).astype(np.int64)  # 0/1 products: exact counts
        unit_area[units] = segments.sum(axis=(0, 2, 3))
    return intersection, unit_area, masks.sum(axis=(0, 2, 3)).astype(np.int64)


def iou_from_counts(intersection, unit_area, concept_area):
    """IoU (K, C) = I / (|S_k| + |L_c| - I), and 0 where both are empty."""
    union = unit_area[:, None] + concept_area[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros(intersection.shape), where=union > 0)


def _add_counts(total, counts):
    return counts if total is None else tuple(a + b for a, b in zip(total, counts))


def _table(iou, names, iou_threshold):
    best = iou.argmax(axis=1)
    return [DissectionRow(k, names[c], float(iou[k, c]), bool(iou[k, c] > iou_threshold))
            for k, c in enumerate(best)]


def _batches(dataset, batch_size, concept_names, description, progress):
    """One reading of the dataset: yields (images, masks (n, C, H, W) bool, concept names)."""
    if hasattr(dataset, "concepts"):  # one labelled batch (a ShapesBatch): read it batch_size at a time
        source = (dataset[start:start + batch_size] for start in range(0, len(dataset), batch_size))
        total = -(-len(dataset) // batch_size)
    elif callable(dataset):
        source, total = dataset(), None
    elif isinstance(dataset, (list, tuple)):
        source, total = dataset, len(dataset)
    else:
        raise TypeError(
            f"dataset must be a ShapesBatch, a list of batches, or a function returning an iterable of "
            f"batches (dissect reads it twice, so a one-shot {type(dataset).__name__} will not do; e.g. "
            f"lambda: data.iter_shapes(2000, seed=1)), got {type(dataset).__name__}")
    for batch in tqdm(source, total=total, desc=description, disable=not progress, leave=False):
        yield _images_and_masks(batch, concept_names)


def _images_and_masks(batch, concept_names):
    if hasattr(batch, "concepts"):  # a batch that labels its own pixels (a ShapesBatch)
        names, masks = batch.concepts()
        return batch.images, masks, names
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"each batch must be a ShapesBatch or a pair (images, masks), got {type(batch).__name__}")
    images, masks = batch
    check_array(images, "images", ndim=4)
    if not isinstance(masks, np.ndarray) or masks.dtype != bool or masks.ndim != 4:
        raise TypeError("masks must be a bool array (n, n_concepts, H, W)")
    if masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
        raise ValueError(f"masks {masks.shape} must be (n, n_concepts, H, W) for images {images.shape}")
    if concept_names is None or len(concept_names) != masks.shape[1]:
        raise ValueError(f"with (images, masks) batches pass concept_names, one per mask channel "
                         f"({masks.shape[1]}), got {concept_names!r}")
    return images, masks, tuple(concept_names)


# ----------------------------------------------------------------------------------------------
# examples for the figure


def top_examples(net, images, layer, dissection, units, k=4, batch_size=64):
    """For each unit, the k images of `images` where it fires most, with its segmentation S_k.

    Returns a list of (unit, indices (k,), masks (k, H, W) bool), ranked by the unit's maximum
    activation in each image.
    """
    from .embedding import features

    check_images(net, images, "images")
    maps = features(net, images, layer, batch_size).reshape(len(images), len(dissection.thresholds), -1)
    examples = []
    for unit in units:
        order = np.argsort(-maps[:, unit].max(axis=1), kind="stable")[:k]
        with eval_mode(net):
            activation = net.forward(images[order], upto=layer)[:, unit:unit + 1]
        masks = unit_segmentations(activation, dissection.thresholds[unit:unit + 1], images.shape[2:])[:, 0]
        examples.append((unit, order, masks))
    return examples


# ----------------------------------------------------------------------------------------------
# dead units


def unit_maxima(net, images, layer, batch_size=128):
    """The largest activation of each channel of `layer` over all images and positions: (K,)."""
    check_images(net, images, "images")
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    maxima = None
    with eval_mode(net):
        for start in range(0, len(images), batch_size):
            output = forward_checked(net, images[start:start + batch_size], upto=layer)
            batch_max = output.max(axis=tuple(i for i in range(output.ndim) if i != 1))
            maxima = batch_max if maxima is None else np.maximum(maxima, batch_max)
    return maxima


def dead_units(net, images, layer, eps=0.0, batch_size=128):
    """Indices of the channels of `layer` whose activation never exceeds eps on any image, anywhere.

    After a ReLU, eps=0 finds the units whose ReLU never opened: dark feature maps for every input.
    """
    eps = check_number(eps, "eps")
    return np.flatnonzero(unit_maxima(net, images, layer, batch_size) <= eps)
