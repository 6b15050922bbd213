"""What does one unit respond to? Dataset search and the DeconvNet (lecture sections 4 and 6).

A "unit" here is one channel c of a convolutional layer L: a feature map A_c (h x w), one value per
position, each position (i, j) looking at its own box of the image (its receptive field, see
minicnn.shapes.receptive_field).

    top_patches(net, images, layer, c, k=9)   dataset search: run many images, score each image n by
                                              the channel's MAXIMUM over positions,
                                                  s_n = max_ij A_c[n](i, j),
                                              keep the k highest, and crop each image to the receptive
                                              field of its winning position (i*, j*).
    deconvnet(net, x, layer, c)               Zeiler & Fergus 2014: keep that one maximum, zero every
                                              other activation of the layer, and send it back to the
                                              pixels: un-pool with the switches, ReLU on the signal,
                                              transposed filters. It is net.backward with rule
                                              "deconvnet", from a seed with exactly one non-zero.

Why the maximum and not the sum: the forum's vertical-edge filter gives a map whose values sum to
+240 on one image and -240 on its mirror image. The sum mixes the places where the pattern is with
the places where its opposite is; the maximum says how strongly the pattern appears somewhere, and
its position says WHERE, so there is one patch to show.

The crop and the DeconvNet reconstruction both live inside the receptive field of (i*, j*): no pixel
outside that box can change the unit, and none receives anything on the way back (exactly with the
convolutions on algorithm "im2col"; Winograd's tiles leave rounding-level values beside the box).
"""
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_int_at_least
from ..shapes import receptive_field, receptive_field_box
from .attribution import check_images, eval_mode, forward_checked


class Patch(NamedTuple):
    """One hit of the dataset search.

    index:         position of the image in the stream of images (0-based, counted across batches)
    position:      (i, j) of the channel's maximum in the layer's feature map (first one on ties)
    activation:    that maximum, A_c[index](i, j), as a Python float
    box:           (top, bottom, left, right), half-open, the receptive field of (i, j) clipped to
                   the image: image[:, top:bottom, left:right] is the crop
    unclipped_box: the same box before clipping: it may reach outside the image (into the padding);
                   its sides are the receptive field's size
    crop:          (C, bottom - top, right - left), a copy of the image's pixels in `box`
    """

    index: int
    position: tuple
    activation: float
    box: tuple
    unclipped_box: tuple
    crop: np.ndarray


class Deconvnet(NamedTuple):
    """The DeconvNet projection of one unit's maximum.

    reconstruction: (C, H, W), what reaches the pixels (a signal, not an image: show it normalised)
    position:       (i, j) of the channel's maximum, the only non-zero of the seed
    activation:     the value kept there, A_c(i, j)
    box:            the receptive field of (i, j), clipped: (top, bottom, left, right), half-open
    unclipped_box:  the same box before clipping
    crop:           reconstruction[:, top:bottom, left:right]; everything outside it is zero
    """

    reconstruction: np.ndarray
    position: tuple
    activation: float
    box: tuple
    unclipped_box: tuple
    crop: np.ndarray


# ----------------------------------------------------------------------------------------------
# which layers have a receptive field, and argument checks


def check_spatial_layer(net, layer):
    """The ReceptiveField of `layer`, or a clear error naming the layers that have one."""
    valid = net.spatial_layers()
    if layer not in net.names:
        raise KeyError(f"unknown layer {layer!r}; layers with a receptive field (valid here) are {valid}")
    if layer not in valid:
        raise ValueError(
            f"layer {layer!r} ({type(net[layer]).__name__}) comes after the network stops keeping positions, "
            f"so its units have no receptive field; valid layers are {valid}"
        )
    return receptive_field(net, upto=layer)[-1]


def check_channel(layer, channel, num_channels):
    """An int in [0, num_channels) or a clear error."""
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be an int in [0, {num_channels}), got {channel!r}")
    if not 0 <= channel < num_channels:
        raise ValueError(f"channel {channel} is out of range: layer {layer!r} has {num_channels} channels, "
                         f"valid channels are 0 to {num_channels - 1}")
    return int(channel)


def _unclipped_box(field, i, j):
    """(top, bottom, left, right) of unit (i, j)'s receptive field, before clipping to the image."""
    top = field.start[0] + i * field.jump[0]
    left = field.start[1] + j * field.jump[1]
    return (top, top + field.size[0], left, left + field.size[1])


def channel_maximum(feature_map):
    """(N, h, w) maps of one channel -> (values (N,), positions (N, 2)): s_n = max_ij A[n](i, j) and
    its (i, j), the first in row-major order when several positions tie."""
    flat = feature_map.reshape(len(feature_map), -1)
    winners = flat.argmax(axis=1)
    values = flat[np.arange(len(flat)), winners]
    return values, np.stack(np.unravel_index(winners, feature_map.shape[1:]), axis=1)


# ----------------------------------------------------------------------------------------------
# dataset search


def image_batches(images, batch_size):
    """Yield (N, C, H, W) arrays of at most `batch_size` images, in order.

    images: one (N, C, H, W) array; a ShapesBatch (anything with an `.images` array); or an iterable
    of those (e.g. minicnn.data.iter_shapes(...), a list of arrays, a generator) -- then each batch is
    cut further into `batch_size` pieces, so memory stays bounded whatever the source hands over.
    A (C, H, W) array inside an iterable counts as one image.
    """
    single = isinstance(images, np.ndarray) or hasattr(images, "images")
    if single:
        images = [images]
    elif isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise TypeError(f"images must be an (N, C, H, W) array, a ShapesBatch or an iterable of them, "
                        f"got {type(images).__name__}")
    for source in images:
        array = getattr(source, "images", source)
        if not single and isinstance(array, np.ndarray) and array.ndim == 3:
            array = array[None]
        if not isinstance(array, np.ndarray):
            raise TypeError(f"each batch of images must be an (N, C, H, W) numpy array or a ShapesBatch, "
                            f"got {type(source).__name__}")
        for start in range(0, len(array), batch_size):
            yield array[start:start + batch_size]


def _count_images(images):
    """The number of images when it is known in advance (for the progress bar), else None."""
    array = getattr(images, "images", images)
    return len(array) if isinstance(array, np.ndarray) else None


def _batch_hits(batch, first_index, feature_map, field, k):
    """The batch's own top-k as Patch objects, best first (ties: lower index first)."""
    values, positions = channel_maximum(feature_map)
    order = np.lexsort((np.arange(len(values)), -values))[:k]
    hits = []
    for n in order:
        i, j = (int(v) for v in positions[n])
        top, bottom, left, right = receptive_field_box(field, i, j, batch.shape[2:])
        crop = batch[n, :, top:bottom, left:right].copy()
        hits.append(Patch(first_index + int(n), (i, j), float(values[n]), (top, bottom, left, right),
                          _unclipped_box(field, i, j), crop))
    return hits


def _ranked(patches, k):
    """The k best patches: largest activation first, the lower image index first on ties."""
    return sorted(patches, key=lambda patch: (-patch.activation, patch.index))[:k]


def top_patches_for_channels(net, images, layer, channels, k=9, batch_size=128, progress=True):
    """Dataset search for several channels of one layer in a single pass over the images.

    Returns {channel: [Patch, ...]} with the k best images of each channel (see top_patches). One
    forward pass per batch serves every channel, so searching many units costs one sweep.
    """
    field = check_spatial_layer(net, layer)
    k, batch_size = check_int_at_least(k, "k", 1), check_int_at_least(batch_size, "batch_size", 1)
    channels = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
    if not channels:
        raise ValueError("channels is empty: give at least one channel to search for")
    best = {}
    seen = 0
    total = _count_images(images)
    with eval_mode(net), tqdm(total=total, desc=f"search {layer}", unit="image", disable=not progress) as bar:
        for batch in image_batches(images, batch_size):
            check_images(net, batch, "images")
            output = forward_checked(net, batch, upto=layer)  # (B, K, h, w)
            if seen == 0:  # the first batch tells how many channels the layer has
                best = {check_channel(layer, c, output.shape[1]): [] for c in channels}
            for c in best:
                best[c] = _ranked(best[c] + _batch_hits(batch, seen, output[:, c], field, k), k)
            seen += len(batch)
            bar.update(len(batch))
    if seen == 0:
        raise ValueError("images is empty: there is nothing to search")
    return best


def top_patches(net, images, layer, channel, k=9, batch_size=128, progress=True):
    """Dataset search (lecture section 6): the k images where channel `channel` of `layer` fires most.

    For each image n the score is the channel's maximum over positions, s_n = max_ij A_c[n](i, j)
    (NOT the sum over positions), and (i*, j*) = argmax is where it fires. The images are streamed
    through the network `batch_size` at a time (eval mode), so any number of them can be searched:
    `images` is an (N, C, H, W) array, a ShapesBatch, or an iterable of either (minicnn.data.iter_shapes).
    Only the current top k (with their crops) are kept between batches.

    Returns a list of at most k Patch(index, position, activation, box, unclipped_box, crop), sorted
    by activation, largest first (ties: lower image index first). Each crop is the image's pixels in
    the receptive field of (i*, j*), clipped at the image border, so border crops are smaller.
    layer must have a receptive field (see Network.spatial_layers); channel an int in [0, channels).
    """
    return top_patches_for_channels(net, images, layer, [channel], k, batch_size, progress)[channel]


# ----------------------------------------------------------------------------------------------
# DeconvNet


def max_activation_seed(activation, channel):
    """The DeconvNet's starting signal: keep one channel's maximum, zero everything else.

    activation (1, K, h, w) -> (seed, (i, j)) with seed[0, channel, i, j] = activation[0, channel, i, j]
    at (i, j) = argmax of that channel (first on ties) and seed = 0 everywhere else, same shape.
    """
    values, positions = channel_maximum(activation[:, channel])
    i, j = (int(v) for v in positions[0])
    seed = np.zeros_like(activation)
    seed[0, channel, i, j] = values[0]
    return seed, (i, j)


def deconvnet(net, x, layer, channel):
    """Zeiler & Fergus' DeconvNet projection of the strongest activation of one channel.

    x: one image (1, C, H, W) with the network's dtype. Forward x up to `layer` (eval mode), keep
    A_c(i*, j*) = max_ij A_c(i, j), zero every other activation of the layer (all channels), and run the
    backward pass from there down to the pixels with ReLU rule "deconvnet":
        max-pool  -> un-pool: the value goes back to the position its switch recorded
        ReLU      -> ReLU of the signal coming back, max(g, 0) (the forward pass is ignored)
        conv      -> the transposed convolution with the same filters, W^T g
    One backward pass, no iteration. If the maximum is <= 0 (after a ReLU: the unit did not fire),
    the reconstruction is all zero.

    Returns Deconvnet(reconstruction (C, H, W), position, activation, box, unclipped_box, crop).
    """
    field = check_spatial_layer(net, layer)
    check_images(net, x, "x")
    if x.shape[0] != 1:
        raise ValueError(f"x must be ONE image of shape (1, C, H, W), got shape {x.shape}; "
                         f"pass e.g. images[n:n + 1] (or image[None] for a (C, H, W) image)")
    with eval_mode(net):
        activation = forward_checked(net, x, upto=layer)
        channel = check_channel(layer, channel, activation.shape[1])
        seed, (i, j) = max_activation_seed(activation, channel)
        reconstruction = net.backward(seed, upto=layer, rule="deconvnet", param_grads=False)[0]
    top, bottom, left, right = receptive_field_box(field, i, j, x.shape[2:])
    return Deconvnet(reconstruction, (i, j), float(seed[0, channel, i, j]), (top, bottom, left, right),
                     _unclipped_box(field, i, j), reconstruction[:, top:bottom, left:right])
