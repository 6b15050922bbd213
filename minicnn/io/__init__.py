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
import os
import pickle
import struct
import zipfile

from .keras import keras_flatten_to_channels_first, load_keras_h5
from .limits import (
    MAX_ARRAY_ELEMENTS,
    REAL_DTYPES,
    FileProblem,
    WeightFileError,
    check_state,
)
from .npz import load_npz, save_npz
from .pytorch import load_torch_legacy, load_torch_zip
from .safetensors import load_safetensors, save_safetensors

__all__ = ["WeightFileError", "load_weights", "save_weights", "keras_flatten_to_channels_first",
           "REAL_DTYPES", "MAX_ARRAY_ELEMENTS"]



# ----------------------------------------------------------------------------------------------
# Format detection and the public functions
# ----------------------------------------------------------------------------------------------

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_SUPPORTED = ("PyTorch .pt/.pth (zip or legacy), .safetensors, .npz and Keras .h5")


def _detect_format(head, file_size):
    """Name the format from the first bytes of the file."""
    if file_size == 0:
        raise FileProblem("the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_HDF5_MAGIC):
        return "keras-h5"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy"
    if head.startswith(b"\x93NUMPY"):
        raise FileProblem("this is a single .npy array, not a file of named weights; read it with np.load")
    if len(head) >= 263 and head[257:262] == b"ustar":
        raise FileProblem("this is a tar archive: PyTorch's tar format from before 2018 is not supported; "
                       "re-save it with a recent torch")
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise FileProblem(f"unknown format (first bytes {head[:8]!r}); minicnn reads {_SUPPORTED}")


def _load_zip(path):
    """A zip is either a PyTorch checkpoint (has <prefix>/data.pkl) or an .npz (has .npy members)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(n.endswith("/data.pkl") for n in names):
            return load_torch_zip(archive)
        if "model.weights.h5" in names:
            raise FileProblem("this is a Keras 3 .keras archive; unzip it and load its model.weights.h5")
        if any(n.endswith(".npy") for n in names):
            return load_npz(archive)
    raise FileProblem(f"a zip archive that is neither a PyTorch checkpoint (no */data.pkl) nor an .npz "
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
            return load_keras_h5(path)
        if kind == "torch-legacy":
            return load_torch_legacy(path)
        with open(path, "rb") as stream:
            return load_safetensors(stream, file_size)
    except FileProblem as problem:
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
    check_state(state)
    if path.lower().endswith(".npz"):
        save_npz(path, state)
    elif path.lower().endswith(".safetensors"):
        save_safetensors(path, state)
    else:
        raise ValueError(f"path must end in .npz or .safetensors, got {path!r}")


