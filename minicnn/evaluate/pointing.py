"""The pointing game over many images: hit rates with their 95% intervals, targets, hits per class.

The scoring of one map (its maximum inside the object's mask grown by TOLERANCE pixels) lives in
minicnn.viz.pointing; here the hits of many images become a table. Each row is a (method, model,
note) triple with one bool per image.
"""
from typing import NamedTuple

import numpy as np
from scipy.stats import binomtest

from ..viz.pointing import TOLERANCE, pointed_pixel, pointing_hits

TARGET = 0.90  # the visualization issue's target pointing accuracy for these methods:
TARGETED = {("CAM", "shapes_cam"), ("Grad-CAM", "shapes_cam"), ("Grad-CAM", "shapes_vgg"), ("occlusion", "shapes_vgg")}


class Score(NamedTuple):
    """One method over the images: hits (n,) bool, one per image; constant maps; seconds."""

    hits: np.ndarray
    constant: int
    seconds: float

    @property
    def total(self):
        return int(self.hits.sum())


def score_maps(maps, masks):
    """(hits (N,) bool, how many of the maps are constant) for maps (N, H, W) and masks (N, H, W) bool."""
    return pointing_hits(maps, masks), sum(pointed_pixel(m) is None for m in maps)


def wilson_interval(hits, n):
    """The 95% Wilson score interval of a hit rate hits / n (scipy.stats.binomtest): (low, high)."""
    interval = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def csv_rows(rows, scores):
    """One dict per (method, model): hits, n, accuracy and its 95% interval, constant maps, seconds."""
    out = []
    for (method, model, _), score in zip(rows, scores):
        n = len(score.hits)
        low, high = wilson_interval(score.total, n)
        out.append({"method": method, "model": model, "hits": score.total, "n": n,
                    "accuracy": score.total / n, "low": low, "high": high,
                    "constant_maps": score.constant, "seconds": round(score.seconds, 2)})
    return out


def table_lines(rows, scores):
    """The main table: pointing accuracy with its 95% interval, then which rows do not beat the baseline
    (the last row)."""
    lines = ["| method | model | map | pointing accuracy | 95% interval | hits | constant maps | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for (_, _, note), row in zip(rows, csv_rows(rows, scores)):
        note = note.replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {row['method']} | {row['model']} | {note} | {100 * row['accuracy']:.1f}% "
                     f"| {100 * row['low']:.1f}-{100 * row['high']:.1f}% | {row['hits']}/{row['n']} "
                     f"| {row['constant_maps']} | {row['seconds']:.1f} |")
    baseline = scores[-1].total
    below = [f"{method} ({model})" for (method, model, _), score in zip(rows[:-1], scores[:-1])
             if score.total <= baseline]
    return lines + ["", "Not above the centre baseline: " + (", ".join(below) if below else "none") + "."]


def target_lines(rows, scores, n):
    """One line per target: met or not by the point estimate, and whether the 95% interval is clear of it."""
    lines = []
    for (method, model, _), score in zip(rows, scores):
        if (method, model) not in TARGETED:
            continue
        hit = score.total
        low, high = wilson_interval(hit, n)
        verdict = "met" if hit / n >= TARGET else "NOT met"
        sure = "the whole interval is above it" if low >= TARGET else (
            "the whole interval is below it" if high < TARGET else "the interval contains it")
        lines.append(f"- {method} ({model}) >= {100 * TARGET:.0f}%: {verdict} ({100 * hit / n:.1f}%; {sure}).")
    return ["Targets:"] + lines


def per_class_lines(rows, scores, labels, class_names):
    """Pointing accuracy of every row on the images of each class (where the misses are)."""
    counts = np.bincount(labels, minlength=len(class_names))
    header = "| method | model | " + " | ".join(f"{name} ({count})" for name, count in zip(class_names, counts)) + " |"
    lines = ["Pointing accuracy per class (images of that class in brackets):", "", header,
             "|---|---|" + "---:|" * len(class_names)]
    for (method, model, _), score in zip(rows, scores):
        hits = np.bincount(labels, weights=score.hits, minlength=len(class_names))
        cells = [f"{100 * h / c:.0f}%" if c else "-" for h, c in zip(hits, counts)]
        lines.append(f"| {method} | {model} | " + " | ".join(cells) + " |")
    return lines


def rule_line():
    return f"hit = the map's maximum lies in the object mask dilated by {TOLERANCE} px"
