"""Gradient ascent in pixel space: which image would this unit (or this class) like to see most?

Simonyan 2014 ("class model visualization") and Yosinski 2015 (any unit, better regularizers):

    x* = argmax_x  S(x) - lambda ||x||^2

S is a quantity computed by the network -- the pre-softmax score of a class (`class_model`) or the
activation of one channel of one layer (`activation_max`). Both are LINEAR in some layer's output f
(class_model's objective="log_probability" is not: its gradient at the scores is e_c - p):

    S(x) = < f(x), s >        s = e_c at the scores, or 1/(h w) on one channel's map (its mean)

so dS/dx is ONE backward pass started at that layer with the seed s (the network's own backward,
rule "gradient"). The loop, shared by both functions (`ascend`):

    g = dS/dx - 2 lambda x                    (the gradient of the regularized objective)
    x <- x + lr * g                           (normalize=False: Simonyan's plain step)
    x <- x + lr * g / mean|g|                 (normalize=True: every step moves a pixel by lr on average)
    x <- r(x)                                 Yosinski's operator r, each part optional:
         decay           x <- (1 - theta) x
         blur            every k steps, Gaussian blur of each colour plane (scipy.ndimage)
         small norm      pixels whose colour vector |x_ij| is below the p-th percentile -> 0
         small contrib.  pixels whose |sum_c x_cij g_cij| is below the p-th percentile -> 0
         pixel range     clip mean + x to the valid range (e.g. [0, 1])
    jitter: before each step the image is rolled by a random (dy, dx); the gradient is rolled back.

x is the image MINUS a mean: Simonyan start from the zero image of a mean-subtracted network and add
the dataset mean at the end. The network here sees `mean + x`; pass the dataset's per-channel mean
to start from the "average image" (the default 0.5 is mid-grey for pixels in [0, 1]; for a network
that takes mean-subtracted input pass mean=0 and a pixel_range shifted to match). L2 and decay both
pull x towards 0, i.e. the image towards the mean.

A flat start image is a special point: no edges anywhere, so many ReLUs are shut and every max-pool
window is a tie. A unit that is silent there has zero gradient and never moves; start="random"
(small noise) gets it going, which is why activation_max starts from noise by default.
"""
from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from .. import ops
from ..checks import check_choice, check_finite, check_int_at_least, check_number
from .attribution import check_targets, eval_mode, forward_checked


class AscentResult(NamedTuple):
    """image (C, H, W): the network input found, mean + x (what to show);
    objective (steps + 1,): S at the image of each step (entry t is S(x_t), seen jittered when
    jitter > 0), and last S(x_final) of the final image, not jittered;
    regularized (steps + 1,): S - lambda ||x||^2 at the same images;
    output: the objective layer's output for the final image, without the batch axis (for
    class_model the scores (K,): softmax(output)[target] is the class probability)."""

    image: np.ndarray
    objective: np.ndarray
    regularized: np.ndarray
    output: np.ndarray


# ----------------------------------------------------------------------------------------------
# the two objectives


def activation_max(net, layer, channel, steps=200, lr=0.05, l2=1e-3, decay=0.0, blur_every=4,
                   blur_sigma=0.5, clip_norm_pct=0.0, clip_contrib_pct=0.0, jitter=2, where="mean",
                   shape=(3, 64, 64), mean=0.5, pixel_range=(0.0, 1.0), normalize=True, start="random",
                   seed=0, progress=True, on_progress=None):
    """The image that maximizes one channel of `layer` (Yosinski 2015), by gradient ascent.

    S(x) = mean over positions of channel `channel` of layer's output (where="mean"), or its value at
    the centre position (h // 2, w // 2) (where="center"); a layer with a flat (N, K) output (Linear)
    has one value per channel. shape: the (C, H, W) of the image to grow. The other arguments are
    those of `ascend` (see the module docstring). The defaults follow Yosinski: normalized steps (units
    of different layers differ in scale by orders of magnitude), a little blur and jitter, and a noise
    start. Returns an AscentResult.
    """
    check_choice(where, "where", ("mean", "center"))
    x0 = _start_image(net, shape, start, seed)
    output = _probe(net, x0, mean, layer)
    _check_channel(layer, channel, output.shape)
    return ascend(net, layer, channel_seed(output.shape, channel, where), x0, steps=steps, lr=lr, l2=l2,
                  decay=decay, blur_every=blur_every, blur_sigma=blur_sigma, clip_norm_pct=clip_norm_pct,
                  clip_contrib_pct=clip_contrib_pct, jitter=jitter, mean=mean, pixel_range=pixel_range,
                  normalize=normalize, seed=seed, progress=progress, on_progress=on_progress,
                  description=f"activation_max {layer}[{channel}]")


def class_model(net, target, steps=200, lr=0.05, l2=1e-3, decay=0.01, blur_every=2, blur_sigma=0.5,
                clip_norm_pct=0.0, clip_contrib_pct=0.0, jitter=4, shape=(3, 64, 64), mean=0.5,
                pixel_range=(0.0, 1.0), normalize=True, start="zero", objective="score", seed=0,
                progress=True):
    """Class model visualization (Simonyan 2014): the image that maximizes the PRE-softmax score S_c.

    The network's last layer must give class scores (N, K). From the image `mean` (0.5: mid-grey),
    gradient ascent on S - l2 ||x||^2 with Yosinski's regularizers on by default: decay 0.01, a
    Gaussian blur (sigma 0.5) every 2 steps, jitter up to 4 pixels, normalized steps of 0.05. Without
    them the ascent finds high-frequency patterns (try blur_every=0, decay=0, jitter=0).

    objective="score" (the lecture's): S = S_c. Pre-softmax, because p(c) can also rise by pushing
    other classes down; S_c can only rise by showing more of c (which need not make c the top class:
    every score of a ReLU network grows with the image's contrast).
    objective="log_probability": S = log p_c = S_c - log sum_k exp(S_k), whose gradient at the scores
    is e_c - p: up for c, down for every other class in proportion to its probability. It flattens
    out near 0 once c wins, while a normalized step keeps its size, so the regularizers take over
    there. docs/results/class-models.md shows what both give on the shipped networks.
    Returns an AscentResult (output = the final scores).
    """
    x0 = _start_image(net, shape, start, seed)
    scores = _probe(net, x0, mean, net.names[-1])
    if scores.ndim != 2:
        raise ValueError(f"class_model needs a network ending in class scores (N, K); the last layer "
                         f"{net.names[-1]!r} gives shape {scores.shape}")
    target = int(check_targets(target, 1, scores.shape[1])[0])
    check_choice(objective, "objective", ("score", "log_probability"))
    if objective == "score":
        seed_gradient = np.zeros_like(scores)
        seed_gradient[0, target] = 1
        objective = linear_objective(seed_gradient)
    else:
        objective = log_probability_objective(target)
    return ascend(net, net.names[-1], objective, x0, steps=steps, lr=lr, l2=l2, decay=decay,
                  blur_every=blur_every, blur_sigma=blur_sigma, clip_norm_pct=clip_norm_pct,
                  clip_contrib_pct=clip_contrib_pct, jitter=jitter, mean=mean, pixel_range=pixel_range,
                  normalize=normalize, seed=seed, progress=progress, description=f"class_model {target}")


def channel_seed(output_shape, channel, where="mean"):
    """The seed s with S = <f, s>: one channel's mean (1 / (h w) on its map) or its centre value.

    output_shape (1, K, h, w) or (1, K) -> an array of that shape, zero outside channel `channel`.
    """
    seed = np.zeros(output_shape)
    if len(output_shape) == 2:
        seed[0, channel] = 1.0
    elif where == "mean":
        seed[0, channel] = 1.0 / (output_shape[2] * output_shape[3])
    else:
        seed[0, channel, output_shape[2] // 2, output_shape[3] // 2] = 1.0
    return seed


# ----------------------------------------------------------------------------------------------
# the shared loop


def linear_objective(seed_gradient):
    """The objective S(f) = <f, s> of a layer's output f: returns f -> (S, dS/df = s)."""
    def objective(output):
        seed = seed_gradient.astype(output.dtype)
        return float(np.vdot(output, seed)), seed
    return objective


def log_probability_objective(target):
    """S(f) = log softmax(f)_c = f_c - log sum_k exp(f_k) of scores f (1, K): returns f -> (S, e_c - p).

    dS/df_k = [k == c] - p_k: the score of c pushed up, every other score pushed down by its probability.
    """
    def objective(scores):
        log_p = ops.log_softmax(scores)
        seed = -np.exp(log_p)
        seed[0, target] += 1
        return float(log_p[0, target]), seed.astype(scores.dtype)
    return objective


def objective_gradient(net, layer, objective, image):
    """S and dS/d image at image (C, H, W), by one forward pass to `layer` and one backward pass.

    objective: a function f -> (S, dS/df) of the layer's output f (1, ...), or an array s meaning the
    linear objective S = <f, s>. The backward pass starts at `layer` with dS/df as its seed.
    Returns (S, gradient (C, H, W), f[0]).
    """
    if isinstance(objective, np.ndarray):
        objective = linear_objective(objective)
    output = net.forward(image[None], upto=layer)
    value, seed_gradient = objective(output)
    gradient = net.backward(seed_gradient, upto=layer, param_grads=False)[0]
    return value, gradient, output[0]


def ascend(net, layer, objective, x0, steps=200, lr=0.05, l2=1e-3, decay=0.0, blur_every=0,
           blur_sigma=0.5, clip_norm_pct=0.0, clip_contrib_pct=0.0, jitter=0, mean=0.5,
           pixel_range=(0.0, 1.0), normalize=True, seed=0, progress=True, on_progress=None,
           description="ascent"):
    """Maximize S(x) - l2 ||x||^2 from x0, S(x) = objective(output of `layer` at mean + x).

    objective: f -> (S, dS/df), or an array s for S = <f, s> (see objective_gradient).

    x0 (C, H, W): the start, relative to `mean` (a number, a (C,) per-channel mean or a (C, H, W)
    image). lr: step size (mean pixel change per step when normalize=True). decay: theta of
    x <- (1 - theta) x. blur_every / blur_sigma: Gaussian blur of x every k steps (0: never).
    clip_norm_pct / clip_contrib_pct: percentile (0-100) below which pixels are set to 0 (to the mean).
    jitter: largest random roll in pixels. pixel_range: (low, high) for mean + x (numbers, or one per
    channel), or None.
    seed: the generator of the jitter. on_progress: None, or a function called as on_progress(done, steps)
    after each step. Returns an AscentResult.
    """
    steps = check_int_at_least(steps, "steps", 0)
    jitter = check_int_at_least(jitter, "jitter", 0)
    blur_every = check_int_at_least(blur_every, "blur_every", 0)
    lr = check_number(lr, "lr", low=0, low_open=True)  # lr <= 0 would descend, or stand still
    l2 = check_number(l2, "l2", low=0)
    blur_sigma = check_number(blur_sigma, "blur_sigma", low=0)
    clip_norm_pct = check_number(clip_norm_pct, "clip_norm_pct", low=0, high=100)
    clip_contrib_pct = check_number(clip_contrib_pct, "clip_contrib_pct", low=0, high=100)
    decay = check_number(decay, "decay", low=0, high=1, high_open=True)
    pixel_range = check_pixel_range(pixel_range, x0.shape[0])
    dtype = x0.dtype
    mean = np.broadcast_to(_as_mean(mean, x0.shape), x0.shape).astype(dtype)
    rng = np.random.default_rng(seed)
    x = _clip_to_range(x0.copy(), mean, pixel_range)
    trace, regularized = [], []  # S and S - l2 ||x||^2 at every step
    with eval_mode(net), tqdm(range(steps), desc=description, disable=not progress, leave=False) as bar:
        for step in bar:
            shift = tuple(rng.integers(-jitter, jitter + 1, size=2)) if jitter else (0, 0)
            value, gradient, _ = objective_gradient(net, layer, objective, _roll(mean + x, shift))
            trace.append(value)
            regularized.append(value - l2 * float(np.sum(x.astype(np.float64) ** 2)))
            gradient = _roll(gradient, (-shift[0], -shift[1])) - 2 * l2 * x
            x = x + (lr * (_normalized(gradient) if normalize else gradient)).astype(dtype)
            x = regularize(x, gradient, step, decay, blur_every, blur_sigma, clip_norm_pct, clip_contrib_pct)
            x = _clip_to_range(x, mean, pixel_range)
            bar.set_postfix(objective=f"{value:.4g}")
            if on_progress is not None:
                on_progress(step + 1, steps)
        value, _, output = objective_gradient(net, layer, objective, mean + x)
    trace.append(value)
    regularized.append(value - l2 * float(np.sum(x.astype(np.float64) ** 2)))
    return AscentResult(mean + x, np.array(trace), np.array(regularized), output)


def regularize(x, gradient, step, decay=0.0, blur_every=0, blur_sigma=0.5, clip_norm_pct=0.0,
               clip_contrib_pct=0.0):
    """Yosinski 2015's operator r applied after step number `step` (0-based); x, gradient (C, H, W)."""
    if decay:
        x = (1 - decay) * x
    if blur_every and (step + 1) % blur_every == 0:
        x = gaussian_filter(x, sigma=(0, blur_sigma, blur_sigma))
    if clip_norm_pct:
        norm = np.sqrt((x ** 2).sum(axis=0))  # (H, W): length of each pixel's colour vector
        x = x * (norm >= np.percentile(norm, clip_norm_pct))
    if clip_contrib_pct:
        contribution = np.abs((x * gradient).sum(axis=0))  # first-order change of S if the pixel went to 0
        x = x * (contribution >= np.percentile(contribution, clip_contrib_pct))
    return x


# ----------------------------------------------------------------------------------------------
# helpers


def high_frequency_energy(image):
    """Share of the image's spectral energy above half the Nyquist frequency, in [0, 1].

    image (C, H, W): the mean of each plane is removed, |FFT|^2 is summed where the radial frequency
    sqrt(fy^2 + fx^2) > 0.25 cycles per pixel (half of the largest, 0.5), divided by the total.
    Blurring lowers it; a checkerboard has it ~1, a smooth gradient ~0.
    """
    planes = image - image.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(planes, axes=(1, 2))) ** 2
    fy = np.fft.fftfreq(image.shape[1])[:, None]
    fx = np.fft.fftfreq(image.shape[2])[None, :]
    high = np.sqrt(fy ** 2 + fx ** 2) > 0.25
    total = power.sum()
    return float(power[:, high].sum() / total) if total > 0 else 0.0


def _start_image(net, shape, start, seed):
    """x0 (C, H, W) in the network's dtype: zeros, or N(0, 0.01^2) noise (start="random")."""
    check_choice(start, "start", ("zero", "random"))
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)):
        raise ValueError(f"shape must be an image shape (C, H, W) of positive ints, got {shape!r}")
    dtype = net.dtype or np.float32
    if start == "zero":
        return np.zeros(tuple(shape), dtype=dtype)
    return (0.01 * np.random.default_rng(seed).standard_normal(tuple(shape))).astype(dtype)


def _probe(net, x0, mean, layer):
    """The output of `layer` for the start image mean + x0 (to learn its shape, with clear errors)."""
    image = (_as_mean(mean, x0.shape) + x0).astype(x0.dtype)
    with eval_mode(net):
        return forward_checked(net, image[None], upto=layer)


def _check_channel(layer, channel, output_shape):
    channels = output_shape[1]
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be an int in [0, {channels}), got {channel!r}")
    if not 0 <= channel < channels:
        raise ValueError(f"channel {channel} is out of range: layer {layer!r} has {channels} channels "
                         f"(output shape {output_shape[1:]}), valid channels are 0 to {channels - 1}")


def _as_mean(mean, shape):
    """A number, (C,) or (C, H, W) mean -> an array that broadcasts against (C, H, W)."""
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim == 1:
        mean = mean[:, None, None]
    try:
        np.broadcast_to(mean, shape)
    except ValueError:
        raise ValueError(f"mean must be a number, a per-channel ({shape[0]},) array or an image {shape}, "
                         f"got shape {mean.shape}") from None
    return check_finite(mean, "mean")


def check_pixel_range(pixel_range, channels):
    """None (no clipping) or (low, high): two numbers, or one number per channel for each ((C,) arrays,
    e.g. ImageNet's normalized black and white), finite, low < high everywhere -> (low, high) as
    floats or (C, 1, 1) arrays that broadcast against a (C, H, W) image."""
    if pixel_range is None:
        return None
    if not isinstance(pixel_range, (tuple, list)) or len(pixel_range) != 2:
        raise TypeError(f"pixel_range must be None or a pair (low, high), got {pixel_range!r}")
    low, high = (_range_end(value, f"pixel_range's {side}", channels) for value, side in zip(pixel_range, ("low", "high")))
    if not np.all(low < high):
        raise ValueError(f"pixel_range must be (low, high) with low < high, got {pixel_range!r}")
    return low, high


def _range_end(value, name, channels):
    """One end of a pixel range: a number, or (channels,) numbers -> a float or a (channels, 1, 1) array."""
    if np.ndim(value) == 0:
        return check_number(value, name)
    value = np.asarray(value)
    if value.shape != (channels,) or not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{name} must be a number or one number per channel, shape ({channels},), got "
                         f"{value!r} of shape {value.shape}")
    return check_finite(value.astype(np.float64), name)[:, None, None]


def _clip_to_range(x, mean, pixel_range):
    """Clip so that mean + x lies in pixel_range = (low, high) (from check_pixel_range); None: no clipping."""
    if pixel_range is None:
        return x
    low, high = pixel_range
    return np.clip(x, low - mean, high - mean).astype(x.dtype, copy=False)  # per-channel ends are float64


def _normalized(gradient):
    """gradient / mean|gradient| (unchanged if it is all zero)."""
    scale = np.abs(gradient).mean()
    return gradient / scale if scale > 0 else gradient


def _roll(image, shift):
    """Roll a (C, H, W) image by shift = (dy, dx) pixels, circularly (np.roll)."""
    return np.roll(image, shift, axis=(1, 2)) if shift != (0, 0) else image
