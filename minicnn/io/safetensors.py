"""safetensors: a little-endian uint64 N, N bytes of JSON (dtype, shape, byte range of each tensor), the bytes."""
import json
import math
import struct

import numpy as np

from .limits import (
    REAL_DTYPES,
    FileProblem,
    check_declared_size,
    size_problem,
    file_dtype,
    is_int,
    itemsize,
    output_bytes,
    read_exactly_into,
    short,
    to_native,
)

SAFETENSORS_MAX_HEADER = 100_000_000
# What parsing the JSON header may cost per structural character ([ { , :), each of which can
# start one Python object (a list, dict, str or int of up to ~100 bytes with its slot).
_JSON_BYTES_PER_VALUE = 100
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
    "U64": "uint64", "BOOL": "bool",
}
# What save_weights writes: every one of REAL_DTYPES has a safetensors code.
_NUMPY_TO_SAFETENSORS = {dtype: code for code, dtype in _SAFETENSORS_DTYPES.items() if dtype in REAL_DTYPES}


def load_safetensors(stream, file_size, budget):
    """Read a safetensors file: uint64 header length N, N bytes of JSON, then the tensor bytes.

    The JSON is charged to the budget before it is parsed (its bytes, and an object for each
    structural character); every tensor's bytes are charged before they are read, straight into
    the array that is returned.
    """
    header_size = _read_safetensors_header_size(stream, file_size)
    budget.charge(header_size, "the safetensors header")
    raw = stream.read(header_size)
    values = sum(raw.count(c) for c in (b"[", b"{", b",", b":")) + 1
    budget.charge(values * _JSON_BYTES_PER_VALUE, f"parsing the safetensors header ({values:,} JSON values)")
    header = _parse_safetensors_header(raw)
    del raw
    data_start, data_size = 8 + header_size, file_size - 8 - header_size
    _check_safetensors_layout(header, data_size)
    budget.charge(sum(output_bytes(dtype, math.prod(shape)) for dtype, shape, _, _ in header.values()),
                  f"the {len(header)} tensors")
    arrays = {}
    for name, (dtype, shape, begin, end) in header.items():
        array = np.empty(shape, file_dtype(dtype))
        if end > begin:
            stream.seek(data_start + begin)
            read_exactly_into(stream, array, f"tensor {short(name)}")
        native = array.dtype.isnative and dtype != "bfloat16"
        arrays[name] = array if native else to_native(array, dtype, budget, f"tensor {short(name)}")
    return arrays


def _read_safetensors_header_size(stream, file_size):
    raw = stream.read(8)
    if len(raw) < 8:
        raise FileProblem(f"truncated: {len(raw)} bytes, less than the 8-byte safetensors header length")
    (header_size,) = struct.unpack("<Q", raw)
    if header_size > SAFETENSORS_MAX_HEADER:
        raise FileProblem(f"the safetensors header claims {header_size} bytes, over the 100 MB limit")
    if 8 + header_size > file_size:
        raise FileProblem(f"truncated: the header claims {header_size} bytes but the file has "
                       f"{file_size - 8} after the length")
    return header_size


def _parse_safetensors_header(raw):
    """JSON {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}} -> name -> tuple."""
    def refuse_duplicates(pairs):
        found = dict(pairs)
        if len(found) < len(pairs):
            seen, repeated = set(), set()
            for name, _ in pairs:
                (repeated if name in seen else seen).add(name)
            raise FileProblem(f"the safetensors header repeats the name(s) {short(sorted(repeated))}")
        return found

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=refuse_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileProblem(f"the safetensors header is not valid JSON: {error}") from error
    if not isinstance(header, dict):
        raise FileProblem("the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise FileProblem("the safetensors __metadata__ must map strings to strings")
    return {name: _parse_safetensors_entry(name, entry) for name, entry in header.items()}


def _parse_safetensors_entry(name, entry):
    if not (isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= set(entry)):
        raise FileProblem(f"tensor {short(name)}: header entry needs dtype, shape and data_offsets, got {short(entry)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
        raise FileProblem(f"tensor {short(name)}: unknown or unsupported dtype {short(dtype)} "
                       f"(minicnn reads {sorted(_SAFETENSORS_DTYPES)})")
    if not (isinstance(shape, list) and all(is_int(n) and n >= 0 for n in shape)):
        raise FileProblem(f"tensor {short(name)}: shape must be a list of non-negative integers, got {short(shape)}")
    if size_problem("", shape):
        check_declared_size(f"tensor {short(name)}", shape)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(n) for n in offsets)):
        raise FileProblem(f"tensor {short(name)}: data_offsets must be [begin, end], got {short(offsets)}")
    dtype = _SAFETENSORS_DTYPES[dtype]
    begin, end = offsets
    expected = math.prod(shape) * itemsize(dtype)
    if end - begin != expected:
        raise FileProblem(f"tensor {short(name)}: shape {shape} of {dtype} needs {expected} bytes, "
                       f"but data_offsets [{begin}, {end}) hold {end - begin}")
    return dtype, tuple(shape), begin, end


def _check_safetensors_layout(header, data_size):
    """The byte ranges must lie inside the data, not overlap, and (as the format requires) cover it."""
    position = 0
    hole = "bytes [{}, {}) of the data belong to no tensor (holes are not allowed)"
    for name, (_dtype, _shape, begin, end) in sorted(header.items(), key=lambda item: item[1][2:]):
        if begin < 0 or end > data_size:
            raise FileProblem(f"tensor {short(name)}: data_offsets [{begin}, {end}) are outside the "
                           f"{data_size} data bytes")
        if begin < position:
            raise FileProblem(f"tensor {short(name)}: data_offsets [{begin}, {end}) overlap the previous tensor")
        if begin > position:
            raise FileProblem(hole.format(position, begin))
        position = end
    if position != data_size:
        raise FileProblem(hole.format(position, data_size))


def save_safetensors(path, state):
    """Write the header (JSON padded with spaces to a multiple of 8 bytes) then each tensor's bytes."""
    header, blobs, position = {}, [], 0
    for name, array in state.items():
        code = _NUMPY_TO_SAFETENSORS[array.dtype.name]  # check_state allowed REAL_DTYPES only
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
