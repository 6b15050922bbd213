"""Size arithmetic for convolution, pooling and transposed convolution.

The one formula behind all of them (per spatial axis, input n, kernel k, stride s, padding p):

    out = floor((n + 2p - k) / s) + 1

The transposed convolution runs it backwards: n = (out - 1) s - 2p + k + output_padding.
Receptive fields stack the same numbers layer on layer: r_l = r_{l-1} + (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l.
"""
from dataclasses import dataclass, field

import numpy as np

from .checks import check_int_at_least


def _is_int(value):
    """A Python or NumPy int (np.argmax, array shapes and sums give NumPy ones), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def pair(value, name):
    """An int or a pair of ints (Python or NumPy, not bool) -> a tuple (a, b) of Python ints."""
    if _is_int(value):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def pair_at_least(value, name, low):
    """pair(value, name), with both ints >= low (ValueError otherwise)."""
    a, b = pair(value, name)
    if min(a, b) < low:
        raise ValueError(f"{name} must be >= {low}, got {(a, b)}")
    return a, b


def check_geometry(kernel_size, stride, padding, name="kernel_size"):
    """Normalise and validate (kernel, stride, padding) pairs: k >= 1, s >= 1, p >= 0."""
    return pair_at_least(kernel_size, name, 1), pair_at_least(stride, "stride", 1), pair_at_least(padding, "padding", 0)


def check_geometry_1d(kernel, stride, padding, name="kernel"):
    """One axis: (k, s, p) as Python ints (one int each, not a pair) with k >= 1, s >= 1, p >= 0."""
    return (check_int_at_least(kernel, name, 1), check_int_at_least(stride, "stride", 1),
            check_int_at_least(padding, "padding", 0))


def conv_output_size(n, kernel, stride=1, padding=0):
    """Output length of a convolution along one axis: floor((n + 2p - k) / s) + 1.

    n >= 1, k >= 1, s >= 1, p >= 0 (ints); the kernel must fit the padded input (n + 2p >= k),
    which is exactly when the output has at least one position.
    """
    n = check_int_at_least(n, "n", 1)
    kernel, stride, padding = check_geometry_1d(kernel, stride, padding)
    if n + 2 * padding < kernel:
        raise ValueError(
            f"kernel size {kernel} is larger than the padded input {n} + 2*{padding} = {n + 2 * padding}: "
            f"the output would have no position"
        )
    return (n + 2 * padding - kernel) // stride + 1


def conv2d_output_shape(input_hw, kernel_size, stride=1, padding=0):
    """(H, W) -> (Ho, Wo) of a 2D convolution or pooling with the given geometry."""
    (kh, kw), (sh, sw), (ph, pw) = check_geometry(kernel_size, stride, padding)
    h, w = input_hw
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(
            f"kernel {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)} "
            f"(input {(h, w)}, padding {(ph, pw)})"
        )
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def conv_transpose_output_size(n, kernel, stride=1, padding=0, output_padding=0):
    """Output length of a transposed convolution along one axis: (n - 1) s - 2p + k + output_padding.

    n >= 1, k >= 1, s >= 1, p >= 0 and 0 <= output_padding < s (ints); the padding may not crop
    the output down to nothing.
    """
    n = check_int_at_least(n, "n", 1)
    kernel, stride, padding = check_geometry_1d(kernel, stride, padding)
    output_padding = check_int_at_least(output_padding, "output_padding", 0)
    if output_padding >= stride:
        raise ValueError(f"output_padding must satisfy 0 <= output_padding < stride, got {output_padding} "
                         f"with stride {stride}")
    out = (n - 1) * stride - 2 * padding + kernel + output_padding
    if out < 1:
        raise ValueError(f"transposed convolution output would be {out} for input {n}, kernel {kernel}, "
                         f"stride {stride}, padding {padding}: the padding is too large")
    return out


def conv_transpose2d_output_shape(input_hw, kernel_size, stride=1, padding=0, output_padding=0):
    """(H, W) of y -> (H, W) of conv_transpose2d(y); output_padding must be < stride."""
    (kh, kw), (sh, sw), (ph, pw) = check_geometry(kernel_size, stride, padding)
    oph, opw = pair(output_padding, "output_padding")
    return (conv_transpose_output_size(input_hw[0], kh, sh, ph, oph),
            conv_transpose_output_size(input_hw[1], kw, sw, pw, opw))


# ----------------------------------------------------------------------------------------------
# which input sizes give one output size (why output_padding exists)


def input_sizes_for_output(out, kernel, stride=1, padding=0):
    """All input lengths n that a convolution maps to output length `out`, as a range.

    floor((n + 2p - k) / s) + 1 == out  <=>  (out - 1) s + k - 2p <= n <= (out - 1) s + k - 2p + s - 1.
    With stride s > 1 there are s such sizes (fewer if some would be < 1): the rounding down forgets
    which one it was. A transposed convolution must be told, and output_padding = n - min(range)
    does exactly that. Example: out 2, kernel 2, stride 2 -> range(4, 6): inputs 4 and 5 both give 2.
    """
    out = check_int_at_least(out, "out", 1)
    k, s, p = check_geometry_1d(kernel, stride, padding)
    smallest = (out - 1) * s + k - 2 * p
    return range(max(smallest, 1), max(smallest + s, 1))


# ----------------------------------------------------------------------------------------------
# receptive fields


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit of a layer sees of the network's input, per axis as (rows, cols) pairs.

    size   side of the input box one unit sees:   r_l = r_{l-1} + (k_l - 1) j_{l-1},  r_0 = 1
    jump   input pixels between neighbouring units (the product of the strides): j_l = j_{l-1} s_l
    start  input coordinate of the TOP-LEFT corner of unit (0, 0)'s box:  a_l = a_{l-1} - p_l j_{l-1};
           negative when the box reaches into the zero padding.
    geometry the ((kh, kw), (sh, sw), (ph, pw)) of every layer up to this one: from it, output_hw
           works out how many units the layer has for a given input size.
    Unit (i, j) of the layer sees input rows start[0] + i*jump[0] ... start[0] + i*jump[0] + size[0] - 1
    (and the same for columns). `center` is the middle of unit (0, 0)'s box.
    """

    name: object
    size: tuple
    jump: tuple
    start: tuple
    geometry: tuple = field(repr=False)

    @property
    def center(self):
        return tuple(a + (r - 1) / 2 for a, r in zip(self.start, self.size))


def _geometry_of_list(layers):
    """[(kernel, stride, padding), ...] -> [(index, kernel pair, stride pair, padding pair), ...]."""
    steps = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)) or len(layer) != 3:
            raise ValueError(f"layer {index} must be a (kernel, stride, padding) triple, got {layer!r}")
        steps.append((index,) + check_geometry(*layer, name=f"kernel of layer {index}"))
    return steps


def _geometry_of_network(net, upto):
    """A Network's layers up to `upto` -> [(name, kernel, stride, padding), ...].

    Each layer states its own `geometry`: (kernel, stride, padding) for windowed layers (Conv2d,
    pooling), kernel 1 stride 1 for layers acting on each position alone (ReLU, Dropout), None for
    layers mixing all positions (Flatten, Linear, global pooling): a receptive field ends before them.
    """
    names = net.names if upto is None else net.names[: net._index(upto) + 1]
    steps = []
    for name in names:
        geometry = net.layers[name].geometry
        if geometry is None:
            raise ValueError(
                f"layer {name!r} ({type(net.layers[name]).__name__}) has no receptive-field geometry (it mixes "
                f"all positions); pass upto= the name of a layer before it, e.g. upto={names[0]!r}"
            )
        steps.append((name,) + check_geometry(*geometry))
    return steps


def receptive_field(layers, upto=None):
    """Receptive field of every layer: a list of ReceptiveField(name, size, jump, start), one per layer.

    `layers` is either a list of (kernel, stride, padding) triples (ints or (h, w) pairs; names are
    the list indices) or a minicnn Network (names are layer names; `upto` stops at that layer).
    Three stacked 3x3 convolutions at stride 1 give sizes 3, 5, 7:
        [f.size for f in receptive_field([(3, 1, 1)] * 3)] == [(3, 3), (5, 5), (7, 7)]
    """
    if hasattr(layers, "names") and hasattr(layers, "layers"):
        steps = _geometry_of_network(layers, upto)
    elif upto is not None:
        raise TypeError("upto= is only for a Network; slice the list of (kernel, stride, padding) instead")
    else:
        steps = _geometry_of_list(layers)
    size, jump, start = (1, 1), (1, 1), (0, 0)
    fields = []
    for index, (name, kernel, stride, padding) in enumerate(steps):
        size = tuple(r + (k - 1) * j for r, k, j in zip(size, kernel, jump))
        start = tuple(a - p * j for a, p, j in zip(start, padding, jump))
        jump = tuple(j * s for j, s in zip(jump, stride))
        geometry = tuple(step[1:] for step in steps[: index + 1])
        fields.append(ReceptiveField(name, size, jump, start, geometry))
    return fields


def output_hw(layer_info, input_hw):
    """(Ho, Wo) of the layer that layer_info describes, for a network input of size input_hw:
    conv2d_output_shape applied layer after layer with each layer's (kernel, stride, padding)."""
    if not isinstance(layer_info, ReceptiveField):
        raise TypeError(f"layer_info must be a ReceptiveField (from receptive_field), got {type(layer_info).__name__}")
    hw = pair_at_least(input_hw, "input_hw", 1)
    for kernel, stride, padding in layer_info.geometry:
        hw = conv2d_output_shape(hw, kernel, stride, padding)
    return hw


def receptive_field_box(layer_info, i, j, input_hw):
    """The input box seen by unit (i, j) of a layer, clipped to the image: (top, bottom, left, right).

    Half-open, so `image[..., top:bottom, left:right]` is the crop (for dataset search). layer_info is
    that layer's ReceptiveField; input_hw the (H, W) of the network's input. Unclipped, the box is
    rows start_h + i jump_h ... + size_h - 1; the part that lies in the zero padding is cut off.
    The box is exact (the pixels the unit's value depends on, for positive weights) when every layer has
    padding < kernel and reads all of its input. Otherwise it can claim a few edge pixels no path
    reaches: the last rows a strided layer's rounding down leaves unread, or, with padding >= kernel,
    pixels "seen" only through positions of an intermediate layer that are themselves zero padding.
    """
    i, j = check_int_at_least(i, "i", 0), check_int_at_least(j, "j", 0)
    h, w = pair_at_least(input_hw, "input_hw", 1)
    units = output_hw(layer_info, (h, w))
    if i >= units[0] or j >= units[1]:
        raise ValueError(
            f"unit ({i}, {j}) does not exist in layer {layer_info.name!r}: for an input of size {(h, w)} "
            f"the layer's output is {units}, so i < {units[0]} and j < {units[1]}"
        )
    top = layer_info.start[0] + i * layer_info.jump[0]
    left = layer_info.start[1] + j * layer_info.jump[1]
    box = (max(top, 0), min(top + layer_info.size[0], h), max(left, 0), min(left + layer_info.size[1], w))
    if box[0] >= box[1] or box[2] >= box[3]:
        raise ValueError(
            f"unit ({i}, {j}) of layer {layer_info.name!r} sees rows {top}..{top + layer_info.size[0] - 1}, "
            f"cols {left}..{left + layer_info.size[1] - 1}: nothing of an input of size {(h, w)}"
        )
    return box
