"""minicnn: a from-scratch CNN engine in NumPy and Numba, for seeing every number a CNN computes.

    from minicnn import Network, Conv2d, ReLU, MaxPool2d, Flatten, Linear
    net = Network([("conv1", Conv2d(3, 8, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
                   ("flatten", Flatten()), ("fc", Linear(8 * 16 * 16, 10))], seed=0)
    scores = net(x)                      # pre-softmax scores, x (N, 3, 32, 32) float32
"""
from . import ops
from .layers import AdaptiveAvgPool2d, AvgPool2d, Conv2d, ConvTranspose2d, Dropout, Flatten, GlobalAvgPool2d, Layer, Linear, MaxPool2d, ReLU, Unflatten, Upsample
from .network import Network
from .ops import (
    adaptive_avg_pool2d,
    avg_pool2d,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    cross_entropy,
    global_avg_pool2d,
    linear,
    log_softmax,
    max_pool2d,
    max_unpool2d,
    relu,
    relu_backward,
    softmax,
)
from .train import SGD, Adam, fit

__version__ = "0.1.0"


def __getattr__(name):
    """minicnn.load_index, imported on first use: `import minicnn` does not load the dataset index."""
    if name == "load_index":
        from .index.store import load_index

        return load_index
    raise AttributeError(f"module 'minicnn' has no attribute {name!r}")

__all__ = [
    "ops", "Layer", "AdaptiveAvgPool2d", "Conv2d", "Linear", "ReLU", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten",
    "Dropout", "ConvTranspose2d", "Upsample", "Unflatten", "Network", "SGD", "Adam", "fit", "conv2d", "conv2d_backward", "conv_transpose2d",
    "max_pool2d", "max_unpool2d", "avg_pool2d", "global_avg_pool2d", "relu", "relu_backward", "linear",
    "softmax", "log_softmax", "cross_entropy", "load_index",
]
