"""Every class of hostile or broken file found in the weight-file hardening issue: each is refused
with WeightFileError (or, for expanded views and many empty tensors, loaded without a copy), in a
child process whose peak memory stays within the budget plus a small margin. The subprocess
timeout is a hang guard, not a speed claim (tests/io/hostile_weight_files.py prints the seconds).
"""
import re

import hostile_weight_files as hostile
import pytest

BUDGET = 200 * 2**20
MARGIN_MIB = 64          # the interpreter's own growth while reading: buffers, small objects

BUDGET_MESSAGE = r"passes this file's budget of 209,715,200 bytes"
NOT_STORED = r"uses zip compression method 8; only STORED entries are read here"
HARD_LINKS_ONLY = r"is a link of type {}, refused: a weight file is read from itself alone"
EXPECTED = {
    "expanded view 1 GiB, zip": "loaded 1 arrays",
    "three expanded views, zip": "loaded 3 arrays",
    "expanded view 1 GiB, legacy": "loaded 1 arrays",
    "deflated data.pkl in a torch zip": r"entry 'archive/data\.pkl' " + NOT_STORED,
    "deflated 512 MiB storage in a torch zip": r"entry 'archive/data/0' " + NOT_STORED,
    "npz of two deflated 128 MiB members": r"entry 'b' would take 134,217,728 bytes; with the 134,217,728 already "
                                           r"used that " + BUDGET_MESSAGE,
    "hdf5 of two unwritten gzip datasets": r"the 2 datasets would take 2,164,260,864 bytes.*" + BUDGET_MESSAGE,
    "safetensors header of 3 million empty lists": r"parsing the safetensors header \(6,000,005 JSON values\).*"
                                                   + BUDGET_MESSAGE,
    "pickle LONG_BINPUT 0x0FFFFFFF": r"refused memo index 268,435,455",
    "dict key nested 1,000,000 tuples deep": r"refused pickle: more than 500,000 opcodes",
    "dict key nested 400,000 tuples deep": r"refused dict key of type tuple \(keys must be str or int\)",
    "dict key of 64 levels of (t, t)": r"refused dict key of type tuple \(keys must be str or int\)",
    "persistent id of 64 levels of [l, l]": r"malformed persistent id \(a list\)",
    "tensor size of 64 levels of [l, l]": r"tensor view has a malformed offset, size or stride \(types int, list, tuple",
    "legacy version of 64 levels of [l, l]": r"unsupported legacy protocol version \[\[\[\.\.\.\], \[\.\.\.\]\], "
                                             r"\[\[\.\.\.\], \[\.\.\.\]\]\] \(expected 1001\)$",
    "2 million trivial opcodes in data.pkl": r"refused pickle: more than 500,000 opcodes",
    "deflated data.pkl of 100 million opcodes": r"entry 'archive/data\.pkl' " + NOT_STORED,
    "a list of 200,000 ints referenced 100,000 times": "loaded 1 arrays",
    "safetensors of 60,000 empty tensors": "loaded 60000 arrays",
    "zip entry flagged encrypted": r"is encrypted or a patch \(zip flag bits 0x0001\)",
    "zip entry flagged patched data": r"is encrypted or a patch \(zip flag bits 0x0020\)",
    "zip entry flagged strong encryption": r"is encrypted or a patch \(zip flag bits 0x0040\)",
    "zip compression method 99": r"uses zip compression method 99; only STORED entries are read here",
    "corrupt deflate stream in an npz": r"entry 'w\.npy': corrupt zip member \(error: Error -3 while decompressing",
    "LZMA member in an npz": r"entry 'w\.npy' uses zip compression method 14; only STORED or DEFLATE",
    "hdf5 soft link to itself": r"'/model_weights' " + HARD_LINKS_ONLY.format("SoftLink"),
    "hdf5 model_weights as an ExternalLink": r"'/model_weights' " + HARD_LINKS_ONLY.format("ExternalLink"),
    "keras 3 layers as an ExternalLink": r"'/layers' " + HARD_LINKS_ONLY.format("ExternalLink"),
}


def test_every_case_has_an_expectation():
    assert sorted(EXPECTED) == sorted(hostile.CASES)


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_hostile_file_is_refused_within_the_budget(tmp_path, case):
    if "hdf5" in case or "keras" in case:
        pytest.importorskip("h5py")
    path = hostile.CASES[case][1](tmp_path / "hostile.bin")
    result = hostile.load_in_child(path, BUDGET, timeout=120)
    expected = EXPECTED[case]
    if expected.startswith("loaded"):
        assert result["outcome"] == expected
    else:
        prefix = f"WeightFileError: {path}: "
        assert result["outcome"].startswith(prefix), result["outcome"]
        assert re.search(expected, result["outcome"][len(prefix):]), result["outcome"]
    assert result["peak_growth_mib"] <= BUDGET / 2**20 + MARGIN_MIB
