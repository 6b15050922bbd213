"""A network: a sequence of named layers that runs forward and backward between any two of them.

Cut points are named by the layer whose OUTPUT they are ("input" is None):

    net.forward(x, after=None, upto=None)   x is the output of layer `after` (None: the image);
                                            returns the output of layer `upto` (None: the last)
    net.backward(g, upto=None, after=None)  g is the gradient at the output of `upto`; returns the
                                            gradient at the output of `after` (None: the image)

So `a = net.forward(x, upto="relu3")` then `net.forward(a, after="relu3")` equals `net.forward(x)`,
and backward retraces the last forward pass. The ReLU rule is chosen per backward call:
"gradient" (true gradient), "deconvnet" (Zeiler & Fergus), "guided" (guided backpropagation).
"""
from collections.abc import Mapping

import numpy as np

from .checks import check_array, check_choice, check_finite, state_problems
from .im2col import RELU_RULES
from .layers import Conv2d, Layer
from .ops import CONV_ALGORITHMS

# Elements checked at a time when loading a state: the temporaries of a check stay this small.
_CHECK_PIECE = 1 << 20


class Network:
    """A sequence of (name, layer) pairs. `seed` re-draws every parameter from one generator."""

    def __init__(self, layers, seed=None):
        names = [name for name, _ in layers]
        for name, layer in layers:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"layer names must be non-empty strings without '.', got {name!r}")
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} must be a minicnn Layer, got {type(layer).__name__}")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"layer names must be unique, got duplicates {duplicated}")
        self.names = names
        self.layers = dict(layers)
        self._last_forward = None  # (first index, last index, output shapes by index)
        if seed is not None:
            self.reset_parameters(seed)

    # ------------------------------------------------------------------ naming and parameters
    def __getitem__(self, name):
        return self.layers[self.names[self._index(name)]]

    def __repr__(self):
        rows = "\n".join(f"  ({name}): {self.layers[name]!r}" for name in self.names)
        return f"Network(\n{rows}\n)"

    def _index(self, name):
        if name not in self.layers:
            raise KeyError(f"unknown layer {name!r}; valid layer names are {self.names}")
        return self.names.index(name)

    def spatial_layers(self):
        """Names of the layers whose outputs are still maps of positions (N, C, h, w), each position with
        a receptive field: every layer before the first one that mixes all positions (geometry None:
        Flatten, Linear, global or adaptive pooling). Dataset search, CAM and dissection work on these."""
        names = []
        for name in self.names:
            if self.layers[name].geometry is None:
                break
            names.append(name)
        return names

    def reset_parameters(self, seed):
        """Re-draw all parameters, layer by layer, from np.random.default_rng(seed)."""
        rng = np.random.default_rng(seed)
        for name in self.names:
            self.layers[name].reset_parameters(rng)

    def named_parameters(self):
        """{"conv1.weight": array, "conv1.bias": array, ...} in layer order (the live arrays)."""
        return {f"{name}.{key}": value for name in self.names for key, value in self.layers[name].params.items()}

    def named_gradients(self):
        """The accumulated gradients, with the same names as named_parameters()."""
        return {f"{name}.{key}": self.layers[name].grads[key]
                for name in self.names for key in self.layers[name].params}

    def zero_grad(self):
        for layer in self.layers.values():
            layer.zero_grad()

    def train(self):
        """Training mode: Dropout drops (eval mode, the default, makes it the identity)."""
        for layer in self.layers.values():
            layer.training = True
        return self

    def eval(self):
        """Evaluation mode (the default): Dropout is the identity."""
        for layer in self.layers.values():
            layer.training = False
        return self

    def set_conv_algorithm(self, algorithm):
        """Make every Conv2d layer compute with `algorithm` ("auto", "im2col" or "winograd",
        see ops.choose_conv_algorithm); "winograd" needs every Conv2d to be 3x3, stride 1. Returns self."""
        check_choice(algorithm, "algorithm", CONV_ALGORITHMS)
        for layer in self.layers.values():
            if isinstance(layer, Conv2d):
                layer.algorithm = algorithm
        return self

    @property
    def dtype(self):
        """The dtype of the parameters (float32 unless astype changed it); None for a network without any."""
        for value in self.named_parameters().values():
            return value.dtype
        return None

    def check_input_dtype(self, x, name="x"):
        """Check that the array x has the parameters' dtype (minicnn never casts silently); returns x."""
        dtype = self.dtype
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the network's parameters are {dtype}; convert one "
                            f"of them, e.g. {name}.astype(np.{dtype}) or net.astype(np.{x.dtype})")
        return x

    def astype(self, dtype):
        """Convert every parameter (and gradient) to float32 or float64, in place; returns self."""
        dtype = np.dtype(dtype)
        check_choice(dtype, "dtype", (np.dtype(np.float32), np.dtype(np.float64)))
        for layer in self.layers.values():
            for key in layer.params:
                layer.params[key] = layer.params[key].astype(dtype)
            if hasattr(layer, "dtype"):
                layer.dtype = dtype
            layer.zero_grad()
        return self

    # ------------------------------------------------------------------ forward and backward
    def _span(self, after, upto):
        """Indices of the layers strictly after `after` and up to `upto` inclusive."""
        first = 0 if after is None else self._index(after) + 1
        last = len(self.names) - 1 if upto is None else self._index(upto)
        if first > last:
            raise ValueError(f"upto={upto!r} must come after after={after!r} in {self.names}")
        return first, last

    def forward(self, x, after=None, upto=None):
        """Run the layers after `after` up to `upto` (inclusive) on x; returns the output of `upto`."""
        first, last = self._span(after, upto)
        return self._run(x, first, last)

    __call__ = forward

    def activations(self, x, names):
        """One forward pass from the image; returns {name: output of that layer} for the given names."""
        if isinstance(names, str) or not names:
            raise TypeError(f"names must be a non-empty list of layer names, got {names!r}; for one layer "
                            "use net.forward(x, upto=name)")
        indices = sorted(self._index(name) for name in names)
        outputs = {}
        self._run(x, 0, indices[-1], keep={self.names[i] for i in indices}, outputs=outputs)
        return outputs

    def _run(self, x, first, last, keep=(), outputs=None):
        """Layers first..last (indices) on x; records each output shape for backward; returns the last
        output and puts the outputs of the layers named in `keep` into `outputs`. A layer that cannot
        take its input says which layer it is."""
        self.check_input_dtype(check_array(x, "x"))
        shapes = {}
        for i in range(first, last + 1):
            name = self.names[i]
            try:
                x = self.layers[name].forward(x)
            except ValueError as error:
                raise ValueError(f"layer {name!r} ({self.layers[name]!r}) cannot take its input of shape "
                                 f"{x.shape}: {error}") from error
            shapes[i] = x.shape
            if name in keep:
                outputs[name] = x
        self._last_forward = (first, last, shapes)
        return x

    def backward(self, grad, upto=None, after=None, rule="gradient", param_grads=True):
        """Back-propagate `grad` (the gradient at the output of `upto`) down to the output of `after`.

        Retraces the last forward pass, which must have covered these layers. rule: how ReLUs pass the
        signal back ("gradient", "deconvnet", "guided"). param_grads: also add parameter gradients into
        each layer's grads (training); visualizations pass False and get only the input gradient.
        """
        check_choice(rule, "rule", RELU_RULES)
        first, last = self._span(after, upto)
        if self._last_forward is None:
            raise RuntimeError("backward needs a forward pass first: call net.forward(x) before net.backward")
        ran_first, ran_last, shapes = self._last_forward
        if first < ran_first or last > ran_last:
            ran = (self.names[ran_first], self.names[ran_last])
            raise RuntimeError(
                f"backward from {self.names[last]!r} down to the output of {after!r} needs a forward pass "
                f"over those layers, but the last forward ran layers {ran[0]!r} to {ran[1]!r}"
            )
        check_array(grad, "grad")
        if grad.shape != shapes[last]:
            raise ValueError(
                f"grad must have the shape of the output of layer {self.names[last]!r}, {shapes[last]}, got {grad.shape}"
            )
        for i in range(last, first - 1, -1):
            grad = self.layers[self.names[i]].backward(grad, rule=rule, param_grads=param_grads)
        return grad

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """A copy of every parameter, keyed "layer.weight" / "layer.bias" (PyTorch's convention)."""
        return {name: value.copy() for name, value in self.named_parameters().items()}

    def load_state_dict(self, state, strict=True, adopt=False):
        """Set the parameters from `state` (a dict "layer.weight" -> array), converted to the network's
        dtype. A value that is not floating-point, or not finite before or after that conversion, is an
        error; nothing changes unless every value passes.

        Values are copied into the network's own arrays, so the caller's dict stays independent of it.
        adopt=True hands the arrays over: a value that already is a C-contiguous, writable array of
        the network's dtype becomes the parameter itself, without a copy, and the caller must not
        use it afterwards (load_imagenet_model does this with the arrays it has just read).
        With strict=True, missing keys, unexpected keys and shape mismatches are all listed in one error.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict of arrays keyed like {list(self.named_parameters())[:2]}, "
                            f"got {type(state).__name__}")
        own = self.named_parameters()
        problems = state_problems({key: value.shape for key, value in own.items()}, state, strict)
        if problems:
            raise ValueError("state does not fit this network: " + " | ".join(problems))
        loaded = [key for key in own if key in state]
        for key in loaded:
            _check_loadable(key, state[key], own[key].dtype)
        adopted = set()
        for key in loaded:  # only once every value has passed
            value, target = np.asarray(state[key]), own[key]
            if adopt and id(value) not in adopted and _adoptable(value, target.dtype):
                layer, _, param = key.rpartition(".")
                self.layers[layer].params[param] = value
                adopted.add(id(value))
            else:
                np.copyto(target, value, casting="same_kind")
        return self


def _pieces(value):
    """Views of `value` (along its first axis) of about _CHECK_PIECE elements each, covering it once."""
    if value.ndim == 0 or value.size <= _CHECK_PIECE:
        return [value]
    rows = max(1, _CHECK_PIECE // (value.size // value.shape[0]))
    return [value[start:start + rows] for start in range(0, value.shape[0], rows)]


def _check_loadable(key, value, dtype):
    """A state value must be floating-point and finite, before and after conversion to `dtype`;
    checked piece by piece, so that no whole-array temporary is made (the error counts them all)."""
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(f"{key} must hold floating-point values, got dtype {value.dtype}")
    for piece in _pieces(value):
        if not np.all(np.isfinite(piece)):
            check_finite(value, key)
        if piece.dtype != dtype:
            with np.errstate(over="ignore"):  # an overflow is reported, as an error
                if not np.all(np.isfinite(piece.astype(dtype))):
                    check_finite(value.astype(dtype), f"{key} converted to {dtype}")


def _adoptable(value, dtype):
    """Can `value` become a parameter of `dtype` as it is? C-contiguous, writable, exactly that dtype."""
    return (isinstance(value, np.ndarray) and value.dtype == dtype and value.flags.c_contiguous
            and value.flags.writeable)
