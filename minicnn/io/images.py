"""Image files in and out, and resizing: (3, H, W) float32 RGB in [0, 1], channels first.

    load_image(path) -> (3, H, W)    8-bit files only (value = byte / 255); other modes converted to RGB
    save_image(path, image)          the reverse, refusing values outside [0, 1]
    resize(image, (h, w))            bilinear, antialiased when shrinking, in float (no rounding to 8 bits)
"""
from pathlib import Path

import numpy as np

from ..checks import check_array

# Pillow modes that convert to RGB faithfully, and what each one is (8 bits per channel).
CONVERTIBLE_MODES = {
    "L": "greyscale", "LA": "greyscale with alpha (alpha dropped)", "1": "black-and-white",
    "P": "palette", "PA": "palette with alpha (alpha dropped)", "RGBA": "RGBA (alpha dropped)",
    "RGBX": "RGBX", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV",
}


def load_image(path):
    """Read an 8-bit image file with Pillow -> (3, H, W) float32 in [0, 1], value = byte / 255.

    RGB as is; greyscale, palette, RGBA and the other CONVERTIBLE_MODES are converted to RGB (alpha
    dropped). A 16-bit or float image (Pillow modes I;16, I, F) has no faithful 8-bit RGB -- Pillow
    would clip it to white or round it to black -- so it is a ValueError, as is a file Pillow cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not an existing image file")
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode != "RGB" and picture.mode not in CONVERTIBLE_MODES:
                raise ValueError(f"{path} is a {picture.mode!r} image (16- or 32-bit or multi-band); minicnn "
                                 "reads 8-bit RGB, greyscale or RGBA images: save it as an 8-bit RGB PNG or JPEG")
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise ValueError(f"cannot read {path} as an image ({type(error).__name__}: {error})") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def image_mode(path):
    """Pillow's name for how the file stores its pixels ("RGB", "L", "P", "RGBA", "I;16", ...)."""
    from PIL import Image

    with Image.open(path) as picture:
        return picture.mode


def save_image(path, image):
    """Write a (3, H, W) float image with values in [0, 1] as an 8-bit file (format from the
    suffix, e.g. .png). Values outside [0, 1] are an error, not clipped: clip them yourself."""
    from PIL import Image

    check_array(image, "image", ndim=3)
    if image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {image.shape}")
    if not np.all((image >= 0) & (image <= 1)):
        raise ValueError(
            f"image values must lie in [0, 1] (and not be NaN), got min {np.nanmin(image):.4g}, "
            f"max {np.nanmax(image):.4g}; use np.clip(image, 0, 1) if that is what you mean"
        )
    pixels = np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(Path(path))


def resize(image, hw):
    """(C, H, W) float -> (C, h, w), bilinear, each channel in Pillow's 32-bit float mode.

    Pillow's BILINEAR filter widens itself by the shrink factor when it shrinks, so each output pixel
    averages all the input pixels under it (antialiasing), the method of torch's
    F.interpolate(..., mode="bilinear", antialias=True). Values are not clipped (signals may be signed);
    the result has the image's dtype (computed in float32).
    """
    from PIL import Image

    check_array(image, "image", ndim=3)
    h, w = (int(side) for side in hw)
    if h < 1 or w < 1:
        raise ValueError(f"hw must be two sizes >= 1, got {tuple(hw)}")
    channels = [Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))
                .resize((w, h), Image.Resampling.BILINEAR) for channel in image]
    return np.stack([np.asarray(channel, dtype=np.float32) for channel in channels]).astype(image.dtype, copy=False)
