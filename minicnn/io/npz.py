"""NumPy .npz: a zip of <name>.npy members, each header checked before its data is read."""
import io
import math
import zipfile

import numpy as np

from .limits import FileProblem, check_declared_dtype, check_declared_size, read_exactly_into, short, to_native
from .zipfiles import check_member, read_stored_into, reading

# numpy's own limit on the length of an .npy header (read_array's max_header_size).
_NPY_MAX_HEADER = 10_000
# Magic string (6 bytes), version (2), header length (2 or 4), then the header itself.
_NPY_HEAD_BYTES = 12 + _NPY_MAX_HEADER


def load_npz(archive, stream, file_size, budget):
    """Read the arrays of an .npz, a zip of <name>.npy files, checking each header before its data.

    Each member's header (dtype, shape) must obey the two rules and agree with the size the zip
    declares for the member; its bytes are charged to the budget, and only then read (a STORED
    member straight into the array) or decompressed (DEFLATE, as np.savez_compressed writes).
    Object arrays (pickles) are refused by the dtype rule.
    """
    arrays = {}
    for info in archive.infolist():
        member = info.filename
        if not member.endswith(".npy"):
            raise FileProblem(f"entry {short(member)} is not an .npy array")
        name = member[: -len(".npy")]
        if name in arrays:
            raise FileProblem(f"the .npz holds two entries named {short(member)}")
        check_member(info, (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
        with reading(member):
            arrays[name] = _read_member(archive, stream, file_size, info, name, budget)
    return arrays


def _read_member(archive, stream, file_size, info, name, budget):
    with archive.open(info) as member:
        (shape, fortran_order, dtype), header_size = _read_npy_header(member)
        check_declared_dtype(f"entry {name!r}", dtype)
        check_declared_size(f"entry {name!r}", shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_size + nbytes:
            raise FileProblem(f"entry {name!r}: shape {shape} of {dtype} needs {header_size + nbytes:,} bytes "
                              f"with its header, the zip says the member has {info.file_size:,}")
        budget.charge(nbytes, f"entry {name!r}")
        array = np.empty(shape[::-1] if fortran_order else shape, dtype)
        if info.compress_type == zipfile.ZIP_STORED:
            read_stored_into(stream, info, file_size, array, skip=header_size)
        else:
            member.seek(header_size)
            read_exactly_into(member, array, f"entry {name!r}")
            if member.read(1):
                raise FileProblem(f"entry {name!r} has bytes after its array")
    if fortran_order:   # the transpose of a C array; returned C-contiguous like every other array
        budget.charge(nbytes, f"a C-ordered copy of entry {name!r}")
        array = np.ascontiguousarray(array.T) if array.ndim > 1 else array
    return to_native(array, dtype.name, budget, f"entry {name!r}")


def _read_npy_header(stream):
    """((shape, fortran_order, dtype), header size in bytes) of an .npy, from at most its first
    _NPY_HEAD_BYTES bytes.

    The header states its own length (up to 4 GB in format 2.0): reading only this many bytes
    keeps a lying length from making us read or decompress that much.
    """
    head = io.BytesIO(stream.read(_NPY_HEAD_BYTES))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(head, max_header_size=_NPY_MAX_HEADER), head.tell()
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(head, max_header_size=_NPY_MAX_HEADER), head.tell()
    raise FileProblem(f".npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are; "
                   "numpy writes 3.0 only for structured arrays, which are not weights)")


def save_npz(path, state):
    """Like np.savez, written out: one uncompressed <name>.npy member per array."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in state.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)

