"""The dataset index: dataset search and Network Dissection over whole image collections, one pass
for every unit, resumable, mergeable, and distributed on Dask (`minicnn index`, `minicnn dissect`).

    from minicnn.index import ModelSpec, ShapesSource, build_index, load_index
    build_index(ModelSpec("shapes_vgg"), ShapesSource(2000, seed=1), ["relu3_2"], "idx", k=9)
    load_index("idx").top("relu3_2", 5)    # [Hit(image_id, position, activation, box), ...] best first

Modules: sources (a folder of images, the shapes generator), broden (Broden datasets: reader and the
shapes export), topk (the per-batch top-k of every channel, exactly mergeable), dissect (exact
streaming thresholds and IoU tallies), store (the files, load_index), run (shards, resume, local and
Dask schedulers), model (which network, loaded once per worker), command (the CLI), bench.
"""
from .broden import BrodenSource, write_shapes_broden
from .model import GivenModel, ModelSpec
from .run import build_index, dissect_source, load_dissection
from .sources import FolderSource, ShapesSource, imagenet_preprocessing, shapes_preprocessing
from .store import Hit, Index, load_index

__all__ = ["BrodenSource", "write_shapes_broden", "GivenModel", "ModelSpec", "build_index", "dissect_source",
           "load_dissection", "FolderSource", "ShapesSource", "imagenet_preprocessing", "shapes_preprocessing", "Hit",
           "Index", "load_index"]
