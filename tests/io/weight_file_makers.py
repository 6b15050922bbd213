"""Build PyTorch-format weight files by hand, byte by byte, without torch.

Used by test_weight_files.py for files torch would never write: big-endian data, storage keys like
"../../etc/passwd", views past the end of their storage, pickles that try to run code.

A pickle is a little stack program; these helpers emit its opcodes (protocol 2) directly:
GLOBAL pushes a named object, MARK ... TUPLE builds a tuple, REDUCE calls f(*args),
BINPERSID asks the loader for an external object (a storage), SETITEMS fills a dict, STOP ends.
"""
import io
import pickle
import struct
import zipfile

import numpy as np

PROTO_2 = b"\x80\x02"
MARK, TUPLE, REDUCE, BINPERSID, SETITEMS, STOP = b"(", b"t", b"R", b"Q", b"u", b"."
EMPTY_TUPLE, NEWFALSE, NONE, BUILD, EMPTY_DICT = b")", b"\x89", b"N", b"b", b"}"
BINPUT_0, BINGET_0, SETITEM = b"q\x00", b"h\x00", b"s"   # memo[0] = top; push memo[0]; d[k] = v


def global_(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value):
    return b"J" + struct.pack("<i", value)


def tuple_(*items):
    return MARK + b"".join(items) + TUPLE


def ordered_dict():
    return global_("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE


def storage_id(storage_type, key, numel, legacy=False):
    """The persistent id torch writes: ('storage', torch.<Type>Storage, key, 'cpu', numel[, None])."""
    parts = [text("storage"), global_("torch", storage_type), text(key), text("cpu"), integer(numel)]
    if legacy:
        parts.append(NONE)
    return tuple_(*parts) + BINPERSID


def tensor(storage, offset, size, stride):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    args = tuple_(storage, integer(offset), tuple_(*map(integer, size)), tuple_(*map(integer, stride)),
                  NEWFALSE, ordered_dict())
    return global_("torch._utils", "_rebuild_tensor_v2") + args + REDUCE


def state_dict_pickle(entries):
    """A complete pickle of OrderedDict(entries), entries being name -> pickled value bytes."""
    body = b"".join(text(name) + value for name, value in entries.items())
    return PROTO_2 + ordered_dict() + MARK + body + SETITEMS + STOP


def float_tensor_pickle(key="0", numel=6, offset=0, size=(2, 3), stride=(3, 1), legacy=False):
    """A one-tensor state dict {"w": float32 view of storage `key`}."""
    return state_dict_pickle({"w": tensor(storage_id("FloatStorage", key, numel, legacy), offset, size, stride)})


def write_torch_zip(path, data_pkl, storages, prefix="archive", byteorder="little"):
    """The torch.save zip layout: <prefix>/data.pkl, <prefix>/byteorder, <prefix>/data/<key>."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            archive.writestr(f"{prefix}/data/{key}", raw)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def legacy_bytes(object_pkl, storages, keys=None, sys_info_pkl=None, keys_pkl=None):
    """The legacy layout: magic, 1001, sys_info, object, key list, then per key int64 count + bytes.

    `storages`: list of (key, numel, raw little-endian bytes).
    """
    out = io.BytesIO()
    out.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(sys_info_pkl if sys_info_pkl is not None else pickle.dumps(SYS_INFO, protocol=2))
    out.write(object_pkl)
    keys = [key for key, _, _ in storages] if keys is None else keys
    out.write(keys_pkl if keys_pkl is not None else pickle.dumps(keys, protocol=2))
    for _key, numel, raw in storages:
        out.write(struct.pack("<q", numel) + raw)
    return out.getvalue()


def write_bytes(path, data):
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------------
# Pickles that run code when loaded with pickle.load / torch.load(weights_only=False)
# ----------------------------------------------------------------------------------------------

class _SystemPayload:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os
        return os.system, (self.command,)


class _EvalPayload:
    def __init__(self, source):
        self.source = source

    def __reduce__(self):
        return eval, (self.source,)


def system_payload(marker, protocol=2):
    """A pickle that runs `touch marker` through os.system."""
    return pickle.dumps(_SystemPayload(f"touch '{marker}'"), protocol=protocol)


def eval_payload(marker):
    """A pickle that calls builtins.eval to create the marker file."""
    return pickle.dumps(_EvalPayload(f"open({str(marker)!r}, 'w').close()"), protocol=2)


def inst_payload(marker):
    """Protocol 0: INST 'os system' pops the marked arguments and calls os.system(*args)."""
    return b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."


def payload_in_state_dict(marker):
    """A normal-looking state dict whose value for "w" runs os.system when unpickled."""
    command = text(f"touch '{marker}'")
    return state_dict_pickle({"w": global_("os", "system") + tuple_(command) + REDUCE})


def float32_bytes(values):
    return np.asarray(values, dtype="<f4").tobytes()
