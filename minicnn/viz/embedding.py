"""The network's view of a whole dataset: activation vectors, nearest neighbours, a t-SNE map.

Every image becomes one vector: the output of a layer, flattened (for the last hidden fully connected
layer this is the "code" the classifier reads; for a conv layer, all its maps end to end).

    features(net, images, layer)                 (N, D), streamed in batches
    nearest_neighbors(net, images, layer, q, k)  the k images closest to image q by the Euclidean
                                                 distance of their vectors -- and, for comparison, by
                                                 the distance of their raw pixels
    embed(net, images, layer)                    t-SNE (van der Maaten & Hinton 2008) of the vectors
                                                 to 2-D, for a map of the dataset as the network sees it

Pixel-space neighbours share colours and positions; feature-space neighbours share what the network
cares about (on the shapes set: the class, whatever the colour and position). That contrast is the
point of the slide "nearest neighbours in feature space".
"""
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_array, check_int_at_least, check_number
from .attribution import check_images, eval_mode, forward_checked


class Neighbors(NamedTuple):
    """feature (k,): indices of the k nearest images by activation vector, nearest first;
    feature_distances (k,): their Euclidean distances to the query's vector;
    pixel (k,), pixel_distances (k,): the same search on the raw pixels.
    The query itself is left out; ties go to the lower index."""

    feature: np.ndarray
    feature_distances: np.ndarray
    pixel: np.ndarray
    pixel_distances: np.ndarray


def features(net, images, layer, batch_size=128, progress=False):
    """The output of `layer` for every image, flattened: (N, D), D = the layer's output size.

    images (N, C, H, W) go through the network `batch_size` at a time (eval mode), so only one batch
    of intermediate activations is in memory at once.
    """
    check_images(net, images, "images")
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    chunks = []
    with eval_mode(net):
        for start in tqdm(range(0, len(images), batch_size), desc=f"features {layer}", disable=not progress,
                          leave=False):
            output = forward_checked(net, images[start:start + batch_size], upto=layer)
            chunks.append(output.reshape(len(output), -1))
    return np.concatenate(chunks)


def nearest_neighbors(net, images, layer, query_index, k=5, batch_size=128):
    """The k nearest neighbours of images[query_index] in feature space and in pixel space.

    distance(i, q) = ||v_i - v_q||_2 with v = features(net, images, layer) or v = the flattened pixels.
    Returns Neighbors(feature, feature_distances, pixel, pixel_distances).
    """
    check_array(images, "images", ndim=4)
    n = len(images)
    query_index = check_int_at_least(query_index, "query_index", 0)
    if query_index >= n:
        raise ValueError(f"query_index {query_index} is out of range: there are {n} images (0 to {n - 1})")
    k = check_int_at_least(k, "k", 1)
    if k > n - 1:
        raise ValueError(f"k must be at most {n - 1} (the other images), got {k}")
    vectors = features(net, images, layer, batch_size)
    by_feature = _nearest(vectors, query_index, k)
    by_pixel = _nearest(images.reshape(n, -1), query_index, k)
    return Neighbors(by_feature[0], by_feature[1], by_pixel[0], by_pixel[1])


def _nearest(vectors, query_index, k):
    """(indices (k,), distances (k,)) of the k rows of vectors (N, D) closest to row query_index."""
    difference = vectors.astype(np.float64) - vectors[query_index].astype(np.float64)
    distances = np.sqrt(np.einsum("nd,nd->n", difference, difference))
    distances[query_index] = np.inf  # the query is not its own neighbour
    order = np.argsort(distances, kind="stable")[:k]  # stable: ties keep the lower index first
    return order, distances[order]


def embed(net, images, layer, seed=0, perplexity=30.0, pca_dims=50, batch_size=128):
    """2-D t-SNE coordinates (N, 2) of the images' activation vectors at `layer`.

    t-SNE places points so that those with near vectors stay near: it matches the neighbourhood
    probabilities p_ij (Gaussian on the vectors, bandwidth set by `perplexity` ~ the number of
    neighbours each point keeps) with q_ij (Student-t on the 2-D points) by gradient descent on
    KL(P || Q). As is customary, the vectors are first reduced to `pca_dims` principal components
    (None: not reduced). perplexity is lowered to (N - 1) / 3 for small N. Needs scikit-learn.
    """
    if pca_dims is not None:
        pca_dims = check_int_at_least(pca_dims, "pca_dims", 2)
    perplexity = check_number(perplexity, "perplexity", low=0, low_open=True)
    check_int_at_least(seed, "seed", 0)
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ModuleNotFoundError("embed uses scikit-learn's TSNE, which is not installed: pip install "
                                  "scikit-learn (or pip install minicnn[tsne])", name="sklearn") from None
    vectors = features(net, images, layer, batch_size).astype(np.float64)
    if len(vectors) < 4:
        raise ValueError(f"t-SNE needs at least 4 images, got {len(vectors)}")
    if pca_dims is not None and vectors.shape[1] > pca_dims:
        vectors = principal_components(vectors, pca_dims)
    perplexity = min(perplexity, (len(vectors) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(vectors)


def principal_components(vectors, dims):
    """Project vectors (N, D) on their first `dims` principal directions (centred, by SVD): (N, dims)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:dims].T
