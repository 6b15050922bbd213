"""The index on disk, and reading it back: `load_index(DIR).top(layer, channel)`.

A run's folder:

    manifest.json         what was run (model, weights checksum, layers, k, source, batch and shard
                          size: the "settings"), the facts needed to read the result (channels,
                          receptive fields, input size), the finished shards, skipped files, "complete"
    images.txt            a folder source's file names, one a line: line i is image id i
    shards/<pass>/<start>-<stop>.npz   one finished shard of one pass (the resume points)
    index.npz             the merged search: per layer ids (K, k), activations (K, k), positions (K, k, 2)
    dissection.npz        the merged dissection counts and thresholds; dissection-<layer>.csv its table

Why .npz + JSON: both are read by NumPy and the standard library alone (no extra package, no
pickle: np.load(allow_pickle=False)), every file is written to a temporary name and renamed, so a
run killed at any moment leaves only whole files, and one file per shard means a resumed run (or a
Dask worker on another machine) never writes into a file another process owns. HDF5 or Zarr would
bring a dependency and a single shared file; neither is needed for arrays this small (K x k per layer).
"""
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_int_at_least
from ..shapes import ReceptiveField, receptive_field_box
from .broden import BrodenSource
from .sources import FolderSource, Preprocessing, ShapesSource

FORMAT = "minicnn-index"
VERSION = 1
MANIFEST = "manifest.json"


# ----------------------------------------------------------------------------------------------
# whole files, written atomically


def write_arrays(path, arrays):
    """np.savez to `path` through a temporary file and a rename: the file is whole or absent."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as stream:
        np.savez(stream, **arrays)
    os.replace(temporary, path)


def read_arrays(path):
    """{name: array} of an .npz written by write_arrays (no pickle)."""
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def write_json(path, value):
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(temporary, path)


def read_manifest(folder):
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a minicnn index manifest ({type(error).__name__}: {error})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} version {VERSION} manifest "
                         f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})")
    return manifest


def open_run_folder(folder, settings):
    """The manifest of `folder` for a run with these settings: a new one for an empty or missing folder,
    the existing one to resume when its settings are the same. A folder holding anything else -- an
    index of another model, weights, layer list, k or image source, or files that are no index -- is
    refused with a ValueError naming what differs."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder")
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        differences = [f"{key}: {manifest['settings'].get(key)!r} there, {value!r} now"
                       for key, value in settings.items() if manifest["settings"].get(key) != value]
        if differences:
            raise ValueError(f"{folder} holds a run with other settings, which would be mixed with this one; "
                             f"choose another folder or delete it. Differences: " + "; ".join(differences))
        return manifest
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty and holds no {MANIFEST}: choose an empty or new folder for the index")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "version": VERSION, "settings": settings, "complete": False}
    write_json(folder / MANIFEST, manifest)
    return manifest


def shard_path(folder, job_name, shard):
    start, stop = shard
    return Path(folder) / "shards" / job_name / f"{start:010d}-{stop:010d}.npz"


# ----------------------------------------------------------------------------------------------
# receptive fields in JSON


def field_to_json(field):
    return {"size": list(field.size), "jump": list(field.jump), "start": list(field.start),
            "geometry": [[list(pair) for pair in step] for step in field.geometry]}


def field_from_json(name, value):
    return ReceptiveField(name, tuple(value["size"]), tuple(value["jump"]), tuple(value["start"]),
                          tuple(tuple(tuple(pair) for pair in step) for step in value["geometry"]))


# ----------------------------------------------------------------------------------------------
# reading an index


class Hit(NamedTuple):
    """One of a unit's top images.

    image_id:   the image's id in the source (for a folder: line image_id of images.txt)
    position:   (i, j) of the channel's maximum in the layer's feature map (first one on ties)
    activation: that maximum, a Python float
    box:        (top, bottom, left, right), half-open: the receptive field of (i, j) clipped to the
                network input; network_input[:, top:bottom, left:right] is the crop
    """

    image_id: int
    position: tuple
    activation: float
    box: tuple


class Index:
    """A finished dataset-search index (see load_index)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        if manifest["settings"].get("kind") != "search":
            raise ValueError(f"{self.folder} holds a {manifest['settings'].get('kind')} run, not a dataset-search index")
        if not manifest.get("complete"):
            raise ValueError(f"{self.folder} holds an unfinished index: run the same `minicnn index` command again "
                             "to finish it (it resumes from its last finished shard)")
        self.manifest = manifest
        settings = manifest["settings"]
        self.layers, self.k = tuple(settings["layers"]), settings["k"]
        self.model = settings["model"]
        self.input_hw = tuple(manifest["input_hw"])
        self.num_images = manifest["num_images"]
        self.skipped = manifest["skipped"]
        self.fields = {layer: field_from_json(layer, value) for layer, value in manifest["receptive_fields"].items()}
        arrays = read_arrays(self.folder / "index.npz")
        self._tables = {layer: tuple(arrays[f"layer.{layer}.{name}"] for name in ("ids", "activations", "positions"))
                        for layer in self.layers}
        self._source = None

    def __repr__(self):
        return (f"<Index of {self.model['name']} at {self.folder}: layers {list(self.layers)}, top {self.k} of "
                f"{self.num_images} images>")

    def channels(self, layer):
        """The number of channels (units) of an indexed layer."""
        return self._table(layer)[0].shape[0]

    def _table(self, layer):
        if layer not in self._tables:
            raise KeyError(f"layer {layer!r} is not in this index; indexed layers are {list(self.layers)}")
        return self._tables[layer]

    def top(self, layer, channel):
        """The hits of one unit, best first: activation descending, image id ascending on ties.
        At most k; fewer when the source had fewer readable images."""
        from ..viz.search import check_channel

        ids, activations, positions = self._table(layer)
        channel = check_channel(layer, channel, ids.shape[0])
        hits = []
        for image_id, activation, (i, j) in zip(ids[channel], activations[channel], positions[channel]):
            if image_id < 0:
                break
            box = receptive_field_box(self.fields[layer], int(i), int(j), self.input_hw)
            hits.append(Hit(int(image_id), (int(i), int(j)), float(activation), box))
        return hits

    # ------------------------------------------------------------------ the winners' pixels, afterwards
    @property
    def source(self):
        """The image source, re-opened from the manifest (for crops and reconstructions)."""
        if self._source is None:
            preprocessing = Preprocessing(**self.model["preprocessing"])
            self._source = source_from_description(self.manifest["settings"]["source"], preprocessing, self.folder)
        return self._source

    def name_of(self, image_id):
        """What image `image_id` is: a file name relative to the folder, or the generator's index."""
        return self.source.name_of(check_int_at_least(image_id, "image_id", 0))

    def display(self, image_id):
        """(3, H, W) RGB in [0, 1]: the image as the network sees it, before normalisation."""
        return self.source.display(check_int_at_least(image_id, "image_id", 0))

    def network_input(self, image_id):
        """(C, H, W) float32: the image exactly as it went into the network."""
        return self.source.network_input(check_int_at_least(image_id, "image_id", 0))

    def crops(self, layer, channel):
        """The RGB crop of each hit's receptive field, best first: [(3, h, w), ...]."""
        return [_cut(self.display(hit.image_id), hit.box) for hit in self.top(layer, channel)]

    def patches(self, layer, channel):
        """The hits as minicnn.viz.search.Patch objects, crops cut from the network input: what
        top_patches(net, images, layer, channel, k) returns for the same images."""
        from ..viz.search import Patch, _unclipped_box

        patches = []
        for hit in self.top(layer, channel):
            unclipped = _unclipped_box(self.fields[layer], *hit.position)
            patches.append(Patch(hit.image_id, hit.position, hit.activation, hit.box, unclipped,
                                 _cut(self.network_input(hit.image_id), hit.box).copy()))
        return patches

    def deconvnet(self, net, layer, channel):
        """The DeconvNet reconstruction (minicnn.viz.search.deconvnet) of each hit, best first. `net` must
        be the indexed network (its weights' checksum is checked)."""
        from ..viz.search import deconvnet
        from .model import weights_sha256

        if weights_sha256(net) != self.model["weights_sha256"]:
            raise ValueError(f"net is not the network this index was made with ({self.model['name']}, weights "
                             f"sha256 {self.model['weights_sha256'][:12]}...): its weights differ")
        return [deconvnet(net, self.network_input(hit.image_id)[None], layer, channel)
                for hit in self.top(layer, channel)]


def _cut(image, box):
    top, bottom, left, right = box
    return image[:, top:bottom, left:right]


def source_from_description(description, preprocessing, index_dir=None):
    """Re-open the source a manifest describes (for crops and reconstructions after the run).

    A folder source takes its file names from <index_dir>/images.txt, the listing the run used."""
    kind = description["kind"]
    if kind == "shapes":
        return ShapesSource(description["n"], description["seed"], description["size"], description["distractor"])
    if kind == "images":
        names = (Path(index_dir) / "images.txt").read_text().splitlines() if index_dir is not None else None
        return FolderSource(description["root"], preprocessing, names)
    if kind == "broden":
        return BrodenSource(description["root"], preprocessing)
    if kind == "array":
        raise ValueError("this index was made from an array of images in memory: its pixels are not on disk, so "
                         "crops and reconstructions need that array (index the images as files to get them here)")
    raise ValueError(f"unknown image source kind {kind!r} in the manifest; known kinds are shapes, images, broden")


def load_index(folder):
    """The finished dataset-search index in `folder` (written by `minicnn index` or build_index).

    load_index(DIR).top(layer, channel) -> [Hit(image_id, position, activation, box), ...], best first.
    Crops, patches and DeconvNet reconstructions of the winners: .crops, .patches, .deconvnet.
    """
    return Index(folder)
