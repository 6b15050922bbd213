"""Comparing arrays with messages that name the worst entry, and checking a gradient by central differences.

    assert_close(got, expected)          AssertionError naming the entry, both numbers and the tolerance
    numerical_gradient(f, x)             (f(x + eps e_i) - f(x - eps e_i)) / 2 eps for every entry i
    gradcheck(f, x, grad)                the worst relative error of grad against those differences
"""
import numpy as np

from ..checks import check_array, check_number, check_shape

DEFAULT_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


class CaseFailure(AssertionError):
    """A check failed on one case. The message names the case and the numbers; the attributes keep them:
    case (the drawn case), what (which quantity failed), got and expected (arrays, or None)."""

    def __init__(self, message, case=None, what=None, got=None, expected=None):
        super().__init__(message)
        self.case, self.what, self.got, self.expected = case, what, got, expected


def default_rtol(dtype):
    """The relative tolerance for a dtype: 1e-5 for float32, 1e-10 for float64."""
    return DEFAULT_RTOL.get(np.dtype(dtype), 1e-10)


def index_text(index):
    """(0, 2, 1) -> '[0, 2, 1]'; () (a 0-d array) -> ''."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]" if index else ""


def difference_text(name, got, expected, rtol):
    """None when got == expected entrywise within rtol, else a sentence naming the worst entry.

    The tolerance is absolute, rtol * max(1, max |expected|): entries near zero are held to the
    scale of the whole array, not to their own (tiny) size.
    """
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}, expected {expected.shape}"
    if got.size == 0:
        return None
    tolerance = rtol * max(1.0, float(np.abs(expected).max()))
    got_nan, expected_nan = np.isnan(got), np.isnan(expected)
    error = np.where(got_nan | expected_nan, np.where(got_nan & expected_nan, 0.0, np.inf),
                     np.abs(got.astype(np.float64) - expected.astype(np.float64)))
    if error.max() <= tolerance:
        return None
    worst = np.unravel_index(np.argmax(error), error.shape)
    wrong = int(np.count_nonzero(error > tolerance))
    return (f"{name}{index_text(worst)} is {got[worst].item()!r}, expected {expected[worst].item()!r} "
            f"(|difference| {error[worst]:.3g} > tolerance {tolerance:.3g}; {wrong} of {got.size} entries differ)")


def assert_close(actual, expected, rtol=None, name="actual"):
    """Raise AssertionError unless actual == expected entrywise within rtol * max(1, max |expected|).

    rtol defaults to 1e-5 for float32 and 1e-10 for float64 (actual's dtype). The message names the
    worst entry, both values, the tolerance, and how many entries differ; or the two shapes.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    rtol = default_rtol(actual.dtype) if rtol is None else check_number(rtol, "rtol", low=0)
    message = difference_text(name, actual, expected, rtol)
    if message:
        raise AssertionError(message)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences (f(x + eps e_i) - f(x - eps e_i)) / 2 eps at every entry i of x (float64).

    f(x) -> a number. x is perturbed in place, one entry at a time, and restored exactly, so f may
    also read x through a closure (e.g. a layer's parameter). Costs 2 x.size calls of f.
    """
    _check_float64(x, "x")
    eps = check_number(eps, "eps", low=0, low_open=True)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = float(f(x))
        x[index] = saved - eps
        minus = float(f(x))
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """max |a - b| over max(max |a|, max |b|): the error relative to the larger array's scale (0 if both are 0)."""
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    return float(np.abs(a - b).max(initial=0.0)) / scale if scale > 0 else 0.0


def gradcheck(f, x, grad, eps=1e-6, rtol=1e-6):
    """Check that grad is the gradient of f at x: grad == numerical_gradient(f, x, eps) within rtol.

    f(x) -> a number; x and grad float64 arrays of one shape. The error is relative to the larger
    gradient's scale: max_i |grad_i - fd_i| / max(max |grad|, max |fd|), with fd the central
    differences (their own error is about eps^2 f''' + 1e-16 |f| / eps, ~1e-10 for eps = 1e-6).
    Returns that worst relative error; raises AssertionError naming its entry when it exceeds rtol.
    """
    _check_float64(x, "x")
    _check_float64(grad, "grad")
    check_shape(grad, "grad", x.shape)
    rtol = check_number(rtol, "rtol", low=0)
    differences = numerical_gradient(f, x, eps)
    error = relative_error(grad, differences)
    if error > rtol:
        worst = np.unravel_index(np.argmax(np.abs(grad - differences)), x.shape)
        raise AssertionError(
            f"gradient check failed: worst relative error {error:.3g} > rtol {rtol:g}, at x{index_text(worst)}: "
            f"grad gives {grad[worst].item()!r}, central differences (eps {eps:g}) give {differences[worst].item()!r}")
    return error


def _check_float64(a, name):
    """Central differences mean nothing in float32 (eps = 1e-6 is below its resolution at 1): refuse it."""
    check_array(a, name)
    if a.dtype != np.float64:
        raise TypeError(f"{name} must be float64 for a gradient check (central differences lose everything in "
                        f"{a.dtype}), got {a.dtype}; pass {name}.astype(np.float64)")
