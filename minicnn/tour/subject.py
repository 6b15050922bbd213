"""What the tour looks at (a Subject: networks, images, their display form and ground truth) and how
much work each section does (a Budget), for the shipped shapes models and for AlexNet / VGG16."""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..data import CLASS_NAMES, HELD_OUT_SEED, make_shapes
from ..imagenet import class_names_for
from ..layers import Dropout, Linear, MaxPool2d, ReLU
from ..network import Network
from ..train import predict

DISTRACTOR_PROBABILITY = 0.5  # as in the training set: half the images have a distractor shape

# ----------------------------------------------------------------------------------------------
# how much work: sizes and steps


@dataclass(frozen=True)
class Budget:
    """How much each section computes. The library's defaults are larger; the tour asks for less."""

    shown: int = 6                 # images per attribution figure
    pointing: int = 30             # images whose maps are computed (and scored by the pointing game)
    smooth: int = 10               # SmoothGrad: noisy copies per image
    occlusion: tuple = (12, 6)     # occluding square's side and stride, in pixels
    ascent_steps: int = 80         # gradient-ascent steps per class model
    ascent_classes: int = 10       # how many class models
    search_images: int = 400       # images the dataset search looks through
    units_per_layer: int = 3       # units shown per layer in the dataset search
    top_k: int = 9                 # patches per unit in the dataset search
    grey_tiles: int = 16           # filters (rows) and input channels (columns) shown for a deeper layer
    neighbour_images: int = 300    # images searched for nearest neighbours
    tsne_images: int = 300         # points in the t-SNE map
    dream_images: int = 3          # images dreamed
    dream_steps: int = 6           # DeepDream steps per octave
    dream_octaves: int = 3
    dissect_images: int = 300      # images of the Network Dissection


SHAPES_BUDGET = Budget()
SHAPES_FAST = Budget(shown=2, pointing=3, smooth=2, occlusion=(16, 16), ascent_steps=2, ascent_classes=3,
                     search_images=16, units_per_layer=1, top_k=4, grey_tiles=4, neighbour_images=10,
                     tsne_images=10, dream_images=1, dream_steps=1, dream_octaves=1, dissect_images=12)
IMAGENET_BUDGET = Budget(shown=4, pointing=4, smooth=4, occlusion=(48, 24), ascent_steps=20, ascent_classes=2,
                         search_images=64, units_per_layer=2, neighbour_images=64, tsne_images=64, dream_images=1,
                         dream_steps=4, dream_octaves=2, dissect_images=0)
IMAGENET_FAST = Budget(shown=1, pointing=1, smooth=1, occlusion=(112, 112), ascent_steps=1, ascent_classes=1,
                       search_images=4, units_per_layer=1, top_k=4, grey_tiles=4, neighbour_images=4,
                       tsne_images=4, dream_images=1, dream_steps=1, dream_octaves=1, dissect_images=0)


# ----------------------------------------------------------------------------------------------
# what the tour looks at


def identity(image):
    return image


@dataclass
class Subject:
    """The networks and images of a tour.

    net:          the network most methods run on (shapes_vgg, AlexNet, VGG16)
    cam_net:      a network ending in global average pooling + one linear layer, for CAM (or None)
    class_names:  one name per class score
    images:       (N, 3, H, W) network inputs: the attribution maps are made for these
    display:      the same images as RGB in [0, 1], to be shown
    targets:      (N,) the class each map explains (the true class, or the predicted one)
    masks:        (N, H, W) bool object masks (shapes only: the pointing game), or None
    pool:         (M, 3, H, W) more network inputs: dataset search, neighbours, t-SNE, dead units
    pool_display: the pool as RGB in [0, 1]
    pool_labels:  (M,) a class per pool image (true or predicted)
    shapes_batch: the pool as a ShapesBatch with its concept masks (shapes only: dissection), or None
    to_display:   network input (3, H, W) -> RGB in [0, 1] (to show synthesized images)
    input_range:  (low, high) of valid network-input values: numbers, or (3,) arrays (one per channel)
    ascent_mean:  where gradient ascent starts (a number or a per-channel mean, in network-input units)
    description:  one line for the top of index.html
    net_name, cam_net_name: what to call the two networks in tables
    fine_tuned:   net fine-tuned to another task (shapes: shapes_vgg_colour), for the units that change
                  roles, or None
    bgr:          the network's input channels are blue, green, red (Keras' caffe mode): signals and
                  first-layer filters in the network's channel order are flipped before they are shown
    """

    name: str
    net: Network
    cam_net: Optional[Network]
    class_names: tuple
    images: np.ndarray
    display: np.ndarray
    targets: np.ndarray
    masks: Optional[np.ndarray]
    pool: np.ndarray
    pool_display: np.ndarray
    pool_labels: np.ndarray
    shapes_batch: object
    budget: Budget
    to_display: Callable = identity
    input_range: tuple = (0.0, 1.0)
    ascent_mean: object = 0.5
    description: str = ""
    net_name: str = "shapes_vgg"
    cam_net_name: str = "shapes_cam"
    bgr: bool = False
    fine_tuned: Optional[Network] = None


def in_rgb_order(subject, signal_chw):
    """A (3, H, W) signal in the network's channel order -> RGB order (reversed for a BGR network)."""
    return signal_chw[::-1] if subject.bgr else signal_chw


def one_per_class_first(labels):
    """An order of the indices 0..N-1 that starts with the first image of each class, then the rest:
    the first few images of a figure then show different classes."""
    firsts = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return np.array(firsts + rest)


def shapes_subject(cam_net, net, budget=SHAPES_BUDGET, seed=HELD_OUT_SEED, fine_tuned=None):
    """A tour of the shapes models on freshly generated held-out images (dataset seed `seed`);
    fine_tuned: shapes_vgg_colour, or None (its section is then skipped)."""
    size = max(budget.pointing, budget.search_images, budget.neighbour_images, budget.tsne_images,
               budget.dissect_images, budget.dream_images, 10)
    batch = make_shapes(size, seed=seed, distractor=DISTRACTOR_PROBABILITY)
    batch = batch[one_per_class_first(batch.labels)]
    shown = batch[:budget.pointing]
    net_name = "shapes_cam" if net is cam_net else "shapes_vgg"
    names = net_name + (" and shapes_cam (for CAM)" if cam_net is not None and cam_net is not net else "")
    return Subject(
        name="shapes", net=net, cam_net=cam_net, class_names=CLASS_NAMES,
        images=shown.images, display=shown.images, targets=shown.labels, masks=shown.masks,
        pool=batch.images, pool_display=batch.images, pool_labels=batch.labels, shapes_batch=batch,
        budget=budget, net_name=net_name, ascent_mean=batch.images.mean(axis=(0, 2, 3)), fine_tuned=fine_tuned,
        description=f"{names} on {size} freshly generated 64x64 shapes images (make_shapes seed {seed}, "
                    f"never seen in training); maps explain each image's true class",
    )


def imagenet_subject(name, net, images, display, mode="torch", budget=IMAGENET_BUDGET, class_names=None):
    """A tour of AlexNet or VGG16 on your own images: images (N, 3, 224, 224) preprocessed for the
    network (minicnn.imagenet.preprocess with `mode`), display the same crops as RGB in [0, 1].
    The maps explain each image's top-1 predicted class."""
    from .. import imagenet

    scores = predict(net, images, batch_size=32)  # ImageNet activations: a few images at a time
    names = class_names or class_names_for(scores.shape[1])
    black, white = np.zeros((3, 1, 1), np.float32), np.ones((3, 1, 1), np.float32)
    low, high = imagenet.normalize(black, mode).ravel(), imagenet.normalize(white, mode).ravel()  # per channel
    predicted = scores.argmax(axis=1)
    return Subject(
        name=name, net=net, cam_net=None, class_names=names, images=images, display=display,
        targets=predicted, masks=None, pool=images, pool_display=display, pool_labels=predicted,
        shapes_batch=None, budget=budget,
        to_display=lambda x: np.clip(imagenet.denormalize(x.astype(np.float32), mode), 0, 1),
        input_range=(low, high), ascent_mean=0.0, net_name=name, cam_net_name="-", bgr=(mode == "caffe"),
        description=f"{name} on {len(images)} image(s) of yours ({mode} preprocessing, 224x224 centre crop); "
                    f"maps explain each image's top-1 predicted class",
    )


# ----------------------------------------------------------------------------------------------
# which layers to look at (works for the shapes models, AlexNet and VGG16 alike)


def search_layers(net, count=3):
    """Up to `count` layers for dataset search: the ReLU closing each block (the one before a max-pool,
    and the last one with a receptive field), spread from the first block to the last."""
    spatial = net.spatial_layers()
    closing = [name for name, after in zip(spatial, spatial[1:] + [None])
               if isinstance(net[name], ReLU) and (after is None or isinstance(net[after], MaxPool2d))]
    relus = [name for name in spatial if isinstance(net[name], ReLU)]
    if relus and relus[-1] not in closing:
        closing.append(relus[-1])
    if len(closing) <= count:
        return closing
    picks = np.linspace(0, len(closing) - 1, count).round().astype(int)
    return [closing[i] for i in picks]


def feature_layer(net):
    """The vector the classifier reads: the output of the layer before the last Linear (Dropout
    skipped), e.g. shapes_vgg's relu_fc1, shapes_cam's gap, AlexNet's fc7."""
    linears = [i for i, name in enumerate(net.names) if isinstance(net[name], Linear)]
    i = linears[-1] - 1
    while i > 0 and isinstance(net[net.names[i]], Dropout):
        i -= 1
    return net.names[i]
