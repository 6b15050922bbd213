"""Keras HDF5 weights (Keras 1, 2 and 3 layouts), converted to PyTorch's conventions; h5py imported lazily."""
import math
import re

import numpy as np

from minicnn.checks import check_array

from .limits import FileProblem, check_declared_dtype, check_declared_size, short

# ----------------------------------------------------------------------------------------------
# Keras HDF5
# ----------------------------------------------------------------------------------------------

# Keras weight name -> PyTorch name, for the layers a CNN uses. Keras 1 called kernels W and
# biases b (keras.applications' VGG16 file still does: "block1_conv1_W_1:0").
_KERAS_TO_TORCH_NAMES = {
    "kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
    "moving_mean": "running_mean", "moving_variance": "running_var", "W": "weight", "b": "bias",
}


def keras_kernel_to_torch(kernel):
    """Keras kernels are (*spatial, in, out); PyTorch weights are (out, in, *spatial).

    Conv2D: HWIO -> OIHW; Dense: (in, out) -> (out, in). A 1-D array (bias, BatchNorm) is unchanged.
    """
    if kernel.ndim < 2:
        return kernel
    n = kernel.ndim
    return np.ascontiguousarray(kernel.transpose((n - 1, n - 2) + tuple(range(n - 2))))


def keras_flatten_to_channels_first(w, channels, height, width):
    """Reorder the input columns of the first Dense layer after a Flatten, for channels-first input.

    Keras flattens a (height, width, channels) feature map, so column (h * width + w) * channels + c
    of the (out, in) weight reads pixel (h, w) of channel c. minicnn flattens (channels, height,
    width): that input is column (c * height + h) * width + w. Returns the weight with its columns
    moved accordingly, so the layer computes the same outputs.
    """
    check_array(w, "w", ndim=2)
    if w.shape[1] != channels * height * width:
        raise ValueError(f"w must have {channels}*{height}*{width} = {channels * height * width} "
                         f"columns (channels*height*width), got shape {w.shape}")
    out = w.shape[0]
    by_position = w.reshape(out, height, width, channels)  # [o, h, w, c]
    return np.ascontiguousarray(by_position.transpose(0, 3, 1, 2).reshape(out, -1))


def _import_h5py(path):
    try:
        import h5py
    except ImportError as error:
        raise ImportError(f"{path} is a Keras HDF5 file; reading it needs the h5py package: "
                          "pip install h5py  (or pip install 'minicnn[extra]')") from error
    return h5py


def load_keras_h5(path, budget):
    """Keras HDF5 weights, converted to PyTorch conventions and names ("conv2d.weight").

    Classic layout (Keras 2 / tf.keras, and Keras 3's legacy model.save("x.h5")): attribute
    layer_names (under a group model_weights in model.save's files); in each layer group,
    attribute weight_names ("conv2d/kernel:0", or Keras 1's "conv2d_W_1:0") and a dataset of
    that name. Keras 3 (model.save_weights("x.weights.h5")): layers/<class>/vars/0, 1, ..., the
    layer's own name in the vars group's attribute "name"; only conv and dense layers (a kernel and
    an optional bias) can be told apart there.

    Only hard links are followed: a soft or external link anywhere on the walked path, external
    storage and virtual datasets are refused, so nothing is read from another file. Every
    dataset's declared size is charged to the budget before any is read.
    """
    h5py = _import_h5py(path)
    with h5py.File(path, "r") as h5:
        root = _child(h5, "model_weights", h5py) if _has_link(h5, "model_weights") else h5
        if _has_name_list(root.attrs, "layer_names"):
            found = _keras_classic_datasets(root, h5py)
        elif _has_link(h5, "layers"):
            found = _keras3_datasets(_child(h5, "layers", h5py), h5py)
        else:
            raise FileProblem("an HDF5 file without Keras weights (no layer_names attribute, "
                              "no model_weights group, no Keras 3 layers group)")
        budget.charge(sum(_dataset_cost(dataset) for dataset, _ in found.values()), f"the {len(found)} datasets")
        return {name: _read_dataset(dataset, kernel, budget) for name, (dataset, kernel) in found.items()}


def _has_link(group, name):
    return group.get(name, getlink=True) is not None


def _child(group, path, h5py):
    """group[path], following hard links only (one path component at a time)."""
    item = group
    for part in path.split("/"):
        if not part:
            continue
        link = item.get(part, getlink=True)
        if link is None:
            raise FileProblem(f"{short(item.name)} has no member {short(part)}")
        if not isinstance(link, h5py.HardLink):
            raise FileProblem(f"{short(item.name.rstrip('/') + '/' + part)} is a link of type {type(link).__name__}, "
                              "refused: a weight file is read from itself alone, through hard links")
        item = item[part]
    return item


def _has_name_list(attrs, name):
    return name in attrs or f"{name}0" in attrs


def _read_name_list(attrs, name):
    """Keras stores long name lists in chunks: attrs[name] or attrs[name0], attrs[name1], ..."""
    if name in attrs:
        chunks = [attrs[name]]
    else:
        chunks, index = [], 0
        while f"{name}{index}" in attrs:
            chunks.append(attrs[f"{name}{index}"])
            index += 1
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for chunk in chunks for n in chunk]


def _keras_classic_datasets(root, h5py):
    """{torch name: (dataset, is a kernel to transpose)} from layer_names and weight_names."""
    found = {}
    for layer in _read_name_list(root.attrs, "layer_names"):
        group = _child(root, layer, h5py)
        for weight_name in _read_name_list(group.attrs, "weight_names"):
            name = _keras_torch_name(layer, weight_name)
            if name in found:
                raise FileProblem(f"two Keras weights map to the same name {short(name)}")
            found[name] = (_dataset(_child(group, weight_name, h5py), h5py), True)
    if not found:
        raise FileProblem("the Keras file lists no weights")
    return found


# The most groups a Keras 3 file's layers may hold, and how deep (models inside models) they may nest.
MAX_HDF5_GROUPS = 100_000
MAX_HDF5_DEPTH = 32


def _keras3_datasets(layers, h5py):
    """{torch name: (dataset, is a kernel)} from every layers/.../vars group, named by its "name" attribute."""
    found, todo, visited = {}, [(layers, 0)], 0
    while todo:
        group, depth = todo.pop()
        visited += 1
        if visited > MAX_HDF5_GROUPS or depth > MAX_HDF5_DEPTH:
            raise FileProblem(f"the Keras 3 layers nest deeper than {MAX_HDF5_DEPTH} or hold more than "
                              f"{MAX_HDF5_GROUPS:,} groups")
        for part in sorted(group):
            child = _child(group, part, h5py)
            if not isinstance(child, h5py.Group):
                continue
            if part == "vars" and len(child):
                for name, item in _keras3_layer(_keras3_layer_name(child, layers), child, h5py).items():
                    if name in found:
                        raise FileProblem(f"two Keras 3 layers are named {short(name.rpartition('.')[0])}")
                    found[name] = item
            elif part != "vars":
                todo.append((child, depth + 1))
    if not found:
        raise FileProblem("the Keras 3 file has no layer variables")
    return found


def _keras3_layer_name(variables, layers):
    """The layer's own name (vars.attrs["name"], Keras 3.x), else its path: "conv2d", "block1.conv2d"."""
    name = variables.attrs.get("name")
    if isinstance(name, bytes):
        name = name.decode("utf-8", errors="replace")
    if isinstance(name, str) and name and "." not in name and len(name) <= 200:
        return name
    path = variables.parent.name[len(layers.name) + 1:]
    return path.replace("/layers/", ".").replace("/", ".")


def _keras3_layer(layer, variables, h5py):
    datasets = [_dataset(_child(variables, str(i), h5py), h5py) for i in range(len(variables))]
    shapes = [d.shape for d in datasets]
    is_kernel = len(shapes[0]) >= 2 and len(datasets) <= 2
    if not is_kernel or (len(datasets) == 2 and shapes[1] != (shapes[0][-1],)):
        raise FileProblem(f"layer {short(layer)}: Keras 3 files do not name their variables and minicnn only reads "
                          f"conv and dense layers (kernel, bias) from them; this one has shapes {short(shapes)}")
    found = {f"{layer}.weight": (datasets[0], True)}
    if len(datasets) == 2:
        found[f"{layer}.bias"] = (datasets[1], False)
    return found


def _dataset(dataset, h5py):
    """A dataset that lives inside the file itself, whose declared dtype and shape pass the two rules.

    HDF5 can point elsewhere: datasets whose bytes are stored in another file (a weight file could
    "contain" /etc/passwd), virtual datasets. Both refused. A chunked dataset with no chunks
    written takes a few bytes whatever shape it declares: its declared size is what counts.
    """
    if not isinstance(dataset, h5py.Dataset):
        raise FileProblem(f"{dataset.name} is not a dataset")
    if dataset.external or dataset.is_virtual:
        raise FileProblem(f"dataset {dataset.name} keeps its data outside this file (refused)")
    if dataset.shape is None:
        raise FileProblem(f"dataset {dataset.name} has no dataspace: it holds no array")
    check_declared_dtype(f"dataset {dataset.name}", dataset.dtype)
    check_declared_size(f"dataset {dataset.name}", dataset.shape)
    return dataset


def _dataset_cost(dataset):
    """Bytes reading `dataset` may allocate: the array, and one chunk's buffer if it is chunked."""
    chunk = math.prod(dataset.chunks) if dataset.chunks else 0
    return (math.prod(dataset.shape) + chunk) * dataset.dtype.itemsize


def _read_dataset(dataset, kernel, budget):
    array = np.empty(dataset.shape, dataset.dtype.newbyteorder("="))
    if array.size:
        dataset.read_direct(array)
    if kernel and array.ndim >= 2:
        budget.charge(array.nbytes, f"the transpose of {dataset.name}")
        return keras_kernel_to_torch(array)
    return array


def _keras_torch_name(layer, weight_name):
    """"conv2d/kernel:0" (Keras 2) or "conv2d_W_1:0" (Keras 1) in layer "conv2d" -> "conv2d.weight"."""
    parts = weight_name.split(":")[0].split("/")
    if parts[0] == layer:
        parts = parts[1:]
    leaf = parts[-1]
    if leaf.startswith(layer + "_"):  # Keras 1: "<layer>_<name>" and maybe a "_<number>" suffix
        leaf = re.sub(r"_[0-9]+$", "", leaf[len(layer) + 1:])
    if leaf not in _KERAS_TO_TORCH_NAMES:
        raise FileProblem(f"layer {short(layer)}: weight {short(weight_name)} is of a kind minicnn does not convert "
                       f"(it converts {sorted(_KERAS_TO_TORCH_NAMES)})")
    return ".".join([layer] + parts[:-1] + [_KERAS_TO_TORCH_NAMES[leaf]])


