"""What `minicnn explain` computes for one image, shared with the explorer: the methods it offers, the
image prepared for them (Prepared), and each method's (H, W) map for one class."""
from typing import NamedTuple

import numpy as np

from .user_input import UserError

METHODS = ("saliency", "occlusion", "cam", "gradcam", "guided")
METHOD_TITLES = {"saliency": "saliency", "occlusion": "occlusion", "cam": "CAM", "gradcam": "Grad-CAM",
                 "guided": "guided backprop"}


class Prepared(NamedTuple):
    """One image ready for `minicnn explain`: the networks, the input and how to show it."""

    name: str              # what to call the network: "shapes_vgg", "alexnet", ...
    net: object            # the network whose predictions are printed and most maps are made of
    cam_net: object        # a GAP + linear network for CAM, or None
    x: np.ndarray          # (1, 3, H, W) network input
    display: np.ndarray    # (1, 3, H, W) the same image as RGB in [0, 1]
    class_names: tuple
    occlusion_box: tuple   # (size, stride) of the occluding square
    notes: list


def parse_methods(text):
    """--methods "saliency,cam" -> ["saliency", "cam"], every name checked."""
    methods = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise UserError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                        f"valid methods are: {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def attribution_map(method, prepared, target):
    """The (H, W) map of one method for the prepared image and class `target`."""
    from .viz.attribution import guided_backprop, occlusion, saliency
    from .viz.cam import cam, grad_cam, last_conv_layer

    net, cam_net, x, occlusion_box = prepared.net, prepared.cam_net, prepared.x, prepared.occlusion_box
    if method == "saliency":
        return saliency(net, x, target).map[0]
    if method == "occlusion":
        size, stride = occlusion_box
        return occlusion(net, x, target, size, stride).heatmap[0]
    if method == "cam":
        return cam(cam_net, x, target).upsampled[0]
    if method == "gradcam":
        return grad_cam(net, x, target, last_conv_layer(net)).upsampled[0]
    return guided_backprop(net, x, target).map[0]


def method_title(method, prepared):
    """A figure column's title; CAM names its own network when that is not the one in the figure's title."""
    if method == "cam" and prepared.cam_net is not prepared.net:
        return "CAM (shapes_cam)"
    return METHOD_TITLES[method]
