"""Hostile and broken weight files, one builder per class found in the weight-file hardening issue,
and a child-process runner that loads one file and reports the outcome, the seconds taken and the
growth of the process's peak resident memory (VmHWM).

    python tests/io/hostile_weight_files.py [BUDGET_MIB]   # a table: case, file size, outcome, s, MiB

Each builder writes its file at `path` and returns it. A case's "expect" is "refused" (the loader
raises WeightFileError) or "loaded" (a valid file, e.g. expanded views returned without a copy).
"""
import io
import json
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import weight_file_makers as wf

REPO = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------------------------
# Pickle pieces
# ----------------------------------------------------------------------------------------------

EMPTY_LIST, LIST, NONE, POP = b"]", b"l", b"N", b"0"


def put(index):
    return b"r" + struct.pack("<I", index)          # LONG_BINPUT


def get(index):
    return b"j" + struct.pack("<I", index)          # LONG_BINGET


def doubled_list(levels):
    """[l, l] nested `levels` deep, l itself [l', l'] ...: 2**levels leaves in a few bytes."""
    out = EMPTY_LIST + put(0) + POP
    for level in range(1, levels + 1):
        out += wf.MARK + get(level - 1) + get(level - 1) + LIST + put(level) + POP
    return out + get(levels)


def doubled_tuple(levels):
    """(t, t) nested `levels` deep: hashing it as a dict key would visit 2**levels leaves."""
    out = wf.EMPTY_TUPLE + put(0) + POP
    for level in range(1, levels + 1):
        out += get(level - 1) + get(level - 1) + b"\x86" + put(level) + POP   # TUPLE2
    return out + get(levels)


def dict_with_key(key_pickle):
    return wf.PROTO_2 + wf.EMPTY_DICT + key_pickle + wf.NONE + wf.SETITEM + wf.STOP


def expanded(numel=1, count=2**27, tensors=1, storage_type="DoubleStorage"):
    """`tensors` views of size (count,), stride (0,), on one `numel`-element storage."""
    storage = wf.storage_id(storage_type, "0", numel)
    return wf.state_dict_pickle({f"w{i}": wf.tensor(storage, 0, (count,), (0,)) for i in range(tensors)})


# ----------------------------------------------------------------------------------------------
# Zip pieces
# ----------------------------------------------------------------------------------------------

def torch_zip_bytes(data_pkl, storages, compress=zipfile.ZIP_STORED, storage_compress=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl, compress_type=compress)
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw, compress_type=storage_compress)
    return buffer.getvalue()


def patch_zip(data, flags=None, method=None):
    """Set the general-purpose flags or the compression method of every entry (local and central)."""
    data = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start >= 0:
            if flags is not None:
                data[start + flag_at:start + flag_at + 2] = struct.pack("<H", flags)
            if method is not None:
                data[start + flag_at + 2:start + flag_at + 4] = struct.pack("<H", method)
            start = data.find(signature, start + 4)
    return bytes(data)


def npz_bytes(members, compress=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def npy_of_zeros(count, dtype="<f8"):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": (count,)})
    return header.getvalue() + bytes(count * np.dtype(dtype).itemsize)


def small_torch_zip():
    return torch_zip_bytes(wf.float_tensor_pickle(), {"0": wf.float32_bytes(range(6))})


def corrupt_deflate():
    data = bytearray(npz_bytes({"w.npy": npy_of_zeros(10_000)}))
    start = data.find(b"PK\x03\x04") + 30 + len("w.npy")
    data[start + 5:start + 40] = b"\xff" * 35
    return bytes(data)


def lzma_npz():
    return npz_bytes({"w.npy": npy_of_zeros(100)}, compress=zipfile.ZIP_LZMA)


def safetensors_bytes(header, data=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# ----------------------------------------------------------------------------------------------
# HDF5 pieces
# ----------------------------------------------------------------------------------------------

def keras_h5(path, build):
    import h5py
    with h5py.File(path, "w") as h5:
        build(h5, h5py)
    return path


def classic_layer(h5, name="dense", **dataset_args):
    h5.attrs["layer_names"] = np.array([name.encode()])
    group = h5.create_group(name)
    group.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode()])
    if dataset_args:
        group.create_dataset(f"{name}/kernel:0", **dataset_args)
    return group


def unwritten_gzip_datasets(h5, h5py):
    h5.attrs["layer_names"] = np.array([b"dense"])
    group = h5.create_group("dense")
    group.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
    for name in ("dense/kernel:0", "dense/bias:0"):
        group.create_dataset(name, shape=(2**27,), dtype="<f8", chunks=(2**20,), compression="gzip")


def external_model_weights(path):
    """model_weights is an ExternalLink to another file, which holds a valid classic layout."""
    other = path.with_name(path.stem + "_elsewhere.h5")
    keras_h5(other, lambda h5, h5py: classic_layer(h5.create_group("model_weights"), data=np.ones((2, 2), "f4")))
    return keras_h5(path, lambda h5, h5py: h5.__setitem__("model_weights", h5py.ExternalLink(str(other), "/model_weights")))


def external_keras3_layers(path):
    other = path.with_name(path.stem + "_elsewhere.h5")
    keras_h5(other, lambda h5, h5py: h5.create_group("layers/dense/vars").create_dataset("0", data=np.ones((2, 2), "f4")))
    return keras_h5(path, lambda h5, h5py: h5.__setitem__("layers", h5py.ExternalLink(str(other), "/layers")))


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------

def write(data):
    return lambda path: wf.write_bytes(path, data() if callable(data) else data)


CASES = {
    # 1. a small file that would allocate gigabytes
    "expanded view 1 GiB, zip": ("loaded", write(lambda: torch_zip_bytes(expanded(), {"0": bytes(8)}))),
    "three expanded views, zip": ("loaded", write(lambda: torch_zip_bytes(expanded(tensors=3), {"0": bytes(8)}))),
    "expanded view 1 GiB, legacy": ("loaded", write(lambda: wf.legacy_bytes(
        wf.state_dict_pickle({"w": wf.tensor(wf.storage_id("DoubleStorage", "0", 1, legacy=True), 0, (2**27,), (0,))}),
        [("0", 1, bytes(8))]))),
    "deflated data.pkl in a torch zip": ("refused", write(lambda: torch_zip_bytes(
        wf.float_tensor_pickle(), {"0": wf.float32_bytes(range(6))}, compress=zipfile.ZIP_DEFLATED))),
    "deflated 512 MiB storage in a torch zip": ("refused", write(lambda: torch_zip_bytes(
        wf.float_tensor_pickle(numel=2**27, size=(2**27,), stride=(1,)), {"0": bytes(2**29)},
        storage_compress=zipfile.ZIP_DEFLATED))),
    "npz of two deflated 128 MiB members": ("refused", write(lambda: npz_bytes(
        {"a.npy": npy_of_zeros(2**24), "b.npy": npy_of_zeros(2**24)}))),
    "hdf5 of two unwritten gzip datasets": ("refused", lambda p: keras_h5(p, unwritten_gzip_datasets)),
    "safetensors header of 3 million empty lists": ("refused", write(lambda: safetensors_bytes(
        b'{"a": [' + b"[]," * 3_000_000 + b'[]]}'))),
    "pickle LONG_BINPUT 0x0FFFFFFF": ("refused", write(lambda: torch_zip_bytes(
        wf.PROTO_2 + wf.EMPTY_DICT + b"r\xff\xff\xff\x0f" + wf.STOP, {}))),
    # 2. a tiny file that would crash or hang the process
    "dict key nested 1,000,000 tuples deep": ("refused", write(lambda: torch_zip_bytes(
        dict_with_key(wf.EMPTY_TUPLE + b"\x85" * 1_000_000), {}))),
    "dict key nested 400,000 tuples deep": ("refused", write(lambda: torch_zip_bytes(
        dict_with_key(wf.EMPTY_TUPLE + b"\x85" * 400_000), {}))),
    "dict key of 64 levels of (t, t)": ("refused", write(lambda: torch_zip_bytes(dict_with_key(doubled_tuple(64)), {}))),
    "persistent id of 64 levels of [l, l]": ("refused", write(lambda: torch_zip_bytes(
        wf.state_dict_pickle({"w": doubled_list(64) + wf.BINPERSID}), {}))),
    "tensor size of 64 levels of [l, l]": ("refused", write(lambda: torch_zip_bytes(wf.state_dict_pickle({"w": (
        wf.global_("torch._utils", "_rebuild_tensor_v2") + wf.MARK + wf.storage_id("FloatStorage", "0", 6)
        + wf.integer(0) + doubled_list(64) + wf.tuple_(wf.integer(1)) + wf.TUPLE + wf.REDUCE)}),
        {"0": wf.float32_bytes(range(6))}))),
    "legacy version of 64 levels of [l, l]": ("refused", write(lambda: (
        pickle.dumps(wf.LEGACY_MAGIC, protocol=2) + wf.PROTO_2 + doubled_list(64) + wf.STOP))),
    "2 million trivial opcodes in data.pkl": ("refused", write(lambda: torch_zip_bytes(
        wf.PROTO_2 + (NONE + POP) * 1_000_000 + wf.EMPTY_DICT + wf.STOP, {}))),
    "deflated data.pkl of 100 million opcodes": ("refused", write(lambda: torch_zip_bytes(
        wf.PROTO_2 + (NONE + POP) * 50_000_000 + wf.EMPTY_DICT + wf.STOP, {}, compress=zipfile.ZIP_DEFLATED))),
    "a list of 200,000 ints referenced 100,000 times": ("loaded", write(lambda: torch_zip_bytes(
        wf.state_dict_pickle({"w": wf.tensor(wf.storage_id("FloatStorage", "0", 6), 0, (6,), (1,)),
                              "h": wf.MARK + EMPTY_LIST + wf.MARK + b"K\x01" * 200_000 + b"e" + put(0)
                                   + get(0) * 99_999 + LIST}),
        {"0": wf.float32_bytes(range(6))}))),
    "safetensors of 60,000 empty tensors": ("loaded", write(lambda: safetensors_bytes(
        {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(60_000)}))),
    # 3. errors that must become WeightFileError
    "zip entry flagged encrypted": ("refused", write(lambda: patch_zip(small_torch_zip(), flags=0x1))),
    "zip entry flagged patched data": ("refused", write(lambda: patch_zip(small_torch_zip(), flags=0x20))),
    "zip entry flagged strong encryption": ("refused", write(lambda: patch_zip(small_torch_zip(), flags=0x40))),
    "zip compression method 99": ("refused", write(lambda: patch_zip(small_torch_zip(), method=99))),
    "corrupt deflate stream in an npz": ("refused", write(corrupt_deflate)),
    "LZMA member in an npz": ("refused", write(lzma_npz)),
    "hdf5 soft link to itself": ("refused", lambda p: keras_h5(
        p, lambda h5, h5py: h5.__setitem__("model_weights", h5py.SoftLink("/model_weights")))),
    # 4. an .h5 that reads another file
    "hdf5 model_weights as an ExternalLink": ("refused", external_model_weights),
    "keras 3 layers as an ExternalLink": ("refused", external_keras3_layers),
}

# ----------------------------------------------------------------------------------------------
# Loading one file in a child process
# ----------------------------------------------------------------------------------------------

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from minicnn.io import WeightFileError, load_weights

def peak_mib():
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

before = peak_mib()
start, cpu_start = time.perf_counter(), time.process_time()
try:
    state = load_weights(sys.argv[2], budget=int(sys.argv[3]))
    outcome = f"loaded {len(state)} arrays"
except WeightFileError as error:
    outcome = "WeightFileError: " + str(error)[:400]
except BaseException as error:
    outcome = f"{type(error).__name__}: " + str(error)[:400]
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
print(json.dumps({"outcome": outcome, "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "peak_growth_mib": peak_mib() - before}))
"""


def load_in_child(path, budget, timeout=60):
    """{"outcome", "seconds", "cpu_seconds", "peak_growth_mib"} of load_weights(path, budget) in a fresh process."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(path), str(budget)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return {"outcome": f"child died ({done.returncode}): {done.stderr[-400:]}", "seconds": None,
                "cpu_seconds": None, "peak_growth_mib": None}
    return json.loads(done.stdout)


def main(budget_mib=256):
    with tempfile.TemporaryDirectory() as folder:
        print(f"budget {budget_mib} MiB\n| case | file bytes | outcome | seconds | CPU seconds | peak growth MiB |\n"
              "|---|---|---|---|---|---|")
        for case, (_expect, build) in CASES.items():
            path = build(Path(folder) / (case.replace(" ", "_").replace(",", "") + ".bin"))
            result = load_in_child(path, budget_mib * 2**20)
            outcome = result["outcome"].replace(f"{path}: ", "")
            print(f"| {case} | {path.stat().st_size:,} | {outcome[:70]} | {result['seconds']:.2f} | "
                  f"{result['cpu_seconds']:.2f} | {result['peak_growth_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
