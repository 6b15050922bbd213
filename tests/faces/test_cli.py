"""The `minicnn` command: the tour gallery, `explain`, and clear one-line errors on bad input.

The tour and explain run on the shipped shapes weights (weights/). Until those exist, a session
fixture trains both shapes models for one tiny step into a temporary folder (seconds), so these
tests pass before and after the real weights land.
"""
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO

from minicnn import cli, data, models, user_input
from minicnn.io import save_weights
from minicnn.io.images import save_image
from minicnn.train import Adam, fit

SECTION_TITLES = [
    "Convolution is a matrix", "Learned upsampling and the checkerboard", "First-layer filters",
    "Saliency and SmoothGrad", "Occlusion", "CAM and Grad-CAM", "Guided backpropagation", "Pointing game",
    "Can we trust the maps?", "Gradient ascent: class models", "Dataset search and DeconvNet",
    "Nearest neighbours", "t-SNE", "DeepDream", "Network Dissection", "Dead units", "Units that change roles",
]


# ----------------------------------------------------------------------------------------------
# fixtures


def write_tiny_weights(folder):
    """Train shapes_cam, shapes_vgg and shapes_vgg_colour for one step on 32 images; save each with a model card."""
    batch = data.make_shapes(32, seed=1)
    for name in ("shapes_cam", "shapes_vgg", "shapes_vgg_colour"):   # the classifiers the CLI and the tour use
        net = models.PRETRAINED[name](seed=0)
        labels = batch.colors if name == "shapes_vgg_colour" else batch.labels
        fit(net, Adam(net, lr=1e-3), batch.images, labels, epochs=1, batch_size=32, progress=False)
        path = folder / f"{name}.npz"
        save_weights(path, net.state_dict())
        path.with_suffix(".json").write_text(json.dumps({"model": name, "sha256": models.sha256_of_file(path)}))


@pytest.fixture(scope="session")
def weights_args(tmp_path_factory):
    """[] when the shipped weights exist, else ["--weights", a folder of tiny trained weights]."""
    if (REPO / "weights" / "shapes_cam.npz").is_file() and (REPO / "weights" / "shapes_vgg.npz").is_file():
        return []
    folder = tmp_path_factory.mktemp("tiny_weights")
    write_tiny_weights(folder)
    return ["--weights", str(folder)]


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Image files: a shapes PNG, its greyscale and RGBA (other size) versions, a 16-bit PNG, a non-image."""
    folder = tmp_path_factory.mktemp("images")
    shape = folder / "shape.png"
    save_image(shape, data.make_shapes(1, seed=7).images[0])
    with Image.open(shape) as picture:
        picture.convert("L").save(folder / "grey.png")
        picture.convert("RGBA").resize((80, 100)).save(folder / "rgba.png")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(folder / "deep.png")
    (folder / "text.png").write_text("this is not an image")
    return folder


@pytest.fixture(scope="session")
def tour_out(tmp_path_factory, weights_args):
    out = tmp_path_factory.mktemp("tour")
    status = cli.main(["tour", "--out", str(out), "--fast", "--quiet"] + weights_args)
    assert status == 0
    return out


def run(args, capsys):
    """cli.main(args) in this process: (exit status, stdout, stderr)."""
    status = cli.main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_minicnn(args, cwd):
    """`python -m minicnn args` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "minicnn"] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


# ----------------------------------------------------------------------------------------------
# the tour


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_tour_writes_index_and_valid_pngs(tour_out):
    page = (tour_out / "index.html").read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(page)
    assert len(parser.sources) >= len(SECTION_TITLES)
    assert parser.sources[0] == "gallery.png"  # the contact sheet first (the README's picture)
    for source in parser.sources:
        path = tour_out / source
        assert path.is_file(), source
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            picture.verify()


def test_tour_has_every_section_of_the_lecture_with_content(tour_out):
    page = (tour_out / "index.html").read_text(encoding="utf-8")
    sections = re.findall(r"<section id=\"(\w+)\">\s*<h2>\d+\. (.*?)</h2>(.*?)</section>", page, flags=re.S)
    assert [title for _, title, _ in sections] == SECTION_TITLES
    for _, title, body in sections:
        assert "Not shown" not in body, f"section {title!r} was skipped: {body}"
        assert "<img" in body, f"section {title!r} has no figure"
        assert "<figcaption>" in body
    assert "centre baseline" in page  # the pointing-game table


# ----------------------------------------------------------------------------------------------
# explain


def test_explain_prints_five_class_names_and_writes_the_figure(images, weights_args, tmp_path):
    figure = tmp_path / "explained.png"
    result = run_minicnn(["explain", str(images / "shape.png"), "--out", str(figure)] + weights_args, tmp_path)
    assert result.returncode == 0, result.stderr
    ranked = re.findall(r"^\s+\d\. (\w+)", result.stdout, flags=re.M)
    assert len(ranked) == 5 and set(ranked) <= set(data.CLASS_NAMES)
    with Image.open(figure) as picture:
        assert picture.format == "PNG"
        picture.verify()


def test_imagenet_resize_and_crop_are_explained_and_extreme_shapes_refused():
    assert user_input.imagenet_notes("a.png", (300, 400)) == []
    assert user_input.imagenet_notes("a.png", (8, 8)) == ["a.png is 8x8: enlarged 32.0x so that its shorter side is 256 "
                                                   "(expect a blurred input)"]
    assert user_input.imagenet_notes("a.png", (300, 1000)) == ["the 224x224 centre crop keeps 26% of a.png's longer side"]
    with pytest.raises(user_input.UserError, match=r"a.png is 3000x2: .* keep 0.058% of its longer side"):
        user_input.imagenet_notes("a.png", (2, 3000))   # resized, it would be 256 x 384000: 4 GB


@pytest.mark.parametrize("name, what", [("grey.png", "greyscale"), ("rgba.png", "RGBA")])
def test_explain_converts_greyscale_and_rgba_with_a_note(images, weights_args, tmp_path, capsys, name, what):
    out = tmp_path / "map.png"
    status, stdout, stderr = run(["explain", str(images / name), "--methods", "saliency,cam", "--out", str(out)]
                                 + weights_args, capsys)
    assert status == 0
    assert f"{what}" in stderr and "converted to RGB" in stderr
    if name == "rgba.png":
        assert "resized to 64x64" in stderr
    assert out.is_file() and len(re.findall(r"^\s+\d\. ", stdout, flags=re.M)) == 5


def test_explain_with_a_target_by_name(images, weights_args, tmp_path, capsys):
    status, _, _ = run(["explain", str(images / "shape.png"), "--target", "Star", "--methods", "gradcam",
                        "--out", str(tmp_path / "star.png")] + weights_args, capsys)
    assert status == 0 and (tmp_path / "star.png").is_file()
    assert user_input.resolve_target("4", data.CLASS_NAMES) == user_input.resolve_target("star", data.CLASS_NAMES) == 4


def test_explain_out_without_a_suffix_writes_and_names_a_png(images, weights_args, tmp_path, capsys):
    status, out, _ = run(["explain", str(images / "shape.png"), "--methods", "gradcam,cam",
                          "--out", str(tmp_path / "result")] + weights_args, capsys)
    assert status == 0 and f"wrote {tmp_path / 'result.png'}" in out
    with Image.open(tmp_path / "result.png") as picture:
        assert picture.format == "PNG"


# ----------------------------------------------------------------------------------------------
# bad input: non-zero exit, one line, no traceback


def mismatched_weights(folder):
    """shapes_cam's weights with conv1's first filter dropped: fits no shapes model."""
    state = models.shapes_cam(seed=0).state_dict()
    state["conv1.weight"] = state["conv1.weight"][1:].copy()
    path = folder / "wrong.npz"
    np.savez(path, **state)
    return path


BAD_INPUTS = {
    "missing image": (["explain", "{images}/nowhere.png"], "not found"),
    "unreadable image": (["explain", "{images}/text.png"], "cannot read"),
    "16-bit image": (["explain", "{images}/deep.png"], "8-bit RGB"),
    "unknown method": (["explain", "{images}/shape.png", "--methods", "saliency,lime"], "valid methods are"),
    "unknown class": (["explain", "{images}/shape.png", "--target", "dog"], "valid classes are: disc, ring"),
    "missing weights file": (["explain", "{images}/shape.png", "--weights", "{tmp}/none.npz"], "not found"),
    "weights folder without weights": (["explain", "{images}/shape.png", "--weights", "{tmp}"],
                                       "minicnn train shapes"),
    "weights that do not fit": (["explain", "{images}/shape.png", "--weights", "{wrong}"],
                                "shape mismatches: conv1.weight: file (15, "),
    "shapes weights for alexnet": (["explain", "{images}/shape.png", "--model", "alexnet", "--weights", "{wrong}"],
                                   "missing keys: ['features.0.weight'"),
    "no ImageNet weights in the cache": (["explain", "{images}/shape.png", "--model", "vgg16"],
                                         "python -m minicnn.recipes.fetch_weights vgg16"),
    "cam asked of a network without GAP": (["explain", "{images}/shape.png", "--weights", "{vgg}", "--methods",
                                            "cam"], "use gradcam"),
    "a weight file that is not one": (["explain", "{images}/shape.png", "--weights", "{images}/text.png"],
                                      "cannot read weights from {images}/text.png: unknown format"),
    "a folder as --out": (["explain", "{images}/shape.png", "--out", "{tmp}"], "--out must name the figure file"),
    "tour of alexnet without images": (["tour", "--model", "alexnet", "--out", "{tmp}/t"], "--images"),
    "tour of shapes with images": (["tour", "--images", "{images}/shape.png", "--out", "{tmp}/t"],
                                   "--images is for"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_non_zero_with_one_clear_line(case, images, weights_args, tmp_path, capsys, monkeypatch):
    args, expected = BAD_INPUTS[case]
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "empty-cache"))
    weights_folder = Path(weights_args[1]) if weights_args else REPO / "weights"
    fill = {"images": images, "tmp": tmp_path, "wrong": mismatched_weights(tmp_path),
            "vgg": weights_folder / "shapes_vgg.npz"}
    args = [arg.format(**fill) for arg in args]
    if "--weights" not in args and "--model" not in args:
        args += weights_args
    status, _, stderr = run(args, capsys)
    assert status != 0
    assert expected.format(**fill) in stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"minicnn {args[0]}: error: ")


def test_unknown_imagenet_class_suggests_close_names():
    from minicnn.imagenet import IMAGENET_CLASSES

    assert user_input.resolve_target("Tabby", IMAGENET_CLASSES) == IMAGENET_CLASSES.index("tabby")
    assert user_input.resolve_target("281", IMAGENET_CLASSES) == 281
    with pytest.raises(user_input.UserError, match="did you mean 'tabby'"):
        user_input.resolve_target("tabbby", IMAGENET_CLASSES)
    with pytest.raises(user_input.UserError, match=r"class 'crane' is ambiguous: it names 'crane \(class 134\)' and "
                                            r"'crane \(class 517\)'"):
        user_input.resolve_target("crane", IMAGENET_CLASSES)
    assert user_input.resolve_target("Crane (class 517)", IMAGENET_CLASSES) == 517


def test_bad_input_in_a_real_process_has_no_traceback(images, tmp_path):
    result = run_minicnn(["explain", str(images / "text.png")], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("minicnn explain: error: cannot read") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_argparse_errors_exit_non_zero(capsys):
    for args in (["explain"], ["tour", "--model", "resnet"], ["train", "cats"], ["frobnicate"]):
        with pytest.raises(SystemExit) as stop:
            cli.main(args)
        assert stop.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# help


@pytest.mark.parametrize("args", [["--help"], ["tour", "--help"], ["explain", "--help"], ["train", "--help"],
                                  ["train", "shapes", "--help"], ["bench", "--help"], ["explore", "--help"],
                                  ["index", "--help"], ["dissect", "--help"], ["evaluate", "--help"]])
def test_every_command_has_help(args, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(args)
    assert stop.value.code == 0
    assert "usage: minicnn" in capsys.readouterr().out


@pytest.mark.parametrize("mode,bgr", [("torch", False), ("caffe", True)])
def test_a_caffe_mode_tour_shows_network_order_signals_as_rgb(mode, bgr):
    """Keras' VGG16 reads blue, green, red: its signals and filters must be flipped to be shown as RGB."""
    from minicnn import Flatten, Linear, Network
    from minicnn.tour import imagenet_subject, in_rgb_order

    net = Network([("flatten", Flatten()), ("fc", Linear(3 * 4 * 4, 5))], seed=0)
    images = np.zeros((2, 3, 4, 4), np.float32)
    subject = imagenet_subject("vgg16", net, images, images, mode=mode)
    signal = np.stack([np.full((4, 4), value) for value in (1.0, 2.0, 3.0)])  # channels 0, 1, 2
    assert subject.bgr is bgr
    assert list(in_rgb_order(subject, signal)[:, 0, 0]) == ([3.0, 2.0, 1.0] if bgr else [1.0, 2.0, 3.0])


def test_a_missing_optional_package_skips_its_section_and_a_broken_minicnn_import_does_not(monkeypatch):
    from minicnn import tour

    def needs_sklearn(_):
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    def broken(_):
        raise ModuleNotFoundError("No module named 'minicnn.viz.gone'", name="minicnn.viz.gone")

    result = tour.run_section(None, "tsne", "t-SNE", "12_embeddings.py", needs_sklearn)
    assert result.skipped == "a package it needs is not installed (No module named 'sklearn')"
    with pytest.raises(ModuleNotFoundError, match="minicnn.viz.gone"):
        tour.run_section(None, "x", "X", "x.py", broken)
