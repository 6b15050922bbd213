"""Resume and refusal: a run interrupted at a random shard (of any pass) and run again ends with
exactly the files of an uninterrupted run, without recomputing the shards it had finished; a folder
holding a run with other settings (model, weights, layers, k, source) is refused, never mixed."""
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import models
from minicnn.cli import main
from minicnn.index import ShapesSource, build_index, dissect_source
from minicnn.index.store import read_arrays, read_manifest

LAYERS = ["relu1_2", "relu3_1"]


class Interrupted(Exception):
    """Stands for the process being killed."""


class InterruptedSource:
    """A source that stops the run the `when`-th time image `fail_at` is read (1: the first pass)."""

    def __init__(self, source, fail_at, when=1):
        self.source, self.fail_at, self.when, self.reads = source, fail_at, when, [0]

    def __len__(self):
        return len(self.source)

    def __getattr__(self, name):
        return getattr(self.source, name)

    def part(self, start, stop):
        return InterruptedPart(self.source.part(start, stop), self)


class InterruptedPart(NamedTuple):
    part: object
    owner: InterruptedSource

    def batches(self, batch_size, with_concepts=False):
        for batch in self.part.batches(batch_size, with_concepts):
            if self.owner.fail_at in batch.ids.tolist():
                self.owner.reads[0] += 1
                if self.owner.reads[0] == self.owner.when:
                    raise Interrupted
            yield batch


def folder_contents(folder):
    """{relative path: arrays or manifest} of every file a run leaves."""
    contents = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix == ".npz":
            contents[path.relative_to(folder).as_posix()] = read_arrays(path)
        elif path.name == "manifest.json":
            contents["manifest.json"] = read_manifest(folder)
        elif path.is_file():
            contents[path.relative_to(folder).as_posix()] = path.read_text()
    return contents


def assert_same_contents(a, b):
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], dict) and name.endswith(".npz"):
            assert a[name].keys() == b[name].keys()
            for key in a[name]:
                np.testing.assert_array_equal(a[name][key], b[name][key], err_msg=f"{name}: {key}")
        else:
            assert a[name] == b[name], name


@settings(max_examples=8, deadline=None)
@given(st.integers(8, 40), st.sampled_from([4, 8]), st.integers(1, 3), st.data())
def test_an_interrupted_search_resumed_equals_an_uninterrupted_one(n, batch_size, batches_per_shard, data):
    fail_at = data.draw(st.integers(0, n - 1), "fail_at")
    net, source = models.shapes_vgg(seed=1), ShapesSource(n, seed=3)
    options = dict(k=3, batch_size=batch_size, shard_size=batch_size * batches_per_shard, progress=False)
    with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as resumed:
        build_index(net, source, LAYERS, whole, **options)
        with pytest.raises(Interrupted):
            build_index(net, InterruptedSource(source, fail_at), LAYERS, resumed, **options)
        finished = folder_contents(resumed)
        shard_size = options["shard_size"]
        assert sorted(p for p in finished if p.startswith("shards/")) == [
            f"shards/search/{start:010d}-{min(start + shard_size, n):010d}.npz"
            for start in range(0, fail_at - fail_at % shard_size, shard_size)]
        assert not read_manifest(resumed)["complete"]
        build_index(net, source, LAYERS, resumed, **options)
        after = folder_contents(resumed)
        assert_same_contents({p: after[p] for p in finished if p.startswith("shards/")},
                             {p: finished[p] for p in finished if p.startswith("shards/")})
        assert_same_contents(after, folder_contents(whole))


@settings(max_examples=5, deadline=None)
@given(st.integers(8, 24), st.integers(1, 3), st.data())
def test_an_interrupted_dissection_resumed_equals_an_uninterrupted_one(n, which_pass, data):
    fail_at = data.draw(st.integers(0, n - 1), "fail_at")
    net, source = models.shapes_vgg(seed=1), ShapesSource(n, seed=4)
    options = dict(batch_size=4, shard_size=8, progress=False)
    with tempfile.TemporaryDirectory() as whole, tempfile.TemporaryDirectory() as resumed:
        expected = dissect_source(net, source, ["relu3_2"], whole, **options)
        with pytest.raises(Interrupted):
            dissect_source(net, InterruptedSource(source, fail_at, which_pass), ["relu3_2"], resumed, **options)
        got = dissect_source(net, source, ["relu3_2"], resumed, **options)
        assert got["relu3_2"].table == expected["relu3_2"].table
        assert_same_contents(folder_contents(resumed), folder_contents(whole))


def test_a_folder_holding_another_run_is_refused(tmp_path):
    net, source = models.shapes_vgg(seed=1), ShapesSource(8, seed=3)
    options = dict(batch_size=4, shard_size=4, progress=False)
    build_index(net, source, ["relu3_1"], tmp_path / "idx", k=2, **options)
    before = folder_contents(tmp_path / "idx")
    refusals = [
        (dict(model=models.shapes_vgg(seed=2)), "weights_sha256"),
        (dict(layers=["relu3_2"]), "layers"),
        (dict(k=3), "k: 2 there, 3 now"),
        (dict(source=ShapesSource(8, seed=4)), "source"),
        (dict(options={**options, "shard_size": 8}), "shard_size"),
    ]
    for change, message in refusals:
        arguments = dict(model=net, source=source, layers=["relu3_1"], k=2, options=options) | change
        with pytest.raises(ValueError, match=message):
            build_index(arguments["model"], arguments["source"], arguments["layers"], tmp_path / "idx",
                        k=arguments["k"], **arguments["options"])
    assert_same_contents(folder_contents(tmp_path / "idx"), before)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no manifest.json"):
        build_index(net, source, ["relu3_1"], tmp_path / "other", **options)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        build_index(net, source, ["relu3_1"], tmp_path / "other" / "notes.txt", **options)


def test_the_cli_refuses_an_index_of_another_layer_in_one_line(tmp_path, capsys):
    arguments = ["index", "--model", "shapes_vgg", "--init-seed", "0", "--shapes", "8", "--k", "2", "--out",
                 str(tmp_path), "--quiet", "--batch-size", "4"]
    assert main(arguments + ["--layers", "relu3_1"]) == 0
    assert "indexed 8 images for layers relu3_1" in capsys.readouterr().out
    assert main(arguments + ["--layers", "relu2_1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("minicnn index: error: ") and "layers: ['relu3_1'] there, ['relu2_1'] now" in error
    assert len(error.splitlines()) == 1


def test_the_cli_says_which_extra_is_missing_and_where_weights_come_from(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if dask were not installed
    arguments = ["index", "--model", "shapes_vgg", "--init-seed", "0", "--layers", "relu3_1", "--shapes", "8",
                 "--out", str(tmp_path / "a"), "--quiet", "--scheduler", "dask"]
    assert main(arguments) == 2
    assert 'needs dask.distributed: pip install -e ".[dask]"' in capsys.readouterr().err
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "empty-cache"))
    assert main(["index", "--model", "vgg16", "--layers", "features_29", "--shapes", "8", "--out",
                 str(tmp_path / "b"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "vgg16.npz not found" in error and "python -m minicnn.recipes.fetch_weights vgg16" in error


def test_a_process_killed_half_way_resumes_from_its_last_finished_shard(tmp_path):
    """The real thing: `minicnn index` in a child process, SIGKILLed once two shards are on disk."""
    import os
    import signal
    import subprocess
    import time

    arguments = ["index", "--model", "shapes_vgg", "--init-seed", "0", "--layers", "relu2_2,relu3_2", "--shapes",
                 "320", "--seed", "2", "--k", "3", "--batch-size", "8", "--shard-size", "16", "--quiet"]
    shards = tmp_path / "killed" / "shards" / "search"
    child = subprocess.Popen([sys.executable, "-m", "minicnn", *arguments, "--out", str(tmp_path / "killed")],
                             env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 300
    while len(list(shards.glob("*.npz"))) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = sorted(path.name for path in shards.glob("*.npz"))
    assert 2 <= len(finished) < 20, finished  # killed half-way: some shards done, not all
    assert main(arguments + ["--out", str(tmp_path / "killed")]) == 0
    assert main(arguments + ["--out", str(tmp_path / "whole")]) == 0
    assert_same_contents(folder_contents(tmp_path / "killed"), folder_contents(tmp_path / "whole"))
