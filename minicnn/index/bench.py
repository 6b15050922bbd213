"""Throughput of the dataset index: images per second and peak memory, local or on a LocalCluster.

    python -m minicnn.index.bench --model shapes_vgg --images 2000 --scheduler local
    python -m minicnn.index.bench --model vgg16 --images 64 --scheduler dask --workers 2

shapes_vgg reads the shapes generator (64 x 64); vgg16 (random weights, models.vgg16(seed=0)) reads a
folder of JPEG files (400 x 300, written first into --data) through the ImageNet preprocessing
(decode, resize to 256, centre crop 224, normalise), as a real collection would be. The run indexes
every channel of the layers named in LAYERS, k = 9. Reported: the images/s of the whole run, with the
model already loaded in this process (local) or in every worker (dask; the cluster start and the
model loading are timed apart), and peak resident memory (ru_maxrss) of this process and of each
worker. One JSON line per run is appended to --log.
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .model import ModelSpec, loaded
from .run import build_index, local_cluster
from .sources import FolderSource, ShapesSource

LAYERS = {"shapes_vgg": ["relu1_2", "relu2_2", "relu3_2"], "vgg16": ["features_15", "features_22", "features_29"]}


def peak_megabytes():
    """This process's peak resident memory so far, MB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_jpegs(folder, count, seed=0, size=(300, 400)):
    """`count` JPEG files of smooth colour gradients with noise, (height, width) = size."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]] / max(size)
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        if path.is_file():
            continue
        weights = rng.uniform(-1, 1, (3, 3))
        rgb = np.stack([weights[c, 0] * x + weights[c, 1] * y + weights[c, 2] for c in range(3)], -1)
        rgb = np.clip(0.5 + 0.3 * rgb + rng.normal(0, 0.05, rgb.shape), 0, 1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(path, quality=90)
    return folder


def warm_up(spec, input_hw, layers):
    """Load the model in this (worker) process and run one image through it, so that the timed run
    includes neither the loading nor the first calls of the compiled kernels (read from Numba's cache)."""
    net, _ = loaded(spec)
    net.activations(np.zeros((1, 3, *input_hw), dtype=net.dtype), layers)


def run(model, count, scheduler, workers, out, data, batch_size=None, shard_size=None):
    spec = ModelSpec(model, init_seed=0)
    started = time.perf_counter()
    _, preprocessing = loaded(spec)
    load_seconds = time.perf_counter() - started
    input_hw = (64, 64) if model == "shapes_vgg" else (224, 224)
    if model == "shapes_vgg":
        source = ShapesSource(count, seed=1)
    else:
        source = FolderSource(write_jpegs(data, count), preprocessing, [f"{i:06d}.jpg" for i in range(count)])
    record = {"model": model, "images": count, "scheduler": scheduler, "layers": LAYERS[model],
              "model_load_s": round(load_seconds, 2), "batch_size": batch_size, "shard_size": shard_size}
    sizes = dict(batch_size=batch_size, shard_size=shard_size)
    if scheduler == "local":
        warm_up(spec, input_hw, LAYERS[model])
        started = time.perf_counter()
        build_index(spec, source, LAYERS[model], out, k=9, progress=False, **sizes)
        seconds = time.perf_counter() - started
        record.update(peak_mb_client=round(peak_megabytes()))
    else:
        from dask.distributed import Client

        started = time.perf_counter()
        with local_cluster(workers) as cluster, Client(cluster) as client:
            client.run(warm_up, spec, input_hw, LAYERS[model])
            record["cluster_start_and_model_load_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            build_index(spec, source, LAYERS[model], out, k=9, scheduler="dask", address=cluster.scheduler_address,
                        progress=False, **sizes)
            seconds = time.perf_counter() - started
            peaks = client.run(peak_megabytes)
        record.update(workers=workers, threads_per_worker=1, peak_mb_client=round(peak_megabytes()),
                      peak_mb_workers=[round(v) for v in peaks.values()])
    record.update(seconds=round(seconds, 2), images_per_second=round(count / seconds, 2))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.index.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(LAYERS), required=True)
    parser.add_argument("--images", type=int, required=True, help="number of images")
    parser.add_argument("--scheduler", choices=("local", "dask"), default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: build_index's)")
    parser.add_argument("--shard-size", type=int, help="images per shard (default: build_index's)")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "minicnn-bench-jpegs"),
                        help="folder for the generated JPEG files (vgg16; kept for the next run)")
    parser.add_argument("--log", default="index-bench.jsonl", help="append one JSON line per run here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        record = run(args.model, args.images, args.scheduler, args.workers, out, args.data, args.batch_size,
                     args.shard_size)
    print(json.dumps(record))
    with open(args.log, "a") as log:
        log.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
