r"""Read and write trained weights without running any code from the file.

`load_weights(path)` returns a dict name -> numpy array, choosing the reader from the first bytes of
the file (its "magic"), never from the extension:

- ``PK\x03\x04`` (a zip archive): either a PyTorch checkpoint (``torch.save``, the default since
  torch 1.6) -- ``<prefix>/data.pkl`` (a pickle of the state dict, whose tensors point at
  storages), ``<prefix>/data/<key>`` (the raw bytes of each storage) and ``<prefix>/byteorder``
  ("little" or "big") -- or a NumPy ``.npz``, a zip of ``<name>.npy`` files.
- ``\x80\x02`` (a pickle): a PyTorch legacy checkpoint (``_use_new_zipfile_serialization=False``,
  and old torchvision files): five pickles in a row -- a magic number, the protocol version 1001,
  a dict describing the saving machine, the state dict, the list of storage keys -- then for each
  key an int64 element count followed by the storage's raw little-endian bytes.
- an 8-byte length, then ``{``: safetensors -- a little-endian uint64 N, N bytes of JSON giving
  every tensor's dtype, shape and [begin, end) byte range, then the bytes.
- ``\x89HDF\r\n\x1a\n``: Keras HDF5 weights (needs the optional h5py package).

Why not `pickle.load` or `torch.load`?  A pickle is a small program: it can name any Python
function and call it (``os.system``, ``eval``...), so loading an untrusted pickle runs whatever its
author wrote.  Here every pickle is first read opcode by opcode (`check_pickle_opcodes`) and refused
unless it only builds dicts, lists, numbers, strings and tensors; then it is unpickled by
`RestrictedUnpickler`, which again hands out only the few names a state dict needs.  Tensors come
back as numpy arrays copied out of their storage bytes; nothing from the file is ever executed.

Two rules hold for every array, in every format, read or written:

- weights are arrays of real numbers: one of REAL_DTYPES (floats, integers, bool); complex,
  object, string, structured and datetime arrays are refused;
- one array has at most MAX_ARRAY_ELEMENTS elements. Readers check the shape the file DECLARES
  before reading or decompressing any data, so a small file cannot make minicnn allocate gigabytes.

Any problem with a file raises one `WeightFileError` naming the file and what is wrong with it.

`save_weights(path, state)` writes ``.npz`` or ``.safetensors`` (chosen by the extension).
"""
import io
import json
import math
import mmap
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from minicnn.checks import check_array

__all__ = ["WeightFileError", "load_weights", "save_weights", "keras_flatten_to_channels_first"]


class WeightFileError(ValueError):
    """A weight file is empty, truncated, malformed, unsupported or unsafe; the message says which."""


class _Problem(Exception):
    """Internal: what is wrong with the file being read; `load_weights` adds the file name."""


# ----------------------------------------------------------------------------------------------
# Element types
# ----------------------------------------------------------------------------------------------

# dtype name -> numpy type code (without byte order). bfloat16 has no numpy type: its 16 bits are
# read as uint16 and widened to float32 (see `bytes_to_array`).
_NUMPY_CODES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "bool": "b1",
}


def _itemsize(dtype_name):
    return np.dtype(_NUMPY_CODES[dtype_name]).itemsize


def bytes_to_array(raw, dtype_name, byteorder="little"):
    """Interpret `raw` bytes as a 1-D array of `dtype_name`, returned in native byte order.

    bfloat16 is the top half of a float32 (same sign and exponent, 7 instead of 23 mantissa bits),
    so shifting its 16 bits left by 16 gives the float32 with exactly the same value.
    """
    order = "<" if byteorder == "little" else ">"
    if dtype_name == "bfloat16":
        bits = np.frombuffer(raw, dtype=order + "u2")
        return (bits.astype(np.uint32) << 16).view(np.float32)
    array = np.frombuffer(raw, dtype=np.dtype(_NUMPY_CODES[dtype_name]).newbyteorder(order))
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


def _dtype_problem(what, dtype):
    """None if `dtype` is one of REAL_DTYPES, else the sentence saying that `what` breaks the rule."""
    if dtype.name in REAL_DTYPES:
        return None
    return f"{what} has dtype {dtype}; weights must be real numbers, one of {', '.join(REAL_DTYPES)}"


def _size_problem(what, shape):
    """None if `shape` has at most MAX_ARRAY_ELEMENTS elements, else the sentence saying it has more."""
    count = math.prod(shape)
    if count <= MAX_ARRAY_ELEMENTS:
        return None
    return (f"{what} has shape {tuple(shape)} = {count:,} elements, more than the "
            f"{MAX_ARRAY_ELEMENTS:,} one array may have (MAX_ARRAY_ELEMENTS)")


def _check_declared_dtype(what, dtype):
    """Readers call this with the dtype a file declares for an array, before reading its data."""
    problem = _dtype_problem(what, dtype)
    if problem:
        raise _Problem(problem)


def _check_declared_size(what, shape):
    """Readers call this with the shape a file declares, BEFORE reading or decompressing the data."""
    problem = _size_problem(what, shape)
    if problem:
        raise _Problem(f"{problem}; refused before reading it, so that a small file cannot ask "
                       "for a huge array")


# ----------------------------------------------------------------------------------------------
# What a PyTorch pickle may name
# ----------------------------------------------------------------------------------------------

_TORCH_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}
_TORCH_DTYPE_NAMES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
}


class StorageType:
    """Stands for a torch storage class such as torch.FloatStorage; only its dtype is kept."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class DTypeName:
    """Stands for a torch dtype such as torch.float32 (never called, only carried around)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


class StorageRef:
    """A storage named by the pickle: its key in the file, dtype, first element and length.

    A legacy file may describe a storage as a window [start, start + numel) into a bigger one.
    """

    __slots__ = ("key", "dtype", "start", "numel")

    def __init__(self, key, dtype, start, numel):
        self.key, self.dtype, self.start, self.numel = key, dtype, start, numel


class TensorRef:
    """A tensor named by the pickle: a strided view into a storage, read once the storages are."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_array(self, storages):
        """Copy this view out of the storage arrays (key -> 1-D array) as a C-contiguous array."""
        flat = storages[self.storage.key][self.storage.start:self.storage.start + self.storage.numel]
        if 0 in self.size:
            return np.zeros(self.size, dtype=flat.dtype)
        strides = [step * flat.itemsize for step in self.stride]
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=strides, writeable=False
        )
        return view.copy(order="C")


def _is_int(value):
    return type(value) is int


def rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Our stand-in for torch._utils._rebuild_tensor(_v2): check the view, remember it.

    The view reads elements offset + sum(i_k * stride_k) for 0 <= i_k < size_k, so its last element
    is offset + sum((size_k - 1) * stride_k); that must lie inside the storage. A view with stride 0
    (torch's expand) has more elements than its storage: the size rule applies to the view itself.
    """
    if not isinstance(storage, StorageRef):
        raise _Problem(f"a tensor is built on {type(storage).__name__}, not on a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and _is_int(storage_offset) and all(map(_is_int, size + stride))):
        raise _Problem(f"tensor view has a malformed offset {storage_offset!r}, size {size!r} "
                       f"or stride {stride!r}")
    if storage_offset < 0 or min(size + stride, default=0) < 0:
        raise _Problem(f"tensor view has a negative offset, size or stride: offset {storage_offset}, "
                       f"size {size}, stride {stride}")
    _check_declared_size(f"a tensor on storage {storage.key} (stride {stride})", size)
    if 0 in size:
        return TensorRef(storage, storage_offset, size, stride)
    last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= storage.numel:
        raise _Problem(
            f"a tensor of size {size} (offset {storage_offset}, stride {stride}) reads element {last}, "
            f"past the end of storage {storage.key} which has {storage.numel} elements"
        )
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_parameter(data, *_ignored):
    """Our stand-in for torch._utils._rebuild_parameter(_with_state): a Parameter is its tensor."""
    if not isinstance(data, TensorRef):
        raise _Problem(f"a Parameter wraps {type(data).__name__}, not a tensor")
    return data


def _allowed_globals():
    """The complete list of names a weight pickle may mention, and what each one becomes."""
    names = {
        "collections.OrderedDict": OrderedDict,
        "torch._utils._rebuild_tensor": rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": rebuild_tensor,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
    }
    names.update({f"torch.{n}": StorageType(d) for n, d in _TORCH_STORAGE_TYPES.items()})
    names.update({f"torch.{n}": DTypeName(d) for n, d in _TORCH_DTYPE_NAMES.items()})
    return names


ALLOWED_GLOBALS = _allowed_globals()
# Of those, the only ones a pickle may call (opcode REDUCE).
ALLOWED_CALLS = {
    "collections.OrderedDict", "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
}


def _refused_global_message(qualname):
    message = f"refused global '{qualname}'"
    if qualname.startswith("torch.nn."):
        return (message + ": the file holds a whole pickled model, not a state dict; "
                "in PyTorch save model.state_dict() instead of the model")
    return (message + ": a weight file may only name tensors, storages, dtypes and OrderedDict; "
            f"pickle.load or torch.load(weights_only=False) would hand this file '{qualname}' to call")


# ----------------------------------------------------------------------------------------------
# Pickle pre-scan: read the opcodes without executing them
# ----------------------------------------------------------------------------------------------

_PUSH_STRING = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
                "STRING", "BINSTRING", "SHORT_BINSTRING"}
_PUSH_VALUE = {"NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG",
               "LONG1", "LONG4", "FLOAT", "BINFLOAT", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
               "BYTEARRAY8", "EMPTY_TUPLE", "PERSID"}
_REFUSED_OPCODES = {
    "INST": "creates an object of any class", "OBJ": "creates an object of any class",
    "NEWOBJ": "creates an object of any class", "NEWOBJ_EX": "creates an object of any class",
    "EXT1": "names a global through the extension registry",
    "EXT2": "names a global through the extension registry",
    "EXT4": "names a global through the extension registry",
    "NEXT_BUFFER": "reads an out-of-band buffer", "READONLY_BUFFER": "reads an out-of-band buffer",
}
_NEW_CONTAINER = {"EMPTY_DICT": ("dict",), "DICT": ("dict",), "EMPTY_LIST": ("list",), "LIST": ("list",),
                  "EMPTY_SET": ("set",)}
_MARK = ("mark",)
_DICT_LIKE = {("dict",), ("call", "collections.OrderedDict")}


class _PickleScan:
    """A pretend pickle machine: it tracks what KIND of thing each stack slot holds, not its value.

    Kinds: ("mark",), ("str", text), ("global", name), ("call", name) -- the result of calling
    `name` --, ("dict",), ("list",), ("set",) and ("value",) for anything else.  That is enough to
    decide, before anything runs, whether every call and every BUILD is one we allow.
    """

    def __init__(self):
        self.stack, self.memo = [], {}

    def pop(self, mark_allowed=False):
        """Pop one slot. Like the real unpickler, only POP and the *_MARK opcodes may pop a MARK."""
        if not self.stack:
            raise _Problem("malformed pickle: it pops from an empty stack")
        if self.stack[-1] == _MARK and not mark_allowed:
            raise _Problem("malformed pickle: an opcode reads past a MARK")
        return self.stack.pop()

    def pop_to_mark(self):
        while self.pop(mark_allowed=True) != _MARK:
            pass

    def step(self, name, arg):
        """Apply one opcode to the pretend stack, or raise _Problem if it is not allowed."""
        stack = self.stack
        if name in _REFUSED_OPCODES:
            raise _Problem(f"refused pickle opcode {name} (it {_REFUSED_OPCODES[name]})")
        if name in ("PROTO", "FRAME"):
            return
        if name in _PUSH_STRING:
            stack.append(("str", arg))
        elif name in _PUSH_VALUE:
            stack.append(("value",))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            self.pop(mark_allowed=True)
        elif name in ("STOP", "BINPERSID"):
            self.pop()
            if name == "BINPERSID":
                stack.append(("value",))
        elif name == "POP_MARK":
            self.pop_to_mark()
        elif name == "DUP":
            stack.append(self.top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise _Problem(f"malformed pickle: it reads memo slot {arg}, which was never written")
            stack.append(self.memo[arg])
        else:
            self.step_structure(name, arg)

    def top(self):
        if not self.stack or self.stack[-1] == _MARK:
            raise _Problem("malformed pickle: it reads from an empty stack")
        return self.stack[-1]

    def step_structure(self, name, arg):
        """Opcodes that name globals, call them, or build containers."""
        stack = self.stack
        if name in ("GLOBAL", "STACK_GLOBAL"):
            qualname = arg.replace(" ", ".") if name == "GLOBAL" else self.stack_global_name()
            if qualname not in ALLOWED_GLOBALS:
                raise _Problem(_refused_global_message(qualname))
            stack.append(("global", qualname))
        elif name == "REDUCE":
            self.pop()
            func = self.pop()
            if func[0] != "global" or func[1] not in ALLOWED_CALLS:
                what = f"'{func[1]}'" if func[0] == "global" else "a non-global value"
                raise _Problem(f"refused call of {what} (opcode REDUCE)")
            stack.append(("call", func[1]))
        elif name == "BUILD":
            state = self.pop()
            if self.top() != ("call", "collections.OrderedDict") or state != ("dict",):
                raise _Problem("refused opcode BUILD: only an OrderedDict may get attributes (its _metadata)")
        elif name in _NEW_CONTAINER:
            if name in ("DICT", "LIST"):
                self.pop_to_mark()
            stack.append(_NEW_CONTAINER[name])
        elif name in ("TUPLE", "FROZENSET"):
            self.pop_to_mark()
            stack.append(("value",))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            for _ in range(int(name[-1])):
                self.pop()
            stack.append(("value",))
        elif name in ("SETITEM", "SETITEMS", "APPEND", "APPENDS", "ADDITEMS"):
            self.fill_container(name)
        else:
            raise _Problem(f"refused pickle opcode {name}")

    def stack_global_name(self):
        name, module = self.pop(), self.pop()
        if name[0] != "str" or module[0] != "str":
            raise _Problem("malformed pickle: STACK_GLOBAL needs two strings")
        return f"{module[1]}.{name[1]}"

    def fill_container(self, name):
        """SETITEM(S) into a dict, APPEND(S) into a list, ADDITEMS into a set -- nothing else."""
        if name in ("SETITEMS", "APPENDS", "ADDITEMS"):
            self.pop_to_mark()
        else:
            for _ in range(2 if name == "SETITEM" else 1):
                self.pop()
        target = self.top()
        wanted = {"SETITEM": _DICT_LIKE, "SETITEMS": _DICT_LIKE, "APPEND": {("list",)},
                  "APPENDS": {("list",)}, "ADDITEMS": {("set",)}}[name]
        if target not in wanted:
            raise _Problem(f"refused opcode {name} on {target[0]} (only plain containers may be filled)")


def check_pickle_opcodes(stream):
    """Read one pickle from `stream` opcode by opcode, refusing anything outside a state dict.

    Leaves `stream` just after the pickle's STOP opcode. Nothing is executed.
    """
    scan = _PickleScan()
    try:
        for opcode, arg, _position in pickletools.genops(stream):
            scan.step(opcode.name, arg)
    except ValueError as error:  # unknown opcode, truncated argument, pickle without STOP
        if stream.read(1) == b"":  # the error came from running out of bytes
            raise _Problem(f"truncated: the file ends inside a pickle ({error})") from error
        raise _Problem(f"malformed pickle: {error}") from error


# ----------------------------------------------------------------------------------------------
# Restricted unpickling
# ----------------------------------------------------------------------------------------------

class StorageTable:
    """The storages a PyTorch pickle refers to, keyed by their name in the file (plain digits)."""

    def __init__(self):
        self.roots = {}  # key -> (dtype, numel)

    def describe(self, pid):
        """Turn a persistent id ('storage', storage_type, key, location, numel[, view]) into a StorageRef."""
        if not isinstance(pid, tuple) or len(pid) not in (5, 6):
            raise _Problem(f"malformed persistent id {pid!r}: "
                           "expected ('storage', type, key, location, numel)")
        kind, storage_type, key, _location, numel = (_text(part) for part in pid[:5])
        if kind != "storage":
            raise _Problem(f"refused persistent id of kind {kind!r} (only 'storage' is allowed)")
        if not isinstance(storage_type, StorageType):
            raise _Problem(f"storage {key!r} has no torch storage type")
        _check_storage_key(key)
        if not _is_int(numel) or numel < 0:
            raise _Problem(f"storage {key} has a malformed element count {numel!r}")
        _check_declared_size(f"storage {key}", (numel,))
        self.add_root(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return StorageRef(key, storage_type.dtype, 0, numel)
        return self.describe_view(key, storage_type.dtype, numel, view)

    def add_root(self, key, dtype, numel):
        previous = self.roots.setdefault(key, (dtype, numel))
        if previous != (dtype, numel):
            raise _Problem(f"storage {key} is described twice, as {previous} and as {(dtype, numel)}")

    def describe_view(self, key, dtype, numel, view):
        """Legacy files may describe a storage as (view_key, start, numel) inside storage `key`."""
        if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
            raise _Problem(f"storage {key} has malformed view metadata {view!r}")
        _check_storage_key(_text(view[0]))
        start, length = view[1], view[2]
        if start < 0 or length < 0 or start + length > numel:
            raise _Problem(f"a view [{start}, {start + length}) is past the end of storage {key} "
                           f"({numel} elements)")
        return StorageRef(key, dtype, start, length)


def _text(value):
    """Python 2 pickles store some names as bytes; read them as ASCII text."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def _check_storage_key(key):
    if not (isinstance(key, str) and key.isascii() and key.isdigit()):
        raise _Problem(f"refused storage key {key!r}: storage keys must be plain digits")


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can only produce OrderedDicts, containers, numbers, strings and tensors.

    `find_class` hands out the names in ALLOWED_GLOBALS only (torch itself is never imported:
    the torch names map to our own stand-ins); `persistent_load` turns storage ids into StorageRefs.
    """

    def __init__(self, stream, storages):
        super().__init__(stream, encoding="utf-8")
        self.storages = storages

    def find_class(self, module, name):
        qualname = f"{module}.{name}"
        if qualname not in ALLOWED_GLOBALS:
            raise _Problem(_refused_global_message(qualname))
        return ALLOWED_GLOBALS[qualname]

    def persistent_load(self, pid):
        if self.storages is None:
            raise _Problem("refused persistent id in a pickle that must not refer to storages")
        return self.storages.describe(pid)


def safe_unpickle(stream, storages=None):
    """Check then load the pickle at the current position of `stream`; leave `stream` after it."""
    start = stream.tell()
    check_pickle_opcodes(stream)
    end = stream.tell()
    stream.seek(start)
    try:
        value = RestrictedUnpickler(stream, storages).load()
    except (pickle.UnpicklingError, EOFError) as error:
        raise _Problem(f"malformed pickle: {error}") from error
    stream.seek(end)
    return value


# ----------------------------------------------------------------------------------------------
# From unpickled object to dict of arrays
# ----------------------------------------------------------------------------------------------

def collect_tensors(obj, storages):
    """Flatten the unpickled object into {dotted name: array}, reading each tensor's view.

    A state dict gives its own keys; a checkpoint such as {"model": state_dict, "epoch": 3} gives
    "model.conv1.weight" and so on. Entries that are not tensors (numbers, strings) are left out.
    """
    if not isinstance(obj, dict):
        raise _Problem(f"the file holds a {type(obj).__name__}, not a dict of named tensors")
    found = {}
    _flatten(obj, "", found, seen=set())
    if not found:
        raise _Problem("the file holds a dict without any tensors")
    return {name: ref.to_array(storages) for name, ref in found.items()}


def _flatten(value, name, found, seen):
    """Walk dicts, lists and tuples, naming tensors by their path.

    `seen` refuses a container of tensors or containers met twice: a pickle can make a dict contain
    itself, or a chain of 100 dicts each holding the next one twice (2**100 paths). Containers of
    plain values, like an optimizer's shared betas (0.9, 0.999), may repeat.
    """
    if isinstance(value, TensorRef):
        if name in found:
            raise _Problem(f"two tensors are both named {name!r}")
        found[name] = value
        return
    if isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(str(index), item) for index, item in enumerate(value)]
    else:
        return  # numbers, strings, None...: not weights
    if any(isinstance(item, (dict, list, tuple, TensorRef)) for _, item in items):
        if id(value) in seen:
            raise _Problem(f"the container at {name or 'the top'!r} appears twice in the file")
        seen.add(id(value))
    for key, item in items:
        _flatten(item, f"{name}.{key}" if name else key, found, seen)


# ----------------------------------------------------------------------------------------------
# PyTorch zip format
# ----------------------------------------------------------------------------------------------

def _load_torch_zip(archive):
    """Read a torch.save zip: <prefix>/data.pkl, <prefix>/data/<key>, <prefix>/byteorder."""
    prefix = _archive_prefix(archive)
    byteorder = _read_byteorder(archive, prefix)
    storages = StorageTable()
    obj = safe_unpickle(io.BytesIO(archive.read(prefix + "data.pkl")), storages)
    arrays = {}
    for key, (dtype, numel) in storages.roots.items():  # a shared storage is read once
        arrays[key] = _read_zip_storage(archive, prefix, key, dtype, numel, byteorder)
    return collect_tensors(obj, arrays)


def _archive_prefix(archive):
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise _Problem(f"a PyTorch zip checkpoint has exactly one <prefix>/data.pkl; this one has {pickles}")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in archive.namelist():
        raise _Problem("this is a TorchScript archive (torch.jit.save), which minicnn does not read; "
                       "in PyTorch, torch.save(model.state_dict(), path) instead")
    return prefix


def _read_byteorder(archive, prefix):
    if prefix + "byteorder" not in archive.namelist():
        return "little"  # files from before torch 1.12 have no byteorder record
    byteorder = archive.read(prefix + "byteorder").decode("ascii", errors="replace")
    if byteorder not in ("little", "big"):
        raise _Problem(f"unknown byteorder {byteorder!r} (expected 'little' or 'big')")
    return byteorder


def _read_zip_storage(archive, prefix, key, dtype, numel, byteorder):
    member = f"{prefix}data/{key}"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise _Problem(f"storage {key} is missing: the zip has no {member}") from None
    expected = numel * _itemsize(dtype)
    if info.file_size != expected:
        raise _Problem(f"storage {key} has {info.file_size} bytes, but the pickle says "
                       f"{numel} {dtype} elements ({expected} bytes)")
    return bytes_to_array(archive.read(member), dtype, byteorder)


# ----------------------------------------------------------------------------------------------
# PyTorch legacy format
# ----------------------------------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def _load_torch_legacy(path):
    """Read a legacy torch.save file through a memory map.

    A memory map's read(n) returns at most the bytes that are there, so a pickle or a storage that
    claims to be enormous cannot make us allocate memory for it.
    """
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as stream:
        return _read_torch_legacy(stream)


def _read_torch_legacy(stream):
    """Magic number, protocol version, sys_info, the object, the storage keys, then raw storages."""
    if safe_unpickle(stream) != LEGACY_MAGIC_NUMBER:
        raise _Problem("wrong magic number: a pickle, but not a PyTorch legacy checkpoint "
                       "(minicnn does not load arbitrary pickles)")
    version = safe_unpickle(stream)
    if version != LEGACY_PROTOCOL_VERSION:
        raise _Problem(f"unsupported legacy protocol version {version!r} "
                       f"(expected {LEGACY_PROTOCOL_VERSION})")
    if not isinstance(safe_unpickle(stream), dict):
        raise _Problem("malformed legacy header: the system-info pickle is not a dict")
    storages = StorageTable()
    obj = safe_unpickle(stream, storages)
    keys = safe_unpickle(stream)
    _check_legacy_keys(keys, storages)
    arrays = {key: _read_legacy_storage(stream, key, *storages.roots[key]) for key in keys}
    return collect_tensors(obj, arrays)


def _check_legacy_keys(keys, storages):
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise _Problem("malformed legacy file: the storage key list is not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(storages.roots):
        raise _Problem(f"malformed legacy file: the storage key list {sorted(keys)} does not match "
                       f"the storages the tensors use {sorted(storages.roots)}")


def _read_legacy_storage(stream, key, dtype, numel):
    """One storage: int64 little-endian element count, then the elements, always little-endian."""
    header = stream.read(8)
    if len(header) < 8:
        raise _Problem(f"truncated: the file ends before storage {key}")
    (count,) = struct.unpack("<q", header)
    if count != numel:
        raise _Problem(f"storage {key} holds {count} elements, but the pickle says {numel}")
    nbytes = numel * _itemsize(dtype)
    raw = stream.read(nbytes)
    if len(raw) < nbytes:
        raise _Problem(f"truncated: storage {key} needs {nbytes} bytes, only {len(raw)} are left")
    return bytes_to_array(raw, dtype, "little")


# ----------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------

SAFETENSORS_MAX_HEADER = 100_000_000
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
    "U64": "uint64", "BOOL": "bool",
}
# What save_weights writes: every one of REAL_DTYPES has a safetensors code.
_NUMPY_TO_SAFETENSORS = {dtype: code for code, dtype in _SAFETENSORS_DTYPES.items() if dtype in REAL_DTYPES}


def _load_safetensors(stream, file_size):
    """Read a safetensors file: uint64 header length N, N bytes of JSON, then the tensor bytes."""
    header_size = _read_safetensors_header_size(stream, file_size)
    header = _parse_safetensors_header(stream.read(header_size))
    data_start, data_size = 8 + header_size, file_size - 8 - header_size
    _check_safetensors_layout(header, data_size)
    arrays = {}
    for name, (dtype, shape, begin, end) in header.items():
        stream.seek(data_start + begin)
        arrays[name] = bytes_to_array(stream.read(end - begin), dtype).reshape(shape).copy()
    return arrays


def _read_safetensors_header_size(stream, file_size):
    raw = stream.read(8)
    if len(raw) < 8:
        raise _Problem(f"truncated: {len(raw)} bytes, less than the 8-byte safetensors header length")
    (header_size,) = struct.unpack("<Q", raw)
    if header_size > SAFETENSORS_MAX_HEADER:
        raise _Problem(f"the safetensors header claims {header_size} bytes, over the 100 MB limit")
    if 8 + header_size > file_size:
        raise _Problem(f"truncated: the header claims {header_size} bytes but the file has "
                       f"{file_size - 8} after the length")
    return header_size


def _parse_safetensors_header(raw):
    """JSON {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}} -> name -> tuple."""
    def refuse_duplicates(pairs):
        names = [name for name, _ in pairs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise _Problem(f"the safetensors header repeats the name(s) {repeated}")
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=refuse_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Problem(f"the safetensors header is not valid JSON: {error}") from error
    if not isinstance(header, dict):
        raise _Problem("the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _Problem("the safetensors __metadata__ must map strings to strings")
    return {name: _parse_safetensors_entry(name, entry) for name, entry in header.items()}


def _parse_safetensors_entry(name, entry):
    if not (isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= set(entry)):
        raise _Problem(f"tensor {name!r}: header entry needs dtype, shape and data_offsets, got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _SAFETENSORS_DTYPES:
        raise _Problem(f"tensor {name!r}: unknown or unsupported dtype {dtype!r} "
                       f"(minicnn reads {sorted(_SAFETENSORS_DTYPES)})")
    if not (isinstance(shape, list) and all(_is_int(n) and n >= 0 for n in shape)):
        raise _Problem(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    _check_declared_size(f"tensor {name!r}", shape)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) for n in offsets)):
        raise _Problem(f"tensor {name!r}: data_offsets must be [begin, end], got {offsets!r}")
    dtype = _SAFETENSORS_DTYPES[dtype]
    begin, end = offsets
    expected = math.prod(shape) * _itemsize(dtype)
    if end - begin != expected:
        raise _Problem(f"tensor {name!r}: shape {shape} of {dtype} needs {expected} bytes, "
                       f"but data_offsets [{begin}, {end}) hold {end - begin}")
    return dtype, tuple(shape), begin, end


def _check_safetensors_layout(header, data_size):
    """The byte ranges must lie inside the data, not overlap, and (as the format requires) cover it."""
    position = 0
    hole = "bytes [{}, {}) of the data belong to no tensor (holes are not allowed)"
    for name, (_dtype, _shape, begin, end) in sorted(header.items(), key=lambda item: item[1][2:]):
        if begin < 0 or end > data_size:
            raise _Problem(f"tensor {name!r}: data_offsets [{begin}, {end}) are outside the "
                           f"{data_size} data bytes")
        if begin < position:
            raise _Problem(f"tensor {name!r}: data_offsets [{begin}, {end}) overlap the previous tensor")
        if begin > position:
            raise _Problem(hole.format(position, begin))
        position = end
    if position != data_size:
        raise _Problem(hole.format(position, data_size))


def _save_safetensors(path, state):
    """Write the header (JSON padded with spaces to a multiple of 8 bytes) then each tensor's bytes."""
    header, blobs, position = {}, [], 0
    for name, array in state.items():
        code = _NUMPY_TO_SAFETENSORS[array.dtype.name]  # _check_state allowed REAL_DTYPES only
        blob = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [position, position + len(blob)]}
        blobs.append(blob)
        position += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as stream:
        stream.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            stream.write(blob)


# ----------------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------------

# numpy's own limit on the length of an .npy header (read_array's max_header_size).
_NPY_MAX_HEADER = 10_000
# Magic string (6 bytes), version (2), header length (2 or 4), then the header itself.
_NPY_HEAD_BYTES = 12 + _NPY_MAX_HEADER


def _load_npz(archive):
    """Read the arrays of an .npz, a zip of <name>.npy files, checking each header before its data.

    The header (dtype, shape) is checked against the two rules first; only then is the data read
    and, in a compressed .npz, decompressed. Object arrays (pickles) are refused by the dtype rule.
    """
    arrays = {}
    for member in archive.namelist():
        if not member.endswith(".npy"):
            raise _Problem(f"entry {member!r} is not an .npy array")
        name = member[: -len(".npy")]
        if name in arrays:
            raise _Problem(f"the .npz holds two entries named {member!r}")
        with archive.open(member) as stream:
            shape, _fortran_order, dtype = _read_npy_header(stream)
        _check_declared_dtype(f"entry {name!r}", dtype)
        _check_declared_size(f"entry {name!r}", shape)
        with archive.open(member) as stream:
            array = np.lib.format.read_array(stream, allow_pickle=False, max_header_size=_NPY_MAX_HEADER)
        # a Fortran-order .npy comes back C-contiguous too (np.ascontiguousarray would make a 0-d array 1-d)
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
    return arrays


def _read_npy_header(stream):
    """(shape, fortran_order, dtype) of an .npy file, from at most its first _NPY_HEAD_BYTES bytes.

    The header states its own length (up to 4 GB in format 2.0): reading only this many bytes
    keeps a lying length from making us read or decompress that much.
    """
    head = io.BytesIO(stream.read(_NPY_HEAD_BYTES))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(head, max_header_size=_NPY_MAX_HEADER)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(head, max_header_size=_NPY_MAX_HEADER)
    raise _Problem(f".npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are; "
                   "numpy writes 3.0 only for structured arrays, which are not weights)")


def _save_npz(path, state):
    """Like np.savez, written out: one uncompressed <name>.npy member per array."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in state.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


# ----------------------------------------------------------------------------------------------
# Keras HDF5
# ----------------------------------------------------------------------------------------------

# Keras weight name -> PyTorch name, for the layers a CNN uses. Keras 1 called kernels W and
# biases b (keras.applications' VGG16 file still does: "block1_conv1_W_1:0").
_KERAS_TO_TORCH_NAMES = {
    "kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
    "moving_mean": "running_mean", "moving_variance": "running_var", "W": "weight", "b": "bias",
}


def keras_kernel_to_torch(kernel):
    """Keras kernels are (*spatial, in, out); PyTorch weights are (out, in, *spatial).

    Conv2D: HWIO -> OIHW; Dense: (in, out) -> (out, in). A 1-D array (bias, BatchNorm) is unchanged.
    """
    if kernel.ndim < 2:
        return kernel
    n = kernel.ndim
    return np.ascontiguousarray(kernel.transpose((n - 1, n - 2) + tuple(range(n - 2))))


def keras_flatten_to_channels_first(w, channels, height, width):
    """Reorder the input columns of the first Dense layer after a Flatten, for channels-first input.

    Keras flattens a (height, width, channels) feature map, so column (h * width + w) * channels + c
    of the (out, in) weight reads pixel (h, w) of channel c. minicnn flattens (channels, height,
    width): that input is column (c * height + h) * width + w. Returns the weight with its columns
    moved accordingly, so the layer computes the same outputs.
    """
    check_array(w, "w", ndim=2)
    if w.shape[1] != channels * height * width:
        raise ValueError(f"w must have {channels}*{height}*{width} = {channels * height * width} "
                         f"columns (channels*height*width), got shape {w.shape}")
    out = w.shape[0]
    by_position = w.reshape(out, height, width, channels)  # [o, h, w, c]
    return np.ascontiguousarray(by_position.transpose(0, 3, 1, 2).reshape(out, -1))


def _import_h5py(path):
    try:
        import h5py
    except ImportError as error:
        raise ImportError(f"{path} is a Keras HDF5 file; reading it needs the h5py package: "
                          "pip install h5py  (or pip install 'minicnn[extra]')") from error
    return h5py


def _load_keras_h5(path):
    """Keras HDF5 weights, converted to PyTorch conventions and names ("conv2d.weight").

    Classic layout (Keras 2 / tf.keras: model.save_weights("x.h5") or model.save("x.h5"), which puts
    the same thing in a group model_weights): attribute layer_names; in each layer group, attribute
    weight_names ("conv2d/kernel:0", or Keras 1's "conv2d_W_1:0") and a dataset of that name.
    Keras 3 (model.save_weights("x.weights.h5")): layers/<layer>/vars/0, 1, ... with no names; only
    conv and dense layers (a kernel and an optional bias) can be told apart there.
    """
    h5py = _import_h5py(path)
    with h5py.File(path, "r") as h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5
        if _has_name_list(root.attrs, "layer_names"):
            return _read_keras_classic(root)
        if "layers" in h5:
            return _read_keras3(h5, h5py)
    raise _Problem("an HDF5 file without Keras weights (no layer_names attribute, "
                   "no model_weights group, no Keras 3 layers group)")


def _has_name_list(attrs, name):
    return name in attrs or f"{name}0" in attrs


def _read_name_list(attrs, name):
    """Keras stores long name lists in chunks: attrs[name] or attrs[name0], attrs[name1], ..."""
    if name in attrs:
        chunks = [attrs[name]]
    else:
        chunks, index = [], 0
        while f"{name}{index}" in attrs:
            chunks.append(attrs[f"{name}{index}"])
            index += 1
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for chunk in chunks for n in chunk]


def _read_keras_classic(root):
    state = {}
    for layer in _read_name_list(root.attrs, "layer_names"):
        if layer not in root:
            raise _Problem(f"layer {layer!r} is listed in layer_names but has no group")
        group = root[layer]
        for weight_name in _read_name_list(group.attrs, "weight_names"):
            if weight_name not in group:
                raise _Problem(f"layer {layer!r} lists weight {weight_name!r} but has no such dataset")
            name = _keras_torch_name(layer, weight_name)
            if name in state:
                raise _Problem(f"two Keras weights map to the same name {name!r}")
            state[name] = keras_kernel_to_torch(_read_h5_array(group[weight_name], root.file))
    if not state:
        raise _Problem("the Keras file lists no weights")
    return state


def _read_h5_array(dataset, h5):
    """Read a dataset that lives inside the file itself, once its declared dtype and shape pass.

    HDF5 can point elsewhere: external links to other files, datasets whose bytes are stored in
    another file (a weight file could "contain" /etc/passwd), virtual datasets. All refused.
    A chunked dataset with no chunks written takes a few bytes whatever shape it declares.
    """
    import h5py
    if not isinstance(dataset, h5py.Dataset):
        raise _Problem(f"{dataset.name} is not a dataset")
    if dataset.file.filename != h5.filename or dataset.external or dataset.is_virtual:
        raise _Problem(f"dataset {dataset.name} keeps its data outside this file (refused)")
    if dataset.shape is None:
        raise _Problem(f"dataset {dataset.name} has no dataspace: it holds no array")
    _check_declared_dtype(f"dataset {dataset.name}", dataset.dtype)
    _check_declared_size(f"dataset {dataset.name}", dataset.shape)
    return np.asarray(dataset[()])


def _keras_torch_name(layer, weight_name):
    """"conv2d/kernel:0" (Keras 2) or "conv2d_W_1:0" (Keras 1) in layer "conv2d" -> "conv2d.weight"."""
    parts = weight_name.split(":")[0].split("/")
    if parts[0] == layer:
        parts = parts[1:]
    leaf = parts[-1]
    if leaf.startswith(layer + "_"):  # Keras 1: "<layer>_<name>" and maybe a "_<number>" suffix
        leaf = re.sub(r"_[0-9]+$", "", leaf[len(layer) + 1:])
    if leaf not in _KERAS_TO_TORCH_NAMES:
        raise _Problem(f"layer {layer!r}: weight {weight_name!r} is of a kind minicnn does not convert "
                       f"(it converts {sorted(_KERAS_TO_TORCH_NAMES)})")
    return ".".join([layer] + parts[:-1] + [_KERAS_TO_TORCH_NAMES[leaf]])


def _read_keras3(h5, h5py):
    state = {}

    def visit(path, item):
        if isinstance(item, h5py.Group) and path.endswith("/vars") and len(item):
            layer = path[len("layers/"):-len("/vars")].replace("/layers/", ".")
            state.update(_keras3_layer(layer, item))

    h5["layers"].visititems(lambda path, item: visit("layers/" + path, item))
    if not state:
        raise _Problem("the Keras 3 file has no layer variables")
    return state


def _keras3_layer(layer, variables):
    arrays = [_read_h5_array(variables[str(i)], variables.file) for i in range(len(variables))]
    shapes = [a.shape for a in arrays]
    is_kernel = arrays[0].ndim >= 2 and len(arrays) <= 2
    if not is_kernel or (len(arrays) == 2 and shapes[1] != (shapes[0][-1],)):
        raise _Problem(f"layer {layer!r}: Keras 3 files do not name their variables and minicnn only reads "
                       f"conv and dense layers (kernel, bias) from them; this one has shapes {shapes}")
    state = {f"{layer}.weight": keras_kernel_to_torch(arrays[0])}
    if len(arrays) == 2:
        state[f"{layer}.bias"] = arrays[1]
    return state


# ----------------------------------------------------------------------------------------------
# Format detection and the public functions
# ----------------------------------------------------------------------------------------------

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_SUPPORTED = ("PyTorch .pt/.pth (zip or legacy), .safetensors, .npz and Keras .h5")


def _detect_format(head, file_size):
    """Name the format from the first bytes of the file."""
    if file_size == 0:
        raise _Problem("the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_HDF5_MAGIC):
        return "keras-h5"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy"
    if head.startswith(b"\x93NUMPY"):
        raise _Problem("this is a single .npy array, not a file of named weights; read it with np.load")
    if len(head) >= 263 and head[257:262] == b"ustar":
        raise _Problem("this is a tar archive: PyTorch's tar format from before 2018 is not supported; "
                       "re-save it with a recent torch")
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise _Problem(f"unknown format (first bytes {head[:8]!r}); minicnn reads {_SUPPORTED}")


def _load_zip(path):
    """A zip is either a PyTorch checkpoint (has <prefix>/data.pkl) or an .npz (has .npy members)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(n.endswith("/data.pkl") for n in names):
            return _load_torch_zip(archive)
        if "model.weights.h5" in names:
            raise _Problem("this is a Keras 3 .keras archive; unzip it and load its model.weights.h5")
        if any(n.endswith(".npy") for n in names):
            return _load_npz(archive)
    raise _Problem(f"a zip archive that is neither a PyTorch checkpoint (no */data.pkl) nor an .npz "
                   f"(no .npy members); it holds {names[:5]}")


# Low-level errors that mean "this file is malformed" (chained under the WeightFileError).
_MALFORMED = (zipfile.BadZipFile, zipfile.LargeZipFile, pickle.UnpicklingError, EOFError,
              struct.error, ValueError, KeyError, IndexError, TypeError, AttributeError,
              OverflowError, RecursionError, OSError)


def load_weights(path):
    """Read a weight file into {name: numpy array}, choosing the reader from the file's content.

    PyTorch checkpoints (zip or legacy format), safetensors, .npz and Keras .h5 are read (see the
    module docstring). Tensors come back C-contiguous in their own dtype, except bfloat16, which is
    widened exactly to float32. Keras weights are converted to PyTorch conventions (OIHW conv
    kernels, (out, in) dense weights; see keras_flatten_to_channels_first for the first dense layer
    after a Flatten). Nothing in the file is executed; a malformed or unsafe file, or an array that
    is not of REAL_DTYPES or has more than MAX_ARRAY_ELEMENTS elements, raises WeightFileError
    naming the file and the problem.
    """
    path = os.fspath(path)
    with open(path, "rb") as stream:
        head, file_size = stream.read(512), os.fstat(stream.fileno()).st_size
    try:
        kind = _detect_format(head, file_size)
        if kind == "zip":
            return _load_zip(path)
        if kind == "keras-h5":
            return _load_keras_h5(path)
        if kind == "torch-legacy":
            return _load_torch_legacy(path)
        with open(path, "rb") as stream:
            return _load_safetensors(stream, file_size)
    except _Problem as problem:
        raise WeightFileError(f"{path}: {problem}") from problem.__cause__
    except _MALFORMED as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        what = "truncated or corrupt" if isinstance(error, (EOFError, zipfile.BadZipFile)) else "malformed"
        raise WeightFileError(f"{path}: {what} file ({type(error).__name__}: {error})") from error


def save_weights(path, state):
    """Write {name: numpy array} to `path`: .npz or .safetensors, chosen by the extension.

    Each array must obey the rules load_weights applies: a dtype of REAL_DTYPES (TypeError
    otherwise) and at most MAX_ARRAY_ELEMENTS elements (ValueError otherwise).
    """
    path = os.fspath(path)
    _check_state(state)
    if path.lower().endswith(".npz"):
        _save_npz(path, state)
    elif path.lower().endswith(".safetensors"):
        _save_safetensors(path, state)
    else:
        raise ValueError(f"path must end in .npz or .safetensors, got {path!r}")


def _check_state(state):
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict of name -> numpy.ndarray, got {type(state).__name__}")
    if not state:
        raise ValueError("state is empty: there are no weights to save")
    for name, array in state.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"state keys must be non-empty strings other than '__metadata__', got {name!r}")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"state[{name!r}] must be a numpy.ndarray, got {type(array).__name__}")
        wrong_dtype = _dtype_problem(f"state[{name!r}]", array.dtype)
        if wrong_dtype:
            raise TypeError(wrong_dtype)
        too_big = _size_problem(f"state[{name!r}]", array.shape)
        if too_big:
            raise ValueError(f"{too_big}; load_weights would refuse the file")
