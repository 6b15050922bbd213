"""NumPy .npz: a zip of <name>.npy members, each header checked before its data is read."""
import io
import zipfile

import numpy as np

from .limits import FileProblem, check_declared_dtype, check_declared_size

# numpy's own limit on the length of an .npy header (read_array's max_header_size).
_NPY_MAX_HEADER = 10_000
# Magic string (6 bytes), version (2), header length (2 or 4), then the header itself.
_NPY_HEAD_BYTES = 12 + _NPY_MAX_HEADER


def load_npz(archive):
    """Read the arrays of an .npz, a zip of <name>.npy files, checking each header before its data.

    The header (dtype, shape) is checked against the two rules first; only then is the data read
    and, in a compressed .npz, decompressed. Object arrays (pickles) are refused by the dtype rule.
    """
    arrays = {}
    for member in archive.namelist():
        if not member.endswith(".npy"):
            raise FileProblem(f"entry {member!r} is not an .npy array")
        name = member[: -len(".npy")]
        if name in arrays:
            raise FileProblem(f"the .npz holds two entries named {member!r}")
        with archive.open(member) as stream:
            shape, _fortran_order, dtype = _read_npy_header(stream)
        check_declared_dtype(f"entry {name!r}", dtype)
        check_declared_size(f"entry {name!r}", shape)
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
    raise FileProblem(f".npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are; "
                   "numpy writes 3.0 only for structured arrays, which are not weights)")


def save_npz(path, state):
    """Like np.savez, written out: one uncompressed <name>.npy member per array."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in state.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)

