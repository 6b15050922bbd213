"""PyTorch checkpoints read without torch: the zip format (torch.save since 1.6) and the legacy format."""
import io
import mmap
import struct

from .limits import FileProblem, bytes_to_array, itemsize
from .pickle_scan import StorageTable, collect_tensors, safe_unpickle

# ----------------------------------------------------------------------------------------------
# PyTorch zip format
# ----------------------------------------------------------------------------------------------

def load_torch_zip(archive):
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
        raise FileProblem(f"a PyTorch zip checkpoint has exactly one <prefix>/data.pkl; this one has {pickles}")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in archive.namelist():
        raise FileProblem("this is a TorchScript archive (torch.jit.save), which minicnn does not read; "
                       "in PyTorch, torch.save(model.state_dict(), path) instead")
    return prefix


def _read_byteorder(archive, prefix):
    if prefix + "byteorder" not in archive.namelist():
        return "little"  # files from before torch 1.12 have no byteorder record
    byteorder = archive.read(prefix + "byteorder").decode("ascii", errors="replace")
    if byteorder not in ("little", "big"):
        raise FileProblem(f"unknown byteorder {byteorder!r} (expected 'little' or 'big')")
    return byteorder


def _read_zip_storage(archive, prefix, key, dtype, numel, byteorder):
    member = f"{prefix}data/{key}"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise FileProblem(f"storage {key} is missing: the zip has no {member}") from None
    expected = numel * itemsize(dtype)
    if info.file_size != expected:
        raise FileProblem(f"storage {key} has {info.file_size} bytes, but the pickle says "
                       f"{numel} {dtype} elements ({expected} bytes)")
    return bytes_to_array(archive.read(member), dtype, byteorder)


# ----------------------------------------------------------------------------------------------
# PyTorch legacy format
# ----------------------------------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def load_torch_legacy(path):
    """Read a legacy torch.save file through a memory map.

    A memory map's read(n) returns at most the bytes that are there, so a pickle or a storage that
    claims to be enormous cannot make us allocate memory for it.
    """
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as stream:
        return _read_torch_legacy(stream)


def _read_torch_legacy(stream):
    """Magic number, protocol version, sys_info, the object, the storage keys, then raw storages."""
    if safe_unpickle(stream) != LEGACY_MAGIC_NUMBER:
        raise FileProblem("wrong magic number: a pickle, but not a PyTorch legacy checkpoint "
                       "(minicnn does not load arbitrary pickles)")
    version = safe_unpickle(stream)
    if version != LEGACY_PROTOCOL_VERSION:
        raise FileProblem(f"unsupported legacy protocol version {version!r} "
                       f"(expected {LEGACY_PROTOCOL_VERSION})")
    if not isinstance(safe_unpickle(stream), dict):
        raise FileProblem("malformed legacy header: the system-info pickle is not a dict")
    storages = StorageTable()
    obj = safe_unpickle(stream, storages)
    keys = safe_unpickle(stream)
    _check_legacy_keys(keys, storages)
    arrays = {key: _read_legacy_storage(stream, key, *storages.roots[key]) for key in keys}
    return collect_tensors(obj, arrays)


def _check_legacy_keys(keys, storages):
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise FileProblem("malformed legacy file: the storage key list is not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(storages.roots):
        raise FileProblem(f"malformed legacy file: the storage key list {sorted(keys)} does not match "
                       f"the storages the tensors use {sorted(storages.roots)}")


def _read_legacy_storage(stream, key, dtype, numel):
    """One storage: int64 little-endian element count, then the elements, always little-endian."""
    header = stream.read(8)
    if len(header) < 8:
        raise FileProblem(f"truncated: the file ends before storage {key}")
    (count,) = struct.unpack("<q", header)
    if count != numel:
        raise FileProblem(f"storage {key} holds {count} elements, but the pickle says {numel}")
    nbytes = numel * itemsize(dtype)
    raw = stream.read(nbytes)
    if len(raw) < nbytes:
        raise FileProblem(f"truncated: storage {key} needs {nbytes} bytes, only {len(raw)} are left")
    return bytes_to_array(raw, dtype, "little")


# ----------------------------------------------------------------------------------------------
