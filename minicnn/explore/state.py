"""What the explorer computes, with no web framework in sight: an Explorer holds one model, its dataset
and the images the pages sent, and answers each question of the page with plain Python values.

    explorer = Explorer("shapes_vgg", net, cam_net, CLASS_NAMES, "shapes", dataset)   # or server.build_explorer
    image = explorer.add_image(png_bytes, "cat.png")   # an Image: the network input, shown RGB, notes
    explorer.predict(image)                            # the top-5, as `minicnn explain` prints it
    explorer.attribution(image, target, "gradcam")     # a map: the same function `minicnn explain` calls
    explorer.activations(image, "relu1_1")             # (K, h, w) every channel of one layer
    explorer.unit("relu3_2", 5)                        # its top-9 patches over the dataset (viz.search.Patch)
    explorer.dot_product(image, "conv1_1", f, i, j)    # w . x + b with every term
    explorer.start_ascent("relu3_2", 5)                # a Job: long work off the request, with progress

The network keeps what its last forward pass needs for backward, so two requests must not run one
network at once. Three twins share the same weight arrays, each under its own lock: `net` for the
interactive questions (milliseconds on the shapes models), `unit_net` for the dataset search and the
DeconvNet of the unit view, `worker_net` for long work in one worker thread (occlusion, gradient
ascent, dissection). So an occlusion never stalls the camera, and a dissection never stalls a unit.

Errors a user can cause (an unknown layer, channel or class, an image that is not one) raise
ExplorerError with an HTTP status and, where it helps, the valid names.
"""
import copy
import itertools
import tempfile
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import explain, user_input
from ..layers import Conv2d, ReLU
from . import numbers

MAX_UPLOAD_BYTES = 8 * 1024 * 1024   # a larger upload is refused (413)
KEPT_IMAGES = 64                      # uploaded / camera images remembered, oldest forgotten first
TOP_K = 9                             # patches per unit
DISSECT_IMAGES = 300                  # dataset images of Network Dissection (shapes only)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ExplorerError(Exception):
    """A request the explorer cannot answer: `status` (404 unknown name, 400 bad value, 413 too large,
    415 not an image), the message, and the valid names when there are some."""

    def __init__(self, status, message, valid=None):
        super().__init__(message)
        self.status, self.message, self.valid = status, message, valid


class Image(NamedTuple):
    """An image as the network sees it: x (1, 3, H, W) its input, display (3, H, W) RGB in [0, 1] of the
    same pixels, id (how the page names it), name (file or dataset name), notes (conversions made)."""

    id: str
    name: str
    x: np.ndarray
    display: np.ndarray
    notes: list


class Dataset(NamedTuple):
    """Images held in memory, searched on the spot for a unit's top patches: inputs (N, 3, H, W),
    displays (N, 3, H, W) RGB, names (N,), description, and the ShapesBatch when the images come with
    concept masks (dissection)."""

    inputs: np.ndarray
    displays: np.ndarray
    names: tuple
    description: str
    shapes_batch: object = None

    def input(self, n):
        """(1, 3, H, W): image n as it goes into the network."""
        return self.inputs[n:n + 1]

    def display(self, n):
        """(3, H, W) RGB in [0, 1]: image n as the network sees it."""
        return self.displays[n]


class IndexedDataset:
    """The images of a minicnn.index index, read from its source when asked for (the same interface as
    Dataset; the unit view reads the index's top hits instead of searching)."""

    shapes_batch = None

    def __init__(self, index):
        self.index = index
        self.names = tuple(index.name_of(n) for n in range(index.num_images))
        self.description = f"the index at {index.folder} ({index.num_images} images)"

    def input(self, n):
        return self.index.network_input(n)[None]

    def display(self, n):
        return self.index.display(n)


def twin(net):
    """A second Network over the same parameter arrays: its own forward records, so two threads can run
    `net` and its twin at once. Nothing is copied but the small per-layer bookkeeping."""
    shared = {id(value): value for value in net.named_parameters().values()}
    return copy.deepcopy(net, shared)


# ----------------------------------------------------------------------------------------------
# jobs: long work off the request thread


class Job:
    """Long work in the worker thread: progress (done of total), state ("queued", "running", "done",
    "error"), and its result or error message. The page polls it."""

    def __init__(self, kind):
        self.id, self.kind = uuid.uuid4().hex[:12], kind
        self.state, self.done, self.total = "queued", 0, 0
        self.result, self.error = None, None

    def progress(self, done, total):
        self.done, self.total = int(done), int(total)

    def as_json(self):
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error}


# ----------------------------------------------------------------------------------------------
# the explorer


class Explorer:
    """One model, its dataset, the images sent to it, and every computation the page asks for.

    name: "shapes_vgg", "shapes_cam", "alexnet" or "vgg16"; net: the network predicted with; cam_net:
    a GAP + linear network for CAM (shapes_cam; shapes_vgg borrows it as `minicnn explain` does) or None;
    mode: "shapes" (64 x 64 inputs in [0, 1]) or ImageNet preprocessing "torch" / "caffe";
    dataset: a Dataset, or None; index: a minicnn.index Index of this network (then dataset is its
    images), or None.
    """

    def __init__(self, name, net, cam_net, class_names, mode, dataset=None, index=None):
        self.name, self.class_names, self.mode = name, tuple(class_names), mode
        self.net, self.cam_net = net.eval(), cam_net
        self.lock = threading.Lock()          # for net and cam_net (interactive, milliseconds)
        self.unit_net, self.unit_lock = twin(net), threading.Lock()        # the dataset search, DeconvNet
        self.worker_net, self.worker_lock = twin(net), threading.Lock()    # long work in the worker thread
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minicnn-explore-job")
        self.index = index
        self.dataset = IndexedDataset(index) if index is not None else dataset
        self.images = OrderedDict()
        self.images_lock = threading.Lock()
        self.jobs, self.jobs_lock = {}, threading.Lock()
        self.searches = {}      # layer -> {channel: [Patch]}
        self.dissections = {}   # layer -> Job
        self.counter = itertools.count()
        side = 64 if mode == "shapes" else 224
        self.input_size = side
        with self.lock:
            outputs = self.net.activations(np.zeros((1, 3, side, side), self.net.dtype), self.net.names)
        self.layer_shapes = {name: tuple(outputs[name].shape[1:]) for name in self.net.names}
        self.spatial = [name for name in self.net.names if len(self.layer_shapes[name]) == 3]
        self.methods = [m for m in explain.METHODS if m != "cam" or cam_net is not None]
        self.occlusion_box = (12, 4) if mode == "shapes" else (48, 16)

    def close(self):
        self.worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the model
    def describe(self):
        """GET /api/model: the name, the layers with their output shapes, the classes, the methods."""
        layers = [{"name": name, "shape": list(self.layer_shapes[name]), "kind": type(self.net[name]).__name__,
                   "conv": self.conv_of(name, required=False) is not None, "spatial": name in self.spatial}
                  for name in self.net.names]
        dataset = None if self.dataset is None else {"count": len(self.dataset.names),
                                                      "description": self.dataset.description}
        return {"name": self.name, "input": [3, self.input_size, self.input_size], "layers": layers,
                "classes": list(self.class_names), "methods": self.methods,
                "method_titles": {m: self.method_title(m) for m in self.methods}, "dataset": dataset,
                "index": self.index is not None, "max_upload_bytes": MAX_UPLOAD_BYTES}

    def method_title(self, method):
        return explain.method_title(method, self.prepared(None))

    def check_layer(self, layer, spatial=False):
        valid = self.spatial if spatial else self.net.names
        if layer not in valid:
            what = "layers with feature maps" if spatial else "layers"
            raise ExplorerError(404, f"unknown layer {layer!r}; valid {what} are: {', '.join(valid)}", valid)
        return layer

    def check_channel(self, layer, channel):
        count = self.layer_shapes[layer][0]
        if not (isinstance(channel, int) and 0 <= channel < count):
            raise ExplorerError(404, f"unknown channel {channel!r} of layer {layer!r}: it has {count} channels, "
                                     f"valid channels are 0 to {count - 1}", list(range(count)))
        return channel

    def check_method(self, method):
        if method not in self.methods:
            raise ExplorerError(404, f"unknown method {method!r} for {self.name}; valid methods are: "
                                     f"{', '.join(self.methods)}", self.methods)
        return method

    def resolve_target(self, target, image):
        """A class name or index (as `minicnn explain --target`), or None/"" for the top-1 class."""
        if target is None or str(target).strip() == "":
            with self.lock:
                return int(self.net.forward(image.x)[0].argmax())
        try:
            return user_input.resolve_target(str(target).strip(), self.class_names)
        except user_input.UserError as error:
            raise ExplorerError(404, str(error), list(self.class_names)) from None

    # ------------------------------------------------------------------ images
    def add_image(self, data, filename="upload", keep=True):
        """Bytes of an uploaded image file -> an Image, kept under a new id (keep=False: a camera frame,
        used once). Read as `minicnn explain` reads a file (user_input.read_image), then made into the network
        input as explain does."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise ExplorerError(413, f"the image is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES} bytes "
                                     f"({MAX_UPLOAD_BYTES // 2**20} MiB)")
        if not data:
            raise ExplorerError(400, "the image field is empty: send an image file (PNG, JPEG, ...)")
        suffix = Path(filename).suffix if Path(filename).suffix.lower() in IMAGE_SUFFIXES else ".img"
        with tempfile.TemporaryDirectory(prefix="minicnn-explore-") as folder:
            path = Path(folder) / (Path(filename).stem[:40] + suffix if filename else "upload" + suffix)
            path.write_bytes(data)
            try:
                image, notes = user_input.read_image(path)
                x, display, more = self.network_input(image, path)
            except user_input.UserError as error:  # its message names the temporary file: name the upload instead
                message = str(error).replace(str(path), Path(filename).name)
                raise ExplorerError(415, f"{Path(filename).name} is not an image minicnn can read: {message}") from None
        image = Image(f"upload-{next(self.counter)}-{uuid.uuid4().hex[:6]}", Path(filename).name, x, display,
                      notes + more)
        if not keep:
            return image
        with self.images_lock:
            self.images[image.id] = image
            while len(self.images) > KEPT_IMAGES:
                self.images.popitem(last=False)
        return image

    def network_input(self, image, path):
        """(x (1, 3, H, W), display (3, H, W), notes) from a (3, H, W) image, as `minicnn explain` makes them."""
        if self.mode == "shapes":
            x, notes = user_input.shapes_input(image, path)
            return x, x[0], notes
        notes = user_input.imagenet_notes(Path(path).name, image.shape[1:])
        x, display = user_input.imagenet_input(image, self.mode)
        return x, display[0], notes

    def image(self, image_id):
        """The Image called image_id: "dataset-N" or an id add_image returned."""
        if isinstance(image_id, str) and image_id.startswith("dataset-") and self.dataset is not None:
            number = image_id[len("dataset-"):]
            if number.isdigit() and int(number) < len(self.dataset.names):
                n = int(number)
                return Image(image_id, self.dataset.names[n], self.dataset.input(n), self.dataset.display(n), [])
        with self.images_lock:
            if image_id in self.images:
                self.images.move_to_end(image_id)
                return self.images[image_id]
        count = 0 if self.dataset is None else len(self.dataset.names)
        raise ExplorerError(404, f"unknown image {image_id!r}: use dataset-0 to dataset-{count - 1} or the id "
                                 "POST /api/images returned (images are forgotten after "
                                 f"{KEPT_IMAGES} newer ones)")

    def prepared(self, image):
        """The explain.Prepared `minicnn explain` builds for one image (image None: for method titles)."""
        x = None if image is None else image.x
        display = None if image is None else image.display[None]
        return explain.Prepared(self.name, self.net, self.cam_net, x, display, self.class_names, self.occlusion_box, [])

    # ------------------------------------------------------------------ what the network says
    def predict(self, image, k=5):
        """[(class index, name, probability)] of the k most probable classes: imagenet.topk of the scores,
        as `minicnn explain` prints them."""
        from ..imagenet import topk

        with self.lock:
            scores = self.net.forward(image.x)[0]
        return [(self.class_names.index(name), name, probability)
                for name, probability in topk(scores, k, self.class_names)]

    def attribution(self, image, target, method):
        """The (H, W) map of `method` for class `target`: explain.attribution_map, the function explain calls.
        Occlusion takes many forward passes: use start_occlusion for it."""
        self.check_method(method)
        with self.lock:
            return np.asarray(explain.attribution_map(method, self.prepared(image), target), dtype=np.float32)

    def activations(self, image, layer):
        """Every channel of one layer for the image: (K, h, w) (a flat layer: (K,))."""
        self.check_layer(layer)
        with self.lock:
            return self.net.forward(image.x, upto=layer)[0]

    def frame(self, image, target, method, layer):
        """The camera's one round trip: top-5, one map for `target` (None: the top-1 class), one layer."""
        top = self.predict(image)
        target = top[0][0] if target is None else target
        return top, target, self.attribution(image, target, method), self.activations(image, layer)

    # ------------------------------------------------------------------ every number
    def conv_of(self, layer, required=True):
        """The Conv2d whose output `layer` shows: the layer itself, or the conv a ReLU directly follows."""
        index = self.net.names.index(layer)
        candidates = [layer] if isinstance(self.net[layer], Conv2d) else []
        if isinstance(self.net[layer], ReLU) and index > 0 and isinstance(self.net[self.net.names[index - 1]], Conv2d):
            candidates = [self.net.names[index - 1]]
        if candidates:
            return candidates[0]
        if required:
            convs = [name for name in self.net.names if self.conv_of(name, required=False)]
            raise ExplorerError(404, f"layer {layer!r} is not a convolution (nor a ReLU right after one); "
                                     f"valid layers are: {', '.join(convs)}", convs)
        return None

    def check_position(self, layer, i, j):
        _, h, w = self.layer_shapes[layer]
        if not (0 <= i < h and 0 <= j < w):
            raise ExplorerError(404, f"position ({i}, {j}) is outside layer {layer!r}'s {h} x {w} map: "
                                     f"valid rows 0 to {h - 1}, columns 0 to {w - 1}")

    def conv_at(self, image, layer, channel, i, j):
        """Check (layer, channel, i, j); return (the conv behind `layer`, its input for the image (C, H, W),
        its output (F, h, w), the name of the layer whose output is that input, or "image")."""
        self.check_layer(layer)
        conv = self.conv_of(layer)
        self.check_channel(conv, channel)
        self.check_position(conv, i, j)
        index = self.net.names.index(conv)
        source = self.net.names[index - 1] if index else None
        with self.lock:
            before = image.x if source is None else self.net.forward(image.x, upto=source)
            output = self.net.forward(before, after=source, upto=conv)
        return conv, before[0], output[0], source or "image"

    def dot_product(self, image, layer, channel, i, j):
        """Output (channel, i, j) of the conv behind `layer` as w . x + b, with the network's own value and
        the receptive field of (i, j) on the image."""
        from ..shapes import receptive_field, receptive_field_box

        conv, a, output, source = self.conv_at(image, layer, channel, i, j)
        layer_obj = self.net[conv]
        terms = numbers.dot_product(a, layer_obj.params["weight"], layer_obj.params.get("bias"), layer_obj.stride,
                                    layer_obj.padding, channel, i, j)
        field = receptive_field(self.net, upto=conv)[-1]
        box = receptive_field_box(field, i, j, image.x.shape[2:])
        return terms, float(output[channel, i, j]), source, conv, box

    def stamping(self, image, layer, channel, i, j, size=2):
        """The transposed convolution of the conv behind `layer`, stamp by stamp, on a size x size window
        of its output (channel `channel`, top-left (i, j), every other value zero): the stamps, their sum
        and ops.conv_transpose2d of the same window."""
        from .. import ops

        conv, a, output, source = self.conv_at(image, layer, channel, i, j)
        layer_obj = self.net[conv]
        window = np.zeros_like(output)
        window[channel, i:i + size, j:j + size] = output[channel, i:i + size, j:j + size]
        weight = layer_obj.params["weight"]
        printed, total = numbers.stamps(window, weight, layer_obj.stride, layer_obj.padding, a.shape[1:])
        library = ops.conv_transpose2d(window[None], weight, None, layer_obj.stride, layer_obj.padding,
                                       output_padding=_output_padding(a.shape[1:], window.shape[1:], layer_obj))[0]
        return printed, total, library, conv, source

    # ------------------------------------------------------------------ one unit
    def search(self, layer):
        """{channel: [Patch]} of the top-9 dataset images of every channel of `layer` (viz.search), once per layer."""
        from ..viz.search import top_patches_for_channels

        if self.dataset is None:
            raise ExplorerError(404, "this explorer has no dataset to search (start it with --images DIR or --index DIR)")
        with self.unit_lock:
            if layer not in self.searches:
                channels = range(self.layer_shapes[layer][0])
                self.searches[layer] = top_patches_for_channels(self.unit_net, self.dataset.inputs, layer, channels,
                                                                k=TOP_K, progress=False)
            return self.searches[layer]

    def unit(self, layer, channel):
        """The top-9 patches of one unit, best first: [Patch] from viz.search.top_patches (or the index)."""
        self.check_layer(layer, spatial=True)
        self.check_channel(layer, channel)
        if self.index is None:
            return self.search(layer)[channel]
        if layer not in self.index.layers:
            indexed = list(self.index.layers)
            raise ExplorerError(404, f"layer {layer!r} is not in the index; indexed layers are: {', '.join(indexed)}",
                                indexed)
        return self.index.patches(layer, channel)[:TOP_K]

    def patch_picture(self, layer, channel, rank):
        """(3, h, w) RGB crop of the rank-th patch (its receptive field clipped to the image)."""
        hit = self._hit(layer, channel, rank)
        top, bottom, left, right = hit.box
        return self.dataset.display(hit.index)[:, top:bottom, left:right]

    def deconv_picture(self, layer, channel, rank):
        """(3, h, w) the DeconvNet reconstruction of the rank-th patch's maximum, cropped to its field,
        shown with 0 at mid-grey (plot.signal_picture)."""
        from ..plot import signal_picture
        from ..viz.search import deconvnet

        hit = self._hit(layer, channel, rank)
        with self.unit_lock:
            result = deconvnet(self.unit_net, self.dataset.input(hit.index), layer, channel)
        picture = signal_picture(result.crop)
        return picture[::-1] if self.mode == "caffe" else picture

    def _hit(self, layer, channel, rank):
        hits = self.unit(layer, channel)
        if not (isinstance(rank, int) and 0 <= rank < len(hits)):
            raise ExplorerError(404, f"unit {layer}[{channel}] has {len(hits)} patches: valid ranks are 0 to "
                                     f"{len(hits) - 1}", list(range(len(hits))))
        return hits[rank]

    def dissection(self, layer):
        """The Network Dissection job of `layer` (shapes datasets only), started on first request."""
        if self.dataset is None or self.dataset.shapes_batch is None:
            return None
        self.check_layer(layer, spatial=True)
        with self.jobs_lock:
            if layer not in self.dissections:
                self.dissections[layer] = self.start_job("dissection", self._dissect, layer)
            return self.dissections[layer]

    def _dissect(self, job, layer):
        from ..viz.dissection import dissect

        batch = self.dataset.shapes_batch[:DISSECT_IMAGES]
        job.progress(0, 1)
        result = dissect(self.worker_net, batch, layer, progress=False)
        job.progress(1, 1)
        return result

    # ------------------------------------------------------------------ long work
    def start_job(self, kind, work, *args):
        """Run work(job, *args) in the worker thread, on the twin network; returns the Job at once."""
        job = Job(kind)
        self.jobs[job.id] = job

        def run():
            job.state = "running"
            try:
                with self.worker_lock:
                    job.result = work(job, *args)
                job.state = "done"
            except Exception as error:  # reported to the page: the job failed, the server goes on
                job.error, job.state = f"{type(error).__name__}: {error}", "error"
        self.worker.submit(run)
        return job

    def job(self, job_id):
        if job_id not in self.jobs:
            raise ExplorerError(404, f"unknown job {job_id!r}")
        return self.jobs[job_id]

    def start_occlusion(self, image, target):
        """Occlusion (viz.attribution.occlusion with explain's square) as a job; result: the (H, W) heat map."""
        from ..viz.attribution import occlusion

        size, stride = self.occlusion_box

        def work(job):
            net = self.worker_net
            return occlusion(net, image.x, target, size, stride, progress=False, on_progress=job.progress).heatmap[0]
        return self.start_job("occlusion", work)

    def start_ascent(self, layer, channel, steps=None):
        """Gradient ascent on one unit (viz.ascent.activation_max) as a job; result: (3, H, W) RGB picture."""
        from ..imagenet import denormalize
        from ..viz.ascent import activation_max

        self.check_layer(layer)
        self.check_channel(layer, channel)
        side = self.input_size
        shapes = self.mode == "shapes"
        steps = steps or (200 if shapes else 100)
        options = {} if shapes else {"mean": 0.0, "pixel_range": None}

        def work(job):
            result = activation_max(self.worker_net, layer, channel, steps=steps, shape=(3, side, side),
                                    progress=False, on_progress=job.progress, **options)
            image = result.image if shapes else denormalize(result.image, self.mode)
            return np.clip(image, 0, 1), result.objective
        return self.start_job("ascent", work)


def _output_padding(input_hw, output_hw, conv):
    """The output_padding that makes conv_transpose2d give back the conv's input size."""
    from ..shapes import conv_transpose_output_size

    return tuple(int(n - conv_transpose_output_size(m, k, s, p))
                 for n, m, k, s, p in zip(input_hw, output_hw, conv.kernel_size, conv.stride, conv.padding))
