"""Tour section: can we trust the maps? Deletion and insertion, and the model-parameter randomization
test, on the subject's first images (minicnn.evaluate; the full tables: `minicnn evaluate`)."""
import numpy as np

from ..evaluate.faithfulness import area_under_curve, deletion_curve, insertion_curve
from ..evaluate.methods import method_maps
from ..evaluate.randomization import parameter_layers, randomized_copy, spearman
from ..evaluate.report import cascade_figure
from .parts import Table

METHODS = ("saliency", "guided backprop", "Grad-CAM")
STEPS = 8  # deletion / insertion steps: 9 forward passes per image and curve


def cascade_steps(net):
    """(column title, layers re-drawn): the top 1, 2 and 3 layers with parameters, then all of them."""
    layers = parameter_layers(net)
    steps = [(f"down to {layers[k - 1]}", layers[:k]) for k in range(1, min(3, len(layers)) + 1)]
    return steps + ([("all re-drawn", layers)] if len(layers) > 3 else [])


def sanity_section(tour):
    subject, k = tour.subject, tour.budget.shown
    net, x, targets = subject.net, subject.images[:k], subject.targets[:k]
    trained = {method: method_maps(net, method, x, targets).map for method in METHODS}
    examples, rows = {"trained": {m: maps[:1] for m, maps in trained.items()}}, []
    for title, layers in cascade_steps(net):
        network = randomized_copy(net, layers, seed=0)
        maps = {method: method_maps(network, method, x, targets).map for method in METHODS}
        examples[title] = {method: m[:1] for method, m in maps.items()}
        rows.append([title] + [f"{np.nanmean([spearman(a, b) for a, b in zip(maps[m], trained[m])]):.2f}"
                               for m in METHODS])
    auc_rows = []
    orders = dict(trained, **{"random order": np.random.default_rng(0).random(trained["saliency"].shape)})
    for method, heat in orders.items():
        deletion = area_under_curve(deletion_curve(net, x, targets, heat, STEPS)).mean()
        insertion = area_under_curve(insertion_curve(net, x, targets, heat, STEPS)).mean()
        auc_rows.append([method, f"{deletion:.3f}", f"{insertion:.3f}"])
    return [
        Table(["method", "deletion AUC (lower is better)", "insertion AUC (higher is better)"], auc_rows,
              f"Deletion and insertion (Petsiuk 2018) on these {len(x)} images: p(class) as the map's pixels are "
              f"replaced by a blurred copy, most important first, or put back into it ({STEPS} steps). A faithful "
              "map beats the random order on both."),
        tour.panel(cascade_figure(subject.display[0], examples, None), "randomization",
                   "The model-parameter randomization test (Adebayo 2018): each column re-draws more layers from "
                   "the top (their initial distribution); a map that explains what the network learned must "
                   "change. Guided backprop keeps its picture longest: its ReLUs pass only where the forward "
                   "pass fired."),
        Table(["layers re-drawn"] + list(METHODS), rows,
              "Spearman rank correlation of each map with the trained network's map (mean over these images): "
              "1 = the same ranking of pixels. docs/results/evaluation.md has the full cascade, SSIM, the "
              "accuracies and the switches."),
    ]
