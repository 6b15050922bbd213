"""PyTorch checkpoints read without torch: the zip format (torch.save since 1.6) and the legacy format.

Both hold a pickle of the state dict whose tensors point at storages (flat arrays of bytes kept
beside the pickle). The pickle runs on minicnn.io.pickle_scan's restricted machine, where torch's
names stand for the small classes below; each storage is then read once, straight into a numpy
array, and each tensor is a view of it:

- a tensor that is the only one on its storage and C-contiguous is returned as that storage,
  without a copy (the usual case: torch.save of a state dict);
- a view with more elements than its storage holds (torch's expand, stride 0) comes back as a
  read-only strided view, without a copy -- as torch itself loads it;
- any other view (a transpose, a slice of a shared storage) is copied out, and the copy is charged
  to the file's Budget.
"""
import math
import mmap
import struct

import numpy as np

from .limits import (
    MAX_DIMENSIONS,
    FileProblem,
    check_declared_size,
    file_dtype,
    is_int,
    itemsize,
    output_bytes,
    read_exactly_into,
    short,
    to_native,
)
from .pickle_scan import Callable, load_pickle, new_ordered_dict
from .zipfiles import check_member, read_stored_bytes, read_stored_into

# The deepest nesting of dicts, lists and tuples a checkpoint may have, and the longest tensor name.
MAX_NESTING = 100
MAX_NAME_LENGTH = 1000


# ----------------------------------------------------------------------------------------------
# What torch's names stand for
# ----------------------------------------------------------------------------------------------

_TORCH_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_TORCH_DTYPE_NAMES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool",
}
# torch storage classes of elements that are not real numbers numpy holds: refused by name.
_TORCH_UNREAD_STORAGES = ("ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage", "QUInt8Storage",
                          "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage")
# torch dtypes numpy has no type for: a tensor of one of these is refused, naming the dtype.
_TORCH_UNREAD_DTYPES = (
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2", "complex32", "complex64", "complex128", "cfloat", "cdouble", "chalf",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
    *(f"uint{n}" for n in range(1, 8)), *(f"int{n}" for n in range(1, 8)),
)


class StorageType:
    """Stands for a torch storage class such as torch.FloatStorage (dtype "uint8" for UntypedStorage)."""

    __slots__ = ("dtype", "qualname", "untyped")

    def __init__(self, qualname, dtype, untyped=False):
        self.qualname, self.dtype, self.untyped = qualname, dtype, untyped


class DTypeName:
    """Stands for a torch dtype such as torch.float32; `dtype` is None for one numpy cannot hold."""

    __slots__ = ("dtype", "qualname")

    def __init__(self, qualname, dtype):
        self.qualname, self.dtype = qualname, dtype


class StorageRef:
    """Bytes [start, start + nbytes) of the storage `key` in the file (a legacy view may start inside it)."""

    __slots__ = ("key", "nbytes", "start", "typed_as")

    def __init__(self, key, start, nbytes, typed_as):
        self.key, self.start, self.nbytes, self.typed_as = key, start, nbytes, typed_as


class TensorRef:
    """A tensor named by the pickle: elements of `dtype` at offset + sum(i_k * stride_k) in its storage."""

    __slots__ = ("dtype", "offset", "size", "storage", "stride")

    def __init__(self, storage, offset, size, stride, dtype):
        self.storage, self.offset, self.size, self.stride, self.dtype = storage, offset, size, stride, dtype


def _check_view(storage, offset, size, stride, dtype):
    """The view must be well-formed and every element it reads must lie inside the storage.

    Its last element is offset + sum((size_k - 1) * stride_k). A view with stride 0 (torch's
    expand) may have more elements than its storage: the size rule applies to the view itself.
    """
    if not isinstance(storage, StorageRef):
        raise FileProblem(f"a tensor is built on a {type(storage).__name__}, not on a storage")
    if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride) <= MAX_DIMENSIONS
            and is_int(offset) and all(map(is_int, size)) and all(map(is_int, stride))):
        raise FileProblem(f"tensor view has a malformed offset, size or stride (types {type(offset).__name__}, "
                          f"{type(size).__name__}, {type(stride).__name__}; at most {MAX_DIMENSIONS} dimensions)")
    if offset < 0 or min(size + stride, default=0) < 0:
        raise FileProblem(f"tensor view has a negative offset, size or stride: offset {offset}, "
                          f"size {short(size)}, stride {short(stride)}")
    check_declared_size(f"a tensor on storage {storage.key} (stride {short(stride)})", size)
    capacity = storage.nbytes // itemsize(dtype)
    last = offset + sum((n - 1) * step for n, step in zip(size, stride)) if 0 not in size else -1
    if last >= capacity:
        raise FileProblem(f"a tensor of size {short(size)} (offset {offset}, stride {short(stride)}) reads "
                          f"element {last}, past the end of storage {storage.key} which has {capacity} {dtype} elements")
    return TensorRef(storage, offset, size, stride, dtype)


def rebuild_tensor(storage, offset, size, stride, *_ignored):
    """Our stand-in for torch._utils._rebuild_tensor(_v2): a view typed like its storage."""
    if isinstance(storage, StorageRef) and storage.typed_as is None:
        raise FileProblem(f"storage {storage.key} has no element type (an UntypedStorage needs _rebuild_tensor_v3)")
    return _check_view(storage, offset, size, stride, getattr(storage, "typed_as", None))


def rebuild_tensor_v3(storage, offset, size, stride, _requires_grad=None, _hooks=None, dtype=None, *_ignored):
    """Our stand-in for torch._utils._rebuild_tensor_v3: the element type comes as an argument."""
    if not isinstance(dtype, DTypeName):
        raise FileProblem(f"_rebuild_tensor_v3 gets a {type(dtype).__name__} where a torch dtype belongs")
    if dtype.dtype is None:
        raise FileProblem(f"a tensor has dtype {dtype.qualname}, which numpy cannot hold; minicnn reads "
                          f"{', '.join(sorted(set(_TORCH_DTYPE_NAMES.values())))}")
    return _check_view(storage, offset, size, stride, dtype.dtype)


def rebuild_parameter(data, *_ignored):
    """Our stand-in for torch._utils._rebuild_parameter(_with_state): a Parameter is its tensor."""
    if not isinstance(data, TensorRef):
        raise FileProblem(f"a Parameter wraps a {type(data).__name__}, not a tensor")
    return data


def _torch_names():
    """The complete list of names a weight pickle may mention, and what each one becomes."""
    calls = {
        "collections.OrderedDict": new_ordered_dict,
        "torch._utils._rebuild_tensor": rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": rebuild_tensor,
        "torch._utils._rebuild_tensor_v3": rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": rebuild_parameter,
    }
    names = {qualname: Callable(qualname, function) for qualname, function in calls.items()}
    names.update({f"torch.{n}": StorageType(f"torch.{n}", d) for n, d in _TORCH_STORAGE_TYPES.items()})
    names.update({f"torch.{n}": StorageType(f"torch.{n}", None) for n in _TORCH_UNREAD_STORAGES})
    for qualname in ("torch.UntypedStorage", "torch.storage.UntypedStorage"):
        names[qualname] = StorageType(qualname, "uint8", untyped=True)
    names.update({f"torch.{n}": DTypeName(f"torch.{n}", d) for n, d in _TORCH_DTYPE_NAMES.items()})
    names.update({f"torch.{n}": DTypeName(f"torch.{n}", None) for n in _TORCH_UNREAD_DTYPES})
    return names


TORCH_NAMES = _torch_names()


# ----------------------------------------------------------------------------------------------
# Storages
# ----------------------------------------------------------------------------------------------

class StorageTable:
    """The storages a PyTorch pickle refers to: key (plain digits) -> (dtype, element count)."""

    def __init__(self):
        self.roots = {}

    def describe(self, pid):
        """Turn a persistent id ('storage', storage_type, key, location, numel[, view]) into a StorageRef."""
        if type(pid) is not tuple or len(pid) not in (5, 6):
            raise FileProblem(f"malformed persistent id (a {type(pid).__name__}): "
                              "expected ('storage', type, key, location, numel)")
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise FileProblem(f"refused persistent id of kind {short(kind)} (only 'storage' is allowed)")
        if not isinstance(storage_type, StorageType):
            raise FileProblem(f"storage {short(key)} has no torch storage type")
        if storage_type.dtype is None:
            raise FileProblem(f"storage {short(key)} has type {storage_type.qualname}, whose elements numpy cannot "
                              f"hold; minicnn reads {', '.join(sorted(set(_TORCH_DTYPE_NAMES.values())))}")
        _check_storage_key(key)
        if not is_int(numel) or numel < 0:
            raise FileProblem(f"storage {key} has a malformed element count ({type(numel).__name__})")
        check_declared_size(f"storage {key}", (numel,))
        self.add_root(key, storage_type.dtype, numel)
        typed_as = None if storage_type.untyped else storage_type.dtype
        size = itemsize(storage_type.dtype)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return StorageRef(key, 0, numel * size, typed_as)
        start, length = _legacy_view(key, numel, view)
        return StorageRef(key, start * size, length * size, typed_as)

    def add_root(self, key, dtype, numel):
        previous = self.roots.setdefault(key, (dtype, numel))
        if previous != (dtype, numel):
            raise FileProblem(f"storage {key} is described twice, as {previous} and as {(dtype, numel)}")


def _legacy_view(key, numel, view):
    """Legacy files may describe a storage as (view_key, start, numel) inside storage `key`."""
    if not (type(view) is tuple and len(view) == 3 and is_int(view[1]) and is_int(view[2])):
        raise FileProblem(f"storage {key} has malformed view metadata (a {type(view).__name__})")
    _check_storage_key(view[0])
    start, length = view[1], view[2]
    if start < 0 or length < 0 or start + length > numel:
        raise FileProblem(f"a view [{start}, {start + length}) is past the end of storage {key} ({numel} elements)")
    return start, length


def _check_storage_key(key):
    if not (isinstance(key, str) and len(key) <= 20 and key.isascii() and key.isdigit()):
        raise FileProblem(f"refused storage key {short(key)}: storage keys must be plain digits")


# ----------------------------------------------------------------------------------------------
# From unpickled object to dict of arrays
# ----------------------------------------------------------------------------------------------

def find_tensors(obj):
    """{dotted name: TensorRef} of every tensor in the unpickled object, in one linear walk.

    A state dict gives its own keys; a checkpoint such as {"model": state_dict, "epoch": 3} gives
    "model.conv1.weight" and so on. Numbers and strings are left out. A container that holds
    containers or tensors may appear only once (a pickle can make a dict contain itself, or a chain
    of 100 dicts each holding the next one twice: 2**100 paths); one of plain values, like an
    optimizer's betas (0.9, 0.999), may repeat and is looked at once.
    """
    if not isinstance(obj, dict):
        raise FileProblem(f"the file holds a {type(obj).__name__}, not a dict of named tensors")
    found, seen, todo = {}, {}, [(obj, "", 0)]   # seen: id -> does that container hold structure?
    while todo:
        value, name, depth = todo.pop()
        if isinstance(value, TensorRef):
            if name in found:
                raise FileProblem(f"two tensors are both named {short(name)}")
            found[name] = value
            continue
        if id(value) in seen:
            if seen[id(value)]:
                raise FileProblem(f"the container at {short(name or 'the top')} appears twice in the file")
            continue
        seen[id(value)] = _holds_structure(value)
        if depth >= MAX_NESTING:
            raise FileProblem(f"containers nested more than {MAX_NESTING} deep at {short(name)}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (dict, list, tuple, TensorRef)):
                todo.append((item, _join(name, key), depth + 1))
    if not found:
        raise FileProblem("the file holds a dict without any tensors")
    return dict(reversed(found.items()))


def _holds_structure(value):
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(item, (dict, list, tuple, TensorRef)) for item in items)


def _join(prefix, key):
    key = str(key)
    if len(prefix) + len(key) + 1 > MAX_NAME_LENGTH:
        raise FileProblem(f"a tensor name longer than {MAX_NAME_LENGTH} characters ({short(prefix)})")
    return f"{prefix}.{key}" if prefix else key


def tensors_to_arrays(found, storages, byteorder, budget):
    """Each TensorRef as a numpy array over the raw storages (key -> uint8 array); see the module docstring."""
    users = {}
    for ref in found.values():
        users[ref.storage.key] = users.get(ref.storage.key, 0) + 1
    return {name: _tensor_array(name, ref, storages[ref.storage.key], users[ref.storage.key] == 1,
                                byteorder, budget)
            for name, ref in found.items()}


def _tensor_array(name, ref, raw, sole_user, byteorder, budget):
    dtype, size, count = file_dtype(ref.dtype, byteorder), ref.size, math.prod(ref.size)
    what = f"tensor {short(name)}"
    if count == 0:
        return np.zeros(size, np.float32 if ref.dtype == "bfloat16" else dtype.newbyteorder("="))
    capacity = ref.storage.nbytes // dtype.itemsize
    flat = raw[ref.storage.start:ref.storage.start + capacity * dtype.itemsize].view(dtype)
    if sole_user and _is_c_contiguous(size, ref.stride):
        return to_native(flat[ref.offset:ref.offset + count].reshape(size), ref.dtype, budget, what)
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=size,
                                           strides=[step * dtype.itemsize for step in ref.stride], writeable=False)
    if count > capacity:   # an expanded view: returned as it is, read-only, like torch
        return to_native(view, ref.dtype, budget, what)
    if ref.dtype == "bfloat16" or not dtype.isnative:
        return to_native(view, ref.dtype, budget, what)   # a new array already
    budget.charge(output_bytes(ref.dtype, count), f"a copy of {what}")
    return view.copy(order="C")


def _is_c_contiguous(size, stride):
    expected = 1
    for n, step in zip(reversed(size), reversed(stride)):
        if n != 1 and step != expected:
            return False
        expected *= n
    return True


def _new_storage(key, dtype, numel, budget):
    nbytes = numel * itemsize(dtype)
    budget.charge(nbytes, f"storage {key}")
    return np.empty(nbytes, np.uint8)


# ----------------------------------------------------------------------------------------------
# PyTorch zip format
# ----------------------------------------------------------------------------------------------

def load_torch_zip(archive, stream, file_size, budget):
    """A torch.save zip: <prefix>/data.pkl, <prefix>/data/<key> (STORED), <prefix>/byteorder."""
    prefix = _archive_prefix(archive)
    byteorder = _read_byteorder(archive, stream, file_size, prefix)
    info = archive.getinfo(prefix + "data.pkl")
    check_member(info)
    budget.charge(2 * info.file_size, "data.pkl")
    storages = StorageTable()
    obj, _end = load_pickle(read_stored_bytes(stream, info, file_size), 0, TORCH_NAMES, budget, storages.describe)
    found = find_tensors(obj)
    raw = {key: _read_zip_storage(archive, stream, file_size, prefix, key, dtype, numel, budget)
           for key, (dtype, numel) in storages.roots.items()}   # a shared storage is read once
    return tensors_to_arrays(found, raw, byteorder, budget)


def _archive_prefix(archive):
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise FileProblem(f"a PyTorch zip checkpoint has exactly one <prefix>/data.pkl; this one has "
                          f"{len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in names:
        raise FileProblem("this is a TorchScript archive (torch.jit.save), which minicnn does not read; "
                          "in PyTorch, torch.save(model.state_dict(), path) instead")
    return prefix


def _read_byteorder(archive, stream, file_size, prefix):
    if prefix + "byteorder" not in archive.NameToInfo:
        return "little"  # files from before torch 1.12 have no byteorder record
    info = archive.getinfo(prefix + "byteorder")
    if info.file_size > 16:
        raise FileProblem(f"the byteorder record has {info.file_size:,} bytes (expected 'little' or 'big')")
    byteorder = read_stored_bytes(stream, info, file_size).decode("ascii", errors="replace")
    if byteorder not in ("little", "big"):
        raise FileProblem(f"unknown byteorder {short(byteorder)} (expected 'little' or 'big')")
    return byteorder


def _read_zip_storage(archive, stream, file_size, prefix, key, dtype, numel, budget):
    member = f"{prefix}data/{key}"
    if member not in archive.NameToInfo:
        raise FileProblem(f"storage {key} is missing: the zip has no {member}")
    info = archive.getinfo(member)
    check_member(info)
    expected = numel * itemsize(dtype)
    if info.file_size != expected:
        raise FileProblem(f"storage {key} has {info.file_size} bytes, but the pickle says "
                          f"{numel} {dtype} elements ({expected} bytes)")
    return read_stored_into(stream, info, file_size, _new_storage(key, dtype, numel, budget))


# ----------------------------------------------------------------------------------------------
# PyTorch legacy format
# ----------------------------------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def load_torch_legacy(stream, budget):
    """Magic number, protocol version, sys_info, the object, the storage keys (five pickles), then
    for each key an int64 little-endian element count and the storage's little-endian bytes.

    The pickles are read through a memory map: a slice of it copies only the bytes that are there.
    """
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, position = load_pickle(data, 0, {}, budget)
        if magic != LEGACY_MAGIC_NUMBER:
            raise FileProblem("wrong magic number: a pickle, but not a PyTorch legacy checkpoint "
                              "(minicnn does not load arbitrary pickles)")
        version, position = load_pickle(data, position, {}, budget)
        if version != LEGACY_PROTOCOL_VERSION:
            raise FileProblem(f"unsupported legacy protocol version {short(version)} "
                              f"(expected {LEGACY_PROTOCOL_VERSION})")
        sys_info, position = load_pickle(data, position, {}, budget)
        if not isinstance(sys_info, dict):
            raise FileProblem("malformed legacy header: the system-info pickle is not a dict")
        storages = StorageTable()
        obj, position = load_pickle(data, position, TORCH_NAMES, budget, storages.describe)
        keys, position = load_pickle(data, position, {}, budget)
    _check_legacy_keys(keys, storages)
    found = find_tensors(obj)
    raw = {}
    stream.seek(position)
    for key in keys:
        raw[key] = _read_legacy_storage(stream, key, *storages.roots[key], budget)
    return tensors_to_arrays(found, raw, "little", budget)


def _check_legacy_keys(keys, storages):
    if not (type(keys) is list and all(isinstance(k, str) for k in keys)):
        raise FileProblem("malformed legacy file: the storage key list is not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(storages.roots):
        raise FileProblem(f"malformed legacy file: the storage key list ({len(keys)} keys) does not match "
                          f"the {len(storages.roots)} storages the tensors use")


def _read_legacy_storage(stream, key, dtype, numel, budget):
    header = stream.read(8)
    if len(header) < 8:
        raise FileProblem(f"truncated: the file ends before storage {key}")
    (count,) = struct.unpack("<q", header)
    if count != numel:
        raise FileProblem(f"storage {key} holds {count} elements, but the pickle says {numel}")
    raw = _new_storage(key, dtype, numel, budget)
    read_exactly_into(stream, raw, f"storage {key}")
    return raw

