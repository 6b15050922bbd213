"""minicnn.io.images: reading and writing 8-bit image files, and the one bilinear resize."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from minicnn.data import make_shapes
from minicnn.io.images import load_image, resize, save_image

REFERENCE = make_shapes(2, seed=3)


def test_save_then_load_round_trip(tmp_path):
    image = REFERENCE.images[0]
    save_image(tmp_path / "x.png", image)
    loaded = load_image(tmp_path / "x.png")
    assert loaded.shape == image.shape and loaded.dtype == np.float32
    assert np.abs(loaded - image).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_load_converts_to_rgb(tmp_path, mode):
    Image.new(mode, (7, 5)).save(tmp_path / "x.png")
    image = load_image(tmp_path / "x.png")
    assert image.shape == (3, 5, 7) and image.dtype == np.float32


def test_image_io_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    # 16-bit and float images have no faithful 8-bit RGB: Pillow's convert would give white / black
    Image.fromarray(np.full((4, 5), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match=r"deep.png is a 'I;16' image .* 8-bit"):
        load_image(tmp_path / "deep.png")
    Image.fromarray(np.full((4, 5), 0.25, np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match=r"float.tiff is a 'F' image"):
        load_image(tmp_path / "float.tiff")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"cannot read .*text.png as an image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*max 1.5"):
        save_image(tmp_path / "x.png", np.full((3, 4, 4), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, H, W\), got \(4, 4, 3\)"):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        save_image(tmp_path / "x.png", np.zeros((3, 4, 4), np.uint8))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31))
def test_resize_is_a_per_channel_linear_map_that_keeps_constants(h, w, new_h, new_w, seed):
    """Bilinear resizing is linear, acts on each channel alone, and maps a constant image to itself."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, 2, h, w)).astype(np.float32)
    out = resize(a + 2 * b, (new_h, new_w))
    assert out.shape == (2, new_h, new_w) and out.dtype == np.float32
    np.testing.assert_allclose(out, resize(a, (new_h, new_w)) + 2 * resize(b, (new_h, new_w)), atol=1e-4)
    np.testing.assert_allclose(resize(a[:1], (new_h, new_w))[0], out[0] - 2 * resize(b, (new_h, new_w))[0], atol=1e-4)
    np.testing.assert_allclose(resize(np.full((1, h, w), 0.7, np.float32), (new_h, new_w)), 0.7, atol=1e-6)


def test_resize_equals_torch_antialiased_bilinear():
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(0).random((3, 37, 50)).astype(np.float32)
    for hw in [(16, 20), (40, 61), (37, 50)]:
        want = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=hw, mode="bilinear",
                                               antialias=True, align_corners=False)[0].numpy()
        np.testing.assert_allclose(resize(image, hw), want, atol=2e-5)


def test_resize_keeps_the_dtype_and_refuses_bad_sizes():
    assert resize(np.zeros((1, 4, 4)), (2, 2)).dtype == np.float64
    with pytest.raises(ValueError, match=r"hw must be two sizes >= 1, got \(0, 3\)"):
        resize(np.zeros((1, 4, 4), np.float32), (0, 3))
