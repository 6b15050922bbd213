"""Tour sections 3-7: saliency, occlusion, CAM and Grad-CAM, guided backpropagation, the pointing game.
Maps are computed once for the subject's images and shared between sections (Tour.maps)."""

from .. import plot
from ..viz import pointing
from .parts import Skipped, Table
from .subject import in_rgb_order

# ----------------------------------------------------------------------------------------------
# 3-7. attribution: maps computed once for subject.images, shown for the first few


def attribution(tour, method):
    """compute_attribution(subject, method), computed once per tour and then reused."""
    if method not in tour.maps:
        tour.maps[method] = compute_attribution(tour.subject, method)
    return tour.maps[method]


CAM_NET_METHODS = ("CAM", "Grad-CAM (CAM net)")  # the maps made of subject.cam_net, not subject.net


def cam_methods(subject):
    """CAM, and Grad-CAM on the CAM network and on the main one (once if they are the same network)."""
    if subject.cam_net is None:
        return ["Grad-CAM"]
    if subject.cam_net is subject.net:
        return ["CAM", "Grad-CAM"]
    return ["CAM", "Grad-CAM (CAM net)", "Grad-CAM"]


def compute_attribution(subject, method):
    """One method's maps (N, H, W) for subject.images and subject.targets ("guided signal": (N, 3, H, W))."""
    from ..viz.attribution import guided_backprop, occlusion, saliency
    from ..viz.cam import cam, grad_cam, last_conv_layer

    net, x, targets, budget = subject.net, subject.images, subject.targets, subject.budget
    if method == "saliency":
        return saliency(net, x, targets).map
    if method == "SmoothGrad":
        return saliency(net, x, targets, smooth=budget.smooth).map
    if method == "occlusion":
        size, stride = budget.occlusion
        return occlusion(net, x, targets, size, stride, batch_size=32, progress=False).heatmap
    if method == "CAM":
        return cam(subject.cam_net, x, targets).upsampled
    if method == "Grad-CAM":
        return grad_cam(net, x, targets, last_conv_layer(net)).upsampled
    if method == "Grad-CAM (CAM net)":
        return grad_cam(subject.cam_net, x, targets, last_conv_layer(subject.cam_net)).upsampled
    if method == "guided backprop":
        return guided_backprop(net, x, targets).map
    if method == "guided signal":
        return guided_backprop(net, x, targets).signal
    raise ValueError(f"unknown attribution method {method!r}")


def attribution_panel(tour, name, methods, caption):
    """attribution_figure of the first budget.shown images with the maps of `methods`, titled by target."""
    subject, k = tour.subject, tour.budget.shown
    maps = {method: attribution(tour, method)[:k] for method in methods}
    fig = plot.attribution_figure(subject.display[:k], maps)
    targets = ", ".join(subject.class_names[t] for t in subject.targets[:k])
    fig.suptitle(f"rows, top to bottom: {targets}", fontsize=8)
    fig.tight_layout()
    return tour.panel(fig, name, caption)


def saliency_section(tour):
    return [attribution_panel(
        tour, "saliency", ["saliency", "SmoothGrad"],
        "Saliency (Simonyan 2014): |d class score / d pixel|, max over colours — which pixels would change the "
        f"score most; look at the object's outline lighting up. SmoothGrad averages {tour.budget.smooth} noisy "
        "copies: less speckle.")]


def occlusion_section(tour):
    size, stride = tour.budget.occlusion
    return [attribution_panel(
        tour, "occlusion", ["occlusion"],
        f"Occlusion (Zeiler & Fergus 2014): a {size}x{size} square of the image's mean colour slides with stride "
        f"{stride}; we record how much p(class) drops: red = covering it hurts (the evidence), blue = it helps.")]


def cam_section(tour):
    subject = tour.subject
    if subject.cam_net is None:
        panel = attribution_panel(
            tour, "grad_cam", ["Grad-CAM"],
            f"Grad-CAM (Selvaraju 2017) at the last conv layer: feature maps weighted by their mean gradient. "
            f"CAM itself is not shown: {subject.net_name} has no global-average-pooling + linear head.")
        return [panel]
    return [attribution_panel(
        tour, "cam", cam_methods(subject),
        "CAM (Zhou 2016) on the GAP network: sum_k w_k^c A_k, whose mean plus the bias IS the class score; "
        "Grad-CAM weights the maps by their mean gradient, on the CAM net (= CAM, rectified) and on "
        f"{subject.net_name}. "
        "Look for a blob on the object, none on the distractor.")]


def guided_section(tour):
    subject, k = tour.subject, tour.budget.shown
    signals = [plot.signal_picture(in_rgb_order(subject, signal)) for signal in attribution(tour, "guided signal")[:k]]
    titles = [subject.class_names[t] for t in subject.targets[:k]]
    return [
        attribution_panel(tour, "guided_map", ["saliency", "guided backprop"],
                          "Guided backpropagation (Springenberg 2015): the backward pass with ReLUs that pass only "
                          "positive signal where the forward pass was positive; sharper than plain saliency."),
        tour.panel(plot.image_grid(signals, titles=titles), "guided_signal",
                   "The guided signal itself, shown as an image (0 is grey): look for the object's edges and "
                   "texture reproduced in colour, the background grey."),
    ]


def pointing_section(tour):
    subject = tour.subject
    if subject.masks is None:
        raise Skipped("the pointing game needs object masks, which only the shapes dataset has; "
                      "see docs/results/pointing-game.md (python -m minicnn.recipes.pointing_game) for the shapes models")
    methods = ["saliency", "SmoothGrad", "guided backprop", "occlusion"] + cam_methods(subject)
    n = len(subject.images)
    rows = []
    for method in methods:
        hits = pointing.pointing_hits(attribution(tour, method), subject.masks)
        model = subject.cam_net_name if method in CAM_NET_METHODS else subject.net_name
        rows.append([method, model, f"{hits.sum()}/{n}", f"{100 * hits.mean():.0f}%"])
    centre = pointing.pointing_hits(pointing.centre_maps(n, subject.images.shape[2:]), subject.masks)
    rows.append(["centre baseline", "-", f"{centre.sum()}/{n}", f"{100 * centre.mean():.0f}%"])
    overview = [m for m in ["saliency", "guided backprop", "occlusion", "CAM", "Grad-CAM"] if m in methods]
    return [
        tour.panel(plot.sample_grid(subject.shapes_batch, n=n), "ground_truth",
                   "The ground truth: each generated image with its object's exact mask outlined in white (a "
                   "distractor, when there is one, in black). A map scores a hit when its maximum lies inside "
                   f"the white outline grown by {pointing.TOLERANCE} px."),
        Table(["method", "model", "hits", "pointing accuracy"], rows,
              f"Pointing game on these {n} held-out images: a hit when the map's maximum falls inside the object "
              f"(mask grown by {pointing.TOLERANCE} px). Half of these images have a distractor shape, which "
              "also moves the centre baseline; docs/results/pointing-game.md (python -m minicnn.recipes.pointing_game --n 3000) "
              "uses 3000 images without distractors and 12 SmoothGrad copies, so its numbers differ."),
        attribution_panel(tour, "all_methods", overview,
                          "Every attribution method side by side on the same images: which ones point at the "
                          "object, which ones also light up the distractor or the background?"),
    ]
