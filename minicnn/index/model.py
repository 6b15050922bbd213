"""Which network a run uses, said in a way a Dask worker can act on: load it once per process.

    ModelSpec("vgg16", weights="vgg16.pth")     a named architecture and a weight file
    ModelSpec("shapes_vgg")                     the shipped shapes weights
    ModelSpec("vgg16", init_seed=0)             random weights (models.vgg16(seed=0)), for benchmarks
    GivenModel(net, "mine", preprocessing)      a Network you built (it is pickled to the workers)

`loaded(spec)` returns (net, preprocessing) and keeps the network of the last spec per process, so a
worker that runs many shards loads its model once.
"""
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .sources import Preprocessing, imagenet_preprocessing, shapes_preprocessing

MODEL_NAMES = ("shapes_vgg", "shapes_cam", "alexnet", "vgg16")


def weights_sha256(net):
    """SHA-256 over every parameter's name, dtype, shape and bytes, in layer order: the same number for
    the same weights whatever file they came from."""
    digest = hashlib.sha256()
    for name, value in net.named_parameters().items():
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class ModelSpec(NamedTuple):
    """A model by name (MODEL_NAMES): weights from a file, the shipped/cached ones (weights None), or
    drawn at random with init_seed."""

    name: str
    weights: str = None
    init_seed: int = None

    @property
    def key(self):
        return ("spec",) + tuple(self)

    def load(self):
        """(Network in eval mode, Preprocessing)."""
        from .. import models

        if self.name not in MODEL_NAMES:
            raise ValueError(f"model must be one of {list(MODEL_NAMES)}, got {self.name!r}")
        shapes = self.name.startswith("shapes")
        builder = getattr(models, self.name)
        if self.init_seed is not None:
            if self.weights is not None:
                raise ValueError("give either weights or init_seed (random weights), not both")
            net = builder(seed=self.init_seed).eval()
            return net, (shapes_preprocessing() if shapes else imagenet_preprocessing("torch"))
        if shapes:
            net = (models.load_pretrained(self.name) if self.weights is None
                   else builder().load_state_dict(_read_state(self.weights)).eval())
            return net, shapes_preprocessing()
        return _imagenet(self.name, self.weights)


def _read_state(path):
    from ..io import load_weights

    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    return load_weights(path)


def _imagenet(name, weights):
    """AlexNet or VGG16 from a weight file (default: the fetch_weights cache) and its preprocessing:
    Keras' VGG16 file wants mode "caffe", torchvision's "torch"."""
    from .. import models

    path = models.imagenet_weights_file(name, weights)
    state = _read_state(path)
    mode = "caffe" if models.is_keras_vgg16(state) else "torch"
    net = models.imagenet_model_from_state(name, state, source=str(path), adopt=True)  # state was read for it alone
    return net.eval(), imagenet_preprocessing(mode)


class GivenModel:
    """A Network you already have, under a name, with the preprocessing its images need."""

    def __init__(self, net, name="network", preprocessing=None):
        self.net, self.name = net, name
        self.preprocessing = preprocessing or shapes_preprocessing()
        if not isinstance(self.preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a minicnn.index.sources.Preprocessing, got {preprocessing!r}")
        self.key = ("given", name, weights_sha256(net))

    def load(self):
        return self.net, self.preprocessing


_LOADED = {}  # this process's model: {key: (net, preprocessing)}, at most one entry


def loaded(spec):
    """spec.load(), once per process for the same spec."""
    if spec.key not in _LOADED:
        _LOADED.clear()
        _LOADED[spec.key] = spec.load()
    return _LOADED[spec.key]
