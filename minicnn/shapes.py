"""Size arithmetic for convolution, pooling and transposed convolution.

The one formula behind all of them (per spatial axis, input n, kernel k, stride s, padding p):

    out = floor((n + 2p - k) / s) + 1

The transposed convolution runs it backwards: n = (out - 1) s - 2p + k + output_padding.
"""


def pair(value, name):
    """An int or a pair of ints -> a tuple (a, b) of Python ints; anything else is an error."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return (int(value), int(value))
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_geometry(kernel_size, stride, padding, name="kernel_size"):
    """Normalise and validate (kernel, stride, padding) pairs: k >= 1, s >= 1, p >= 0."""
    k, s, p = pair(kernel_size, name), pair(stride, "stride"), pair(padding, "padding")
    if min(k) < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    if min(s) < 1:
        raise ValueError(f"stride must be >= 1, got {s}")
    if min(p) < 0:
        raise ValueError(f"padding must be >= 0, got {p}")
    return k, s, p


def conv_output_size(n, kernel, stride=1, padding=0):
    """Output length of a convolution along one axis: floor((n + 2p - k) / s) + 1."""
    if n + 2 * padding < kernel:
        raise ValueError(
            f"kernel size {kernel} is larger than the padded input {n} + 2*{padding} = {n + 2 * padding}"
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
    """Output length of a transposed convolution along one axis: (n - 1) s - 2p + k + output_padding."""
    return (n - 1) * stride - 2 * padding + kernel + output_padding


def conv_transpose2d_output_shape(input_hw, kernel_size, stride=1, padding=0, output_padding=0):
    """(H, W) of y -> (H, W) of conv_transpose2d(y); output_padding must be < stride (or < dilation)."""
    (kh, kw), (sh, sw), (ph, pw) = check_geometry(kernel_size, stride, padding)
    oph, opw = pair(output_padding, "output_padding")
    if not (0 <= oph < sh and 0 <= opw < sw):
        raise ValueError(
            f"output_padding must satisfy 0 <= output_padding < stride, got output_padding {(oph, opw)} "
            f"with stride {(sh, sw)}"
        )
    h = conv_transpose_output_size(input_hw[0], kh, sh, ph, oph)
    w = conv_transpose_output_size(input_hw[1], kw, sw, pw, opw)
    if h < 1 or w < 1:
        raise ValueError(
            f"transposed convolution output would be {(h, w)} for input {tuple(input_hw)}, kernel {(kh, kw)}, "
            f"stride {(sh, sw)}, padding {(ph, pw)}: the padding is too large"
        )
    return h, w
