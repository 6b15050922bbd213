"""What every weight file reader shares: the one exception, the element types, the two rules."""
import math

import numpy as np


class WeightFileError(ValueError):
    """A weight file is empty, truncated, malformed, unsupported or unsafe; the message says which."""


class FileProblem(Exception):
    """Internal: what is wrong with the file being read; `load_weights` adds the file name."""


# ----------------------------------------------------------------------------------------------
# Element types
# ----------------------------------------------------------------------------------------------

# dtype name -> numpy type code (without byte order). bfloat16 has no numpy type: its 16 bits are
# read as uint16 and widened to float32 (see `bytes_to_array`).
NUMPY_CODES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "bool": "b1",
}


def itemsize(dtype_name):
    return np.dtype(NUMPY_CODES[dtype_name]).itemsize


def bytes_to_array(raw, dtype_name, byteorder="little"):
    """Interpret `raw` bytes as a 1-D array of `dtype_name`, returned in native byte order.

    bfloat16 is the top half of a float32 (same sign and exponent, 7 instead of 23 mantissa bits),
    so shifting its 16 bits left by 16 gives the float32 with exactly the same value.
    """
    order = "<" if byteorder == "little" else ">"
    if dtype_name == "bfloat16":
        bits = np.frombuffer(raw, dtype=order + "u2")
        return (bits.astype(np.uint32) << 16).view(np.float32)
    array = np.frombuffer(raw, dtype=np.dtype(NUMPY_CODES[dtype_name]).newbyteorder(order))
    return array.astype(array.dtype.newbyteorder("="), copy=False)


# ----------------------------------------------------------------------------------------------
# The two rules every array obeys, in every format
# ----------------------------------------------------------------------------------------------

# Weights are real numbers: an array must have one of these dtypes (in either byte order).
REAL_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
               "uint64", "uint32", "uint16", "uint8", "bool")

# The most elements one array may have. The largest weight of VGG16 (fc6, 25088 x 4096 = 102.8
# million) fits; a float64 array of this size takes 1 GiB.
MAX_ARRAY_ELEMENTS = 2**27


def dtype_problem(what, dtype):
    """None if `dtype` is one of REAL_DTYPES, else the sentence saying that `what` breaks the rule."""
    if dtype.name in REAL_DTYPES:
        return None
    return f"{what} has dtype {dtype}; weights must be real numbers, one of {', '.join(REAL_DTYPES)}"


def size_problem(what, shape):
    """None if `shape` has at most MAX_ARRAY_ELEMENTS elements, else the sentence saying it has more."""
    count = math.prod(shape)
    if count <= MAX_ARRAY_ELEMENTS:
        return None
    return (f"{what} has shape {tuple(shape)} = {count:,} elements, more than the "
            f"{MAX_ARRAY_ELEMENTS:,} one array may have (MAX_ARRAY_ELEMENTS)")


def check_declared_dtype(what, dtype):
    """Readers call this with the dtype a file declares for an array, before reading its data."""
    problem = dtype_problem(what, dtype)
    if problem:
        raise FileProblem(problem)


def check_declared_size(what, shape):
    """Readers call this with the shape a file declares, BEFORE reading or decompressing the data."""
    problem = size_problem(what, shape)
    if problem:
        raise FileProblem(f"{problem}; refused before reading it, so that a small file cannot ask "
                       "for a huge array")



def is_int(value):
    return type(value) is int



def check_state(state):
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict of name -> numpy.ndarray, got {type(state).__name__}")
    if not state:
        raise ValueError("state is empty: there are no weights to save")
    for name, array in state.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"state keys must be non-empty strings other than '__metadata__', got {name!r}")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"state[{name!r}] must be a numpy.ndarray, got {type(array).__name__}")
        wrong_dtype = dtype_problem(f"state[{name!r}]", array.dtype)
        if wrong_dtype:
            raise TypeError(wrong_dtype)
        too_big = size_problem(f"state[{name!r}]", array.shape)
        if too_big:
            raise ValueError(f"{too_big}; load_weights would refuse the file")
