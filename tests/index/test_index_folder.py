"""A folder of image files, and reading the index back:

- every .jpg/.jpeg/.png at any depth (any case), sorted by path = the image ids; corrupt, empty or
  absurdly elongated files skipped and listed with the reason, in the manifest and by the CLI;
- the index == top_patches over the readable images (preprocessed as the model wants), ids mapped back;
- load_index(DIR).top / crops / patches / deconvnet == the winners' pixels, top_patches' Patch and
  viz.search.deconvnet; wrong layer, channel or network: clear errors; an unfinished index is refused;
- `import minicnn` loads no index code, and minicnn.load_index is the index's load_index.
"""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import imagenet, models
from minicnn.cli import main
from minicnn.io.images import load_image
from minicnn.index import FolderSource, ShapesSource, build_index, load_index, shapes_preprocessing
from minicnn.index.sources import list_images
from minicnn.viz.search import deconvnet, top_patches

LAYER = "relu2_2"


def write_folder(root, seed=0):
    """Images of several sizes in nested folders, plus files that are not (readable) images."""
    rng = np.random.default_rng(seed)
    (root / "b" / "deeper").mkdir(parents=True)
    pictures = {"a1.png": (64, 64), "b/deeper/x.PNG": (64, 64), "b/c.jpg": (64, 64), "b/wide.jpeg": (80, 100),
                "z.png": (64, 64), "a0.png": (64, 64), "tiny.png": (1, 30)}
    for name, (height, width) in pictures.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / name)
    (root / "broken.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def expected_input(path):
    """What the shapes models see of an image: shorter side 64, the central 64 x 64."""
    image = load_image(path)
    if image.shape[1:] != (64, 64):
        image = imagenet.center_crop(np.clip(imagenet.resize_shorter_side(image, 64), 0, 1), 64)
    return image


def test_a_folder_is_listed_recursively_and_unreadable_files_are_skipped(tmp_path):
    root = write_folder(tmp_path / "photos")
    names = list_images(root)
    assert names == ["a0.png", "a1.png", "b/c.jpg", "b/deeper/x.PNG", "b/wide.jpeg", "broken.jpg", "empty.png",
                     "tiny.png", "z.png"]
    net = models.shapes_vgg(seed=5)
    index = build_index(net, FolderSource(root, shapes_preprocessing()), [LAYER, "relu3_1"], tmp_path / "idx", k=3,
                        batch_size=2, shard_size=4, progress=False)
    skipped = {entry["name"]: entry["reason"] for entry in index.skipped}
    assert sorted(skipped) == ["broken.jpg", "empty.png", "tiny.png"]
    assert "cannot read" in skipped["broken.jpg"] and "longer than wide" in skipped["tiny.png"]
    assert [entry["image_id"] for entry in index.skipped] == [5, 6, 7]
    assert (tmp_path / "idx" / "images.txt").read_text().splitlines() == names
    readable = [i for i, name in enumerate(names) if name not in skipped]
    assert index.num_images == len(readable)
    images = np.stack([expected_input(root / names[i]) for i in readable])
    for layer in (LAYER, "relu3_1"):
        for channel in range(index.channels(layer)):
            expected = top_patches(net, images, layer, channel, k=3, progress=False)
            assert [(h.image_id, h.position, h.box) for h in index.top(layer, channel)] == \
                   [(readable[p.index], p.position, p.box) for p in expected]
            np.testing.assert_allclose([h.activation for h in index.top(layer, channel)],
                                       [p.activation for p in expected], rtol=1e-6)


def test_the_cli_indexes_a_folder_and_lists_what_it_skipped(tmp_path, capsys):
    root = write_folder(tmp_path / "photos")
    status = main(["index", "--model", "shapes_vgg", "--layers", LAYER, "--images", str(root), "--k", "2", "--out",
                   str(tmp_path / "idx"), "--quiet"])
    out = capsys.readouterr().out
    assert status == 0 and "indexed 6 images for layers relu2_2" in out
    assert "skipped 3 unreadable file(s)" in out and "  broken.jpg: cannot read" in out
    index = minicnn.load_index(tmp_path / "idx")
    assert index.model["name"] == "shapes_vgg" and len(index.top(LAYER, 0)) == 2
    assert main(["index", "--model", "shapes_vgg", "--layers", LAYER, "--images", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "idx2"), "--quiet"]) == 2
    assert "is not an existing folder" in capsys.readouterr().err


def test_the_winners_pixels_are_made_afterwards_for_the_winners_only(tmp_path):
    net = models.shapes_vgg(seed=6)
    source = ShapesSource(30, seed=2)
    index = build_index(net, source, [LAYER], tmp_path, k=4, batch_size=8, shard_size=8, progress=False)
    images = source.part(0, 30).make(0, 30).images
    for channel in (0, 7, 15):
        hits = index.top(LAYER, channel)
        expected = top_patches(net, images, LAYER, channel, k=4, batch_size=8, progress=False)
        for patch, expected_patch in zip(index.patches(LAYER, channel), expected):
            assert patch[:5] == expected_patch[:5]
            np.testing.assert_array_equal(patch.crop, expected_patch.crop)
        for crop, hit in zip(index.crops(LAYER, channel), hits):
            top, bottom, left, right = hit.box
            np.testing.assert_array_equal(crop, images[hit.image_id][:, top:bottom, left:right])
        for reconstruction, hit in zip(index.deconvnet(net, LAYER, channel), hits):
            direct = deconvnet(net, images[hit.image_id][None], LAYER, channel)
            assert (reconstruction.position, reconstruction.box) == (hit.position, hit.box) == (direct.position,
                                                                                                 direct.box)
            np.testing.assert_array_equal(reconstruction.reconstruction, direct.reconstruction)
    with pytest.raises(ValueError, match="weights differ"):
        index.deconvnet(models.shapes_vgg(seed=7), LAYER, 0)
    with pytest.raises(KeyError, match=r"not in this index; indexed layers are \['relu2_2'\]"):
        index.top("relu3_1", 0)
    with pytest.raises(ValueError, match="layer 'relu2_2' has 16 channels"):
        index.top(LAYER, 16)


def test_an_unfinished_index_is_refused_with_advice(tmp_path):
    build_index(models.shapes_vgg(seed=6), ShapesSource(8), [LAYER], tmp_path, k=2, batch_size=4, progress=False)
    manifest = (tmp_path / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(manifest.replace('"complete": true', '"complete": false'))
    with pytest.raises(ValueError, match="unfinished index: run the same `minicnn index` command again"):
        load_index(tmp_path)


def test_import_minicnn_loads_no_index_code():
    code = ("import sys, minicnn; loaded = [m for m in sys.modules if m.startswith(('minicnn.index', 'dask', "
            "'distributed', 'minicnn.viz'))]; assert not loaded, loaded; "
            "from minicnn.index.store import load_index; assert minicnn.load_index is load_index; "
            "assert 'minicnn.index.store' in sys.modules; "
            "exec('try:\\n minicnn.no_such_name\\nexcept AttributeError as e:\\n print(e)')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "module 'minicnn' has no attribute 'no_such_name'"
