"""Seeded mutations of a valid file of every format: bit flips and truncations. Each load gives the
correct dict or WeightFileError -- never another exception, a crash or a hang. Formats whose every
byte is covered by a CRC (zip members) must give exactly the correct dict when they load; formats
without checksums (safetensors, the legacy PyTorch format, HDF5's raw data) may load a flipped
value or name, which must still be a dict of named real-number arrays.
"""
import numpy as np
import pytest

import weight_file_makers as wf
from minicnn.io import REAL_DTYPES, WeightFileError, load_weights, save_weights

FLIPS, TRUNCATIONS = 45, 15      # per format: 7 formats, 420 mutated files

STATE = {"conv.weight": np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3) / 7,
         "conv.bias": np.array([0.5, -1.5], dtype=np.float32)}


def torch_zip(path):
    storage = wf.storage_id("FloatStorage", "0", 56)
    data_pkl = wf.state_dict_pickle({"conv.weight": wf.tensor(storage, 0, (2, 3, 3, 3), (27, 9, 3, 1)),
                                     "conv.bias": wf.tensor(storage, 54, (2,), (1,))})
    raw = np.concatenate([STATE["conv.weight"].ravel(), STATE["conv.bias"]]).tobytes()
    return wf.write_torch_zip(path, data_pkl, {"0": raw})


def torch_legacy(path):
    weight, bias = (wf.storage_id("FloatStorage", key, n, legacy=True) for key, n in (("0", 54), ("1", 2)))
    data_pkl = wf.state_dict_pickle({"conv.weight": wf.tensor(weight, 0, (2, 3, 3, 3), (27, 9, 3, 1)),
                                     "conv.bias": wf.tensor(bias, 0, (2,), (1,))})
    return wf.write_bytes(path, wf.legacy_bytes(data_pkl, [("0", 54, STATE["conv.weight"].tobytes()),
                                                           ("1", 2, STATE["conv.bias"].tobytes())]))


def npz_compressed(path):
    np.savez_compressed(path, **STATE)
    return path.with_suffix(".npz")


def keras_classic(path):
    import h5py
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = np.array([b"conv"])
        group = h5.create_group("conv")
        group.attrs["weight_names"] = np.array([b"conv/kernel:0", b"conv/bias:0"])
        group["conv/kernel:0"] = STATE["conv.weight"].transpose(2, 3, 1, 0)   # OIHW -> HWIO
        group["conv/bias:0"] = STATE["conv.bias"]
    return path


def keras3(path):
    import h5py
    with h5py.File(path, "w") as h5:
        group = h5.create_group("layers/conv2d/vars")
        group.attrs["name"] = "conv"
        group["0"] = STATE["conv.weight"].transpose(2, 3, 1, 0)
        group["1"] = STATE["conv.bias"]
    return path


# format -> (write a valid file at a path and return it, every byte covered by a checksum?)
FORMATS = {
    "npz": (lambda p: save_weights(p.with_suffix(".npz"), STATE) or p.with_suffix(".npz"), True),
    "compressed npz": (npz_compressed, True),
    "torch zip": (torch_zip, True),
    "safetensors": (lambda p: save_weights(p.with_suffix(".safetensors"), STATE) or p.with_suffix(".safetensors"),
                    False),
    "torch legacy": (torch_legacy, False),
    "keras h5": (keras_classic, False),
    "keras 3 .weights.h5": (keras3, False),
}


def mutations(data, seed):
    """(description, mutated bytes): FLIPS single-bit flips, then TRUNCATIONS cuts, at seeded places."""
    rng = np.random.default_rng(seed)
    for position, bit in zip(rng.integers(0, len(data), FLIPS), rng.integers(0, 8, FLIPS)):
        flipped = bytearray(data)
        flipped[position] ^= 1 << bit
        yield f"bit {bit} of byte {position} flipped", bytes(flipped)
    for length in rng.integers(0, len(data), TRUNCATIONS):
        yield f"cut to {length} bytes", data[:length]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_files_give_the_correct_dict_or_weight_file_error(tmp_path, fmt):
    if "keras" in fmt:
        pytest.importorskip("h5py")
    write, checksummed = FORMATS[fmt]
    original = write(tmp_path / "valid")
    correct = load_weights(original)
    assert sorted(correct) == sorted(STATE)
    for name, array in STATE.items():
        np.testing.assert_array_equal(correct[name], array)
    data, outcomes = original.read_bytes(), {"correct": 0, "refused": 0, "other dict": 0}
    for index, (what, mutated) in enumerate(mutations(data, seed=list(FORMATS).index(fmt))):
        path = wf.write_bytes(tmp_path / f"mutant{index}{original.suffix}", mutated)
        try:
            got = load_weights(path)
        except WeightFileError as error:
            assert str(error).startswith(f"{path}: "), what
            outcomes["refused"] += 1
            continue
        if sorted(got) == sorted(correct) and all(np.array_equal(got[k], correct[k]) and got[k].dtype == correct[k].dtype
                                                  for k in correct):
            outcomes["correct"] += 1
            continue
        assert not checksummed, f"{what}: a {fmt} file whose bytes all have a CRC loaded a different dict"
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.name in REAL_DTYPES
                   for k, v in got.items()), what
        outcomes["other dict"] += 1
    assert sum(outcomes.values()) == FLIPS + TRUNCATIONS
    assert outcomes["refused"] >= TRUNCATIONS - 1   # a cut file is refused (a cut at the very end may not be)
