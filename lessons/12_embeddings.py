# %% [markdown]
# # Lesson 12 — the network's view of a dataset: nearest neighbours and t-SNE
#
# The last hidden layer turns each image into a vector (shapes_vgg's relu_fc1: 128 numbers) that the
# classifier reads. Two images whose vectors are close are "the same" to the network. Two ways to look:
#
# - nearest neighbours: for one query image, the images with the closest vectors -- next to the
#   closest images pixel by pixel, which is what "similar" means without a network;
# - t-SNE (van der Maaten & Hinton, 2008): place every image on a 2-D map so that images with close
#   vectors stay close (Karpathy's famous ImageNet map is this, with the fc7 codes of AlexNet).
#
# Run: `python lessons/12_embeddings.py [--out DIR]`  (needs the shipped shapes_vgg weights and scikit-learn)

# %%
import numpy as np
from _common import output_dir, save, title, weights_dir

from minicnn import data
from minicnn.models import load_pretrained
from minicnn.plot import embedding_figure, neighbors_figure
from minicnn.viz.embedding import embed, features, nearest_neighbors

OUT = output_dir("12_embeddings")
WEIGHTS = weights_dir()
net = load_pretrained("shapes_vgg", WEIGHTS)
batch = data.make_shapes(1000, seed=4242)
LAYER = "relu_fc1"

# %% [markdown]
# ## Nearest neighbours: features vs pixels
# Pixel distance is dominated by the background (most of the image) and by where the object is and
# which colour it has. The network's code ignores those and keeps the class.

# %%
title("nearest neighbours of a few queries")
for query in range(3):
    found = nearest_neighbors(net, batch.images, LAYER, query, k=6)
    print(f"  query {query} ({batch.class_names[query]}):")
    print(f"    feature space: {[batch.class_names[i] for i in found.feature]}")
    print(f"    pixel space:   {[batch.class_names[i] for i in found.pixel]}")
    save(neighbors_figure(batch.images, query, found, titles=batch.class_names), OUT, f"neighbors_{query}")

# %% [markdown]
# Over 200 queries: how often is a neighbour of the same class as its query?

# %%
title("same-class share of the 5 nearest neighbours, over 200 queries")
vectors = features(net, batch.images, LAYER)
pixels = batch.images.reshape(len(batch), -1)


def same_class_share(space, queries=200, k=5):
    """The fraction of the k nearest neighbours (Euclidean, query excluded) that share the query's class."""
    hits = 0
    for q in range(queries):
        distances = np.linalg.norm(space - space[q], axis=1)
        distances[q] = np.inf
        hits += np.sum(batch.labels[np.argsort(distances, kind="stable")[:k]] == batch.labels[q])
    return hits / (queries * k)


by_feature, by_pixel = same_class_share(vectors), same_class_share(pixels)
print(f"feature space {by_feature:.3f}, pixel space {by_pixel:.3f}, chance {1 / len(data.CLASS_NAMES):.3f}")
assert by_feature > 0.9 and by_pixel < 0.5 and by_feature > by_pixel

# %% [markdown]
# ## t-SNE of the codes
# Reduced to 50 principal components, then t-SNE (scikit-learn) to 2-D. Classes form islands; the
# images at the edge of an island, or on the wrong one, are the ones the network finds ambiguous.

# %%
title(f"t-SNE of {len(batch)} codes from {LAYER}")
coords = embed(net, batch.images, LAYER, seed=0)
assert coords.shape == (len(batch), 2) and np.all(np.isfinite(coords))
distances = np.linalg.norm(coords[:, None] - coords[None], axis=2)
np.fill_diagonal(distances, np.inf)
agreement = np.mean(batch.labels[distances.argmin(axis=1)] == batch.labels)
print(f"on the 2-D map, a point's nearest neighbour has its class {100 * agreement:.1f}% of the time")
assert agreement > 0.9
save(embedding_figure(coords, batch.images, batch.labels, data.CLASS_NAMES), OUT, "tsne")
