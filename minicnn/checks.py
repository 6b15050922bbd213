"""Argument checks with errors a student can act on.

Every public function of minicnn validates what it is given here: the error names the argument,
the shape (or dtype, or value) it got, and what it needs. Nothing is silently broadcast, cast or
truncated.
"""
import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_array(x, name, ndim=None, dtype_like=None):
    """Check that `x` is a float32/float64 ndarray with `ndim` dims; return it unchanged.

    `dtype_like`: another checked array whose dtype `x` must share (no silent casting).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {x.dtype} with shape {x.shape}; "
            f"convert it explicitly, e.g. {name}.astype(np.float32)"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape} ({x.ndim} dimensions)")
    if dtype_like is not None and x.dtype != dtype_like.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the other operand has dtype {dtype_like.dtype}; "
            "minicnn never casts silently: convert one of them explicitly"
        )
    return x


def check_shape(x, name, expected):
    """Check x.shape == expected, where None in `expected` matches any size."""
    ok = x.ndim == len(expected) and all(e is None or e == s for s, e in zip(x.shape, expected))
    if not ok:
        want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    return x


def check_labels(labels, n, num_classes, name="labels"):
    """Check integer class labels: shape (n,), values in [0, num_classes)."""
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"{name} must be an integer numpy array, got {got}")
    check_shape(labels, name, (n,))
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}"
        )
    return labels


def check_choice(value, name, choices):
    """Check that `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int_at_least(value, name, low):
    """An int (Python or NumPy, e.g. from np.argmax; not bool) >= low, returned as a Python int.
    Not an int -> TypeError; an int below low -> ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number (Python or NumPy, not bool) in [low, high] -- an end excluded with low_open /
    high_open -- returned as a Python float. Not a number -> TypeError; NaN, inf or out of range -> ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not np.isfinite(value) or too_low or too_high:
        lower = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        upper = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        wanted = " and ".join(part for part in (lower, upper) if part)
        raise ValueError(f"{name} must be a finite number{' ' + wanted if wanted else ''}, got {value!r}")
    return value


def check_finite(x, name):
    """Check that the float array x holds no NaN or inf (they would flow silently into every result)."""
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{name} must hold finite values, got {bad} NaN or inf of {np.size(x)} in shape {np.shape(x)}")
    return x


def state_problems(expected, state, strict=True, shown=20):
    """What keeps `state` (name -> array) from fitting parameters of the `expected` shapes (name -> shape).

    Returns a list of readable problems, empty when it fits: shape mismatches always; with strict,
    also the missing and the unexpected keys (the first `shown` of each)."""
    def listed(keys):
        return f"{keys[:shown]}" + (f" ... ({len(keys)} in all)" if len(keys) > shown else "")

    mismatched = [f"{key}: file {tuple(np.shape(state[key]))} vs network {tuple(shape)}"
                  for key, shape in expected.items() if key in state and tuple(np.shape(state[key])) != tuple(shape)]
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    problems = ["shape mismatches: " + "; ".join(mismatched)] if mismatched else []
    if strict and missing:
        problems.append(f"missing keys: {listed(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {listed(unexpected)}")
    return problems
