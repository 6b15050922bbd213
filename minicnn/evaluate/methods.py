"""The attribution methods under evaluation, each as one function (net, x, targets) -> Maps.

Every method explains the PRE-softmax score S_c of each image's target class c and returns two
(N, H, W) maps at the image's size:

    map     the method's usual picture, what the pointing game, deletion/insertion and segmentation
            read: max over colour channels of |signal| for the three backward rules, occlusion's drop
            in p(c), CAM's M_c and Grad-CAM's ReLU(sum_k alpha_k A_k), both up-sampled bilinearly
    signed  the same evidence before any absolute value: the signal summed over colour channels for
            the backward rules, and the map itself for occlusion, CAM and Grad-CAM (Grad-CAM is
            rectified by its definition, so its signed map is >= 0)

The three backward rules differ only at the ReLUs (minicnn.ops.RELU_RULES):

    saliency          rule "gradient"   g * [forward input > 0]               (Simonyan 2014)
    SmoothGrad        the same, averaged over noisy copies of the image        (Smilkov 2017)
    guided backprop   rule "guided"     g * [forward input > 0] * [g > 0]     (Springenberg 2015)
    deconvnet         rule "deconvnet"  g * [g > 0]                           (Zeiler & Fergus 2014,
                      sent from the class score as in Springenberg 2015 and Nie et al. 2018)

Max-pool un-pools with its switches under every rule, so the deconvnet signal depends on the image
only through the switches.
"""
from typing import NamedTuple

import numpy as np

from ..checks import check_choice, check_int_at_least, check_number
from ..viz.attribution import channel_max_abs, guided_backprop, occlusion, saliency, score_gradient
from ..viz.cam import cam, gap_linear_head, grad_cam, last_conv_layer


class Maps(NamedTuple):
    """map (N, H, W): the method's usual picture; signed (N, H, W): the same before absolute values."""

    map: np.ndarray
    signed: np.ndarray


class Options(NamedTuple):
    """The methods' settings: SmoothGrad's copies and noise (std / (max - min) of the image), occlusion's
    square and stride (pixels), and the seed of SmoothGrad's noise."""

    smooth: int = 12
    sigma: float = 0.15
    occlusion_size: int = 12
    occlusion_stride: int = 6
    seed: int = 0

    def checked(self):
        check_int_at_least(self.smooth, "smooth", 1)
        check_number(self.sigma, "sigma", low=0)
        check_int_at_least(self.occlusion_size, "occlusion_size", 1)
        check_int_at_least(self.occlusion_stride, "occlusion_stride", 1)
        check_int_at_least(self.seed, "seed", 0)
        return self


def _backward_rule_maps(signal):
    return Maps(channel_max_abs(signal), signal.sum(axis=1))


def saliency_maps(net, x, targets, options):
    return _backward_rule_maps(saliency(net, x, targets).gradient)


def smoothgrad_maps(net, x, targets, options):
    result = saliency(net, x, targets, smooth=options.smooth, sigma=options.sigma, seed=options.seed)
    return Maps(result.map, result.gradient.sum(axis=1))


def guided_backprop_maps(net, x, targets, options):
    return _backward_rule_maps(guided_backprop(net, x, targets).signal)


def deconvnet_maps(net, x, targets, options):
    return _backward_rule_maps(score_gradient(net, x, targets, rule="deconvnet"))


def occlusion_maps(net, x, targets, options):
    heat = occlusion(net, x, targets, options.occlusion_size, options.occlusion_stride, progress=False).heatmap
    return Maps(heat, heat)


def cam_maps(net, x, targets, options):
    heat = cam(net, x, targets).upsampled
    return Maps(heat, heat)


def grad_cam_maps(net, x, targets, options):
    heat = grad_cam(net, x, targets, last_conv_layer(net)).upsampled
    return Maps(heat, heat)


def _needs_gap_head(net):
    """None when CAM applies to net (it ends in GlobalAvgPool2d + one Linear), else why not."""
    try:
        gap_linear_head(net)
    except ValueError:
        return "needs a GlobalAvgPool2d + Linear head"
    return None


def _describe(options):
    """What each method's map is, in a few words, for the tables."""
    return {
        "saliency": "max over channels of abs(dS/dx)",
        "SmoothGrad": f"mean of {options.smooth} saliency maps, sigma {options.sigma}",
        "guided backprop": "max over channels of abs(guided signal)",
        "deconvnet": "max over channels of abs(deconvnet signal from S_c)",
        "occlusion": f"mean drop of p(class), square {options.occlusion_size}, stride {options.occlusion_stride}, mean fill",
        "CAM": "sum_k w_k A_k, bilinear",
        "Grad-CAM": "ReLU(sum_k alpha_k A_k) at the last conv ReLU, bilinear",
    }


METHODS = {
    "saliency": saliency_maps,
    "SmoothGrad": smoothgrad_maps,
    "guided backprop": guided_backprop_maps,
    "deconvnet": deconvnet_maps,
    "occlusion": occlusion_maps,
    "CAM": cam_maps,
    "Grad-CAM": grad_cam_maps,
}
METHOD_NAMES = tuple(METHODS)


def unavailable(net, method):
    """None when `method` applies to `net`, else the reason it does not (CAM needs a GAP head)."""
    check_choice(method, "method", METHOD_NAMES)
    return _needs_gap_head(net) if method == "CAM" else None


def describe(method, options=Options()):
    """One line saying what `method`'s map is with these options."""
    check_choice(method, "method", METHOD_NAMES)
    return _describe(options)[method]


def method_maps(net, method, x, targets, options=Options()):
    """The Maps of `method` (one of METHOD_NAMES) for images x (N, C, H, W) and targets (N,) on net."""
    check_choice(method, "method", METHOD_NAMES)
    reason = unavailable(net, method)
    if reason is not None:
        raise ValueError(f"method {method!r} does not apply to this network: it {reason}")
    return METHODS[method](net, x, targets, options.checked())
