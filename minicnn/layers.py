"""Layers: thin classes over minicnn.ops that hold parameters and remember what backward needs.

Every layer has
    forward(x) -> y                  records what its backward needs (input, switches, columns)
    backward(dy, rule, param_grads)  -> dx; adds parameter gradients into self.grads when param_grads
    params / grads                   dicts name -> array ("weight", "bias"), PyTorch's shapes
    geometry                         (kernel, stride, padding) pairs if each output position reads one
                                     window of input positions, None if the layer mixes all positions
                                     (receptive fields, minicnn.shapes, are built from it)

`rule` matters only to ReLU (one of ops.RELU_RULES: "gradient", "deconvnet", "guided"); every other layer ignores it, so a
whole network can be back-propagated under one rule. No layer ever writes into an array it was given.
backward checks that dy has exactly the shape and dtype of the last forward output (Layer._recalled).
"""
import numpy as np

from . import ops
from .checks import FLOAT_DTYPES, check_array, check_choice, check_int_at_least, check_number, check_shape
from .shapes import check_geometry, pair_at_least


POINTWISE = ((1, 1), (1, 1), (0, 0))  # the geometry of a layer that acts on each position alone


class Layer:
    """Base class: no parameters, training flag; backward's checks (forward ran first, dy fits its output)."""

    geometry = None  # mixes all positions, unless a subclass says otherwise

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.training = False
        self._cache = None  # what backward needs from the last forward pass
        self._output = None  # a stand-in for the last forward output: its shape and dtype, no memory

    def reset_parameters(self, rng):
        """Draw fresh parameters from `rng` (layers without parameters do nothing)."""

    def zero_grad(self):
        for name, value in self.params.items():
            self.grads[name] = np.zeros(value.shape, value.dtype)   # untouched pages cost no memory

    def _accumulate(self, name, grad):
        self.grads[name] = self.grads.get(name, 0) + grad

    def _remember(self, cache, y):
        """End of forward: keep `cache` for backward and y's shape and dtype (to check dy); return y."""
        self._cache = cache
        self._output = np.broadcast_to(np.zeros((), y.dtype), y.shape)  # one number, y's shape and dtype
        return y

    def _forwarded(self, what):
        """The cache of the last forward pass; `what` (e.g. "backward") needs one."""
        if self._output is None:
            raise RuntimeError(f"{type(self).__name__}.{what} called before forward")
        return self._cache

    def _recalled(self, dy):
        """Start of backward: check that dy is shaped and typed exactly like the last forward output
        (nothing broadcast, cast or reshaped), then return what forward kept."""
        cache = self._forwarded("backward")
        name = f"dy (the gradient at {type(self).__name__}'s output)"
        check_array(dy, name, dtype_like=self._output)
        check_shape(dy, name, self._output.shape)
        return cache

    def extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class NoInit:
    """Pass as `rng` when a file will replace every parameter: nothing is drawn, the weights start as
    np.zeros, whose pages the operating system hands out only when they are first written."""


# Elements drawn at a time: one float64 piece takes 2 MiB, whatever the layer's size.
_INIT_PIECE = 1 << 18


def _drawn(fill, shape, dtype):
    """An array of `shape` and `dtype` filled by fill(piece), which writes float64 draws into `piece`
    in place, one piece of _INIT_PIECE elements at a time through one reused float64 buffer.

    A Generator gives the same numbers drawn in pieces as in one call, so this equals one whole
    float64 draw cast to dtype, without the whole float64 temporary.
    """
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    buffer = np.empty(min(_INIT_PIECE, flat.size))
    for start in range(0, flat.size, _INIT_PIECE):
        piece = buffer[:min(_INIT_PIECE, flat.size - start)]
        fill(piece)
        flat[start:start + piece.size] = piece
    return out


def he_normal(rng, shape, fan_in, dtype):
    """He (Kaiming) init for layers followed by ReLU: N(0, 2 / fan_in)."""
    scale = np.sqrt(2.0 / fan_in)

    def fill(piece):
        rng.standard_normal(out=piece)
        piece *= scale
    return _drawn(fill, shape, dtype)


def xavier_uniform(rng, shape, fan_in, fan_out, dtype):
    """Xavier (Glorot) init: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), drawn as -a + 2a * U(0, 1)
    (the arithmetic of rng.uniform(-a, a), done in place)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))

    def fill(piece):
        rng.random(out=piece)
        piece *= limit - (-limit)
        piece += -limit
    return _drawn(fill, shape, dtype)


def _check_bias(bias):
    """bias is True or False (a string such as 'no' would be truthy and keep a bias)."""
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {type(bias).__name__} {bias!r}")
    return bool(bias)


def _check_dtype(dtype):
    """float32 or float64, as a numpy dtype."""
    return check_choice(np.dtype(dtype), "dtype", [np.dtype(t) for t in FLOAT_DTYPES])


def _init_weight(init, rng, shape, fan_in, fan_out, dtype):
    check_choice(init, "init", ("he", "xavier"))
    if isinstance(rng, NoInit):
        return np.zeros(shape, dtype)
    if init == "he":
        return he_normal(rng, shape, fan_in, dtype)
    return xavier_uniform(rng, shape, fan_in, fan_out, dtype)


class Conv2d(Layer):
    """2D convolution, weight (out_channels, in_channels, kh, kw), bias (out_channels,).
    algorithm: "auto", "im2col" or "winograd", for the forward pass and dx (ops.choose_conv_algorithm);
    an attribute, so it can be changed later (Network.set_conv_algorithm sets it on every Conv2d)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="he", rng=None, dtype=np.float32, algorithm="auto"):
        super().__init__()
        self.algorithm = check_choice(algorithm, "algorithm", ops.CONV_ALGORITHMS)
        self.in_channels = check_int_at_least(in_channels, "in_channels", 1)
        self.out_channels = check_int_at_least(out_channels, "out_channels", 1)
        self.kernel_size, self.stride, self.padding = check_geometry(kernel_size, stride, padding)
        self.init, self.use_bias, self.dtype = init, _check_bias(bias), _check_dtype(dtype)
        self.reset_parameters(np.random.default_rng() if rng is None else rng)

    def reset_parameters(self, rng):
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        fan_out = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        self.params["weight"] = _init_weight(self.init, rng, shape, fan_in, fan_out, self.dtype)
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=self.dtype)
        self.zero_grad()

    def forward(self, x):
        """x (N, C, H, W) -> (N, F, Ho, Wo). Keeps x: backward rebuilds its im2col columns tile by tile."""
        y = ops.conv2d(x, self.params["weight"], self.params.get("bias"), self.stride, self.padding, self.algorithm)
        return self._remember(x, y)

    def backward(self, dy, rule="gradient", param_grads=True):
        """dx = conv_transpose2d(dy, w); with param_grads also dw = dy_rows @ im2col(x).T and db."""
        x = self._recalled(dy)
        w = self.params["weight"]
        if not param_grads:
            return ops.conv2d_input_gradient(dy, w, x.shape, self.stride, self.padding, self.algorithm)
        dx, dw, db = ops.conv2d_backward(dy, x, w, self.stride, self.padding, self.algorithm)
        self._accumulate("weight", dw)
        if self.use_bias:
            self._accumulate("bias", db)
        return dx

    @property
    def geometry(self):
        return self.kernel_size, self.stride, self.padding

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class ConvTranspose2d(Layer):
    """Transposed convolution that learns: weight (in_channels, out_channels, kh, kw), bias (out_channels,).

    PyTorch's layout and names, so its weights map by name. (in, out, kh, kw) is exactly the (F, C, kh, kw)
    of the convolution it transposes, so forward is ops.conv_transpose2d with the weight as it is:
    x (N, in, H, W) -> (N, out, (H - 1) s - 2p + k + output_padding, ...). Backward is the duality read
    the other way: dx = conv2d(dy, weight), dweight = the conv weight gradient with x and dy swapped.
    init "he": N(0, 2 / fan_in) with fan_in = in_channels * kh * kw / (sh * sw), the number of terms an
    output pixel sums on average (each sees kh / sh by kw / sw input positions per channel).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True,
                 init="he", rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = check_int_at_least(in_channels, "in_channels", 1)
        self.out_channels = check_int_at_least(out_channels, "out_channels", 1)
        self.kernel_size, self.stride, self.padding = check_geometry(kernel_size, stride, padding)
        self.output_padding = pair_at_least(output_padding, "output_padding", 0)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"output_padding must be smaller than the stride {self.stride} (it picks one of the "
                             f"stride's possible output sizes), got {self.output_padding}")
        self.init, self.use_bias, self.dtype = init, _check_bias(bias), _check_dtype(dtype)
        self.reset_parameters(np.random.default_rng() if rng is None else rng)

    def reset_parameters(self, rng):
        shape = (self.in_channels, self.out_channels) + self.kernel_size
        taps = self.kernel_size[0] * self.kernel_size[1] / (self.stride[0] * self.stride[1])
        fan_in, fan_out = self.in_channels * taps, self.out_channels * taps
        self.params["weight"] = _init_weight(self.init, rng, shape, fan_in, fan_out, self.dtype)
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=self.dtype)
        self.zero_grad()

    def forward(self, x):
        """x (N, in, H, W) -> (N, out, Ho, Wo): every input value stamps its filters, scaled, onto the output."""
        y = ops.conv_transpose2d(x, self.params["weight"], self.params.get("bias"), self.stride, self.padding,
                                 self.output_padding)
        return self._remember(x, y)

    def backward(self, dy, rule="gradient", param_grads=True):
        """dx = conv2d(dy, weight); with param_grads also dweight (ops.conv_transpose2d_backward) and dbias."""
        x = self._recalled(dy)
        w = self.params["weight"]
        if not param_grads:
            return ops.conv2d(dy, w, None, self.stride, self.padding)
        dx, dw, db = ops.conv_transpose2d_backward(dy, x, w, self.stride, self.padding)
        self._accumulate("weight", dw)
        if self.use_bias:
            self._accumulate("bias", db)
        return dx

    # geometry stays None: an output pixel reads about k / s input positions with a jump of 1 / s input
    # positions between neighbours, and the receptive-field arithmetic (minicnn.shapes) has whole
    # strides only; so, for it, a transposed convolution ends the layers with feature maps.

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}")


class Upsample(Layer):
    """Resize by whole factors, (N, C, H, W) -> (N, C, H * sh, W * sw): nearest or bilinear
    (align_corners=False), as torch.nn.Upsample. No parameters; backward is the transpose of the same
    linear map (ops.upsample2d_backward). Followed by a stride-1 Conv2d it is "resize, then convolve"."""

    # geometry stays None, for the reason ConvTranspose2d gives: a jump of 1 / scale input positions.

    def __init__(self, scale_factor, mode="nearest"):
        super().__init__()
        self.scale_factor = pair_at_least(scale_factor, "scale_factor", 1)
        self.mode = check_choice(mode, "mode", ops.UPSAMPLE_MODES)

    def forward(self, x):
        return self._remember(x.shape, ops.upsample2d(x, self.scale_factor, self.mode))

    def backward(self, dy, rule="gradient", param_grads=True):
        return ops.upsample2d_backward(dy, self._recalled(dy), self.scale_factor, self.mode)

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


class Linear(Layer):
    """Fully connected: y = x @ weight.T + bias, weight (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, init="he", rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = check_int_at_least(in_features, "in_features", 1)
        self.out_features = check_int_at_least(out_features, "out_features", 1)
        self.init, self.use_bias, self.dtype = init, _check_bias(bias), _check_dtype(dtype)
        self.reset_parameters(np.random.default_rng() if rng is None else rng)

    def reset_parameters(self, rng):
        shape = (self.out_features, self.in_features)
        self.params["weight"] = _init_weight(self.init, rng, shape, self.in_features, self.out_features,
                                             self.dtype)
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_features, dtype=self.dtype)
        self.zero_grad()

    def forward(self, x):
        return self._remember(x, ops.linear(x, self.params["weight"], self.params.get("bias")))

    def backward(self, dy, rule="gradient", param_grads=True):
        """dx = dy @ weight; with param_grads also dweight = dy.T @ x and dbias = dy summed over N."""
        x = self._recalled(dy)
        if not param_grads:
            return ops.linear_input_gradient(dy, self.params["weight"], x.shape)
        dx, dw, db = ops.linear_backward(dy, x, self.params["weight"])
        self._accumulate("weight", dw)
        if self.use_bias:
            self._accumulate("bias", db)
        return dx

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class ReLU(Layer):
    """max(x, 0); backward under the chosen rule (one of ops.RELU_RULES)."""

    geometry = POINTWISE

    def forward(self, x):
        return self._remember(x, ops.relu(x))

    def backward(self, dy, rule="gradient", param_grads=True):
        return ops.relu_backward(dy, self._recalled(dy), rule)


class _Pool2d(Layer):
    """What the two window poolings share: kernel_size, stride (default: the kernel size), padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = ops.pool_geometry(kernel_size, stride, padding)

    @property
    def geometry(self):
        return self.kernel_size, self.stride, self.padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling that records its switches; backward (and DeconvNet's un-pooling) = max_unpool2d."""

    def forward(self, x):
        y, switches = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return self._remember((x.shape[2:], switches), y)

    @property
    def switches(self):
        """The switches of the last forward pass: flat index of each maximum in its input plane."""
        return self._forwarded("switches")[1]

    def backward(self, dy, rule="gradient", param_grads=True):
        input_hw, switches = self._recalled(dy)
        return ops.max_unpool2d(dy, switches, input_hw)


class AvgPool2d(_Pool2d):
    """Average pooling over kernel_size windows (zero padding counted)."""

    def forward(self, x):
        return self._remember(x.shape, ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding))

    def backward(self, dy, rule="gradient", param_grads=True):
        return ops.avg_pool2d_backward(dy, self._recalled(dy), self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Layer):
    """(N, C, H, W) -> (N, C): the mean of each feature map (the 'GAP' of class activation maps)."""

    def forward(self, x):
        return self._remember(x.shape, ops.global_avg_pool2d(x))

    def backward(self, dy, rule="gradient", param_grads=True):
        return ops.global_avg_pool2d_backward(dy, self._recalled(dy))


class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output_size grid whatever the input size (AlexNet 6x6, VGG 7x7)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair_at_least(output_size, "output_size", 1)

    def forward(self, x):
        return self._remember(x.shape, ops.adaptive_avg_pool2d(x, self.output_size))

    def backward(self, dy, rule="gradient", param_grads=True):
        return ops.adaptive_avg_pool2d_backward(dy, self._recalled(dy))

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C-order (channel-major, as PyTorch's flatten)."""

    def forward(self, x):
        ops.check_nonempty(check_array(x, "x", ndim=4), "x")
        return self._remember(x.shape, x.reshape(x.shape[0], -1))

    def backward(self, dy, rule="gradient", param_grads=True):
        return dy.reshape(self._recalled(dy))


class Unflatten(Layer):
    """(N, C*H*W) -> (N, C, H, W) in C-order: Flatten's inverse, so a decoder can turn a code vector
    (after a Linear layer) into feature maps for its transposed convolutions."""

    def __init__(self, shape):
        super().__init__()
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise TypeError(f"shape must be a (C, H, W) tuple of ints, got {shape!r}")
        self.shape = tuple(check_int_at_least(size, f"shape[{k}]", 1) for k, size in enumerate(shape))

    def forward(self, x):
        check_array(x, "x", ndim=2)
        check_shape(x, "x", (None, int(np.prod(self.shape))))
        return self._remember(x.shape, x.reshape((x.shape[0],) + self.shape))

    def backward(self, dy, rule="gradient", param_grads=True):
        return dy.reshape(self._recalled(dy))

    def extra_repr(self):
        return f"shape={self.shape}"


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability p and scale the rest by 1/(1-p).

    In eval mode (the default, and what visualization uses) it is the identity.
    """

    geometry = POINTWISE

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_number(p, "p (1 would zero every value)", low=0, high=1, high_open=True)
        self.rng = np.random.default_rng() if rng is None else rng

    def reset_parameters(self, rng):
        self.rng = rng

    def forward(self, x):
        check_array(x, "x")
        if not self.training or self.p == 0:
            return self._remember(None, x)
        keep = self.rng.random(x.shape) >= self.p
        scale = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return self._remember(scale, x * scale)

    def backward(self, dy, rule="gradient", param_grads=True):
        scale = self._recalled(dy)
        return dy if scale is None else dy * scale

    def extra_repr(self):
        return f"p={self.p}"
