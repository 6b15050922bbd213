"""What every weight-file reader shares: the one exception, the budget, the element types, the two rules.

The budget. One file may make a reader allocate at most `budget` bytes IN TOTAL: the arrays it
returns, plus everything decompressed, copied or built on the way (pickle objects, JSON headers).
Each reader charges a `Budget` with the sizes the file DECLARES, before allocating them, so a small
file that declares gigabytes is refused while still small. DEFAULT_BUDGET is 2 GiB: VGG16 in float64
(1.1 GB) fits; raise it with ``load_weights(path, budget=...)``.
"""
import math
import reprlib

import numpy as np

# 2 GiB: a float64 VGG16 (138 million weights, 1.1 GB) fits with room to spare.
DEFAULT_BUDGET = 2 * 2**30


class WeightFileError(ValueError):
    """A weight file is empty, truncated, malformed, unsupported, unsafe or over its budget; the message says which."""


class FileProblem(Exception):
    """Internal: what is wrong with the file being read; `load_weights` adds the file name."""


class Budget:
    """The bytes one file may still make a reader allocate; `charge` before allocating."""

    def __init__(self, limit):
        if not (type(limit) is int and limit > 0):
            raise ValueError(f"budget must be a positive int (bytes), got {short(limit)}")
        self.limit, self.used = limit, 0

    def charge(self, nbytes, what):
        """Count `nbytes` for `what`, or raise FileProblem if the total would pass the limit."""
        if self.used + nbytes > self.limit:
            raise FileProblem(
                f"{what} would take {nbytes:,} bytes; with the {self.used:,} already used that passes this "
                f"file's budget of {self.limit:,} bytes (refused before allocating; a file you trust "
                "can be read with load_weights(path, budget=...))")
        self.used += nbytes


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 40, 40, 40
_SHORT.maxtuple = _SHORT.maxlist = _SHORT.maxdict = _SHORT.maxset = 4


def short(value):
    """A repr of at most a few dozen characters, for messages about values a file supplied."""
    return _SHORT.repr(value)


def is_int(value):
    return type(value) is int


# ----------------------------------------------------------------------------------------------
# Element types
# ----------------------------------------------------------------------------------------------

# dtype name -> numpy type code (without byte order). bfloat16 has no numpy type: its 16 bits are
# read as uint16 and widened to float32 (see `raw_to_array`).
NUMPY_CODES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "bool": "b1",
}


def itemsize(dtype_name):
    return np.dtype(NUMPY_CODES[dtype_name]).itemsize


def file_dtype(dtype_name, byteorder="little"):
    """The numpy dtype of `dtype_name` as stored in a file of `byteorder` (bfloat16: its uint16 bits)."""
    return np.dtype(NUMPY_CODES[dtype_name]).newbyteorder("<" if byteorder == "little" else ">")


def output_bytes(dtype_name, count):
    """Bytes of the array load_weights returns for `count` elements (bfloat16 comes back as float32)."""
    return count * (4 if dtype_name == "bfloat16" else itemsize(dtype_name))


def to_native(view, dtype_name, budget, what):
    """`view` (elements as stored, any strides) as an array in native byte order.

    Returned WITHOUT a copy when it already is native and not bfloat16; otherwise a new C-contiguous
    array, charged to `budget`. bfloat16 is the top half of a float32 (same sign and exponent, 7
    instead of 23 mantissa bits), so its 16 bits shifted left by 16 give exactly the same float32.
    """
    if dtype_name == "bfloat16":
        budget.charge(view.size * 4, what)
        widened = np.empty(view.shape, np.uint32)
        np.left_shift(view, 16, out=widened, dtype=np.uint32)
        return widened.view(np.float32)
    if view.dtype.isnative:
        return view
    budget.charge(view.nbytes, what)
    return view.astype(view.dtype.newbyteorder("="), order="C")


def read_exactly_into(stream, array, what, each_piece=None):
    """Fill `array` (C-contiguous) from `stream` in 16 MiB pieces; FileProblem if the stream ends first.

    each_piece(bytes_view), if given, sees every piece as it arrives (to compute a checksum).
    """
    raw = memoryview(array).cast("B") if array.size else memoryview(b"")
    position, step = 0, 1 << 24
    while position < len(raw):
        got = stream.readinto(raw[position:position + step])
        if not got:
            raise FileProblem(f"truncated: {what} needs {len(raw):,} bytes, the file has {position:,}")
        if each_piece is not None:
            each_piece(raw[position:position + got])
        position += got


# ----------------------------------------------------------------------------------------------
# The two rules every array obeys, in every format
# ----------------------------------------------------------------------------------------------

# Weights are real numbers: an array must have one of these dtypes (in either byte order).
REAL_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
               "uint64", "uint32", "uint16", "uint8", "bool")

# The most elements one array may have. The largest weight of VGG16 (fc6, 25088 x 4096 = 102.8
# million) fits; a float64 array of this size takes 1 GiB.
MAX_ARRAY_ELEMENTS = 2**27
# The most dimensions one array may have (numpy's own limit is 64).
MAX_DIMENSIONS = 32


def dtype_problem(what, dtype):
    """None if `dtype` is one of REAL_DTYPES, else the sentence saying that `what` breaks the rule."""
    if dtype.name in REAL_DTYPES:
        return None
    return f"{what} has dtype {dtype}; weights must be real numbers, one of {', '.join(REAL_DTYPES)}"


def size_problem(what, shape):
    """None if `shape` has at most MAX_ARRAY_ELEMENTS elements, else the sentence saying it has more."""
    if len(shape) > MAX_DIMENSIONS:
        return f"{what} has {len(shape)} dimensions, more than the {MAX_DIMENSIONS} an array may have"
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


def check_state(state):
    """What save_weights accepts: a non-empty dict of str -> ndarray obeying the two rules."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict of name -> numpy.ndarray, got {type(state).__name__}")
    if not state:
        raise ValueError("state is empty: there are no weights to save")
    for name, array in state.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"state keys must be non-empty strings other than '__metadata__', got {short(name)}")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"state[{name!r}] must be a numpy.ndarray, got {type(array).__name__}")
        wrong_dtype = dtype_problem(f"state[{name!r}]", array.dtype)
        if wrong_dtype:
            raise TypeError(wrong_dtype)
        too_big = size_problem(f"state[{name!r}]", array.shape)
        if too_big:
            raise ValueError(f"{too_big}; load_weights would refuse the file")
