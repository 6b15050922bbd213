"""The Dask scheduler against the local one: on a LocalCluster of 2 worker processes (one thread
each) the index and the dissection are the local run's, file for file; a worker killed in the middle
of a shard costs a re-run of that shard and nothing else; `scheduler="dask"` starts its own cluster."""
import os
import signal
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from minicnn import models  # noqa: E402
from minicnn.index import ShapesSource, build_index, dissect_source  # noqa: E402
from minicnn.index.store import read_arrays, read_manifest  # noqa: E402

# the killing source below is defined here: send it to the workers by value, not by module name
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LAYERS = ["relu2_2", "relu3_2"]
OPTIONS = dict(batch_size=8, shard_size=16, progress=False)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


def arrays_of(folder, name):
    return read_arrays(Path(folder) / name)


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_same_shards(a, b):
    names = sorted(p.relative_to(a).as_posix() for p in Path(a).rglob("shards/*/*.npz"))
    assert names == sorted(p.relative_to(b).as_posix() for p in Path(b).rglob("shards/*/*.npz"))
    for name in names:
        assert_same_arrays(arrays_of(a, name), arrays_of(b, name))


def test_a_local_cluster_gives_the_local_index_and_dissection(cluster, tmp_path):
    net, source = models.shapes_vgg(seed=2), ShapesSource(56, seed=7)
    build_index(net, source, LAYERS, tmp_path / "local", k=4, **OPTIONS)
    build_index(net, source, LAYERS, tmp_path / "dask", k=4, scheduler="dask", address=cluster.scheduler_address,
                **OPTIONS)
    assert_same_arrays(arrays_of(tmp_path / "local", "index.npz"), arrays_of(tmp_path / "dask", "index.npz"))
    assert read_manifest(tmp_path / "local") == read_manifest(tmp_path / "dask")
    assert_same_shards(tmp_path / "local", tmp_path / "dask")

    local = dissect_source(net, source, ["relu3_2"], tmp_path / "dis-local", **OPTIONS)
    dask = dissect_source(net, source, ["relu3_2"], tmp_path / "dis-dask", scheduler="dask",
                          address=cluster.scheduler_address, **OPTIONS)
    assert local["relu3_2"].table == dask["relu3_2"].table
    assert_same_arrays(arrays_of(tmp_path / "dis-local", "dissection.npz"),
                       arrays_of(tmp_path / "dis-dask", "dissection.npz"))
    assert (tmp_path / "dis-local" / "dissection-relu3_2.csv").read_text() == \
           (tmp_path / "dis-dask" / "dissection-relu3_2.csv").read_text()


class KillingSource:
    """A source whose worker process dies (SIGKILL) the first time it reads image `fail_at`."""

    def __init__(self, source, fail_at, marker):
        self.source, self.fail_at, self.marker = source, fail_at, str(marker)

    def __len__(self):
        return len(self.source)

    def __getattr__(self, name):
        return getattr(self.source, name)

    def part(self, start, stop):
        return KillingPart(self.source.part(start, stop), self.fail_at, self.marker)


class KillingPart(NamedTuple):
    part: object
    fail_at: int
    marker: str

    def batches(self, batch_size, with_concepts=False):
        for batch in self.part.batches(batch_size, with_concepts):
            if self.fail_at in batch.ids.tolist() and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def test_a_worker_killed_mid_run_costs_a_rerun_of_its_shard(cluster, tmp_path):
    net, source = models.shapes_vgg(seed=2), ShapesSource(48, seed=8)
    build_index(net, source, LAYERS, tmp_path / "local", k=4, **OPTIONS)
    marker = tmp_path / "killed"
    build_index(net, KillingSource(source, 27, marker), LAYERS, tmp_path / "dask", k=4, scheduler="dask",
                address=cluster.scheduler_address, **OPTIONS)
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker, not this process, died
    assert_same_arrays(arrays_of(tmp_path / "local", "index.npz"), arrays_of(tmp_path / "dask", "index.npz"))
    assert read_manifest(tmp_path / "local") == read_manifest(tmp_path / "dask")
    assert_same_shards(tmp_path / "local", tmp_path / "dask")


def test_scheduler_dask_starts_its_own_cluster_of_workers(tmp_path):
    net, source = models.shapes_vgg(seed=2), ShapesSource(24, seed=9)
    build_index(net, source, ["relu3_2"], tmp_path / "local", k=3, **OPTIONS)
    build_index(net, source, ["relu3_2"], tmp_path / "dask", k=3, scheduler="dask", workers=2, **OPTIONS)
    assert_same_arrays(arrays_of(tmp_path / "local", "index.npz"), arrays_of(tmp_path / "dask", "index.npz"))


def test_an_address_without_the_dask_scheduler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is for the dask scheduler"):
        build_index(models.shapes_vgg(seed=2), ShapesSource(8), ["relu3_2"], tmp_path, address="tcp://127.0.0.1:1",
                    **OPTIONS)
