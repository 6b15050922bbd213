"""The weights we ship: they load (checksum verified) and classify fresh held-out images."""
import numpy as np
import pytest

from minicnn import data
from minicnn.models import load_pretrained
from minicnn.train import accuracy

FRESH_SEED = 777  # neither the training seed (1) nor the model cards' test seed (1001)


@pytest.fixture(scope="module")
def fresh_images():
    return data.make_shapes(500, seed=FRESH_SEED, distractor=0.5)


@pytest.mark.parametrize("name", ["shapes_cam", "shapes_vgg"])
def test_shipped_weights_reach_97_percent_on_fresh_images(name, fresh_images):
    """>= 97% on 500 fresh images (measured: 99.8% for both; one standard error of a 97% rate on
    500 images is 0.76 points, so a model at the target would rarely fail by chance)."""
    net = load_pretrained(name)
    assert accuracy(net, fresh_images.images, fresh_images.labels) >= 0.97


def test_shipped_models_agree_with_each_other_on_most_images(fresh_images):
    cam = load_pretrained("shapes_cam").forward(fresh_images.images[:100]).argmax(axis=1)
    vgg = load_pretrained("shapes_vgg").forward(fresh_images.images[:100]).argmax(axis=1)
    assert np.mean(cam == vgg) >= 0.95


# ----------------------------------------------------------------------------------------------
# where the shipped weights are found: a checkout (editable install) or a regular install's copy


def test_setup_cfg_installs_every_shipped_file():
    """A regular `pip install` copies weights/ by setup.cfg's [options.data_files]: every model the
    package can load, with its card, must be listed there, and nothing that does not exist."""
    import configparser
    from pathlib import Path

    from minicnn.models import PRETRAINED, REPO_WEIGHTS_DIR

    config = configparser.ConfigParser()
    config.read(REPO_WEIGHTS_DIR.parent / "setup.cfg")
    listed = {Path(line.strip()) for line in config["options.data_files"]["share/minicnn/weights"].split("\n")
              if line.strip()}
    needed = {Path("weights") / f"{name}{suffix}" for name in PRETRAINED for suffix in (".npz", ".json")}
    assert needed <= listed, f"not installed: {sorted(map(str, needed - listed))}"
    assert all((REPO_WEIGHTS_DIR.parent / path).is_file() for path in listed)


def test_load_pretrained_finds_an_installed_copy_when_there_is_no_checkout(tmp_path, monkeypatch):
    import shutil

    from minicnn import models

    repository = models.REPO_WEIGHTS_DIR
    checkout, installed = tmp_path / "checkout" / "weights", tmp_path / "share" / "minicnn" / "weights"
    installed.mkdir(parents=True)
    for suffix in (".npz", ".json"):
        shutil.copy(repository / f"shapes_cam{suffix}", installed)
    monkeypatch.setattr(models, "REPO_WEIGHTS_DIR", checkout)
    monkeypatch.setattr(models, "INSTALLED_WEIGHTS_DIRS", (tmp_path / "elsewhere", installed))
    assert models.shipped_weights_dir() == installed
    x = data.make_shapes(4, seed=FRESH_SEED).images
    np.testing.assert_array_equal(load_pretrained("shapes_cam").forward(x),
                                  load_pretrained("shapes_cam", repository).forward(x))
    with pytest.raises(FileNotFoundError, match=r"shapes_vgg\.npz not found"):
        load_pretrained("shapes_vgg")   # only shapes_cam was copied


def test_with_no_shipped_weights_anywhere_the_error_names_the_checkout_folder(tmp_path, monkeypatch):
    from minicnn import models

    monkeypatch.setattr(models, "REPO_WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(models, "INSTALLED_WEIGHTS_DIRS", (tmp_path / "share",))
    assert models.shipped_weights_dir() == tmp_path / "weights"
    with pytest.raises(FileNotFoundError, match=r"weights/shapes_cam\.npz not found: re-create it"):
        load_pretrained("shapes_cam")


# ----------------------------------------------------------------------------------------------
# shapes_seg: per-pixel classes


def test_shapes_seg_mean_iou_on_fresh_images_is_within_one_point_of_its_card(fresh_images):
    """Mean IoU over the 11 classes (background + 10 shapes) on 500 fresh images, against the card's
    number on its 5,000 test images: the same model on other images of the same generator."""
    import json

    from minicnn.models import SEGMENTATION_CLASSES, shipped_weights_dir
    from minicnn.recipes.train_seg import pixel_targets
    from minicnn.train import iou_per_class, segmentation_confusion

    card_path = shipped_weights_dir() / "shapes_seg.json"
    if not card_path.is_file():
        pytest.skip("shapes_seg weights are not shipped")
    card = json.loads(card_path.read_text())
    net = load_pretrained("shapes_seg")
    confusion = segmentation_confusion(net, fresh_images.images, pixel_targets(fresh_images), SEGMENTATION_CLASSES)
    mean_iou = float(np.nanmean(iou_per_class(confusion)))
    assert abs(mean_iou - card["test_mean_iou"]) <= 0.01, (mean_iou, card["test_mean_iou"])


def test_shapes_vgg_colour_accuracy_on_fresh_images_is_within_one_point_of_its_card(fresh_images):
    """The fine-tuned network names the object's colour of 500 fresh images as well as its card says it did
    on its 5,000 test images (within one point)."""
    import json

    from minicnn.models import shipped_weights_dir

    card = json.loads((shipped_weights_dir() / "shapes_vgg_colour.json").read_text())
    net = load_pretrained("shapes_vgg_colour")
    assert abs(accuracy(net, fresh_images.images, fresh_images.colors) - card["test_accuracy"]) <= 0.01
