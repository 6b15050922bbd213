"""Architectures: AlexNet and VGG16 laid out as torchvision lays them out, and our two small models.

ImageNet networks (random weights until you load a file):

    net = alexnet(seed=0)                                 # or vgg16(seed=0)
    net = load_imagenet_model("vgg16", "vgg16-397923af.pth")   # any file minicnn.io.load_weights reads

Layer names. torchvision keeps AlexNet's layers in two sequences, `features` and `classifier`, so
its parameters are called "features.0.weight", "classifier.6.bias". A minicnn layer name cannot
hold a dot (the dot separates the layer from its parameter), so the layer that torchvision calls
`features[0]` is called "features_0" here, and its parameter "features_0.weight":

    torchvision          minicnn layer        parameter key in minicnn
    features.0           "features_0"         "features_0.weight"
    avgpool              "avgpool"            (no parameters)
    (torch.flatten)      "flatten"            (no parameters; torchvision calls a function)
    classifier.6         "classifier_6"       "classifier_6.bias"

`torchvision_to_minicnn(state)` and `minicnn_to_torchvision(state)` rename the keys of a whole
state dict; `load_imagenet_model` does it for you and also accepts Keras' VGG16 weights.
The lecture's names for the layers ("conv5", "conv5_3", "fc7") are in ALEXNET_LAYERS and
VGG16_LAYERS: `net.forward(x, upto=VGG16_LAYERS["conv5_3"])`.

Our small models, for 64x64 RGB images of the shapes dataset (minicnn.data, 10 classes):

    shapes_cam()    conv-relu-pool blocks, global average pooling, ONE linear layer: the
                    architecture class activation maps (CAM) need
    shapes_vgg()    conv-relu-conv-relu-maxpool blocks, then fully-connected layers: for
                    DeconvNet, dataset search, saliency, nearest neighbours and t-SNE
    shapes_seg()    shapes_cam's convolutions, then transposed convolutions back to 64x64: a
                    score for background and each class at every pixel (segmentation)
    load_pretrained("shapes_cam")   the weights trained by minicnn/recipes/train_shapes.py (train_seg.py for
                                    shapes_seg), checksum verified
"""
import hashlib
import json
import os
import re
import sysconfig
from pathlib import Path

import numpy as np

from .checks import state_problems
from .io import WeightFileError, keras_flatten_to_channels_first, load_weights
from .layers import (
    AdaptiveAvgPool2d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    NoInit,
    ReLU,
    Unflatten,
)
from .network import Network

SHAPES_CLASSES = 10      # len(minicnn.data.CLASS_NAMES)
SHAPES_COLORS = 8        # len(minicnn.data.COLOR_NAMES): the classes of shapes_vgg_colour
SHAPES_IMAGE_SIZE = 64   # the shapes models are built for (N, 3, 64, 64) images


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

def _vgg_features(channels, rng, prefix="features"):
    """torchvision's VGG `features`: 3x3 convs (padding 1) each followed by ReLU; "M" = 2x2 max-pool.

    channels: e.g. [64, 64, "M", 128, ...]. Layers are numbered like torchvision's: prefix_0, ...
    """
    layers, in_channels = [], 3
    for value in channels:
        i = len(layers)
        if value == "M":
            layers.append((f"{prefix}_{i}", MaxPool2d(2, stride=2)))
        else:
            layers.append((f"{prefix}_{i}", Conv2d(in_channels, value, 3, padding=1, rng=rng)))
            layers.append((f"{prefix}_{i + 1}", ReLU()))
            in_channels = value
    return layers


# ----------------------------------------------------------------------------------------------
# AlexNet and VGG16 in torchvision's layout
# ----------------------------------------------------------------------------------------------

def _alexnet_layers(num_classes, weight_rng, dropout_rng):
    return [
        ("features_0", Conv2d(3, 64, 11, stride=4, padding=2, rng=weight_rng)),   # (N, 64, 55, 55)
        ("features_1", ReLU()),
        ("features_2", MaxPool2d(3, stride=2)),                                   # (N, 64, 27, 27)
        ("features_3", Conv2d(64, 192, 5, padding=2, rng=weight_rng)),            # (N, 192, 27, 27)
        ("features_4", ReLU()),
        ("features_5", MaxPool2d(3, stride=2)),                                   # (N, 192, 13, 13)
        ("features_6", Conv2d(192, 384, 3, padding=1, rng=weight_rng)),           # (N, 384, 13, 13)
        ("features_7", ReLU()),
        ("features_8", Conv2d(384, 256, 3, padding=1, rng=weight_rng)),           # (N, 256, 13, 13)
        ("features_9", ReLU()),
        ("features_10", Conv2d(256, 256, 3, padding=1, rng=weight_rng)),          # (N, 256, 13, 13)
        ("features_11", ReLU()),
        ("features_12", MaxPool2d(3, stride=2)),                                  # (N, 256, 6, 6)
        ("avgpool", AdaptiveAvgPool2d((6, 6))),                                   # (N, 256, 6, 6)
        ("flatten", Flatten()),                                                   # (N, 9216)
        ("classifier_0", Dropout(0.5, rng=dropout_rng)),
        ("classifier_1", Linear(256 * 6 * 6, 4096, rng=weight_rng)),              # fc6
        ("classifier_2", ReLU()),
        ("classifier_3", Dropout(0.5, rng=dropout_rng)),
        ("classifier_4", Linear(4096, 4096, rng=weight_rng)),                     # fc7
        ("classifier_5", ReLU()),
        ("classifier_6", Linear(4096, num_classes, rng=weight_rng)),              # fc8: scores
    ]


def alexnet(num_classes=1000, seed=None):
    """AlexNet as torchvision builds it ("one weird trick" variant: 64-192-384-256-256 channels).

    Input (N, 3, H, W) with H, W >= 63 (224 as trained); output (N, num_classes) pre-softmax scores.
    The adaptive average pool makes the classifier see (N, 256, 6, 6) whatever the input size.
    seed: the random weights' seed (He-normal init, zero biases).
    """
    rng = np.random.default_rng(seed)
    return Network(_alexnet_layers(num_classes, rng, rng))


VGG16_CHANNELS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg16_layers(num_classes, weight_rng, dropout_rng):
    return _vgg_features(VGG16_CHANNELS, weight_rng) + [
        ("avgpool", AdaptiveAvgPool2d((7, 7))),                        # (N, 512, 7, 7)
        ("flatten", Flatten()),                                        # (N, 25088)
        ("classifier_0", Linear(512 * 7 * 7, 4096, rng=weight_rng)),   # fc6
        ("classifier_1", ReLU()),
        ("classifier_2", Dropout(0.5, rng=dropout_rng)),
        ("classifier_3", Linear(4096, 4096, rng=weight_rng)),          # fc7
        ("classifier_4", ReLU()),
        ("classifier_5", Dropout(0.5, rng=dropout_rng)),
        ("classifier_6", Linear(4096, num_classes, rng=weight_rng)),   # fc8: scores
    ]


def vgg16(num_classes=1000, seed=None):
    """VGG16 (configuration "D") as torchvision builds it, without batch normalisation.

    features_0 ... features_30: 13 conv3x3-ReLU pairs, max-pools at features_4, 9, 16, 23, 30;
    avgpool to (N, 512, 7, 7); classifier_0 Linear(25088, 4096), _1 ReLU, _2 Dropout,
    _3 Linear(4096, 4096), _4 ReLU, _5 Dropout, _6 Linear(4096, num_classes).
    Input (N, 3, H, W) with H, W >= 32 (224 as trained); output (N, num_classes) pre-softmax scores.
    seed: the random weights' seed (He-normal init, zero biases).
    """
    rng = np.random.default_rng(seed)
    return Network(_vgg16_layers(num_classes, rng, rng))


# name -> function(num_classes, weight generator, dropout generator) -> [(layer name, layer), ...]
IMAGENET_LAYERS = {"alexnet": _alexnet_layers, "vgg16": _vgg16_layers}

# The papers' names for the layers -> minicnn layer names (the output of each ReLU is what the
# lecture visualizes; "conv5" is AlexNet's last conv, "fc7" its second fully-connected layer).
ALEXNET_LAYERS = {
    "conv1": "features_1", "pool1": "features_2", "conv2": "features_4", "pool2": "features_5",
    "conv3": "features_7", "conv4": "features_9", "conv5": "features_11", "pool5": "features_12",
    "fc6": "classifier_2", "fc7": "classifier_5", "fc8": "classifier_6",
}
VGG16_LAYERS = {
    "conv1_1": "features_1", "conv1_2": "features_3", "pool1": "features_4",
    "conv2_1": "features_6", "conv2_2": "features_8", "pool2": "features_9",
    "conv3_1": "features_11", "conv3_2": "features_13", "conv3_3": "features_15", "pool3": "features_16",
    "conv4_1": "features_18", "conv4_2": "features_20", "conv4_3": "features_22", "pool4": "features_23",
    "conv5_1": "features_25", "conv5_2": "features_27", "conv5_3": "features_29", "pool5": "features_30",
    "fc6": "classifier_1", "fc7": "classifier_4", "fc8": "classifier_6",
}


# ----------------------------------------------------------------------------------------------
# Key names: torchvision <-> minicnn, and Keras' VGG16
# ----------------------------------------------------------------------------------------------

def torchvision_to_minicnn(state):
    """{"features.0.weight": w, ...} -> {"features_0.weight": w, ...}.

    The last dot separates the parameter ("weight", "bias"); the dots before it become "_".
    A checkpoint saved from nn.DataParallel ("module.features.0.weight") loses its "module.".
    Keys already in minicnn's form are left as they are.
    """
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    renamed = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        renamed[f"{layer.replace('.', '_')}.{param}"] = value
    return renamed


def minicnn_to_torchvision(state):
    """{"features_0.weight": w, ...} -> {"features.0.weight": w, ...} (AlexNet's and VGG's layers)."""
    renamed = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        layer = re.sub(r"_(\d+)$", r".\1", layer)   # "features_0" -> "features.0"
        renamed[f"{layer}.{param}"] = value
    return renamed


# Keras' VGG16 (keras.applications) names its layers block1_conv1 ... block5_conv3, fc1, fc2,
# predictions. minicnn.io already turns its kernels into PyTorch's (out, in, kh, kw).
_KERAS_VGG16_CONVS = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]
_KERAS_VGG16_DENSE = {"fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6"}


def keras_vgg16_to_torchvision(state):
    """Keras VGG16 weights (as minicnn.io.load_weights returns them) -> torchvision's names.

    Keras flattens the last feature map channels-last (7, 7, 512); fc1's columns are reordered for
    minicnn's channels-first flatten. Keras' VGG16 has no average pool: at 224x224 the feature map
    is already 7x7, so torchvision's avgpool changes nothing. The weights expect caffe-mode input
    (BGR, mean-subtracted, 0-255): minicnn.imagenet.preprocess(image, mode="caffe").
    """
    torch_names = dict(zip(_KERAS_VGG16_CONVS, (f"features.{i}" for i in _conv_indices(VGG16_CHANNELS))))
    torch_names.update(_KERAS_VGG16_DENSE)
    renamed = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        renamed[f"{torch_names.get(layer, layer)}.{param}"] = value
    fc1 = renamed.get("classifier.0.weight")
    if fc1 is not None and fc1.ndim == 2 and fc1.shape[1] == 512 * 7 * 7:   # (4096, 25088) in VGG16
        renamed["classifier.0.weight"] = keras_flatten_to_channels_first(
            fc1.astype(np.float32, copy=False), 512, 7, 7)
    return renamed


def _conv_indices(channels):
    """torchvision's indices of the convs in a VGG `features` (a conv and its ReLU take two)."""
    indices, i = [], 0
    for value in channels:
        if value != "M":
            indices.append(i)
        i += 1 if value == "M" else 2
    return indices


# ----------------------------------------------------------------------------------------------
# Loading ImageNet weights
# ----------------------------------------------------------------------------------------------

def _layout_problems(net, state):
    """Missing, unexpected and shape-mismatched keys between `state` (torchvision names) and net."""
    expected = {key: value.shape for key, value in minicnn_to_torchvision(net.named_parameters()).items()}
    return state_problems(expected, state)


def _check_imagenet_name(name):
    if name not in IMAGENET_LAYERS:
        raise ValueError(f"name must be one of {list(IMAGENET_LAYERS)}, got {name!r}")


def is_keras_vgg16(state):
    """Does this state use Keras' VGG16 names ("block1_conv1.weight")? Such weights expect caffe-mode
    input (BGR, 0-255, mean-subtracted: minicnn.imagenet.preprocess(image, mode="caffe"))."""
    return any(key.startswith("block1_conv1.") for key in state)


def imagenet_model_from_state(name, state, source="state", adopt=False):
    """Build `name` ("alexnet" or "vgg16") and copy `state` into it (float32).

    state: torchvision's names ("features.0.weight"), minicnn's ("features_0.weight") or, for VGG16,
    Keras' ("block1_conv1.weight"). The number of classes is read from the last layer's bias.
    No weights are drawn: the file replaces every one. adopt=True hands the arrays over instead of
    copying them (Network.load_state_dict). A state that does not fit raises one ValueError naming
    `source` and listing every problem.
    """
    _check_imagenet_name(name)
    if name == "vgg16" and is_keras_vgg16(state):
        state = keras_vgg16_to_torchvision(state)
    state = minicnn_to_torchvision(torchvision_to_minicnn(state))   # whatever came in: torchvision's
    last_bias = state.get("classifier.6.bias")
    num_classes = last_bias.shape[0] if last_bias is not None and last_bias.ndim == 1 else 1000
    net = Network(IMAGENET_LAYERS[name](num_classes, NoInit(), np.random.default_rng()))
    problems = _layout_problems(net, state)
    if problems:
        raise ValueError(f"{source} does not hold {name} weights in torchvision's layout: " + " | ".join(problems))
    return net.load_state_dict(torchvision_to_minicnn(state), adopt=adopt)


def weights_cache_dir():
    """Where minicnn/recipes/fetch_weights.py keeps converted ImageNet weights: $MINICNN_CACHE or ~/.cache/minicnn."""
    return Path(os.environ.get("MINICNN_CACHE") or Path.home() / ".cache" / "minicnn")


def imagenet_weights_file(name, weights_path=None):
    """The weight file to load for `name`: weights_path, or <weights_cache_dir()>/<name>.npz (the file
    `python -m minicnn.recipes.fetch_weights NAME` writes), which must exist."""
    _check_imagenet_name(name)
    if weights_path is not None:
        return Path(weights_path)
    cached = weights_cache_dir() / f"{name}.npz"
    if not cached.is_file():
        raise FileNotFoundError(f"{cached} not found: get {name}'s ImageNet weights with "
                                f"`python -m minicnn.recipes.fetch_weights {name}` (or `--from FILE.pth` to convert "
                                "a file you have), or pass a weight file (.pth, .safetensors, .npz or Keras .h5)")
    return cached


def load_imagenet_model(name, weights_path=None):
    """AlexNet or VGG16 with the weights of any file minicnn.io.load_weights reads.

    name: "alexnet" or "vgg16". weights_path: torchvision's .pth (zip or legacy format),
    .safetensors, .npz or Keras' VGG16 .h5; None: the cached file (imagenet_weights_file). Returns the
    Network in eval mode, float32. A file that is not such weights raises minicnn.io.WeightFileError
    (unreadable) or ValueError (keys or shapes).
    """
    weights_path = imagenet_weights_file(name, weights_path)
    return imagenet_model_from_state(name, load_weights(weights_path), source=str(weights_path), adopt=True)


# ----------------------------------------------------------------------------------------------
# The shapes models
# ----------------------------------------------------------------------------------------------

def shapes_cam(seed=None):
    """The CAM architecture for 64x64 shapes: (N, 3, 64, 64) -> (N, 10) scores.

    conv1 3x3 3->16 (64x64), pool1 -> 32x32; conv2 3x3 16->32, pool2 -> 16x16;
    conv3 3x3 32->64, conv4 3x3 64->64 (16x16: relu4 is the map a CAM is made of, each of its
    pixels covering 4x4 input pixels, with a receptive field of 26x26 pixels, an object's size);
    gap: (N, 64, 16, 16) -> (N, 64); fc: (N, 64) -> (N, 10).
    CAM of class k = sum_c fc.weight[k, c] * relu4[:, c]. 61,162 parameters.
    """
    rng = np.random.default_rng(seed)
    return Network([
        ("conv1", Conv2d(3, 16, 3, padding=1, rng=rng)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(16, 32, 3, padding=1, rng=rng)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
        ("conv3", Conv2d(32, 64, 3, padding=1, rng=rng)), ("relu3", ReLU()),
        ("conv4", Conv2d(64, 64, 3, padding=1, rng=rng)), ("relu4", ReLU()),
        ("gap", GlobalAvgPool2d()),
        ("fc", Linear(64, SHAPES_CLASSES, init="xavier", rng=rng)),
    ])


SHAPES_VGG_CHANNELS = (8, 16, 32)   # channels of blocks 1, 2, 3


def shapes_vgg(seed=None, num_classes=SHAPES_CLASSES):
    """A small VGG for 64x64 shapes: (N, 3, 64, 64) -> (N, num_classes) scores (10: the shape classes).

    block b (b = 1, 2, 3): conv{b}_1, relu{b}_1, conv{b}_2, relu{b}_2 (3x3, padding 1), pool{b} (2x2)
        block 1: 8 channels at 64x64 -> 32x32; block 2: 16 at 32x32 -> 16x16; block 3: 32 at 16x16 -> 8x8
    flatten (N, 2048); fc1 -> 128, relu_fc1 (the features for nearest neighbours and t-SNE),
    dropout (p 0.3, training only), fc2 -> num_classes scores. 281,746 parameters, 94% of them in fc1.
    Few channels at full resolution keep training fast: the convs at 64x64 cost the most.
    """
    rng = np.random.default_rng(seed)
    layers, c_in = [], 3
    for block, c_out in enumerate(SHAPES_VGG_CHANNELS, start=1):
        layers += [
            (f"conv{block}_1", Conv2d(c_in, c_out, 3, padding=1, rng=rng)), (f"relu{block}_1", ReLU()),
            (f"conv{block}_2", Conv2d(c_out, c_out, 3, padding=1, rng=rng)), (f"relu{block}_2", ReLU()),
            (f"pool{block}", MaxPool2d(2)),
        ]
        c_in = c_out
    side = SHAPES_IMAGE_SIZE // 2 ** len(SHAPES_VGG_CHANNELS)   # 8
    layers += [
        ("flatten", Flatten()),
        ("fc1", Linear(c_in * side * side, 128, rng=rng)), ("relu_fc1", ReLU()), ("dropout", Dropout(0.3, rng=rng)),
        ("fc2", Linear(128, num_classes, init="xavier", rng=rng)),
    ]
    return Network(layers)


def shapes_vgg_colour(seed=None):
    """shapes_vgg with 8 scores, one per colour of the object (minicnn.data.COLOR_NAMES): the network that
    recipes/finetune_colour.py fine-tunes from shapes_vgg's weights, all but fc2 (a new 128 -> 8 head)."""
    return shapes_vgg(seed, num_classes=SHAPES_COLORS)


SEGMENTATION_CLASSES = SHAPES_CLASSES + 1   # channel 0 background, channel 1 + k class k of the shapes data


def shapes_seg(seed=None):
    """A segmentation net for 64x64 shapes: (N, 3, 64, 64) -> (N, 11, 64, 64) per-pixel scores.

    Channel 0 is the background (the distractor's pixels included), channel 1 + k the shapes class k
    (minicnn.data.CLASS_NAMES[k]). The encoder is shapes_cam's, layer for layer and name for name
    (conv1, relu1, pool1, conv2, relu2, pool2, conv3, relu3, conv4, relu4: 64 maps of 16x16, each unit
    seeing 26x26 pixels), so its trained weights can start it; the decoder undoes the two poolings with
    transposed convolutions of kernel 4, stride 2, padding 1 (each doubles the side exactly; a kernel
    that is a multiple of the stride sums as many weights into every output pixel, so no checkerboard
    is built in): up1 64 -> 32 channels at 32x32, relu5, up2 32 -> 11 at 64x64 (the scores).
    98,955 parameters.

    No skip connections: a Network is a chain, each layer reads only the output of the one before it,
    so the decoder sees the encoder's 16x16 maps and nothing finer (the boundary's last pixels are the
    decoder's guess). A U-Net's skip needs a layer with two inputs: a `Concatenate(source)` layer whose
    forward joins its input with the output of the earlier layer `source` along the channels, and a
    Network whose backward adds the gradient of that half into `source`'s output gradient before
    going on (the network, not a layer, must do the routing, so that forward and backward between any
    two cut points stay exact). That is a change to Network, not a new layer alone.
    """
    rng = np.random.default_rng(seed)
    encoder = [(name, layer) for name, layer in shapes_cam(seed=rng).layers.items()
               if name not in ("gap", "fc")]
    return Network(encoder + [
        ("up1", ConvTranspose2d(64, 32, 4, stride=2, padding=1, rng=rng)), ("relu5", ReLU()),
        ("up2", ConvTranspose2d(32, SEGMENTATION_CLASSES, 4, stride=2, padding=1, init="xavier", rng=rng)),
    ])


def shapes_autoencoder(code_size=8, side=32, seed=None):
    """An autoencoder of shape masks: (N, 1, side, side) mask -> a code of code_size numbers -> (N, 2, side, side)
    scores (channel 0 outside the shape, 1 inside; per-pixel cross-entropy trains it).

    encoder: conv1 3x3 1->8, relu1, pool1; conv2 3x3 8->16, relu2, pool2 (side / 4); flatten; code, a Linear
    layer to code_size numbers (no ReLU: a code may be negative). decoder: expand, Linear back to
    16 * (side / 4)^2, relu3, unflatten; up1 ConvTranspose2d 16->8 (kernel 4, stride 2), relu4; up2 8->2.
    `net.forward(mask, upto="code")` encodes, `net.forward(code, after="code")` draws.
    """
    if side % 4:
        raise ValueError(f"side must be a multiple of 4 (two 2x2 poolings, two 2x upsamplings), got {side}")
    rng = np.random.default_rng(seed)
    quarter = side // 4
    return Network([
        ("conv1", Conv2d(1, 8, 3, padding=1, rng=rng)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(8, 16, 3, padding=1, rng=rng)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()), ("code", Linear(16 * quarter * quarter, code_size, init="xavier", rng=rng)),
        ("expand", Linear(code_size, 16 * quarter * quarter, rng=rng)), ("relu3", ReLU()),
        ("unflatten", Unflatten((16, quarter, quarter))),
        ("up1", ConvTranspose2d(16, 8, 4, stride=2, padding=1, rng=rng)), ("relu4", ReLU()),
        ("up2", ConvTranspose2d(8, 2, 4, stride=2, padding=1, init="xavier", rng=rng)),
    ])


PRETRAINED = {"shapes_cam": shapes_cam, "shapes_vgg": shapes_vgg, "shapes_seg": shapes_seg,
              "shapes_vgg_colour": shapes_vgg_colour}
TRAINED_BY = {"shapes_cam": "train_shapes", "shapes_vgg": "train_shapes", "shapes_seg": "train_seg",  # recipes
              "shapes_vgg_colour": "finetune_colour"}
REPO_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# A regular (not editable) `pip install` copies weights/ here (setup.cfg, [options.data_files]);
# one path for an installation into an environment, one for `pip install --user`.
INSTALLED_WEIGHTS_DIRS = tuple(
    Path(sysconfig.get_path("data", scheme)) / "share" / "minicnn" / "weights"
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user")
)


def shipped_weights_dir():
    """The folder holding the shipped shapes weights: weights/ of the checkout this package runs from
    (an editable install), else the copy a regular install put under <prefix>/share/minicnn/weights.
    A folder counts only if it holds a model card of ours; with none found, the checkout's weights/."""
    for where in (REPO_WEIGHTS_DIR, *INSTALLED_WEIGHTS_DIRS):
        if any((where / f"{name}.json").is_file() for name in PRETRAINED):
            return where
    return REPO_WEIGHTS_DIR


def sha256_of_file(path, chunk_size=1 << 20):
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_paths(name, weights_dir):
    """(weights file, model card): <dir>/<name>.npz and <dir>/<name>.json; a given .npz keeps its card beside it."""
    where = shipped_weights_dir() if weights_dir is None else Path(weights_dir)
    weights = where if where.suffix == ".npz" else where / f"{name}.npz"
    return weights, weights.with_suffix(".json")


def _expected_sha256(card_path, weights_path):
    """The "sha256" field of the model card, checked to be 64 hex digits."""
    try:
        card = json.loads(card_path.read_text())
        expected = card["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise WeightFileError(f"{card_path}: not a model card with a \"sha256\" field for {weights_path.name} "
                              f"({type(error).__name__}: {error})") from error
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
        raise WeightFileError(f"{card_path}: \"sha256\" must be 64 hex digits, got {expected!r}")
    return expected.lower()


def load_pretrained(name, weights_dir=None):
    """A shapes model with the weights trained by its recipe (TRAINED_BY: minicnn/recipes/train_shapes.py,
    train_seg.py, finetune_colour.py), ready to use (eval mode).

    name: "shapes_cam", "shapes_vgg", "shapes_seg" or "shapes_vgg_colour". weights_dir: None for the shipped weights (shipped_weights_dir()), or
    another folder holding <name>.npz and its model card <name>.json, or the .npz file itself.
    The file's SHA-256 must equal the card's "sha256" field before anything is loaded.
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {list(PRETRAINED)}, got {name!r}")
    weights_path, card_path = pretrained_paths(name, weights_dir)
    retrain = f"re-create it with `python -m minicnn.recipes.{TRAINED_BY[name]}` (or pass weights_dir=)"
    for path in (weights_path, card_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {retrain}")
    actual, expected = sha256_of_file(weights_path), _expected_sha256(card_path, weights_path)
    if actual != expected:
        raise WeightFileError(
            f"{weights_path}: SHA-256 {actual} does not match {expected} in the model card {card_path}: "
            f"the file is corrupt, truncated or from another training run; {retrain}")
    state = load_weights(weights_path)
    try:
        return PRETRAINED[name]().load_state_dict(state, adopt=True).eval()
    except ValueError as error:
        raise WeightFileError(f"{weights_path}: {error}") from error
