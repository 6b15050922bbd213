r"""Read and write trained weights without running any code from the file.

`load_weights(path)` returns a dict name -> numpy array, choosing the reader from the first bytes of
the file (its "magic"), never from the extension:

- ``PK\x03\x04`` (a zip archive): either a PyTorch checkpoint (``torch.save``, the default since
  torch 1.6; minicnn.io.pytorch) -- ``<prefix>/data.pkl`` (a pickle of the state dict, whose
  tensors point at storages), ``<prefix>/data/<key>`` (the raw bytes of each storage) and
  ``<prefix>/byteorder`` -- or a NumPy ``.npz``, a zip of ``<name>.npy`` files (minicnn.io.npz).
- ``\x80\x02`` (a pickle): a PyTorch legacy checkpoint (``_use_new_zipfile_serialization=False``,
  and old torchvision files): five pickles in a row, then each storage's raw bytes.
- an 8-byte length, then ``{``: safetensors (minicnn.io.safetensors).
- ``\x89HDF\r\n\x1a\n``: Keras HDF5 weights, Keras 1, 2 or 3 (minicnn.io.keras; needs h5py).

Why not `pickle.load` or `torch.load`?  A pickle is a small program: it can name any Python
function and call it (``os.system``, ``eval``...), so loading an untrusted pickle runs whatever its
author wrote. minicnn.io.pickle_scan runs pickles on its own restricted machine instead, which
builds only dicts, lists, tuples, numbers, strings and tensors.

The reader's promise, for any file whatever its bytes:

- no code from the file runs;
- memory stays within the file's budget (`budget`, DEFAULT_BUDGET = 2 GiB unless raised): the
  arrays returned plus everything decompressed, copied or built on the way, checked against the
  sizes the file declares BEFORE they are allocated;
- time is linear in the file's size (pickles run at most MAX_OPCODES opcodes; no quadratic checks);
- any problem raises one exception type, WeightFileError, naming the file (and the entry) and what
  is wrong with it (a missing file is FileNotFoundError; a Keras file without h5py, ImportError);
- no other file is read: HDF5 links, external storage and virtual datasets are refused.

And two rules for every array, in every format, read or written (minicnn.io.limits): a dtype of
REAL_DTYPES, at most MAX_ARRAY_ELEMENTS elements.

`save_weights(path, state)` writes ``.npz`` or ``.safetensors`` (chosen by the extension). A network
is saved with ``save_weights(path, net.state_dict())`` and loaded with
``net.load_state_dict(load_weights(path))``: the engine itself never reads files.
"""
import os
import zipfile

from .keras import keras_flatten_to_channels_first, load_keras_h5
from .limits import DEFAULT_BUDGET, MAX_ARRAY_ELEMENTS, REAL_DTYPES, Budget, FileProblem, WeightFileError, check_state
from .npz import load_npz, save_npz
from .pytorch import load_torch_legacy, load_torch_zip
from .safetensors import load_safetensors, save_safetensors
from .zipfiles import _ZIP_ERRORS, open_archive

__all__ = ["DEFAULT_BUDGET", "MAX_ARRAY_ELEMENTS", "REAL_DTYPES", "WeightFileError", "keras_flatten_to_channels_first",
           "load_weights", "save_weights"]


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


def _load_zip(path, stream, file_size, budget):
    """A zip is either a PyTorch checkpoint (has <prefix>/data.pkl) or an .npz (has .npy members)."""
    with open_archive(path) as archive:
        names = archive.namelist()
        if any(n.endswith("/data.pkl") for n in names):
            return load_torch_zip(archive, stream, file_size, budget)
        if "model.weights.h5" in names:
            raise FileProblem("this is a Keras 3 .keras archive; unzip it and load its model.weights.h5")
        if any(n.endswith(".npy") for n in names):
            return load_npz(archive, stream, file_size, budget)
    raise FileProblem(f"a zip archive that is neither a PyTorch checkpoint (no */data.pkl) nor an .npz "
                      f"(no .npy members); it holds {len(names)} other entries")


# Low-level errors that mean "this file is malformed" (chained under the WeightFileError): what
# zipfile, zlib, lzma, h5py, numpy and struct raise on bytes they cannot make sense of.
# (h5py raises RuntimeError on a damaged file, e.g. "addr overflow"; zipfile's are in zipfiles._ZIP_ERRORS.)
_MALFORMED = _ZIP_ERRORS + (IndexError, TypeError, AttributeError, RecursionError)


def load_weights(path, budget=DEFAULT_BUDGET):
    """Read a weight file into {name: numpy array}, choosing the reader from the file's content.

    PyTorch checkpoints (zip or legacy format), safetensors, .npz and Keras .h5 are read (see the
    module docstring for the promise the reader keeps). Arrays come back in their own dtype, in
    native byte order (bfloat16 widened exactly to float32), C-contiguous and writable -- except a
    PyTorch expanded view (stride 0), which comes back read-only without a copy. Keras weights are
    converted to PyTorch conventions (OIHW conv kernels, (out, in) dense weights; see
    keras_flatten_to_channels_first for the first dense layer after a Flatten).
    budget: the most bytes reading this file may allocate (int; DEFAULT_BUDGET is 2 GiB).
    Raises WeightFileError naming the file and the problem.
    """
    path = os.fspath(path)
    with open(path, "rb") as stream:
        head, file_size = stream.read(512), os.fstat(stream.fileno()).st_size
        stream.seek(0)
        spent = Budget(budget)
        try:
            return _load(path, head, stream, file_size, spent)
        except FileProblem as problem:
            raise WeightFileError(f"{path}: {problem}") from problem.__cause__
        except _MALFORMED as error:
            if isinstance(error, (FileNotFoundError, PermissionError)):
                raise
            what = "truncated or corrupt" if isinstance(error, (EOFError, zipfile.BadZipFile)) else "malformed"
            raise WeightFileError(f"{path}: {what} file ({type(error).__name__}: {error})") from error


def _load(path, head, stream, file_size, budget):
    kind = _detect_format(head, file_size)
    if kind == "zip":
        return _load_zip(path, stream, file_size, budget)
    if kind == "keras-h5":
        return load_keras_h5(path, budget)
    if kind == "torch-legacy":
        return load_torch_legacy(stream, budget)
    return load_safetensors(stream, file_size, budget)


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


