"""Keras HDF5 weights (Keras 1, 2 and 3 layouts), converted to PyTorch's conventions; h5py imported lazily."""
import re

import numpy as np

from minicnn.checks import check_array

from .limits import FileProblem, check_declared_dtype, check_declared_size

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


def load_keras_h5(path):
    """Keras HDF5 weights, converted to PyTorch conventions and names ("conv2d.weight").

    Classic layout (Keras 2 / tf.keras: model.save_weights("x.h5") or model.save("x.h5"), which puts
    the same thing in a group model_weights): attribute layer_names; in each layer group, attribute
    weight_names ("conv2d/kernel:0", or Keras 1's "conv2d_W_1:0") and a dataset of that name.
    Keras 3 (model.save_weights("x.weights.h5")): layers/<layer>/vars/0, 1, ... with no names; only
    conv and dense layers (a kernel and an optional bias) can be told apart there.
    """
    h5py = _import_h5py(path)
    with h5py.File(path, "r") as h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5
        if _has_name_list(root.attrs, "layer_names"):
            return _read_keras_classic(root)
        if "layers" in h5:
            return _read_keras3(h5, h5py)
    raise FileProblem("an HDF5 file without Keras weights (no layer_names attribute, "
                   "no model_weights group, no Keras 3 layers group)")


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


def _read_keras_classic(root):
    state = {}
    for layer in _read_name_list(root.attrs, "layer_names"):
        if layer not in root:
            raise FileProblem(f"layer {layer!r} is listed in layer_names but has no group")
        group = root[layer]
        for weight_name in _read_name_list(group.attrs, "weight_names"):
            if weight_name not in group:
                raise FileProblem(f"layer {layer!r} lists weight {weight_name!r} but has no such dataset")
            name = _keras_torch_name(layer, weight_name)
            if name in state:
                raise FileProblem(f"two Keras weights map to the same name {name!r}")
            state[name] = keras_kernel_to_torch(_read_h5_array(group[weight_name], root.file))
    if not state:
        raise FileProblem("the Keras file lists no weights")
    return state


def _read_h5_array(dataset, h5):
    """Read a dataset that lives inside the file itself, once its declared dtype and shape pass.

    HDF5 can point elsewhere: external links to other files, datasets whose bytes are stored in
    another file (a weight file could "contain" /etc/passwd), virtual datasets. All refused.
    A chunked dataset with no chunks written takes a few bytes whatever shape it declares.
    """
    import h5py
    if not isinstance(dataset, h5py.Dataset):
        raise FileProblem(f"{dataset.name} is not a dataset")
    if dataset.file.filename != h5.filename or dataset.external or dataset.is_virtual:
        raise FileProblem(f"dataset {dataset.name} keeps its data outside this file (refused)")
    if dataset.shape is None:
        raise FileProblem(f"dataset {dataset.name} has no dataspace: it holds no array")
    check_declared_dtype(f"dataset {dataset.name}", dataset.dtype)
    check_declared_size(f"dataset {dataset.name}", dataset.shape)
    return np.asarray(dataset[()])


def _keras_torch_name(layer, weight_name):
    """"conv2d/kernel:0" (Keras 2) or "conv2d_W_1:0" (Keras 1) in layer "conv2d" -> "conv2d.weight"."""
    parts = weight_name.split(":")[0].split("/")
    if parts[0] == layer:
        parts = parts[1:]
    leaf = parts[-1]
    if leaf.startswith(layer + "_"):  # Keras 1: "<layer>_<name>" and maybe a "_<number>" suffix
        leaf = re.sub(r"_[0-9]+$", "", leaf[len(layer) + 1:])
    if leaf not in _KERAS_TO_TORCH_NAMES:
        raise FileProblem(f"layer {layer!r}: weight {weight_name!r} is of a kind minicnn does not convert "
                       f"(it converts {sorted(_KERAS_TO_TORCH_NAMES)})")
    return ".".join([layer] + parts[:-1] + [_KERAS_TO_TORCH_NAMES[leaf]])


def _read_keras3(h5, h5py):
    state = {}

    def visit(path, item):
        if isinstance(item, h5py.Group) and path.endswith("/vars") and len(item):
            layer = path[len("layers/"):-len("/vars")].replace("/layers/", ".")
            state.update(_keras3_layer(layer, item))

    h5["layers"].visititems(lambda path, item: visit("layers/" + path, item))
    if not state:
        raise FileProblem("the Keras 3 file has no layer variables")
    return state


def _keras3_layer(layer, variables):
    arrays = [_read_h5_array(variables[str(i)], variables.file) for i in range(len(variables))]
    shapes = [a.shape for a in arrays]
    is_kernel = arrays[0].ndim >= 2 and len(arrays) <= 2
    if not is_kernel or (len(arrays) == 2 and shapes[1] != (shapes[0][-1],)):
        raise FileProblem(f"layer {layer!r}: Keras 3 files do not name their variables and minicnn only reads "
                       f"conv and dense layers (kernel, bias) from them; this one has shapes {shapes}")
    state = {f"{layer}.weight": keras_kernel_to_torch(arrays[0])}
    if len(arrays) == 2:
        state[f"{layer}.bias"] = arrays[1]
    return state

