"""Tests for minicnn.io: reading PyTorch/safetensors/npz/Keras files safely, writing npz/safetensors.

torch is only the oracle: the files it writes are read by minicnn in a subprocess where
`import torch` fails. Tests that need no torch (hand-built files, safetensors, npz, Keras) run
without it.
"""
import io
import json
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import weight_file_makers as wf

from minicnn.io import (
    WeightFileError,
    keras_flatten_to_channels_first,
    limits,
    load_weights,
    pickle_scan,
    pytorch,
    save_weights,
)

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# PyTorch files written by torch, read by minicnn without torch
# ----------------------------------------------------------------------------------------------

LOAD_WITHOUT_TORCH = r"""
import json, sys
sys.modules["torch"] = None          # from here on, "import torch" raises ImportError
sys.path.insert(0, sys.argv[1])
import numpy as np
from minicnn.io import load_weights
for source, target in json.loads(sys.argv[2]):
    np.savez(target, **load_weights(source))
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
"""

DTYPES = ["float32", "float16", "bfloat16", "float64", "int64", "bool"]


def oracle_state(torch, dtype_name):
    """Tensors of several shapes, a transpose, a slice with storage offset, two views of one storage."""
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(DTYPES.index(dtype_name))

    def rand(*shape):
        if dtype == torch.bool:
            return torch.rand(*shape, generator=gen) > 0.5
        if dtype == torch.int64:
            return torch.randint(-1000, 1000, shape, generator=gen)
        return torch.randn(*shape, generator=gen).to(dtype)

    base, shared = rand(5, 6), rand(12)
    state = OrderedDict([
        ("conv.weight", rand(4, 3, 3, 3)),
        ("fc.weight_t", base.t()),           # non-contiguous: strides (1, 6)
        ("fc.slice", base[1:4, 2:]),         # storage offset 8, same storage as fc.weight_t
        ("shared.a", shared[:6].view(2, 3)),
        ("shared.b", shared[4:]),            # overlaps shared.a in the same storage
        ("step", rand(1).reshape(())),       # a 0-d tensor
        ("expanded", rand(3).expand(4, 3)),  # stride (0, 1): 12 elements from a storage of 3
        ("empty", rand(0, 3)),
    ])
    if dtype.is_floating_point:
        state["param"] = torch.nn.Parameter(rand(3, 2))
    return state


def small_model(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))


def training_checkpoint(torch, model):
    """{"model": state_dict, "optimizer": Adam state after one step, "epoch": 3}."""
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 3, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "note": "text"}


def as_numpy(tensor):
    """The array minicnn should return: the same values, bfloat16 widened to float32."""
    tensor = tensor.detach()
    return (tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor).numpy()


@pytest.fixture(scope="module")
def torch_round_trips(tmp_path_factory):
    """Save every case with torch (zip and legacy), load all of them in ONE torch-free subprocess."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torch_files")
    cases = {name: oracle_state(torch, name) for name in DTYPES}
    cases["pickle protocol 4"] = oracle_state(torch, "float32")
    model = small_model(torch)
    cases["model"] = model.state_dict()
    cases["checkpoint"] = training_checkpoint(torch, model)

    sources, loaded = {}, {}
    for case, obj in cases.items():
        protocol = 4 if case == "pickle protocol 4" else 2
        for fmt in ("zip", "legacy"):
            stem = f"{case}_{fmt}".replace(" ", "_")
            sources[case, fmt], loaded[case, fmt] = folder / f"{stem}.pt", folder / f"{stem}.npz"
            torch.save(obj, sources[case, fmt], _use_new_zipfile_serialization=(fmt == "zip"),
                       pickle_protocol=protocol)
    jobs = [(str(sources[job]), str(loaded[job])) for job in sources]
    subprocess.run([sys.executable, "-c", LOAD_WITHOUT_TORCH, str(REPO), json.dumps(jobs)],
                   check=True, timeout=120)
    return cases, sources, loaded


def flat_expected(obj, prefix=""):
    """The dotted names and arrays load_weights should give for a torch object."""
    if hasattr(obj, "detach"):
        return {prefix: as_numpy(obj)}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return {}
    out = {}
    for key, value in items:
        out.update(flat_expected(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("case", DTYPES + ["pickle protocol 4", "model", "checkpoint"])
def test_torch_files_load_identically_without_torch(torch_round_trips, case, fmt):
    cases, _, loaded = torch_round_trips
    want = flat_expected(cases[case])
    with np.load(loaded[case, fmt]) as got:
        assert sorted(got.files) == sorted(want)
        for name, array in want.items():
            assert got[name].dtype == array.dtype, name
            assert got[name].shape == array.shape, name
            np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_loaded_arrays_are_contiguous_and_writable_except_expanded_views(torch_round_trips):
    """An expanded view (stride 0) comes back read-only over its storage, as torch loads it."""
    _, sources, _ = torch_round_trips
    state = load_weights(sources["float32", "zip"])
    for name, array in state.items():
        if name == "expanded":
            assert not array.flags.writeable and array.strides[0] == 0
        else:
            assert array.flags.c_contiguous and array.flags.writeable, name
    assert not np.shares_memory(state["fc.weight_t"], state["fc.slice"])


def test_checkpoint_names_are_dotted_paths(torch_round_trips):
    _, sources, _ = torch_round_trips
    names = set(load_weights(sources["checkpoint", "legacy"]))
    assert {"model.0.weight", "model.1.running_var", "optimizer.state.0.exp_avg"} <= names
    assert not any(name.startswith(("epoch", "note", "optimizer.param_groups")) for name in names)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused_with_advice(tmp_path):
    torch = pytest.importorskip("torch")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with pytest.raises(WeightFileError, match=r"TorchScript archive.*model\.state_dict\(\)"):
        load_weights(tmp_path / "scripted.pt")


# ----------------------------------------------------------------------------------------------
# Hand-built PyTorch files (no torch needed)
# ----------------------------------------------------------------------------------------------

def test_big_endian_zip(tmp_path):
    values = np.arange(6, dtype=">f4")
    path = wf.write_torch_zip(tmp_path / "big.pt", wf.float_tensor_pickle(), {"0": values.tobytes()},
                              byteorder="big")
    got = load_weights(path)["w"]
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got.dtype == np.float32 and got.dtype.isnative


def test_archive_prefix_is_found_whatever_its_name(tmp_path):
    path = wf.write_torch_zip(tmp_path / "p.pt", wf.float_tensor_pickle(), {"0": wf.float32_bytes(range(6))},
                              prefix="my_model_v2", byteorder=None)
    np.testing.assert_array_equal(load_weights(path)["w"], np.arange(6).reshape(2, 3))


def test_shared_storage_is_read_once(tmp_path, monkeypatch):
    storage = wf.storage_id("FloatStorage", "0", 6)
    data_pkl = wf.state_dict_pickle({
        "a": wf.tensor(storage, 0, (2, 3), (3, 1)),
        "b": wf.tensor(storage, 0, (3, 2), (1, 3)),   # the transpose of "a"
    })
    path = wf.write_torch_zip(tmp_path / "s.pt", data_pkl, {"0": wf.float32_bytes(range(6))})
    calls = []
    real = pytorch._new_storage
    monkeypatch.setattr(pytorch, "_new_storage", lambda *args: calls.append(args) or real(*args))
    state = load_weights(path)
    assert len(calls) == 1
    np.testing.assert_array_equal(state["a"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(state["b"], [[0, 3], [1, 4], [2, 5]])


def test_old_rebuild_tensor_without_v2(tmp_path):
    """torch 0.3 files call torch._utils._rebuild_tensor(storage, offset, size, stride)."""
    args = wf.tuple_(wf.storage_id("FloatStorage", "3", 6, legacy=True), wf.integer(2),
                     wf.tuple_(wf.integer(2), wf.integer(2)), wf.tuple_(wf.integer(1), wf.integer(2)))
    data_pkl = wf.state_dict_pickle({"w": wf.global_("torch._utils", "_rebuild_tensor") + args + wf.REDUCE})
    path = wf.write_bytes(tmp_path / "old.pt", wf.legacy_bytes(data_pkl, [("3", 6, wf.float32_bytes(range(6)))]))
    np.testing.assert_array_equal(load_weights(path)["w"], [[2, 4], [3, 5]])


def test_legacy_hand_built_with_storage_view(tmp_path):
    """Old legacy files may describe a storage as a window (view_key, start, numel) into another."""
    storage = (wf.tuple_(wf.text("storage"), wf.global_("torch", "FloatStorage"), wf.text("7"), wf.text("cpu"),
                         wf.integer(8), wf.tuple_(wf.text("8"), wf.integer(2), wf.integer(4)))
               + wf.BINPERSID)
    data_pkl = wf.state_dict_pickle({"w": wf.tensor(storage, 0, (2, 2), (2, 1))})
    path = wf.write_bytes(tmp_path / "l.pt", wf.legacy_bytes(data_pkl, [("7", 8, wf.float32_bytes(range(8)))]))
    np.testing.assert_array_equal(load_weights(path)["w"], [[2, 3], [4, 5]])


# ----------------------------------------------------------------------------------------------
# Malicious files: refused, and nothing runs
# ----------------------------------------------------------------------------------------------

def zip_with(data_pkl, storages=None):
    return lambda path: wf.write_torch_zip(path, data_pkl, storages or {})


# case -> (make, message): make(marker) returns a function that writes the file at a given path;
# the payloads would create `marker` if they ever ran.
MALICIOUS = {
    "os.system": (lambda m: zip_with(wf.system_payload(m)), r"refused global '(posix|os|nt)\.system'"),
    "os.system, protocol 4 STACK_GLOBAL": (lambda m: zip_with(wf.system_payload(m, protocol=4)),
                                          r"refused global '(posix|os|nt)\.system'"),
    "builtins.eval": (lambda m: zip_with(wf.eval_payload(m)), r"refused global '(builtins|__builtin__)\.eval'"),
    "INST opcode": (lambda m: zip_with(wf.inst_payload(m)), r"refused pickle opcode INST"),
    "payload inside a state dict": (lambda m: zip_with(wf.payload_in_state_dict(m)), r"refused global 'os\.system'"),
    "storage key ../../etc/passwd": (
        lambda m: zip_with(wf.float_tensor_pickle(key="../../etc/passwd"), {"0": wf.float32_bytes(range(6))}),
        r"refused storage key '\.\./\.\./etc/passwd'"),
    "view past end of storage": (
        lambda m: zip_with(wf.float_tensor_pickle(numel=6, size=(3, 3), stride=(3, 1)),
                           {"0": wf.float32_bytes(range(6))}),
        r"reads element 8, past the end of storage 0 which has 6 float32 elements"),
    "view past end via offset": (
        lambda m: zip_with(wf.float_tensor_pickle(numel=6, offset=5, size=(2,), stride=(1,)),
                           {"0": wf.float32_bytes(range(6))}),
        r"past the end of storage 0"),
    "call of a storage type": (
        lambda m: zip_with(wf.PROTO_2 + wf.global_("torch", "FloatStorage") + wf.EMPTY_TUPLE + wf.REDUCE + wf.STOP),
        r"refused call of 'torch\.FloatStorage'"),
    "BUILD on a tensor": (
        lambda m: zip_with(wf.state_dict_pickle({"w": wf.tensor(wf.storage_id("FloatStorage", "0", 6), 0, (6,), (1,))
                                                 + wf.EMPTY_DICT + wf.BUILD}),
                           {"0": wf.float32_bytes(range(6))}),
        r"refused opcode BUILD"),
    "legacy: payload as the object": (
        lambda m: lambda p: wf.write_bytes(p, wf.legacy_bytes(wf.system_payload(m), [])),
        r"refused global '(posix|os|nt)\.system'"),
    "legacy: payload as sys_info": (
        lambda m: lambda p: wf.write_bytes(p, wf.legacy_bytes(wf.float_tensor_pickle(legacy=True), [],
                                                              sys_info_pkl=wf.eval_payload(m))),
        r"refused global '(builtins|__builtin__)\.eval'"),
    "legacy: payload as the key list": (
        lambda m: lambda p: wf.write_bytes(p, wf.legacy_bytes(wf.float_tensor_pickle(legacy=True), [],
                                                              keys_pkl=wf.system_payload(m))),
        r"refused global"),
    "a dict that contains itself": (
        lambda m: zip_with(wf.PROTO_2 + wf.EMPTY_DICT + wf.BINPUT_0 + wf.text("a") + wf.BINGET_0 + wf.SETITEM
                           + wf.STOP),
        r"the container at 'a' appears twice"),
    "expanded view of 2**28 elements from 1": (
        lambda m: zip_with(wf.float_tensor_pickle(numel=1, size=(2**14, 2**14), stride=(0, 0)),
                           {"0": wf.float32_bytes([1])}),
        r"a tensor on storage 0 \(stride \(0, 0\)\) has shape \(16384, 16384\) = 268,435,456 elements, "
        r"more than the 134,217,728 one array may have"),
    "a bare malicious pickle named .pt": (lambda m: lambda p: wf.write_bytes(p, wf.system_payload(m)),
                                          r"refused global '(posix|os|nt)\.system'"),
}


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_file_is_refused_and_runs_nothing(tmp_path, case):
    make, message = MALICIOUS[case]
    marker = tmp_path / "pwned"
    path = make(marker)(tmp_path / "evil.pt")
    with pytest.raises(WeightFileError, match=message) as error:
        load_weights(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_the_payloads_are_real(tmp_path):
    """Sanity check of the test itself: plain pickle.loads DOES run the payload."""
    marker = tmp_path / "pwned"
    pickle.loads(wf.eval_payload(marker))
    assert marker.exists()


def test_the_pickle_machine_refuses_payloads_on_its_own(tmp_path):
    """The restricted machine, called directly with torch's names, refuses every payload."""
    marker = tmp_path / "pwned"
    for payload in (wf.system_payload(marker), wf.eval_payload(marker), wf.payload_in_state_dict(marker)):
        with pytest.raises(limits.FileProblem, match="refused global"):
            pickle_scan.load_pickle(payload, 0, pytorch.TORCH_NAMES, limits.Budget(10**6))
    assert not marker.exists()


def test_whole_pickled_module_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    for fmt in ("zip", "legacy"):
        path = tmp_path / f"module_{fmt}.pt"
        torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=(fmt == "zip"))
        with pytest.raises(WeightFileError, match=r"refused global 'torch\.nn\..*state_dict\(\)"):
            load_weights(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Truncated, empty, wrong magic: one clear error each
# ----------------------------------------------------------------------------------------------

def good_zip_bytes(tmp_path):
    path = wf.write_torch_zip(tmp_path / "good.pt", wf.float_tensor_pickle(), {"0": wf.float32_bytes(range(6))})
    return path.read_bytes()


def good_legacy_bytes():
    return wf.legacy_bytes(wf.float_tensor_pickle(legacy=True), [("0", 6, wf.float32_bytes(range(6)))])


BROKEN = {
    "empty": (lambda tmp: b"", r"empty \(0 bytes\)"),
    "unknown magic": (lambda tmp: b"GIF89a" + bytes(100), r"unknown format"),
    "pickle with the wrong magic number": (lambda tmp: pickle.dumps(12345, protocol=2), r"wrong magic number"),
    "truncated zip": (lambda tmp: good_zip_bytes(tmp)[:200], r"truncated or corrupt"),
    "truncated legacy storage": (lambda tmp: good_legacy_bytes()[:-5], r"truncated: storage 0 needs 24 bytes"),
    "truncated legacy pickle": (lambda tmp: good_legacy_bytes()[:120], r"truncated"),
    "legacy wrong protocol version": (
        lambda tmp: pickle.dumps(wf.LEGACY_MAGIC, protocol=2) + pickle.dumps(1000, protocol=2),
        r"unsupported legacy protocol version 1000"),
    "zip storage of the wrong size": (
        lambda tmp: wf.write_torch_zip(tmp / "w.pt", wf.float_tensor_pickle(), {"0": b"\0" * 20}).read_bytes(),
        r"storage 0 has 20 bytes, but the pickle says 6 float32 elements \(24 bytes\)"),
    "zip storage missing": (
        lambda tmp: wf.write_torch_zip(tmp / "w.pt", wf.float_tensor_pickle(), {}).read_bytes(),
        r"storage 0 is missing"),
    "zip that is neither torch nor npz": (
        lambda tmp: zip_bytes({"readme.txt": b"hello"}), r"neither a PyTorch checkpoint"),
    "single .npy": (lambda tmp: npy_bytes(np.ones(3)), r"single \.npy array"),
    "truncated safetensors": (lambda tmp: safetensors_bytes(float_header(), bytes(24))[:30], r"truncated"),
}


def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_gives_one_clear_error(tmp_path, case):
    make, message = BROKEN[case]
    path = wf.write_bytes(tmp_path / "broken.bin", make(tmp_path))
    with pytest.raises(WeightFileError, match=message) as error:
        load_weights(path)
    assert str(error.value).startswith(f"{path}: ")


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "nope.pt")


# ----------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------

def sample_state():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float16),
        "fc.weight": rng.standard_normal((2, 5)),
        "steps": np.array(7, dtype=np.int64),
        "mask": rng.random((3, 2)) > 0.5,
        "pixels": rng.integers(0, 255, (2, 2), dtype=np.uint8),
        "counts": rng.integers(0, 60000, (3,), dtype=np.uint16),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def assert_same_state(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_safetensors_written_by_minicnn_read_by_the_package(tmp_path):
    from safetensors.numpy import load_file
    state = sample_state()
    save_weights(tmp_path / "m.safetensors", state)
    assert_same_state(load_file(str(tmp_path / "m.safetensors")), state)
    assert_same_state(load_weights(tmp_path / "m.safetensors"), state)


def test_safetensors_written_by_the_package_read_by_minicnn(tmp_path):
    from safetensors.numpy import save_file
    state = sample_state()
    save_file(state, str(tmp_path / "p.safetensors"), metadata={"format": "np"})
    assert_same_state(load_weights(tmp_path / "p.safetensors"), state)


def test_safetensors_bfloat16_is_widened_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    tensor = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    save_file({"w": tensor}, str(tmp_path / "b.safetensors"))
    got = load_weights(tmp_path / "b.safetensors")["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, tensor.float().numpy())


def safetensors_bytes(header, data):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def float_header(**changes):
    entry = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    entry.update(changes)
    return {"w": entry}


BAD_SAFETENSORS = {
    "header over 100 MB": (struct.pack("<Q", 200_000_000) + b"{" + bytes(100), r"over the 100 MB limit"),
    "header longer than file": (struct.pack("<Q", 5000) + b"{}" + bytes(100), r"truncated"),
    "invalid JSON": (safetensors_bytes(b'{"w": {"dtype": ', bytes(24)), r"not valid JSON"),
    "header not starting with {": (safetensors_bytes(b"[1, 2]", b""), r"unknown format"),
    "unknown dtype": (safetensors_bytes(float_header(dtype="F8_E4M3"), bytes(24)), r"unsupported dtype 'F8_E4M3'"),
    "shape disagrees with offsets": (safetensors_bytes(float_header(shape=[2, 2]), bytes(24)),
                                     r"shape \[2, 2\] of float32 needs 16 bytes"),
    "negative shape": (safetensors_bytes(float_header(shape=[-2, -3]), bytes(24)), r"non-negative"),
    "offsets out of range": (safetensors_bytes(float_header(data_offsets=[8, 32]), bytes(24)),
                             r"outside the 24 data bytes"),
    "overlapping offsets": (
        safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        r"overlap"),
    "hole in the data": (safetensors_bytes(float_header(), bytes(32)), r"belong to no tensor"),
    "duplicate name": (safetensors_bytes(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                         b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', bytes(4)),
                       r"repeats the name\(s\) \['w'\]"),
    "metadata not strings": (safetensors_bytes({**float_header(), "__metadata__": {"epoch": 3}}, bytes(24)),
                             r"__metadata__ must map strings to strings"),
    "entry without shape": (safetensors_bytes({"w": {"dtype": "F32", "data_offsets": [0, 24]}}, bytes(24)),
                            r"needs dtype, shape and data_offsets"),
}


@pytest.mark.parametrize("case", list(BAD_SAFETENSORS))
def test_malformed_safetensors_rejected(tmp_path, case):
    data, message = BAD_SAFETENSORS[case]
    path = wf.write_bytes(tmp_path / "bad.safetensors", data)
    with pytest.raises(WeightFileError, match=message):
        load_weights(path)


def test_safetensors_metadata_is_allowed(tmp_path):
    path = wf.write_bytes(tmp_path / "m.safetensors", safetensors_bytes(
        {**float_header(), "__metadata__": {"format": "pt"}}, wf.float32_bytes(range(6))))
    np.testing.assert_array_equal(load_weights(path)["w"], np.arange(6).reshape(2, 3))


# ----------------------------------------------------------------------------------------------
# npz and save_weights
# ----------------------------------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    state = sample_state()
    state["file"] = np.ones(2)  # a name np.savez(path, **state) could not take
    save_weights(tmp_path / "m.npz", state)
    assert_same_state(load_weights(tmp_path / "m.npz"), state)
    with np.load(tmp_path / "m.npz") as npz:
        assert_same_state(dict(npz), state)


def test_a_fortran_order_npz_array_comes_back_c_contiguous(tmp_path):
    kernel = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.savez(tmp_path / "f.npz", kernel=kernel)  # stored with fortran_order: True
    loaded = load_weights(tmp_path / "f.npz")["kernel"]
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, kernel)


def test_npz_with_object_array_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", ok=np.ones(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightFileError, match=r"entry 'bad' has dtype object; weights must be real numbers"):
        load_weights(tmp_path / "o.npz")


def test_save_weights_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.npz or \.safetensors"):
        save_weights(tmp_path / "m.pt", {"w": np.ones(2)})
    with pytest.raises(TypeError, match=r"state\['w'\] must be a numpy.ndarray, got list"):
        save_weights(tmp_path / "m.npz", {"w": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"state must be a dict"):
        save_weights(tmp_path / "m.npz", [np.ones(2)])
    with pytest.raises(ValueError, match=r"state is empty"):
        save_weights(tmp_path / "m.npz", {})


# ----------------------------------------------------------------------------------------------
# Keras HDF5
# ----------------------------------------------------------------------------------------------

H, W, C, F, OUT, K = 6, 5, 2, 3, 4, 3   # input 6x5x2, 3 filters of 3x3, dense to 4 outputs


def keras_arrays():
    rng = np.random.default_rng(3)
    flat = (H - K + 1) * (W - K + 1) * F
    return {
        "conv_kernel": rng.standard_normal((K, K, C, F)),   # HWIO
        "conv_bias": rng.standard_normal(F),
        "dense_kernel": rng.standard_normal((flat, OUT)),    # (in, out)
        "dense_bias": rng.standard_normal(OUT),
    }


def write_keras_classic(path, arrays, under_model_weights, keras1_names=False):
    """The layout of model.save_weights("x.h5") (or, under model_weights, of model.save("x.h5")).

    Keras 2 names weights "conv2d/kernel:0"; Keras 1 (and keras.applications' VGG16 file)
    "conv2d_W_1:0".
    """
    import h5py
    layers = {"conv2d": {"kernel": arrays["conv_kernel"], "bias": arrays["conv_bias"]},
              "flatten": {},
              "dense": {"kernel": arrays["dense_kernel"], "bias": arrays["dense_bias"]}}
    keras1 = {"kernel": "W", "bias": "b"}
    with h5py.File(path, "w") as h5:
        root = h5.create_group("model_weights") if under_model_weights else h5
        root.attrs["layer_names"] = np.array([n.encode() for n in layers])
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for layer, variables in layers.items():
            group = root.create_group(layer)
            names = [f"{layer}_{keras1[v]}_1:0" if keras1_names else f"{layer}/{v}:0" for v in variables]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for name, value in zip(names, variables.values()):
                group.create_dataset(name, data=value.astype(np.float32))
    return path


def write_keras3(path, arrays):
    """The layout of Keras 3 model.save_weights("x.weights.h5"): layers/<layer>/vars/<i>."""
    import h5py
    with h5py.File(path, "w") as h5:
        for layer, prefix in (("conv2d", "conv"), ("dense", "dense")):
            group = h5.create_group(f"layers/{layer}/vars")
            group["0"] = arrays[f"{prefix}_kernel"].astype(np.float32)
            group["1"] = arrays[f"{prefix}_bias"].astype(np.float32)
        h5.create_group("layers/flatten/vars")
        h5.create_group("optimizer/vars")
    return path


def channels_last_forward(x, a):
    """Keras: x is (H, W, C); conv (valid, stride 1), ReLU, Flatten in (h, w, c) order, Dense."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(0, 1))   # (h, w, c, kh, kw)
    conv = np.einsum("hwcij,ijcf->hwf", windows, a["conv_kernel"]) + a["conv_bias"]
    return np.maximum(conv, 0).reshape(-1) @ a["dense_kernel"] + a["dense_bias"]


def channels_first_forward(x, state):
    """minicnn / PyTorch: x is (C, H, W); conv with OIHW weights, Flatten in (c, h, w) order."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(1, 2))   # (c, h, w, kh, kw)
    conv = np.einsum("chwij,fcij->fhw", windows, state["conv2d.weight"]) + state["conv2d.bias"][:, None, None]
    dense_w = keras_flatten_to_channels_first(state["dense.weight"], F, H - K + 1, W - K + 1)
    return dense_w @ np.maximum(conv, 0).reshape(-1) + state["dense.bias"]


@pytest.mark.parametrize("layout", ["save_weights", "model.save", "keras1 names", "keras3"])
def test_keras_h5_matches_channels_last_network(tmp_path, layout):
    pytest.importorskip("h5py")
    arrays = keras_arrays()
    path = tmp_path / "k.h5"
    if layout == "keras3":
        write_keras3(path, arrays)
    else:
        write_keras_classic(path, arrays, under_model_weights=(layout == "model.save"),
                            keras1_names=(layout == "keras1 names"))
    state = {k: v.astype(np.float64) for k, v in load_weights(path).items()}
    assert sorted(state) == ["conv2d.bias", "conv2d.weight", "dense.bias", "dense.weight"]
    assert state["conv2d.weight"].shape == (F, C, K, K)
    assert state["dense.weight"].shape == (OUT, (H - K + 1) * (W - K + 1) * F)

    x = np.random.default_rng(4).standard_normal((H, W, C))
    keras_arrays32 = {k: v.astype(np.float32).astype(np.float64) for k, v in arrays.items()}
    want = channels_last_forward(x, keras_arrays32)
    got = channels_first_forward(np.ascontiguousarray(x.transpose(2, 0, 1)), state)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trick", ["external storage", "external link"])
def test_keras_h5_pointing_outside_itself_is_refused(tmp_path, trick):
    """An HDF5 dataset can take its bytes from another file: that would read a local file as weights."""
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(wf.float32_bytes(range(6)))
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["w"] = np.ones(6, dtype=np.float32)
    with h5py.File(tmp_path / "k.h5", "w") as h5:
        h5.attrs["layer_names"] = np.array([b"dense"])
        group = h5.create_group("dense")
        group.attrs["weight_names"] = np.array([b"dense/bias:0"])
        if trick == "external storage":
            group.create_dataset("dense/bias:0", shape=(6,), dtype="<f4", external=[(str(secret), 0, 24)])
        else:
            group["dense/bias:0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/w")
    message = r"keeps its data outside this file" if trick == "external storage" else r"link of type ExternalLink"
    with pytest.raises(WeightFileError, match=message):
        load_weights(tmp_path / "k.h5")


def test_keras3_unnamed_batchnorm_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "bn.weights.h5", "w") as h5:
        group = h5.create_group("layers/batch_normalization/vars")
        for i in range(4):
            group[str(i)] = np.ones(3, dtype=np.float32)
    with pytest.raises(WeightFileError, match=r"'batch_normalization'.*only reads conv and dense"):
        load_weights(tmp_path / "bn.weights.h5")


def test_hdf5_without_keras_weights(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["data"] = np.ones(3)
    with pytest.raises(WeightFileError, match=r"HDF5 file without Keras weights"):
        load_weights(tmp_path / "x.h5")


def test_truncated_hdf5(tmp_path):
    pytest.importorskip("h5py")
    path = write_keras_classic(tmp_path / "k.h5", keras_arrays(), under_model_weights=False)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightFileError, match=r"k\.h5: malformed file \(OSError"):
        load_weights(path)


def test_keras_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    path = wf.write_bytes(tmp_path / "k.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install h5py"):
        load_weights(path)


def test_keras_flatten_to_channels_first_reorders_columns():
    channels, height, width = 2, 3, 4
    # Column j of a Keras dense weight reads channels-last position j = (h * width + w) * channels + c.
    keras_order = np.arange(height * width * channels, dtype=np.float64).reshape(1, -1)
    got = keras_flatten_to_channels_first(keras_order, channels, height, width)
    c, h, w = np.meshgrid(np.arange(channels), np.arange(height), np.arange(width), indexing="ij")
    np.testing.assert_array_equal(got[0], ((h * width + w) * channels + c).reshape(-1))
    with pytest.raises(ValueError, match=r"must have 2\*3\*4 = 24 columns"):
        keras_flatten_to_channels_first(np.ones((1, 23)), channels, height, width)


# ----------------------------------------------------------------------------------------------
# The two rules, in every format: real-number dtypes, at most MAX_ARRAY_ELEMENTS per array
# ----------------------------------------------------------------------------------------------

def write_keras_one_weight(path, **dataset_args):
    """A classic Keras file: one layer "dense" with one weight "dense/kernel:0" (h5py's create_dataset args)."""
    import h5py
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = np.array([b"dense"])
        group = h5.create_group("dense")
        group.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        group.create_dataset("dense/kernel:0", **dataset_args)
    return path


def npz_declaring(path, shape, data=b"", descr="<f4"):
    """An .npz whose one member w.npy has a header declaring `shape`, followed by just `data`."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return wf.write_bytes(path, zip_bytes({"w.npy": header.getvalue() + data}))


def test_tiny_npz_declaring_a_huge_array_is_refused_before_reading(tmp_path):
    """numpy would try to allocate 37 GiB for this 300-byte file (MemoryError)."""
    path = npz_declaring(tmp_path / "huge.npz", (100000, 100000), data=bytes(16))
    assert path.stat().st_size < 400
    with pytest.raises(WeightFileError, match=r"huge\.npz: entry 'w' has shape \(100000, 100000\) = "
                                              r"10,000,000,000 elements, more than the 134,217,728"):
        load_weights(path)


def test_compressed_npz_past_the_cap_is_refused_before_decompressing(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "bomb.npz", w=np.zeros(10**6, dtype=np.float32))
    assert (tmp_path / "bomb.npz").stat().st_size < 10_000     # 4 MB of zeros deflate to a few KB
    monkeypatch.setattr(limits, "MAX_ARRAY_ELEMENTS", 1000)
    monkeypatch.setattr(np.lib.format, "read_array", lambda *args, **kwargs: pytest.fail("data was read"))
    with pytest.raises(WeightFileError, match=r"entry 'w' has shape \(1000000,\) = 1,000,000 elements, "
                                              r"more than the 1,000 one array may have"):
        load_weights(tmp_path / "bomb.npz")


def test_npy_header_claiming_4_gb_is_not_read_in_full(tmp_path):
    """Format 2.0 gives the header length in 4 bytes; numpy reads that many bytes before any check."""
    import tracemalloc
    member = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b" " * 30_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("w.npy", member)
    path = wf.write_bytes(tmp_path / "header.npz", buffer.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(WeightFileError, match=r"header\.npz: entry 'w\.npy': corrupt zip member \(ValueError"):
            load_weights(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_keras_h5_declaring_a_huge_dataset_is_refused_before_reading(tmp_path):
    """A chunked dataset with no chunks written: a few KB on disk, 40 GB if read."""
    pytest.importorskip("h5py")
    path = write_keras_one_weight(tmp_path / "huge.h5", shape=(100000, 100000), dtype="<f4", chunks=(100, 100))
    assert path.stat().st_size < 10_000
    with pytest.raises(WeightFileError, match=r"huge\.h5: dataset /dense/dense/kernel:0 has shape "
                                              r"\(100000, 100000\) = 10,000,000,000 elements"):
        load_weights(path)


def test_keras_h5_dataset_without_dataspace_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = write_keras_one_weight(tmp_path / "empty.h5", data=h5py.Empty("<f4"))
    with pytest.raises(WeightFileError, match=r"dataset /dense/dense/kernel:0 has no dataspace"):
        load_weights(path)


WEIGHT_4X5 = np.arange(20, dtype=np.float32).reshape(4, 5)
TORCH_4X5 = dict(numel=20, size=(4, 5), stride=(5, 1))

# format -> (write the file holding WEIGHT_4X5, what the size error names, what load_weights returns)
EVERY_FORMAT = {
    "npz": (lambda p: save_weights(p.with_suffix(".npz"), {"w": WEIGHT_4X5}),
            r"entry 'w' has shape \(4, 5\)", {"w": WEIGHT_4X5}),
    "compressed npz": (lambda p: np.savez_compressed(p.with_suffix(".npz"), w=WEIGHT_4X5),
                       r"entry 'w' has shape \(4, 5\)", {"w": WEIGHT_4X5}),
    "safetensors": (lambda p: save_weights(p.with_suffix(".safetensors"), {"w": WEIGHT_4X5}),
                    r"tensor 'w' has shape \(4, 5\)", {"w": WEIGHT_4X5}),
    "torch zip": (lambda p: wf.write_torch_zip(p, wf.float_tensor_pickle(**TORCH_4X5), {"0": WEIGHT_4X5.tobytes()}),
                  r"storage 0 has shape \(20,\)", {"w": WEIGHT_4X5}),
    "torch legacy": (lambda p: wf.write_bytes(p, wf.legacy_bytes(wf.float_tensor_pickle(**TORCH_4X5, legacy=True),
                                                                 [("0", 20, WEIGHT_4X5.tobytes())])),
                     r"storage 0 has shape \(20,\)", {"w": WEIGHT_4X5}),
    "keras h5": (lambda p: write_keras_one_weight(p, data=WEIGHT_4X5),
                 r"dataset /dense/dense/kernel:0 has shape \(4, 5\)", {"dense.weight": WEIGHT_4X5.T}),
}


@pytest.mark.parametrize("fmt", list(EVERY_FORMAT))
def test_every_format_obeys_the_same_size_rule(tmp_path, monkeypatch, fmt):
    """One array of 20 elements: refused when the cap is 19, read when it is 20."""
    if fmt == "keras h5":
        pytest.importorskip("h5py")
    write, names, want = EVERY_FORMAT[fmt]
    write(tmp_path / "w")
    (path,) = tmp_path.iterdir()
    monkeypatch.setattr(limits, "MAX_ARRAY_ELEMENTS", 19)
    with pytest.raises(WeightFileError, match=rf"{names} = 20 elements, more than the 19 one array may have"):
        load_weights(path)
    monkeypatch.setattr(limits, "MAX_ARRAY_ELEMENTS", 20)
    assert_same_state(load_weights(path), want)


def test_save_weights_refuses_what_load_weights_would(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ARRAY_ELEMENTS", 19)
    for suffix in (".npz", ".safetensors"):
        with pytest.raises(ValueError, match=r"state\['w'\] has shape \(4, 5\) = 20 elements, more than "
                                             r"the 19 .*load_weights would refuse the file"):
            save_weights(tmp_path / f"m{suffix}", {"w": WEIGHT_4X5})
    assert not list(tmp_path.iterdir())


NOT_REAL = ["complex128", "<U3", "datetime64[s]"]


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("dtype", NOT_REAL)
def test_save_weights_refuses_arrays_that_are_not_real_numbers(tmp_path, suffix, dtype):
    path = tmp_path / f"m{suffix}"
    with pytest.raises(TypeError, match=rf"state\['w'\] has dtype {re.escape(str(np.dtype(dtype)))}; "
                                        r"weights must be real numbers, one of float64, float32, "):
        save_weights(path, {"ok": np.ones(2), "w": np.zeros(2, dtype=dtype)})
    assert not path.exists()


@pytest.mark.parametrize("dtype", NOT_REAL)
def test_npz_of_arrays_that_are_not_real_numbers_is_refused(tmp_path, dtype):
    np.savez(tmp_path / "c.npz", ok=np.ones(2), w=np.zeros(2, dtype=dtype))
    with pytest.raises(WeightFileError, match=rf"entry 'w' has dtype {re.escape(str(np.dtype(dtype)))}; "
                                              r"weights must be real numbers"):
        load_weights(tmp_path / "c.npz")


def test_keras_h5_complex_dataset_is_refused(tmp_path):
    pytest.importorskip("h5py")
    path = write_keras_one_weight(tmp_path / "c.h5", data=np.ones((2, 2), dtype=np.complex64))
    with pytest.raises(WeightFileError, match=r"dataset /dense/dense/kernel:0 has dtype complex64"):
        load_weights(path)


def npy_version_3(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ones(2), version=(3, 0))
    return zip_bytes({"w.npy": buffer.getvalue()})


BAD_NPZ = {
    "a member that is not .npy": (lambda tmp: zip_bytes({"w.npy": npy_bytes(np.ones(2)), "notes.txt": b"hi"}),
                                  r"entry 'notes\.txt' is not an \.npy array"),
    "npy format 3.0": (npy_version_3, r"\.npy format version 3\.0 is not read"),
    "truncated data": (lambda tmp: npz_declaring(tmp / "t.npz", (3,), data=bytes(8)).read_bytes(),
                       r"entry 'w': shape \(3,\) of float32 needs 140 bytes with its header, the zip says the member has 136"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_malformed_npz_rejected(tmp_path, case):
    make, message = BAD_NPZ[case]
    path = wf.write_bytes(tmp_path / "bad.npz", make(tmp_path))
    with pytest.raises(WeightFileError, match=message):
        load_weights(path)


def test_npz_with_two_members_of_one_name_is_refused(tmp_path):
    path = tmp_path / "twice.npz"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("w.npy", npy_bytes(np.ones(2)))
        archive.writestr("w.npy", npy_bytes(np.ones(3)))
    with pytest.raises(WeightFileError, match=r"the \.npz holds two entries named 'w\.npy'"):
        load_weights(path)


def test_importing_minicnn_imports_no_weight_file_reader():
    """The engine (network.py) never imports the readers: `import minicnn` leaves minicnn.io alone."""
    code = "import sys, minicnn; print(sorted(m for m in sys.modules if m.startswith('minicnn.io')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=REPO).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_unsigned_tensors_written_by_torch_are_read(tmp_path, dtype):
    """torch writes these through _rebuild_tensor_v3 on an UntypedStorage (bytes), the dtype an argument."""
    torch = pytest.importorskip("torch")
    values = np.array([[0, 1, 2], [np.iinfo(dtype).max, 7, 65535]], dtype=dtype)
    for fmt in ("zip", "legacy"):
        path = tmp_path / f"{dtype}_{fmt}.pt"
        torch.save({"w": torch.from_numpy(values.astype(np.int64)).to(getattr(torch, dtype)), "t": torch.ones(2)},
                   path, _use_new_zipfile_serialization=(fmt == "zip"))
        got = load_weights(path)
        assert got["w"].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got["w"], values)


@pytest.mark.parametrize("dtype, message", [
    ("float8_e4m3fn", r"a tensor has dtype torch\.float8_e4m3fn, which numpy cannot hold"),
    ("float8_e5m2", r"a tensor has dtype torch\.float8_e5m2, which numpy cannot hold"),
    ("complex64", r"storage '0' has type torch\.ComplexFloatStorage, whose elements numpy cannot hold"),
])
def test_a_torch_dtype_numpy_cannot_hold_is_refused_by_name(tmp_path, dtype, message):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(3).to(getattr(torch, dtype))}, tmp_path / "w.pt")
    with pytest.raises(WeightFileError, match=message):
        load_weights(tmp_path / "w.pt")
