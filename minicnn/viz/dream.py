"""DeepDream (Mordvintsev, Olah & Tyka 2015): amplify whatever a layer already sees in an image.

The recipe, in the lecture's words: forward the image to a chosen layer, set that layer's gradient
EQUAL TO ITS ACTIVATION, back-propagate to the pixels, update the image, repeat. Setting the seed
g = f is gradient ascent on

    E(x) = 1/2 sum_i f_i(x)^2,      because  dE/df_i = f_i,   so  dE/dx = J_f(x)^T f

(J_f the Jacobian of the layer's output): what the layer responds to a little, it will respond to
more after the step, and the pattern grows. The original tricks, kept here:

- step normalized by mean |gradient|:  x <- x + (step_size / 255) * g / mean|g|
  (step_size counts 8-bit grey levels, as the original worked on 0..255 pixels; ours are 0..1);
- random roll jitter: the image is rolled by a random (dy, dx) in [-jitter, jitter] before the step
  and rolled back after it, so the pattern does not lock onto the pixel grid;
- an octave pyramid: the image is shrunk `octaves - 1` times by `octave_scale` (scipy.ndimage.zoom,
  bilinear); dreaming starts on the smallest, and the DETAIL it added (dreamed minus base image)
  is zoomed up and added to the next larger base image, so large structures form first;
- pixel values are clipped to the valid range after each step.
"""
from typing import NamedTuple

import numpy as np
from scipy.ndimage import zoom
from tqdm.auto import tqdm

from ..checks import check_array, check_finite, check_int_at_least, check_number
from .ascent import check_pixel_range
from ..io.images import resize
from .attribution import eval_mode


class DreamResult(NamedTuple):
    """image (C, H, W): the dreamed image (same size as the input);
    objective (octaves * steps,): 1/2 sum f^2 at the layer before each step, octave after octave
    (each at that octave's image size, so the values jump between octaves);
    octave_shapes: the (H, W) of each octave, smallest first."""

    image: np.ndarray
    objective: np.ndarray
    octave_shapes: list


def dream_gradient(net, image, layer):
    """E = 1/2 sum f^2 of layer's output f at image (C, H, W), and dE/d image (C, H, W).

    One forward pass to `layer`, then ONE backward pass whose seed is the activation itself.
    """
    activation = net.forward(image[None], upto=layer)
    gradient = net.backward(activation, upto=layer, param_grads=False)[0]
    return 0.5 * float(np.sum(activation.astype(np.float64) ** 2)), gradient


def dream_step(net, image, layer, step_size=1.5, jitter=32, rng=None, pixel_range=(0.0, 1.0)):
    """One DeepDream step on image (C, H, W): roll, ascend by the normalized gradient, roll back, clip.

    Returns (new image, E before the step).
    """
    rng = np.random.default_rng() if rng is None else rng
    dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
    rolled = np.roll(image, (dy, dx), axis=(1, 2))
    energy, gradient = dream_gradient(net, rolled, layer)
    scale = np.abs(gradient).mean()
    if scale > 0:
        rolled = rolled + (step_size / 255.0 / scale * gradient).astype(image.dtype)
    image = np.roll(rolled, (-dy, -dx), axis=(1, 2))
    if pixel_range is not None:
        image = np.clip(image, *pixel_range).astype(image.dtype, copy=False)  # per-channel ends are float64
    return image, energy


def octave_pyramid(image, octaves, octave_scale):
    """[image, image shrunk by octave_scale, shrunk twice, ...] (`octaves` images, largest first)."""
    pyramid = [image]
    for _ in range(octaves - 1):
        pyramid.append(zoom(pyramid[-1], (1, 1 / octave_scale, 1 / octave_scale), order=1))
    return pyramid


def deep_dream(net, image, layer, steps=10, step_size=1.5, octaves=4, octave_scale=1.4, jitter=32,
               pixel_range=(0.0, 1.0), seed=0, progress=True):
    """DeepDream of image (C, H, W) at `layer`: `steps` steps per octave, `octaves` octaves.

    The smallest octave must still fit the network up to `layer` (convolutional layers take any size;
    a layer after Flatten/Linear needs octaves=1). pixel_range: (low, high), numbers or one per
    channel, or None. seed: the jitter's generator. Returns a DreamResult.
    """
    check_finite(net.check_input_dtype(check_array(image, "image", ndim=3), "image"), "image")
    steps = check_int_at_least(steps, "steps", 0)
    octaves = check_int_at_least(octaves, "octaves", 1)
    jitter = check_int_at_least(jitter, "jitter", 0)
    step_size = check_number(step_size, "step_size", low=0, low_open=True)
    octave_scale = check_number(octave_scale, "octave_scale (each octave is that much smaller)", low=1, low_open=True)
    pixel_range = check_pixel_range(pixel_range, image.shape[0])
    net._index(layer)  # a clear KeyError for an unknown layer
    rng = np.random.default_rng(seed)
    pyramid = octave_pyramid(image, octaves, octave_scale)[::-1]  # smallest first
    if min(pyramid[0].shape[1:]) < 1:
        raise ValueError(f"the smallest octave of a {image.shape[1:]} image would be {pyramid[0].shape[1:]} "
                         f"({octaves} octaves, {octave_scale:g} x apart): use fewer octaves or a smaller octave_scale")
    detail = np.zeros_like(pyramid[0])
    energies = []
    with eval_mode(net), tqdm(total=octaves * steps, desc=f"deep_dream {layer}", disable=not progress,
                              leave=False) as bar:
        for base in pyramid:
            dreamed = base + resize(detail, base.shape[1:])
            _check_fits(net, dreamed, layer)
            for _ in range(steps):
                dreamed, energy = dream_step(net, dreamed, layer, step_size, jitter, rng, pixel_range)
                energies.append(energy)
                bar.update(1)
                bar.set_postfix(objective=f"{energy:.4g}")
            detail = dreamed - base
    return DreamResult(dreamed, np.array(energies), [p.shape[1:] for p in pyramid])


def _check_fits(net, image, layer):
    """A clear error when an octave is too small (or a layer needs a fixed size)."""
    try:
        net.forward(image[None], upto=layer)
    except ValueError as error:
        raise ValueError(f"an octave of size {image.shape[1:]} does not fit the network up to {layer!r} "
                         f"({error}); use fewer octaves, a smaller octave_scale, or an earlier layer") from error
