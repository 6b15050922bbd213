"""Models: AlexNet and VGG16 in torchvision's layout against torch, weight files torch wrote read by
minicnn in a process where torch cannot be imported, the shapes models and their checksummed
weights, ImageNet preprocessing against torch's interpolate, and minicnn/recipes/fetch_weights.py.

torch is only the oracle: the networks are built in torch BY HAND (nn.Sequential with torchvision's
layout, so the keys are torchvision's "features.0.weight"), given random weights, saved with
torch.save; minicnn reads the files without torch and must compute the same numbers.
"""
import copy
import hashlib
import json
import socket
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO

from minicnn import models
from minicnn.recipes import fetch_weights
from minicnn.imagenet import (
    CAFFE_BGR_MEAN, IMAGENET_CLASSES, IMAGENET_WNIDS, center_crop, denormalize, normalize, preprocess,
    resize_shorter_side, resized_shape, top5,
)
from minicnn.io import WeightFileError, save_weights
from minicnn.layers import NoInit

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # the torch tests are skipped; the rest run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is the oracle of these tests")
RELATIVE_TOLERANCE = 1e-4


def relative_error(ours, theirs):
    """max |ours - theirs| / max |theirs|."""
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# ----------------------------------------------------------------------------------------------
# AlexNet and VGG16 built by hand in torch, with torchvision's layout and key names
# ----------------------------------------------------------------------------------------------

def torch_alexnet():
    features = [
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2)]
    classifier = [
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)]
    return torchvision_layout(features, nn.AdaptiveAvgPool2d((6, 6)), classifier)


def torch_vgg16():
    features, channels = [], 3
    for value in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if value == "M":
            features.append(nn.MaxPool2d(2, 2))
        else:
            features += [nn.Conv2d(channels, value, 3, padding=1), nn.ReLU()]
            channels = value
    classifier = [
        nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000)]
    return torchvision_layout(features, nn.AdaptiveAvgPool2d((7, 7)), classifier)


def torchvision_layout(features, avgpool, classifier):
    """features -> avgpool -> flatten -> classifier, keyed like torchvision ("features.0.weight")."""
    return nn.Sequential(OrderedDict(features=nn.Sequential(*features), avgpool=avgpool,
                                     flatten=nn.Flatten(), classifier=nn.Sequential(*classifier)))


def with_random_weights(model, seed=0):
    """Give a model built on the "meta" device memory and He-normal weights (which keep the
    activations' scale) with non-zero biases. Building on "meta" skips torch's default init,
    seconds of work for VGG16 that we would overwrite anyway."""
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0, (2 / module.weight[0].numel()) ** 0.5, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
    return model.eval()


def torch_scores_and_saliency(model, x):
    """Scores (1, 1000) and d score[top class] / d x, by autograd, in the model's dtype."""
    x = torch.tensor(x, dtype=next(model.parameters()).dtype, requires_grad=True)
    scores = model(x)
    scores[0, scores[0].argmax()].backward()
    return scores.detach().numpy(), x.grad.numpy()


# Each case: model, file format, dtype. Both formats, the three float types and both models, in
# four files (VGG16 is 553 MB): VGG16 in float32 and the legacy format torchvision's own
# vgg16-397923af.pth uses. Every case checks the arrays read and the float32 scores;
# SALIENCY_CASES also the saliency.
CASES = {
    "alexnet-zip-float32": ("alexnet", "zip", "float32"),
    "alexnet-zip-float16": ("alexnet", "zip", "float16"),
    "alexnet-legacy-bfloat16": ("alexnet", "legacy", "bfloat16"),
    "vgg16-legacy-float32": ("vgg16", "legacy", "float32"),
}
IMAGES = {"224": (1, 3, 224, 224), "256": (1, 3, 256, 256)}   # 256: AlexNet's adaptive pool averages
SALIENCY_CASES = ("alexnet-zip-float32", "vgg16-legacy-float32")
SALIENCY_TOLERANCE = 1e-9   # relative, in float64 (see test_forward_and_saliency_equal_torch)


@pytest.fixture(scope="module")
def torch_models():
    if torch is None:
        pytest.skip("torch is the oracle of these tests")
    with torch.device("meta"):
        shapes_only = {"alexnet": torch_alexnet(), "vgg16": torch_vgg16()}
    return {name: with_random_weights(model) for name, model in shapes_only.items()}


@pytest.fixture(scope="module")
def weight_files(torch_models, tmp_path_factory):
    """Every case saved by torch.save: case -> (path, the state dict as saved)."""
    folder = tmp_path_factory.mktemp("torch_files")
    files = {}
    for case, (name, form, dtype) in CASES.items():
        # copy=True: a float32 state must not share memory with the model, which later tests change
        state = OrderedDict((key, value.to(getattr(torch, dtype), copy=True))
                            for key, value in torch_models[name].state_dict().items())
        path = folder / f"{case}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=(form == "zip"))
        files[case] = (path, state)
    return files


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = {}
    for tag, shape in IMAGES.items():
        paths[tag] = folder / f"x{tag}.npy"
        np.save(paths[tag], rng.standard_normal(shape, dtype=np.float32))
    return paths


# What the torch-free process does with each file: read it (recording a digest of every array),
# build the network, and compute scores and the saliency of the top class for each image.
TORCH_FREE_WORKER = r"""
import hashlib, json, sys
sys.modules["torch"] = None                      # from here on, `import torch` raises ImportError
import numpy as np
from minicnn.models import imagenet_model_from_state
from minicnn.io import load_weights

for job in json.loads(sys.argv[1]):
    state = load_weights(job["path"])
    digests = {key: [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
               for key, a in state.items()}
    net = imagenet_model_from_state(job["model"], state, source=job["path"])
    del state
    images = {tag: np.load(path) for tag, path in job["images"].items()}
    results = {tag + "_scores": net.forward(x) for tag, x in images.items()}
    if job["saliency"]:
        net.astype(np.float64)
        for tag, x in images.items():
            scores = net.forward(x.astype(np.float64))
            seed = np.zeros_like(scores)
            seed[0, scores[0].argmax()] = 1
            results[tag + "_scores64"] = scores
            results[tag + "_saliency64"] = net.backward(seed, param_grads=False)
    np.savez(job["out"], **results)
    with open(job["out"] + ".json", "w") as stream:
        json.dump({"digests": digests, "torch_in_modules": sys.modules.get("torch") is not None}, stream)
"""


@pytest.fixture(scope="module")
def minicnn_results(weight_files, images, tmp_path_factory):
    """Run the worker once over all cases; case -> (arrays it computed, what it recorded)."""
    folder = tmp_path_factory.mktemp("results")
    jobs = []
    for case, (name, _, _) in CASES.items():
        tags = ["224", "256"] if case == "alexnet-zip-float32" else ["224"]
        jobs.append({"model": name, "path": str(weight_files[case][0]), "out": str(folder / f"{case}.npz"),
                     "images": {tag: str(images[tag]) for tag in tags}, "saliency": case in SALIENCY_CASES})
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_WORKER, json.dumps(jobs)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = {}
    for case, job in zip(CASES, jobs):
        with np.load(job["out"]) as arrays:
            results[case] = ({key: arrays[key] for key in arrays.files},
                             json.loads(Path(job["out"] + ".json").read_text()))
    return results


def digest_of(tensor):
    """What load_weights must return for a saved tensor: its own dtype, bfloat16 widened to float32."""
    array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return [str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]


@needs_torch
@pytest.mark.parametrize("case", CASES)
def test_torch_files_read_without_torch_give_identical_arrays(case, weight_files, minicnn_results):
    _, recorded = minicnn_results[case]
    assert recorded["torch_in_modules"] is False
    saved = weight_files[case][1]
    assert recorded["digests"] == {key: digest_of(value) for key, value in saved.items()}


@needs_torch
@pytest.mark.parametrize("case", CASES)
def test_forward_and_saliency_equal_torch(case, torch_models, weight_files, images, minicnn_results):
    """float32 scores to 1e-4 relative; saliency (and scores) in float64 to 1e-9.

    The saliency is compared in float64 because in float32 two nearly equal values in a max-pool
    window (or a ReLU input next to zero) can be ordered differently by two correct programs,
    which sends the gradient down another path: seen here for AlexNet at 256x256, where float32
    saliencies differed by 2e-3 in one corner while float64 ones agreed to 3e-15.
    """
    model = torch_models[CASES[case][0]]
    model.load_state_dict({key: value.float() for key, value in weight_files[case][1].items()})  # as rounded
    ours, _ = minicnn_results[case]
    for tag in [tag for tag in IMAGES if f"{tag}_scores" in ours]:
        x = np.load(images[tag])
        if case in SALIENCY_CASES:
            scores, saliency = torch_scores_and_saliency(copy.deepcopy(model).double(), x.astype(np.float64))
            assert relative_error(ours[f"{tag}_scores64"], scores) < SALIENCY_TOLERANCE, (case, tag)
            assert relative_error(ours[f"{tag}_saliency64"], saliency) < SALIENCY_TOLERANCE, (case, tag)
        else:
            with torch.no_grad():
                scores = model(torch.tensor(x)).numpy()
        assert ours[f"{tag}_scores"].shape == (1, 1000)
        assert relative_error(ours[f"{tag}_scores"], scores) < RELATIVE_TOLERANCE, (case, tag)
        assert ours[f"{tag}_scores"].argmax() == scores.argmax()


@needs_torch
def test_a_state_that_does_not_fit_gives_one_error_listing_every_problem(torch_models):
    state = {key: value.numpy() for key, value in torch_models["alexnet"].state_dict().items()}
    state["features.3.weight"] = np.zeros((192, 64, 3, 3), np.float32)   # 3x3 instead of 5x5
    del state["classifier.4.bias"]
    state["classifier.7.weight"] = np.zeros((10, 1000), np.float32)
    with pytest.raises(ValueError) as error:
        models.imagenet_model_from_state("alexnet", state, source="my.pth")
    message = str(error.value)
    assert message.startswith("my.pth does not hold alexnet weights in torchvision's layout")
    assert "features.3.weight: file (192, 64, 3, 3) vs network (192, 64, 5, 5)" in message
    assert "missing keys: ['classifier.4.bias']" in message
    assert "unexpected keys: ['classifier.7.weight']" in message


def test_a_file_of_other_weights_gives_a_clear_error(tmp_path):
    path = tmp_path / "other.npz"
    save_weights(str(path), {"conv1.weight": np.zeros((16, 3, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"other\.npz does not hold alexnet weights.*missing keys: \['features\.0\.weight'"):
        models.load_imagenet_model("alexnet", path)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightFileError, match=r"empty\.pth: the file is empty"):
        models.load_imagenet_model("vgg16", tmp_path / "empty.pth")


def test_keras_vgg16_names_and_channels_last_fc1_are_converted():
    """Keras' names map onto torchvision's; fc1's columns go from (h, w, c) to (c, h, w) order.

    Stand-in arrays keep this cheap: only the names and fc1's 25088 columns matter here."""
    convs = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]
    torch_layers = [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    keras_state, expected = {}, {}
    for keras_layer, torch_layer in zip(convs + ["fc2", "predictions"], torch_layers + ["classifier.3", "classifier.6"]):
        for param in ("weight", "bias"):
            keras_state[f"{keras_layer}.{param}"] = expected[f"{torch_layer}.{param}"] = np.zeros(1, np.float32)
    channels_first = np.random.default_rng(0).standard_normal((8, 512, 7, 7)).astype(np.float32)
    keras_state["fc1.weight"] = channels_first.transpose(0, 2, 3, 1).reshape(8, -1)   # Keras: (h, w, c)
    keras_state["fc1.bias"] = expected["classifier.0.bias"] = np.zeros(8, np.float32)
    converted = models.keras_vgg16_to_torchvision(keras_state)
    assert sorted(converted) == sorted([*expected, "classifier.0.weight"])
    np.testing.assert_array_equal(converted["classifier.0.weight"], channels_first.reshape(8, -1))
    for key, value in expected.items():
        assert converted[key] is value, key   # renamed, untouched


def test_layer_names_follow_torchvision_indices():
    net = models.Network(models.IMAGENET_LAYERS["alexnet"](1000, NoInit(), np.random.default_rng(0)))
    keys = list(models.minicnn_to_torchvision(net.state_dict()))
    assert keys == [f"{part}.{i}.{p}" for part, indices in (("features", (0, 3, 6, 8, 10)), ("classifier", (1, 4, 6)))
                    for i in indices for p in ("weight", "bias")]
    assert models.torchvision_to_minicnn({"module.features.0.weight": 1}) == {"features_0.weight": 1}
    vgg_features = models.Network(models._vgg_features(models.VGG16_CHANNELS, NoInit()))  # no classifier: cheap
    pools = [name for name in vgg_features.names if isinstance(vgg_features[name], models.MaxPool2d)]
    assert pools == ["features_4", "features_9", "features_16", "features_23", "features_30"]
    assert all(isinstance(vgg_features[models.VGG16_LAYERS[f"conv{b}_1"]], models.ReLU) for b in range(1, 6))
    assert vgg_features.names[-1] == "features_30"


# ----------------------------------------------------------------------------------------------
# The shapes models and their checksummed weights
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["shapes_cam", "shapes_vgg"])
def test_shapes_models_shapes_and_sizes(name):
    net = models.PRETRAINED[name](seed=0)
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    scores = net.forward(x)
    assert scores.shape == (2, 10) and scores.dtype == np.float32
    count = sum(value.size for value in net.named_parameters().values())
    print(f"{name}: {count} parameters ({4 * count / 1e6:.2f} MB as float32)")
    assert count < 400_000
    gradient = net.backward(np.ones_like(scores), param_grads=False)
    assert gradient.shape == x.shape
    np.testing.assert_array_equal(models.PRETRAINED[name](seed=0).forward(x), scores)   # seeded


def test_shapes_cam_ends_in_gap_and_one_linear_layer():
    net = models.shapes_cam(seed=0)
    assert net.names[-2:] == ["gap", "fc"]
    maps = net.forward(np.zeros((1, 3, 64, 64), np.float32), upto="relu4")
    assert maps.shape == (1, net["fc"].in_features, 16, 16)   # the CAM's resolution


def write_pretrained(folder, name, seed=0):
    """A shapes model saved as <folder>/<name>.npz with its model card; returns the network."""
    net = models.PRETRAINED[name](seed=seed)
    weights = folder / f"{name}.npz"
    save_weights(weights, net.state_dict())
    card = {"name": name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    (folder / f"{name}.json").write_text(json.dumps(card))
    return net


@pytest.mark.parametrize("name", ["shapes_cam", "shapes_vgg"])
def test_load_pretrained_verifies_the_checksum_and_loads(name, tmp_path):
    saved = write_pretrained(tmp_path, name, seed=3)
    for where in (tmp_path, tmp_path / f"{name}.npz", str(tmp_path)):
        net = models.load_pretrained(name, where)
        for key, value in saved.state_dict().items():
            np.testing.assert_array_equal(net.state_dict()[key], value)


def test_load_pretrained_refuses_a_file_that_does_not_match_its_card(tmp_path):
    write_pretrained(tmp_path, "shapes_cam")
    weights = tmp_path / "shapes_cam.npz"
    weights.write_bytes(weights.read_bytes()[:-100])   # truncated
    with pytest.raises(WeightFileError, match=r"shapes_cam\.npz: SHA-256 .* does not match .*minicnn\.recipes\.train_shapes"):
        models.load_pretrained("shapes_cam", tmp_path)


def test_load_pretrained_missing_files_and_bad_cards(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shapes_vgg\.npz not found.*minicnn\.recipes\.train_shapes"):
        models.load_pretrained("shapes_vgg", tmp_path)
    write_pretrained(tmp_path, "shapes_vgg")
    (tmp_path / "shapes_vgg.json").write_text('{"sha256": "abc"}')
    with pytest.raises(WeightFileError, match=r"shapes_vgg\.json: \"sha256\" must be 64 hex digits"):
        models.load_pretrained("shapes_vgg", tmp_path)
    (tmp_path / "shapes_vgg.json").write_text("{not json")
    with pytest.raises(WeightFileError, match=r"not a model card"):
        models.load_pretrained("shapes_vgg", tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        models.load_pretrained("resnet", tmp_path)


def test_load_pretrained_refuses_weights_of_the_other_model(tmp_path):
    write_pretrained(tmp_path, "shapes_vgg")
    (tmp_path / "shapes_vgg.npz").rename(tmp_path / "shapes_cam.npz")
    (tmp_path / "shapes_vgg.json").rename(tmp_path / "shapes_cam.json")
    with pytest.raises(WeightFileError, match=r"shapes_cam\.npz: state does not fit this network"):
        models.load_pretrained("shapes_cam", tmp_path)


# ----------------------------------------------------------------------------------------------
# ImageNet preprocessing and class names
# ----------------------------------------------------------------------------------------------

RESIZE_TOLERANCE = 5e-5   # absolute, on [0, 1] images: Pillow's float mode vs torch's antialias kernel


@needs_torch
@pytest.mark.parametrize("shape", [(3, 300, 400), (3, 481, 353), (3, 200, 150), (3, 256, 256)])
def test_resize_matches_torch_interpolate_with_antialias(shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    ours = resize_shorter_side(image, 256)
    assert min(ours.shape[1:]) == 256 and ours.shape[1:] == resized_shape(*shape[1:], 256)
    theirs = F.interpolate(torch.tensor(image)[None], size=ours.shape[1:], mode="bilinear",
                           antialias=True, align_corners=False)[0].numpy()
    assert np.abs(ours - theirs).max() < RESIZE_TOLERANCE


@needs_torch
def test_preprocess_is_torchvision_eval_transform():
    image = np.random.default_rng(1).random((3, 375, 500), dtype=np.float32)
    ours = preprocess(image)
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    resized = F.interpolate(torch.tensor(image)[None], size=(256, 341), mode="bilinear", antialias=True)
    top, left = 16, 58   # round((256 - 224) / 2), round((341 - 224) / 2)
    cropped = resized[:, :, top:top + 224, left:left + 224]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert np.abs(ours - ((cropped - mean) / std).numpy()).max() < RESIZE_TOLERANCE / 0.224


def test_caffe_mode_and_denormalize():
    image = np.random.default_rng(2).random((3, 8, 8), dtype=np.float32)
    caffe = normalize(image, "caffe")
    for bgr_channel, rgb_channel in enumerate((2, 1, 0)):
        np.testing.assert_allclose(caffe[bgr_channel], 255 * image[rgb_channel] - CAFFE_BGR_MEAN[bgr_channel],
                                   rtol=1e-6, atol=1e-4)
    for mode in ("torch", "caffe"):
        np.testing.assert_allclose(denormalize(normalize(image, mode), mode), image, atol=1e-5)
    assert center_crop(np.zeros((3, 10, 12), np.float32), 4).shape == (3, 4, 4)
    uint8 = (np.arange(64 * 48 * 3) % 256).astype(np.uint8).reshape(64, 48, 3)
    assert preprocess(uint8, mode="caffe", resize=32, crop=24).shape == (1, 3, 24, 24)


def test_imagenet_classes_and_top5():
    assert len(IMAGENET_CLASSES) == 1000 and len(IMAGENET_WNIDS) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)   # class index = rank of the WordNet id
    assert IMAGENET_CLASSES[0] == "tench" and IMAGENET_WNIDS[0] == "n01440764"
    assert IMAGENET_CLASSES[207] == "golden retriever" and IMAGENET_CLASSES[281] == "tabby"
    assert IMAGENET_CLASSES[999] == "toilet tissue"
    assert len({name.lower() for name in IMAGENET_CLASSES}) == 1000   # every name picks out one class
    assert IMAGENET_CLASSES[134] == "crane (class 134)" and IMAGENET_CLASSES[517] == "crane (class 517)"
    scores = np.zeros(1000, np.float32)
    scores[[281, 207, 0]] = [5, 4, 3]
    best = top5(scores[None])
    assert [name for name, _ in best[:3]] == ["tabby", "golden retriever", "tench"]
    exps = np.exp([5, 4, 3] + [0] * 997)
    assert best[0][1] == pytest.approx(exps[0] / exps.sum())
    with pytest.raises(ValueError, match=r"\(1000,\) or \(1, 1000\)"):
        top5(np.zeros((2, 1000), np.float32))


# ----------------------------------------------------------------------------------------------
# minicnn/recipes/fetch_weights.py
# ----------------------------------------------------------------------------------------------

@needs_torch
def test_fetch_converts_a_file_the_user_has(weight_files, tmp_path, monkeypatch, capsys):
    path, saved = weight_files["alexnet-zip-float32"]
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    official_name = tmp_path / f"alexnet-owt-{prefix}.pth"
    official_name.symlink_to(path)
    cache = tmp_path / "cache"
    assert fetch_weights.main(["alexnet", "--from", str(official_name), "--cache", str(cache)]) == 0
    assert f"SHA-256 starts with {prefix}" in capsys.readouterr().out
    monkeypatch.setenv("MINICNN_CACHE", str(cache))
    net = models.load_imagenet_model("alexnet")            # finds <cache>/alexnet.npz
    np.testing.assert_array_equal(net["classifier_6"].params["weight"], saved["classifier.6.weight"].numpy())


def test_fetch_refuses_a_file_whose_hash_does_not_match_its_name(tmp_path, capsys):
    bad = tmp_path / "vgg16-397923af.pth"
    bad.write_bytes(b"not the real file")
    assert fetch_weights.main(["vgg16", "--from", str(bad), "--cache", str(tmp_path)]) == 1
    assert "SHA-256 starts with" in capsys.readouterr().err and not (tmp_path / "vgg16.npz").exists()


def test_fetch_refuses_keras_weights_whose_preprocessing_a_cached_file_would_lose(tmp_path, capsys):
    keras = tmp_path / "vgg16_keras.npz"
    np.savez(keras, **{"block1_conv1.weight": np.zeros((3, 3, 3, 64), np.float32)})
    assert fetch_weights.main(["vgg16", "--from", str(keras), "--cache", str(tmp_path)]) == 1
    assert "Keras' VGG16 weights, which expect caffe-mode input" in capsys.readouterr().err
    assert not (tmp_path / "vgg16.npz").exists()


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fetch_offline_says_so_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/vgg16-397923af.pth"
    done = subprocess.run([sys.executable, "-m", "minicnn.recipes.fetch_weights", "vgg16", "--url", url, "--cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot download" in lines[0]
    assert "--from /path/to/vgg16-397923af.pth" in lines[0] and str(tmp_path / "vgg16-397923af.pth") in lines[0]
    assert not list(tmp_path.glob("*.part"))
