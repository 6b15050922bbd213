"""One evaluation run: every method's maps on held-out shapes images, scored by every metric.

    results = evaluate(net, "shapes_vgg", n=50, out="eval/")     # or `minicnn evaluate --model ...`

Metrics (METRICS):
    pointing       does the map's maximum fall on the object (minicnn.evaluate.pointing)
    deletion       AUC of p(class) as the map's pixels are removed, highest first (faithfulness)
    insertion      AUC of p(class) as they are put back into the fill image
    randomization  similarity of each map to the trained network's as layers are re-drawn
    segmentation   IoU with the object's mask of the thresholded map and of a seeded graph cut
    switches       the backward rules with the image's max-pool switches and with flat ones, on the
                   trained network and re-drawn copies (minicnn.evaluate.switches)

Two baselines go through the per-map metrics beside the methods: "centre" (the map -distance to the
centre pixel (H // 2, W // 2): it points at the centre) and "random" (uniform noise, seeded).
Each metric gives a list of rows (dicts); write_results puts them in DIR/<metric>.csv, a Markdown
summary in DIR/evaluation.md and figures beside them.
"""
import csv
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_choice, check_int_at_least
from ..data import CLASS_NAMES, HELD_OUT_SEED, iter_shapes, make_shapes
from ..train import accuracy as classification_accuracy
from . import faithfulness, pointing, randomization, segmentation, switches
from .methods import METHOD_NAMES, Maps, Options, describe, method_maps, unavailable

METRICS = ("pointing", "deletion", "insertion", "randomization", "segmentation", "switches")
BASELINES = ("centre", "random")
ACCURACY_IMAGES = 500  # images on which each randomized network's accuracy is measured (at least n)


class Settings(NamedTuple):
    """What a run measures and how: the images (n, seed, batch size), the methods' options, deletion
    and insertion (steps, fill), segmentation (threshold quantile, graph-cut seeds), randomization
    (its seed, its modes: cascade and/or independent), how many images keep their maps for the figures."""

    n: int = 50
    seed: int = HELD_OUT_SEED
    batch_size: int = 25
    options: Options = Options()
    steps: int = 32
    fill: str = "blur"
    quantile: float = 0.8
    cut_low: float = 0.3
    cut_high: float = 0.9
    randomization_seed: int = 0
    modes: tuple = randomization.MODES
    examples: int = 4


def baseline_maps(name, n, hw, seed=0):
    """(n, H, W) maps of a baseline: "centre" = -distance to (H // 2, W // 2); "random" = uniform noise."""
    check_choice(name, "baseline", BASELINES)
    if name == "random":
        return np.random.default_rng(seed).random((n,) + tuple(hw))
    rows, cols = np.indices(hw)
    distance = np.hypot(rows - hw[0] // 2, cols - hw[1] // 2)
    return np.broadcast_to(-distance, (n,) + tuple(hw)).copy()


def available_methods(net, methods):
    """(the methods that apply to net, {method: why not} for the others), in the order given."""
    for method in methods:
        check_choice(method, "method", METHOD_NAMES)
    skipped = {method: unavailable(net, method) for method in methods if unavailable(net, method)}
    return [method for method in methods if method not in skipped], skipped


# ----------------------------------------------------------------------------------------------
# the metrics that read each map once: pointing, deletion, insertion, segmentation


class PerMap:
    """Collects, row by row (a method or a baseline), what the per-map metrics need over all images."""

    def __init__(self, rows, metrics, settings):
        self.rows, self.metrics, self.settings = rows, metrics, settings
        self.hits = {row: [] for row in rows}
        self.constant = dict.fromkeys(rows, 0)
        self.seconds = dict.fromkeys(rows, 0.0)
        self.curves = {kind: {row: [] for row in rows} for kind in ("deletion", "insertion")}
        self.iou = {kind: {row: [] for row in rows} for kind in ("threshold", "graph cut")}
        self.labels = []
        self.examples = {}

    def add(self, net, row, batch, maps, seconds):
        s = self.settings
        self.seconds[row] += seconds
        if "pointing" in self.metrics:
            hits, constant = pointing.score_maps(maps, batch.masks)
            self.hits[row].append(hits)
            self.constant[row] += constant
        for kind, curve in (("deletion", faithfulness.deletion_curve), ("insertion", faithfulness.insertion_curve)):
            if kind in self.metrics:
                self.curves[kind][row].append(curve(net, batch.images, batch.labels, maps, s.steps, s.fill))
        if "segmentation" in self.metrics:
            for heat, image, mask in zip(maps, batch.images, batch.masks):
                self.iou["threshold"][row].append(segmentation.iou(segmentation.threshold_mask(heat, s.quantile), mask))
                cut = segmentation.graph_cut_mask(heat, image, s.cut_low, s.cut_high)
                self.iou["graph cut"][row].append(segmentation.iou(cut, mask))
        if len(self.examples.get(row, ())) < s.examples:
            self.examples[row] = maps[: s.examples] if row not in self.examples else \
                np.concatenate([self.examples[row], maps])[: s.examples]

    def results(self, model):
        out = {}
        if "pointing" in self.metrics:
            scores = [pointing.Score(np.concatenate(self.hits[row]), self.constant[row], self.seconds[row])
                      for row in self.rows]
            out["pointing"] = pointing.csv_rows([(row, model, "") for row in self.rows], scores)
        for kind in ("deletion", "insertion"):
            if kind in self.metrics:
                out[kind] = [self._curve_row(kind, row) for row in self.rows]
        if "segmentation" in self.metrics:
            out["segmentation"] = [{"method": row, "n": len(self.iou["threshold"][row]),
                                    "threshold_iou": float(np.mean(self.iou["threshold"][row])),
                                    "graph_cut_iou": float(np.mean(self.iou["graph cut"][row]))}
                                   for row in self.rows]
        return out

    def _curve_row(self, kind, row):
        curves = np.concatenate(self.curves[kind][row])
        auc = faithfulness.area_under_curve(curves)
        mean = curves.mean(axis=0)
        return {"method": row, "n": len(curves), "auc": float(auc.mean()),
                "auc_sem": float(auc.std(ddof=1) / np.sqrt(len(auc))) if len(auc) > 1 else float("nan"),
                "start": float(mean[0]), "end": float(mean[-1]),
                "curve": " ".join(f"{v:.4f}" for v in mean)}


def per_map_metrics(net, model, methods, metrics, settings):
    """Run each method (and baseline) over the held-out images once; returns (results by metric,
    example maps by row, the example images)."""
    rows = list(methods) + list(BASELINES)
    collected = PerMap(rows, metrics, settings)
    for batch in iter_shapes(settings.n, seed=settings.seed, batch_size=settings.batch_size):
        for row in rows:
            start = time.perf_counter()
            if row in BASELINES:
                maps = baseline_maps(row, len(batch), batch.images.shape[2:], seed=int(batch.indices[0]))
            else:
                maps = method_maps(net, row, batch.images, batch.labels, settings.options).map
            collected.add(net, row, batch, maps, time.perf_counter() - start)
    return collected.results(model), collected.examples


# ----------------------------------------------------------------------------------------------
# randomization


def randomization_metric(net, methods, settings, modes=randomization.MODES, permuted=None):
    """The randomization test: (rows, {step label: {method: example maps}} for the cascade figure).

    One row per step (and the trained network, step 0) and method: its accuracy on max(n, 500)
    held-out images, and the mean similarity of each method's maps to the trained network's.
    permuted: a network of the same architecture trained on permuted labels (the data randomization
    test), compared in one more row per method (mode "data")."""
    s = settings
    batch = make_shapes(s.n, seed=s.seed)
    check = make_shapes(max(s.n, ACCURACY_IMAGES), seed=s.seed)

    def accuracy(network):
        return classification_accuracy(network, check.images, check.labels)

    def all_maps(network):
        maps = {}
        for method in methods:
            parts = [method_maps(network, method, batch.images[k:k + s.batch_size], batch.labels[k:k + s.batch_size],
                                 s.options) for k in range(0, s.n, s.batch_size)]
            maps[method] = Maps(*(np.concatenate(part) for part in zip(*parts)))
        return maps

    trained = all_maps(net)
    rows = [{"mode": "trained", "step": 0, "layers": "", "accuracy": accuracy(net), "method": method,
             "spearman_abs": 1.0, "spearman_signed": 1.0, "ssim": 1.0, "constant_maps": 0} for method in methods]
    examples = {"trained": {method: trained[method].map[: s.examples] for method in methods}}
    networks = [(step, randomization.randomized_copy(net, step.layers, s.randomization_seed))
                for mode in modes for step in randomization.steps(net, mode)]
    if permuted is not None:
        networks.append((randomization.Step("data", 1, ("all: trained on permuted labels",)), permuted.eval()))
    for step, network in networks:
        correct = accuracy(network)
        for method, maps in all_maps(network).items():
            similar = randomization.similarities(trained[method], maps)
            rows.append({"mode": step.mode, "step": step.index, "layers": "+".join(step.layers), "accuracy": correct,
                         "method": method, **{k: float(np.nanmean(v)) for k, v in similar.items()},
                         "constant_maps": int(np.isnan(similar["spearman_abs"]).sum())})
            if step.mode != "independent":
                label = "permuted labels" if step.mode == "data" else step.label
                examples.setdefault(label, {})[method] = maps.map[: s.examples]
    return rows, examples, batch.images[: s.examples]


# ----------------------------------------------------------------------------------------------
# the whole run


class Results(NamedTuple):
    """rows: {metric: [dict, ...]}; skipped: {method: why it does not apply}; example images and maps
    for the figures; the model's name and accuracy on the n images."""

    model: str
    rows: dict
    skipped: dict
    images: np.ndarray
    examples: dict
    randomization_examples: dict
    accuracy: float


def evaluate(net, model, methods=METHOD_NAMES, metrics=METRICS, settings=Settings(), permuted=None):
    """Score `methods` on `net` (named `model` in the tables) by `metrics` over settings.n held-out
    shapes images (make_shapes(n, seed=settings.seed)). Methods that do not apply (CAM without a GAP
    head) are skipped with the reason. permuted: the same architecture trained on permuted labels, for
    the data randomization test (in the randomization metric). Returns Results; write_results saves them."""
    check_int_at_least(settings.n, "n", 1)
    for mode in settings.modes:
        check_choice(mode, "each of settings.modes", randomization.MODES)
    for metric in metrics:
        check_choice(metric, "metric", METRICS)
    methods, skipped = available_methods(net, methods)
    if not methods:
        raise ValueError(f"none of the methods applies to {model}: " +
                         "; ".join(f"{method} {why}" for method, why in skipped.items()))
    net.eval()
    batch = make_shapes(min(settings.n, settings.examples), seed=settings.seed)
    rows, examples, random_examples = {}, {}, {}
    per_map = [m for m in metrics if m not in ("randomization", "switches")]
    if per_map:
        rows, examples = per_map_metrics(net, model, methods, per_map, settings)
    if "randomization" in metrics:
        rows["randomization"], random_examples, _ = randomization_metric(net, methods, settings, settings.modes,
                                                                          permuted)
    check = make_shapes(settings.n, seed=settings.seed)
    rules = [method for method in methods if method in switches.RULES]
    if "switches" in metrics and rules:
        rows["switches"] = switches.switch_ablation(net, check.images, check.labels, check.masks, rules,
                                                    settings.randomization_seed)
    accuracy = classification_accuracy(net, check.images, check.labels)
    return Results(model, rows, skipped, batch.images, examples, random_examples, accuracy)


def write_csv(path, rows):
    """rows (a list of dicts with the same keys) -> a CSV file with a header row."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
