"""A restricted pickle machine: reads a pickle opcode by opcode and builds only plain data.

A pickle is a small program for a stack machine: opcodes push numbers and strings, build tuples,
lists and dicts, and -- the dangerous part -- name any Python function (GLOBAL) and call it
(REDUCE), or create objects of any class (INST, OBJ, NEWOBJ). `pickle.load` runs all of that.
`load_pickle` runs its own loop instead, so that:

- a name (GLOBAL / STACK_GLOBAL) is looked up in the caller's table of stand-ins, nothing else;
  only stand-ins marked callable may be called, and only an OrderedDict may receive BUILD;
- INST, OBJ, NEWOBJ, the extension registry, out-of-band buffers and sets are refused;
- dict keys are only str or int, so no key can make hashing recurse or take exponential time;
- at most MAX_OPCODES opcodes run (time linear in the pickle), memo indices are below that
  count, every string and container is charged to the file's Budget (memory bounded);
- messages name types and sizes (limits.short), never print a file's objects in full.
"""
import struct
from collections import OrderedDict

from .limits import FileProblem, short

# The most opcodes one pickle may run. A state dict takes about 20 per tensor, so this allows
# 25,000 tensors; it bounds the time (under a second) and the objects built.
MAX_OPCODES = 500_000
# What one opcode may cost in memory besides the bytes it copies: one small Python object and a
# stack or memo slot. Charged to the budget per opcode.
OPCODE_BYTES = 128
# The longest string of digits an INT or LONG opcode may hold, and the longest LONG1/LONG4 integer.
MAX_INT_BYTES = 64

_REFUSED = {
    b"i": "INST (creates an object of any class)", b"o": "OBJ (creates an object of any class)",
    b"\x81": "NEWOBJ (creates an object of any class)", b"\x92": "NEWOBJ_EX (creates an object of any class)",
    b"\x82": "EXT1 (names a global through the extension registry)",
    b"\x83": "EXT2 (names a global through the extension registry)",
    b"\x84": "EXT4 (names a global through the extension registry)",
    b"\x97": "NEXT_BUFFER (reads an out-of-band buffer)", b"\x98": "READONLY_BUFFER (reads an out-of-band buffer)",
    b"\x8f": "EMPTY_SET (weight files hold no sets)", b"\x90": "ADDITEMS (weight files hold no sets)",
    b"\x91": "FROZENSET (weight files hold no sets)",
}


class Callable:
    """A stand-in a pickle may call with REDUCE: `function(*args)` must return plain data."""

    __slots__ = ("function", "qualname")

    def __init__(self, qualname, function):
        self.qualname, self.function = qualname, function


def new_ordered_dict(*args):
    """collections.OrderedDict as a pickle may call it: with no arguments (items come by SETITEMS)."""
    if args:
        raise FileProblem(f"refused call OrderedDict with {len(args)} arguments (only OrderedDict() is allowed)")
    return OrderedDict()


class _Machine:
    """The stack, the MARK stack and the memo of one pickle being read from `data` at `position`."""

    def __init__(self, data, position, names, persistent_load, budget):
        self.data, self.position, self.names = data, position, names
        self.persistent_load, self.budget = persistent_load, budget
        self.stack, self.marks, self.memo = [], [], {}

    # --------------------------------------------------------------- reading the argument bytes
    def take(self, count):
        end = self.position + count
        if end > len(self.data):
            raise FileProblem("truncated: the file ends inside a pickle")
        chunk = self.data[self.position:end]
        self.position = end
        return chunk

    def unpack(self, layout):
        return layout.unpack(self.take(layout.size))[0]

    def line(self, limit=256):
        """A protocol-0 text argument: bytes up to the next newline (at most `limit`)."""
        end = self.data.find(b"\n", self.position, self.position + limit + 1)
        if end < 0:
            raise FileProblem(f"malformed pickle: a text argument longer than {limit} bytes or without newline")
        text = self.data[self.position:end]
        self.position = end + 1
        return text

    def sized(self, length):
        """`length` bytes of a string or bytes opcode, charged to the budget before they are copied."""
        if length < 0:
            raise FileProblem(f"malformed pickle: a string of negative length {length}")
        self.budget.charge(length, "a string in the pickle")
        return self.take(length)

    # --------------------------------------------------------------- the stack
    def push(self, value):
        self.stack.append(value)

    def pop(self):
        if not self.stack:
            raise FileProblem("malformed pickle: it pops from an empty stack (or past a MARK)")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            raise FileProblem("malformed pickle: it reads from an empty stack (or past a MARK)")
        return self.stack[-1]

    def pop_mark(self):
        """The items pushed since the last MARK; the stack below the MARK comes back."""
        if not self.marks:
            raise FileProblem("malformed pickle: an opcode needs a MARK that is not there")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def memo_index(self, index):
        if index >= MAX_OPCODES:
            raise FileProblem(f"refused memo index {index:,} (a pickle of at most {MAX_OPCODES:,} "
                              "opcodes needs no index that large)")
        return index

    def get(self, index):
        if index not in self.memo:
            raise FileProblem(f"malformed pickle: it reads memo slot {index}, which was never written")
        self.push(self.memo[index])

    # --------------------------------------------------------------- the loop
    def run(self):
        data, handlers = self.data, _HANDLERS
        for count in range(MAX_OPCODES):
            if count % 1024 == 0:
                self.budget.charge(1024 * OPCODE_BYTES, "the pickle's opcodes")
            position = self.position
            code = data[position:position + 1]
            if not code:
                raise FileProblem("truncated: the file ends inside a pickle")
            self.position = position + 1
            if code == b".":
                value = self.pop()
                if self.stack or self.marks:
                    raise FileProblem("malformed pickle: STOP leaves items on the stack")
                return value
            handler = handlers.get(code)
            if handler is None:
                what = _REFUSED.get(code)
                raise FileProblem(f"refused pickle opcode {what}" if what else
                                  f"malformed pickle: unknown opcode {code!r} at byte {self.position - 1}")
            handler(self)
        raise FileProblem(f"refused pickle: more than {MAX_OPCODES:,} opcodes")

    # --------------------------------------------------------------- containers
    def set_items(self, target, items):
        if not isinstance(target, dict):
            raise FileProblem(f"refused SETITEM(S) on a {type(target).__name__} (only dicts may be filled)")
        if len(items) % 2:
            raise FileProblem("malformed pickle: SETITEMS with an odd number of items")
        for key, value in zip(items[::2], items[1::2]):
            if type(key) not in (str, int):
                raise FileProblem(f"refused dict key of type {type(key).__name__} (keys must be str or int)")
            target[key] = value

    def append(self, items):
        target = self.top()
        if type(target) is not list:
            raise FileProblem(f"refused APPEND(S) on a {type(target).__name__} (only lists may be appended to)")
        target.extend(items)

    def global_(self, module, name):
        if not (isinstance(module, str) and isinstance(name, str)):
            raise FileProblem(f"malformed pickle: a global named by {type(module).__name__} and {type(name).__name__}")
        qualname = f"{module}.{name}"
        if qualname not in self.names:
            raise FileProblem(refused_global_message(qualname))
        self.push(self.names[qualname])

    def reduce(self):
        args, function = self.pop(), self.pop()
        if not isinstance(function, Callable):
            raise FileProblem(f"refused call of {_what(function)} (opcode REDUCE)")
        if type(args) is not tuple:
            raise FileProblem(f"malformed pickle: REDUCE with arguments of type {type(args).__name__}")
        self.push(function.function(*args))

    def build(self):
        state = self.pop()
        if type(self.top()) is not OrderedDict or type(state) is not dict:
            raise FileProblem(f"refused opcode BUILD on {_what(self.top())}: only an OrderedDict may get "
                              "attributes (its _metadata), which are dropped")


def _what(value):
    """How a message names a value the pickle built: the global it stands for, or its type."""
    return f"'{value.qualname}'" if hasattr(value, "qualname") else f"a {type(value).__name__}"


def refused_global_message(qualname):
    qualname = short(qualname)
    message = f"refused global {qualname}"
    if qualname.startswith("'torch.nn."):
        return (message + ": the file holds a whole pickled model, not a state dict; "
                "in PyTorch save model.state_dict() instead of the model")
    return (message + ": a weight file may only name tensors, storages, dtypes and OrderedDict; "
            f"pickle.load or torch.load(weights_only=False) would hand this file {qualname} to call")


def _text(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileProblem(f"malformed pickle: {what} is not UTF-8 ({error.reason})") from None


def _text_int(raw):
    """INT / LONG / PUT / GET text arguments: decimal digits (INT's "01" / "00" mean True / False)."""
    digits = raw.rstrip(b"L")
    if len(digits) > MAX_INT_BYTES or not digits.lstrip(b"-").isdigit():
        raise FileProblem(f"malformed pickle: {short(raw)} is not a short decimal integer")
    return int(digits)


def _long(raw):
    if len(raw) > MAX_INT_BYTES:
        raise FileProblem(f"refused integer of {len(raw):,} bytes (at most {MAX_INT_BYTES})")
    return int.from_bytes(raw, "little", signed=True)


def _long4(machine):
    length = machine.unpack(_U4)
    if length > MAX_INT_BYTES:
        raise FileProblem(f"refused integer of {length:,} bytes (at most {MAX_INT_BYTES})")
    return _long(machine.take(length))


_U1, _U2, _U4, _U8 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_I4, _F8 = struct.Struct("<i"), struct.Struct(">d")


def _float_text(machine):
    raw = machine.line()
    try:
        return float(raw)
    except ValueError:
        raise FileProblem(f"malformed pickle: FLOAT {short(raw)}") from None


def _string_text(machine):
    """STRING (protocol 0): a quoted Python 2 str; only plain printable ASCII is accepted."""
    raw = machine.line()
    if len(raw) < 2 or raw[:1] != raw[-1:] or raw[:1] not in b"'\"" or b"\\" in raw or not raw.isascii():
        raise FileProblem(f"refused STRING {short(raw)} (only plain quoted ASCII is read)")
    return raw[1:-1].decode("ascii")


def _stack_global(m):
    name, module = m.pop(), m.pop()
    m.global_(module, name)


def _global_text(m):
    module = _text(m.line(), "a global's module")
    m.global_(module, _text(m.line(), "a global's name"))


def _tuple_of(count):
    def handler(m):
        stack = m.stack
        if len(stack) < count:
            raise FileProblem("malformed pickle: it pops from an empty stack (or past a MARK)")
        items = tuple(stack[-count:])
        del stack[-count:]
        stack.append(items)
    return handler


def _dict_from_mark(m):
    items = m.pop_mark()
    target = {}
    m.set_items(target, items)
    m.push(target)


def _setitem(m):
    value, key = m.pop(), m.pop()
    m.set_items(m.top(), [key, value])


def _setitems(m):
    items = m.pop_mark()
    m.set_items(m.top(), items)


def _mark(m):
    m.marks.append(m.stack)
    m.stack = []


def _memoize(m, index):
    m.memo[m.memo_index(index)] = m.top()


def _persistent(m, pid):
    if m.persistent_load is None:
        raise FileProblem("refused persistent id in a pickle that must not refer to storages")
    m.push(m.persistent_load(pid))


_HANDLERS = {
    b"\x80": lambda m: m.take(1),                                   # PROTO
    b"\x95": lambda m: m.take(8),                                   # FRAME (a hint only)
    b"(": _mark,
    b"0": lambda m: m.pop_mark() if not m.stack and m.marks else m.pop(),   # POP (may pop a MARK)
    b"1": lambda m: m.pop_mark(),                                   # POP_MARK
    b"2": lambda m: m.push(m.top()),                                # DUP
    b"N": lambda m: m.stack.append(None),
    b"\x88": lambda m: m.push(True),
    b"\x89": lambda m: m.push(False),
    b"I": lambda m: m.push(_text_int(m.line())),                   # INT
    b"J": lambda m: m.push(m.unpack(_I4)),                          # BININT
    b"K": lambda m: m.push(m.unpack(_U1)),                          # BININT1
    b"M": lambda m: m.push(m.unpack(_U2)),                          # BININT2
    b"L": lambda m: m.push(_text_int(m.line())),                   # LONG
    b"\x8a": lambda m: m.push(_long(m.take(m.unpack(_U1)))),       # LONG1
    b"\x8b": lambda m: m.push(_long4(m)),                             # LONG4
    b"F": lambda m: m.push(_float_text(m)),                         # FLOAT
    b"G": lambda m: m.push(m.unpack(_F8)),                          # BINFLOAT
    b"S": lambda m: m.push(_string_text(m)),                        # STRING
    b"T": lambda m: m.push(_text(m.sized(m.unpack(_I4)), "a string")),     # BINSTRING
    b"U": lambda m: m.push(_text(m.sized(m.unpack(_U1)), "a string")),     # SHORT_BINSTRING
    b"V": lambda m: m.push(_text(m.line(), "a string")),           # UNICODE (plain text only)
    b"X": lambda m: m.push(_text(m.sized(m.unpack(_U4)), "a string")),     # BINUNICODE
    b"\x8c": lambda m: m.push(_text(m.sized(m.unpack(_U1)), "a string")),  # SHORT_BINUNICODE
    b"\x8d": lambda m: m.push(_text(m.sized(m.unpack(_U8)), "a string")),  # BINUNICODE8
    b"B": lambda m: m.push(bytes(m.sized(m.unpack(_U4)))),           # BINBYTES
    b"C": lambda m: m.push(bytes(m.sized(m.unpack(_U1)))),           # SHORT_BINBYTES
    b"\x8e": lambda m: m.push(bytes(m.sized(m.unpack(_U8)))),        # BINBYTES8
    b"\x96": lambda m: m.push(bytes(m.sized(m.unpack(_U8)))),        # BYTEARRAY8 (as bytes)
    b")": lambda m: m.push(()),                                      # EMPTY_TUPLE
    b"t": lambda m: m.push(tuple(m.pop_mark())),                     # TUPLE
    b"\x85": _tuple_of(1), b"\x86": _tuple_of(2), b"\x87": _tuple_of(3),
    b"]": lambda m: m.push([]),                                      # EMPTY_LIST
    b"l": lambda m: m.push(m.pop_mark()),                            # LIST
    b"a": lambda m: m.append([m.pop()]),                             # APPEND
    b"e": lambda m: m.append(m.pop_mark()),                          # APPENDS
    b"}": lambda m: m.push({}),                                      # EMPTY_DICT
    b"d": _dict_from_mark,                                           # DICT
    b"s": _setitem,                                                  # SETITEM
    b"u": _setitems,                                                 # SETITEMS
    b"p": lambda m: _memoize(m, _text_int(m.line())),               # PUT
    b"q": lambda m: _memoize(m, m.unpack(_U1)),                      # BINPUT
    b"r": lambda m: _memoize(m, m.unpack(_U4)),                      # LONG_BINPUT
    b"\x94": lambda m: _memoize(m, len(m.memo)),                     # MEMOIZE
    b"g": lambda m: m.get(_text_int(m.line())),                     # GET
    b"h": lambda m: m.get(m.unpack(_U1)),                            # BINGET
    b"j": lambda m: m.get(m.unpack(_U4)),                            # LONG_BINGET
    b"c": _global_text,                                              # GLOBAL
    b"\x93": _stack_global,                                          # STACK_GLOBAL
    b"R": lambda m: m.reduce(),                                      # REDUCE
    b"b": lambda m: m.build(),                                       # BUILD
    b"P": lambda m: _persistent(m, _text(m.line(), "a persistent id")),   # PERSID
    b"Q": lambda m: _persistent(m, m.pop()),                         # BINPERSID
}


def load_pickle(data, position, names, budget, persistent_load=None):
    """Run the pickle that starts at `data[position]`; return (its value, the position after STOP).

    names: qualified name ("torch._utils._rebuild_tensor_v2") -> the stand-in the pickle gets for it
    (a `Callable` if it may be called). persistent_load(pid): what a persistent id stands for, or
    None to refuse persistent ids. Raises FileProblem for anything outside these rules.
    """
    machine = _Machine(data, position, names, persistent_load, budget)
    value = machine.run()
    return value, machine.position
