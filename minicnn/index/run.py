"""Running a pass over a source: shards, resume, and the local or Dask scheduler.

The image ids 0 .. N-1 are cut into shards of `shard_size` ids (a multiple of `batch_size`, so every
shard is made of whole batches and any split runs exactly the batches of one single pass). A job
(SearchJob, HistogramJob, SelectJob, TallyJob) turns one batch's activations into a partial result
per layer, and merges two partial results EXACTLY (top-k selection with a total order, or integer
counts that add), so

    merge(shard A, shard B) == one pass over A and B      (in any order, on any machine)

Each finished shard is written to its own file; a run that finds them skips them (resume).
The local scheduler runs the shards one after another in this process; `scheduler="dask"` makes each
shard a task on a dask.distributed cluster (a LocalCluster of `workers` processes, or the cluster at
`address`), each worker loads the model once (model.loaded), shard results come back to be written,
and the partial results merge in a tree on the cluster. A task whose worker dies runs again elsewhere.
"""
import contextlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_choice, check_int_at_least, check_number
from ..network import Network
from ..viz.attribution import check_images, eval_mode
from ..viz.search import check_spatial_layer
from . import dissect as streaming
from .model import GivenModel, ModelSpec, loaded, weights_sha256
from .store import (field_to_json, open_run_folder, read_arrays, read_manifest, shard_path, write_arrays,
                    write_json)
from .topk import TopK, batch_topk, merge_topk

SCHEDULERS = ("local", "dask")


# ----------------------------------------------------------------------------------------------
# jobs: what one batch contributes, and how two contributions merge


class SearchJob(NamedTuple):
    """Dataset search: per layer, the top-k TopK of every channel."""

    layers: tuple
    k: int
    name = "search"
    record = TopK
    needs_concepts = False

    def batch(self, outputs, batch):
        return {layer: batch_topk(outputs[layer], batch.ids, self.k) for layer in self.layers}

    @staticmethod
    def merge_one(a, b):
        return merge_topk(a, b)


class HistogramJob(NamedTuple):
    """Dissection pass 1: per layer, counts of (unit, top 16 bits of the value's key)."""

    layers: tuple
    name = "dissect-1-histogram"
    record = streaming.Counts
    needs_concepts = False

    def batch(self, outputs, batch):
        return {layer: streaming.prefix_counts(streaming.check_float32(outputs[layer], layer)) for layer in self.layers}

    @staticmethod
    def merge_one(a, b):
        return streaming.add_counts(a, b)


class SelectJob(NamedTuple):
    """Dissection pass 2: per layer, counts of (unit, full key) inside the buckets holding ranks r, r + 1."""

    layers: tuple
    buckets: dict  # {layer: (K, 2) uint64}
    name = "dissect-2-select"
    record = streaming.Counts
    needs_concepts = False

    def batch(self, outputs, batch):
        return {layer: streaming.bucket_counts(outputs[layer], self.buckets[layer]) for layer in self.layers}

    @staticmethod
    def merge_one(a, b):
        return streaming.add_counts(a, b)


class TallyJob(NamedTuple):
    """Dissection pass 3: per layer, the intersection and area counts of S_k = up-sampled A_k > T_k."""

    layers: tuple
    thresholds: dict  # {layer: (K,) float32}
    n_concepts: int
    name = "dissect-3-tally"
    record = streaming.Tally
    needs_concepts = True

    def batch(self, outputs, batch):
        return {layer: streaming.tally_batch(outputs[layer], self.thresholds[layer], batch.concepts, self.n_concepts)
                for layer in self.layers}

    @staticmethod
    def merge_one(a, b):
        return streaming.add_tallies(a, b)


class ShardResult(NamedTuple):
    """partial: {layer: record} (None when no image of the shard could be read); images: how many were
    read; skipped: [(image id, name, reason), ...]."""

    partial: dict
    images: int
    skipped: list


def compute_shard(job, spec, part, batch_size, on_batch=None):
    """Run `job` over one shard: one forward pass per batch, through every layer of the job at once."""
    net, _ = loaded(spec)
    result = ShardResult(None, 0, [])
    for batch in part.batches(batch_size, with_concepts=job.needs_concepts):
        partial = None
        if len(batch.ids):
            check_images(net, batch.images, "images")
            with eval_mode(net):
                outputs = net.activations(batch.images, list(job.layers))
            partial = job.batch(outputs, batch)
        result = merge_results(job, result, ShardResult(partial, len(batch.ids), list(batch.skipped)))
        if on_batch is not None:
            on_batch(len(batch.ids) + len(batch.skipped))
    return result


def merge_results(job, a, b):
    """Two shards' results as one: partials merged layer by layer, counts added, skipped lists joined."""
    if a.partial is None or b.partial is None:
        partial = a.partial if b.partial is None else b.partial
    else:
        partial = {layer: job.merge_one(a.partial[layer], b.partial[layer]) for layer in job.layers}
    return ShardResult(partial, a.images + b.images, sorted(a.skipped + b.skipped))


def save_shard(path, job, result):
    arrays = {"run.images": np.array(result.images, dtype=np.int64),
              "run.skipped_ids": np.array([s[0] for s in result.skipped], dtype=np.int64),
              "run.skipped_names": np.array([s[1] for s in result.skipped], dtype=str),
              "run.skipped_reasons": np.array([s[2] for s in result.skipped], dtype=str)}
    for layer, record in (result.partial or {}).items():
        arrays.update({f"layer.{layer}.{field}": value for field, value in record._asdict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_arrays(path, arrays)


def load_shard(path, job):
    arrays = read_arrays(path)
    skipped = [(int(i), str(n), str(r)) for i, n, r in
               zip(arrays["run.skipped_ids"], arrays["run.skipped_names"], arrays["run.skipped_reasons"])]
    partial = None
    if f"layer.{job.layers[0]}.{job.record._fields[0]}" in arrays:
        partial = {layer: job.record(*(arrays[f"layer.{layer}.{field}"] for field in job.record._fields))
                   for layer in job.layers}
    return ShardResult(partial, int(arrays["run.images"]), skipped)


# ----------------------------------------------------------------------------------------------
# schedulers


class Plan(NamedTuple):
    """How the ids 0 .. count-1 are cut: batches of batch_size, shards of shard_size (whole batches)."""

    count: int
    batch_size: int
    shard_size: int

    @property
    def shards(self):
        return [(start, min(start + self.shard_size, self.count)) for start in range(0, self.count, self.shard_size)]


def make_plan(count, batch_size, shard_size):
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    shard_size = check_int_at_least(shard_size, "shard_size", 1)
    if shard_size % batch_size:
        raise ValueError(f"shard_size must be a multiple of batch_size ({batch_size}), so that every shard is made of "
                         f"whole batches; got {shard_size}")
    return Plan(count, batch_size, shard_size)


@contextlib.contextmanager
def scheduler_session(scheduler="local", workers=2, address=None):
    """None for the local scheduler; for "dask", a dask.distributed Client joined to the scheduler at
    `address`, or to a new LocalCluster of `workers` processes with one thread each (BLAS and Numba
    kept to one thread per worker), closed at the end."""
    check_choice(scheduler, "scheduler", SCHEDULERS)
    if scheduler == "local" and address is not None:
        raise ValueError(f"address {address!r} is for the dask scheduler: pass scheduler=\"dask\" with it")
    if scheduler == "local":
        yield None
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("the dask scheduler needs dask.distributed: pip install -e \".[dask]\"") from None
    if address is not None:
        with Client(address) as client:
            yield client
        return
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


def local_cluster(workers):
    """A dask.distributed LocalCluster of `workers` processes with one thread each, on 127.0.0.1; BLAS
    and Numba kept to one thread per worker so that the workers do not fight over the cores."""
    from dask.distributed import LocalCluster

    one_thread = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "MKL_NUM_THREADS")}
    return LocalCluster(n_workers=check_int_at_least(workers, "workers", 1), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", env=one_thread)


def run_job(job, spec, source, plan, folder, client=None, progress=True):
    """Run `job` over every shard of `plan` whose file is not in `folder` yet -- in this process, or as
    tasks of the Dask `client` -- then merge all shards. Returns the ShardResult of the whole source."""
    for leftover in Path(folder).glob(f"shards/{job.name}/.*.partial"):  # a killed run's half-written file
        leftover.unlink()
    todo = [shard for shard in plan.shards if not shard_path(folder, job.name, shard).is_file()]
    total = sum(stop - start for start, stop in todo)
    with tqdm(total=total, desc=job.name, unit="image", disable=not progress or not todo, smoothing=0.1) as bar:
        if client is None:
            result = _run_local(job, spec, source, plan, folder, todo, bar)
        else:
            result = _run_dask(job, spec, source, plan, folder, todo, bar, client)
    for shard in plan.shards:  # the shards finished by an earlier, interrupted run
        if shard not in todo:
            result = merge_results(job, result, load_shard(shard_path(folder, job.name, shard), job))
    return result


def _run_local(job, spec, source, plan, folder, todo, bar):
    total = ShardResult(None, 0, [])
    for shard in todo:
        result = compute_shard(job, spec, source.part(*shard), plan.batch_size, on_batch=bar.update)
        save_shard(shard_path(folder, job.name, shard), job, result)
        total = merge_results(job, total, result)
    return total


def _run_dask(job, spec, source, plan, folder, todo, bar, client):
    """Each shard a task; each result written as it arrives (the resume points); all merged in a tree."""
    from dask.distributed import as_completed

    if not todo:
        return ShardResult(None, 0, [])
    [model] = client.scatter([spec], broadcast=True, hash=False)  # sent to each worker once, not with every task
    pending = {client.submit(compute_shard, job, model, source.part(*shard), plan.batch_size, pure=False): shard
               for shard in todo}
    merged = _tree_merge(client, job, list(pending))
    for future in as_completed(list(pending)):
        shard = pending.pop(future)  # no reference left here: the cluster frees it once merged
        save_shard(shard_path(folder, job.name, shard), job, future.result())
        bar.update(shard[1] - shard[0])
    return merged.result()


def _tree_merge(client, job, futures):
    """Merge the futures' results pairwise, level after level, on the cluster; returns one future."""
    level = list(futures)
    while len(level) > 1:
        merged = [client.submit(merge_results, job, a, b, pure=False) for a, b in zip(level[0::2], level[1::2])]
        level = merged + level[len(merged) * 2:]
    return level[0] if level else None


# ----------------------------------------------------------------------------------------------
# the two runs: dataset search and dissection


def _prepare(model, source, layers, scheduler):
    """(spec, net, layers as a tuple, {layer: ReceptiveField}) with every argument checked."""
    check_choice(scheduler, "scheduler", SCHEDULERS)
    if isinstance(model, Network):
        spec = GivenModel(model, "network", source.preprocessing)
    elif isinstance(model, (ModelSpec, GivenModel)):
        spec = model
    else:
        raise TypeError(f"model must be a ModelSpec, a GivenModel or a Network, got {type(model).__name__}")
    net, _ = loaded(spec)
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer to index")
    fields = {layer: check_spatial_layer(net, layer) for layer in layers}
    return spec, net, layers, fields


def _settings(kind, spec, net, source, layers, plan, **extra):
    preprocessing = loaded(spec)[1]
    return {"kind": kind,
            "model": {"name": spec.name, "weights_sha256": weights_sha256(net), "preprocessing": preprocessing.describe()},
            "layers": list(layers), "source": source.describe(), "batch_size": plan.batch_size,
            "shard_size": plan.shard_size, **extra}


def _default_sizes(source, batch_size, shard_size):
    if batch_size is None:
        batch_size = 64 if max(source.input_hw) <= 64 else 8
    return batch_size, (16 * batch_size if shard_size is None else shard_size)


def _begin(folder, settings, source):
    manifest = open_run_folder(folder, settings)
    if settings["source"]["kind"] == "images" and not (Path(folder) / "images.txt").is_file():
        (Path(folder) / "images.txt").write_text("".join(name + "\n" for name in source.names))
    return manifest


def build_index(model, source, layers, out, k=9, batch_size=None, shard_size=None, scheduler="local", workers=2,
                address=None, progress=True):
    """Dataset search over a whole source for every channel of every layer, written to the folder `out`.

    model:  a ModelSpec (by name), a GivenModel or a Network (then source.preprocessing is its input);
    source: a FolderSource, ShapesSource or BrodenSource; layers: layer names with a receptive field.
    Resumes an unfinished run with the same settings in `out`; refuses a folder holding another one.
    Returns the Index (load_index(out)).
    """
    from .store import load_index

    spec, net, layers, fields = _prepare(model, source, layers, scheduler)
    k = check_int_at_least(k, "k", 1)
    plan = make_plan(len(source), *_default_sizes(source, batch_size, shard_size))
    settings = _settings("search", spec, net, source, layers, plan, k=k)
    manifest = _begin(out, settings, source)
    with scheduler_session(scheduler, workers, address) as client:
        result = run_job(SearchJob(layers, k), spec, source, plan, out, client, progress)
    if result.partial is None:
        raise ValueError(f"no image of the source could be read ({len(result.skipped)} skipped, e.g. "
                         f"{result.skipped[:1]}): there is nothing to index")
    write_arrays(Path(out) / "index.npz", {f"layer.{layer}.{field}": value for layer, record in result.partial.items()
                                           for field, value in record._asdict().items()})
    manifest.update(complete=True, num_images=result.images, input_hw=list(source.input_hw),
                    receptive_fields={layer: field_to_json(field) for layer, field in fields.items()},
                    skipped=[{"image_id": i, "name": n, "reason": r} for i, n, r in result.skipped])
    write_json(Path(out) / "manifest.json", manifest)
    return load_index(out)


def dissect_source(model, source, layers, out, quantile=0.005, iou_threshold=0.04, batch_size=None, shard_size=None,
                   scheduler="local", workers=2, address=None, progress=True):
    """Network Dissection of every unit of `layers` over a source with concept masks (ShapesSource or
    BrodenSource), streamed in three resumable passes (minicnn.index.dissect); written to `out`.

    Returns {layer: minicnn.viz.dissection.Dissection}, the numbers viz.dissection.dissect gives.
    """
    if not 0 < check_number(quantile, "quantile") < 1:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile!r}")
    iou_threshold = check_number(iou_threshold, "iou_threshold", low=0, high=1)
    if not hasattr(source, "concept_names"):
        raise ValueError(f"dissection needs concept masks: a shapes or Broden source, not a {source.kind} source")
    spec, net, layers, _ = _prepare(model, source, layers, scheduler)
    plan = make_plan(len(source), *_default_sizes(source, batch_size, shard_size))
    settings = _settings("dissection", spec, net, source, layers, plan, quantile=quantile)
    manifest = _begin(out, settings, source)
    names = tuple(source.concept_names)
    with scheduler_session(scheduler, workers, address) as client:
        run = dict(spec=spec, source=source, plan=plan, folder=out, client=client, progress=progress)
        prefixes = run_job(HistogramJob(layers), **run)
        if prefixes.partial is None:
            raise ValueError("no image of the source could be read: there is nothing to dissect")
        ranks = {layer: streaming.quantile_ranks(prefixes.partial[layer], net_channels(prefixes, layer), quantile)
                 for layer in layers}
        selected = run_job(SelectJob(layers, {layer: r.buckets for layer, r in ranks.items()}), **run)
        thresholds = {layer: streaming.thresholds_from_counts(ranks[layer], selected.partial[layer])
                      for layer in layers}
        tallies = run_job(TallyJob(layers, thresholds, len(names)), **run)
    arrays = {f"layer.{layer}.thresholds": thresholds[layer] for layer in layers}
    arrays.update({f"layer.{layer}.{field}": value for layer, record in tallies.partial.items()
                   for field, value in record._asdict().items()})
    write_arrays(Path(out) / "dissection.npz", arrays)
    manifest.update(complete=True, num_images=prefixes.images, concept_names=list(names),
                    skipped=[{"image_id": i, "name": n, "reason": r} for i, n, r in prefixes.skipped])
    write_json(Path(out) / "manifest.json", manifest)
    results = load_dissection(out, iou_threshold)
    for layer, dissection in results.items():
        write_table(Path(out) / f"dissection-{layer}.csv", dissection)
    return results


def net_channels(result, layer):
    """K of a layer, from pass 1's counts (every unit has at least one value)."""
    return int(result.partial[layer].units.max()) + 1


def load_dissection(folder, iou_threshold=0.04):
    """{layer: Dissection} of a finished `minicnn dissect` run in `folder`."""
    from ..viz.dissection import dissection_from_counts

    manifest = read_manifest(folder)
    if manifest["settings"].get("kind") != "dissection" or not manifest.get("complete"):
        raise ValueError(f"{folder} holds no finished dissection (run `minicnn dissect` again to finish it)")
    arrays = read_arrays(Path(folder) / "dissection.npz")
    names = tuple(manifest["concept_names"])
    return {layer: dissection_from_counts(
                tuple(arrays[f"layer.{layer}.{field}"] for field in streaming.Tally._fields),
                arrays[f"layer.{layer}.thresholds"], names, layer, manifest["settings"]["quantile"], iou_threshold)
            for layer in manifest["settings"]["layers"]}


def write_table(path, dissection):
    """The dissection table as CSV: unit, concept, iou, is_detector."""
    lines = ["unit,concept,iou,is_detector"] + [f"{row.unit},{row.concept},{row.iou:.6f},{int(row.is_detector)}"
                                                for row in dissection.table]
    Path(path).write_text("\n".join(lines) + "\n")
