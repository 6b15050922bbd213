"""Reading PyTorch's pickles without running them: what a pickle may name, an opcode pre-scan,
a restricted unpickler, and the walk from the unpickled object to named tensors."""
import pickle
import pickletools
from collections import OrderedDict

import numpy as np

from .limits import FileProblem, check_declared_size, is_int

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




def rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Our stand-in for torch._utils._rebuild_tensor(_v2): check the view, remember it.

    The view reads elements offset + sum(i_k * stride_k) for 0 <= i_k < size_k, so its last element
    is offset + sum((size_k - 1) * stride_k); that must lie inside the storage. A view with stride 0
    (torch's expand) has more elements than its storage: the size rule applies to the view itself.
    """
    if not isinstance(storage, StorageRef):
        raise FileProblem(f"a tensor is built on {type(storage).__name__}, not on a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and is_int(storage_offset) and all(map(is_int, size + stride))):
        raise FileProblem(f"tensor view has a malformed offset {storage_offset!r}, size {size!r} "
                       f"or stride {stride!r}")
    if storage_offset < 0 or min(size + stride, default=0) < 0:
        raise FileProblem(f"tensor view has a negative offset, size or stride: offset {storage_offset}, "
                       f"size {size}, stride {stride}")
    check_declared_size(f"a tensor on storage {storage.key} (stride {stride})", size)
    if 0 in size:
        return TensorRef(storage, storage_offset, size, stride)
    last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= storage.numel:
        raise FileProblem(
            f"a tensor of size {size} (offset {storage_offset}, stride {stride}) reads element {last}, "
            f"past the end of storage {storage.key} which has {storage.numel} elements"
        )
    return TensorRef(storage, storage_offset, size, stride)


def rebuild_parameter(data, *_ignored):
    """Our stand-in for torch._utils._rebuild_parameter(_with_state): a Parameter is its tensor."""
    if not isinstance(data, TensorRef):
        raise FileProblem(f"a Parameter wraps {type(data).__name__}, not a tensor")
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
            raise FileProblem("malformed pickle: it pops from an empty stack")
        if self.stack[-1] == _MARK and not mark_allowed:
            raise FileProblem("malformed pickle: an opcode reads past a MARK")
        return self.stack.pop()

    def pop_to_mark(self):
        while self.pop(mark_allowed=True) != _MARK:
            pass

    def step(self, name, arg):
        """Apply one opcode to the pretend stack, or raise FileProblem if it is not allowed."""
        stack = self.stack
        if name in _REFUSED_OPCODES:
            raise FileProblem(f"refused pickle opcode {name} (it {_REFUSED_OPCODES[name]})")
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
                raise FileProblem(f"malformed pickle: it reads memo slot {arg}, which was never written")
            stack.append(self.memo[arg])
        else:
            self.step_structure(name, arg)

    def top(self):
        if not self.stack or self.stack[-1] == _MARK:
            raise FileProblem("malformed pickle: it reads from an empty stack")
        return self.stack[-1]

    def step_structure(self, name, arg):
        """Opcodes that name globals, call them, or build containers."""
        stack = self.stack
        if name in ("GLOBAL", "STACK_GLOBAL"):
            qualname = arg.replace(" ", ".") if name == "GLOBAL" else self.stack_global_name()
            if qualname not in ALLOWED_GLOBALS:
                raise FileProblem(_refused_global_message(qualname))
            stack.append(("global", qualname))
        elif name == "REDUCE":
            self.pop()
            func = self.pop()
            if func[0] != "global" or func[1] not in ALLOWED_CALLS:
                what = f"'{func[1]}'" if func[0] == "global" else "a non-global value"
                raise FileProblem(f"refused call of {what} (opcode REDUCE)")
            stack.append(("call", func[1]))
        elif name == "BUILD":
            state = self.pop()
            if self.top() != ("call", "collections.OrderedDict") or state != ("dict",):
                raise FileProblem("refused opcode BUILD: only an OrderedDict may get attributes (its _metadata)")
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
            raise FileProblem(f"refused pickle opcode {name}")

    def stack_global_name(self):
        name, module = self.pop(), self.pop()
        if name[0] != "str" or module[0] != "str":
            raise FileProblem("malformed pickle: STACK_GLOBAL needs two strings")
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
            raise FileProblem(f"refused opcode {name} on {target[0]} (only plain containers may be filled)")


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
            raise FileProblem(f"truncated: the file ends inside a pickle ({error})") from error
        raise FileProblem(f"malformed pickle: {error}") from error


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
            raise FileProblem(f"malformed persistent id {pid!r}: "
                           "expected ('storage', type, key, location, numel)")
        kind, storage_type, key, _location, numel = (_text(part) for part in pid[:5])
        if kind != "storage":
            raise FileProblem(f"refused persistent id of kind {kind!r} (only 'storage' is allowed)")
        if not isinstance(storage_type, StorageType):
            raise FileProblem(f"storage {key!r} has no torch storage type")
        _check_storage_key(key)
        if not is_int(numel) or numel < 0:
            raise FileProblem(f"storage {key} has a malformed element count {numel!r}")
        check_declared_size(f"storage {key}", (numel,))
        self.add_root(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return StorageRef(key, storage_type.dtype, 0, numel)
        return self.describe_view(key, storage_type.dtype, numel, view)

    def add_root(self, key, dtype, numel):
        previous = self.roots.setdefault(key, (dtype, numel))
        if previous != (dtype, numel):
            raise FileProblem(f"storage {key} is described twice, as {previous} and as {(dtype, numel)}")

    def describe_view(self, key, dtype, numel, view):
        """Legacy files may describe a storage as (view_key, start, numel) inside storage `key`."""
        if not (isinstance(view, tuple) and len(view) == 3 and is_int(view[1]) and is_int(view[2])):
            raise FileProblem(f"storage {key} has malformed view metadata {view!r}")
        _check_storage_key(_text(view[0]))
        start, length = view[1], view[2]
        if start < 0 or length < 0 or start + length > numel:
            raise FileProblem(f"a view [{start}, {start + length}) is past the end of storage {key} "
                           f"({numel} elements)")
        return StorageRef(key, dtype, start, length)


def _text(value):
    """Python 2 pickles store some names as bytes; read them as ASCII text."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def _check_storage_key(key):
    if not (isinstance(key, str) and key.isascii() and key.isdigit()):
        raise FileProblem(f"refused storage key {key!r}: storage keys must be plain digits")


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
            raise FileProblem(_refused_global_message(qualname))
        return ALLOWED_GLOBALS[qualname]

    def persistent_load(self, pid):
        if self.storages is None:
            raise FileProblem("refused persistent id in a pickle that must not refer to storages")
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
        raise FileProblem(f"malformed pickle: {error}") from error
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
        raise FileProblem(f"the file holds a {type(obj).__name__}, not a dict of named tensors")
    found = {}
    _flatten(obj, "", found, seen=set())
    if not found:
        raise FileProblem("the file holds a dict without any tensors")
    return {name: ref.to_array(storages) for name, ref in found.items()}


def _flatten(value, name, found, seen):
    """Walk dicts, lists and tuples, naming tensors by their path.

    `seen` refuses a container of tensors or containers met twice: a pickle can make a dict contain
    itself, or a chain of 100 dicts each holding the next one twice (2**100 paths). Containers of
    plain values, like an optimizer's shared betas (0.9, 0.999), may repeat.
    """
    if isinstance(value, TensorRef):
        if name in found:
            raise FileProblem(f"two tensors are both named {name!r}")
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
            raise FileProblem(f"the container at {name or 'the top'!r} appears twice in the file")
        seen.add(id(value))
    for key, item in items:
        _flatten(item, f"{name}.{key}" if name else key, found, seen)

