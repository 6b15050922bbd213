"""Run the tour: every section in the lecture's order, each figure saved, then gallery.png and index.html."""
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import plot
from .page import GALLERY, index_html
from .parts import Panel, SectionResult, Skipped, Tour
from .sections_algebra import conv_as_matrix, first_layer_filters
from .sections_attribution import (
    cam_section,
    guided_section,
    occlusion_section,
    pointing_section,
    saliency_section,
)
from .sections_evaluate import sanity_section
from .sections_units import (
    class_models_section,
    dead_units_section,
    dissection_section,
    dream_section,
    fine_tuning_section,
    neighbours_section,
    search_section,
    tsne_section,
)
from .sections_upsampling import upsampling_section

# ----------------------------------------------------------------------------------------------
# the sections in the lecture's order: (key, heading, lesson, function)

SECTIONS = [
    ("matrix", "Convolution is a matrix",
     "01_convolution_is_a_matrix.py, 02_transposed_convolution.py, 03_deconvolution_in_2d.py", conv_as_matrix),
    ("upsampling", "Learned upsampling and the checkerboard", "15_learned_upsampling.py", upsampling_section),
    ("filters", "First-layer filters", "05_filters_are_templates.py, 09_dataset_search_and_deconvnet.py",
     first_layer_filters),
    ("saliency", "Saliency and SmoothGrad", "06_saliency_and_occlusion.py", saliency_section),
    ("occlusion", "Occlusion", "06_saliency_and_occlusion.py", occlusion_section),
    ("cam", "CAM and Grad-CAM", "07_class_activation_maps.py", cam_section),
    ("guided", "Guided backpropagation", "06_saliency_and_occlusion.py", guided_section),
    ("pointing", "Pointing game", "python -m minicnn.recipes.pointing_game (docs/results/pointing-game.md)", pointing_section),
    ("sanity", "Can we trust the maps?", "16_can_we_trust_the_maps.py, minicnn evaluate (docs/results/evaluation.md)",
     sanity_section),
    ("ascent", "Gradient ascent: class models", "08_gradient_ascent.py", class_models_section),
    ("search", "Dataset search and DeconvNet", "09_dataset_search_and_deconvnet.py", search_section),
    ("neighbours", "Nearest neighbours", "12_embeddings.py", neighbours_section),
    ("tsne", "t-SNE", "12_embeddings.py", tsne_section),
    ("dream", "DeepDream", "10_deep_dream.py", dream_section),
    ("dissection", "Network Dissection", "11_dissection_and_dead_units.py", dissection_section),
    ("dead", "Dead units", "11_dissection_and_dead_units.py", dead_units_section),
    ("finetuning", "Units that change roles", "17_units_that_change_roles.py (docs/results/units.md)",
     fine_tuning_section),
]


def run_tour(subject, out, progress=True):
    """Run every section for `subject`, write the PNG figures and index.html into `out`.

    Returns (path of index.html, list of SectionResult). A section that does not apply is listed in
    index.html with the reason, and the tour goes on.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tour = Tour(subject, out)
    results = []
    started = time.perf_counter()
    bar = tqdm(SECTIONS, desc="tour", unit="section", disable=not progress, file=sys.stderr)
    for number, (key, title, lesson, make) in enumerate(bar, start=1):
        tour.number = number  # figures of this section are called NN_name.png
        bar.set_description(f"tour: {title}")
        results.append(run_section(tour, key, title, lesson, make))
        if progress:
            tqdm.write(f"[{number:2d}/{len(SECTIONS)}] {describe(results[-1])}", file=sys.stderr)
    bar.close()
    seconds = time.perf_counter() - started
    gallery = gallery_figure(out, results, out / GALLERY)
    index = out / "index.html"
    index.write_text(index_html(subject, results, seconds, gallery is not None), encoding="utf-8")
    return index, results


def gallery_figure(out, results, path, ncols=5, thumbnail=360):
    """A contact sheet of the tour: the first figure of each section that made one, shrunk to fit a
    `thumbnail`-pixel square, under its section's title. Saved at `path`; returns the Figure (None if
    no section made a figure)."""
    from PIL import Image

    firsts = [(r.title, next(item.file for item in r.items if isinstance(item, Panel))) for r in results
              if any(isinstance(item, Panel) for item in r.items)]
    if not firsts:
        return None
    fig, axes = plot.grid_figure(len(firsts), ncols=ncols, cell_inches=2.6)
    for ax, (title, file) in zip(axes, firsts):
        with Image.open(out / file) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((thumbnail, thumbnail))
            ax.imshow(np.asarray(picture))
        ax.set_title(title, fontsize=9)
    fig.suptitle("minicnn tour: one figure from each section (all of them in index.html)", fontsize=11)
    return plot.save_figure(fig, path)


def run_section(tour, key, title, lesson, make):
    """Run one section; a Skipped, or an optional package that is not installed (e.g. scikit-learn for
    t-SNE), becomes its note. A broken import inside minicnn itself is an error, not a note."""
    start = time.perf_counter()
    skipped, items = None, []
    try:
        items = make(tour)
    except Skipped as reason:
        skipped = str(reason)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "minicnn":
            raise
        skipped = f"a package it needs is not installed ({error})"
    return SectionResult(key, title, lesson, items, skipped, time.perf_counter() - start)


def describe(result):
    """One line per finished section for the terminal."""
    if result.skipped:
        return f"{result.title}: skipped ({result.skipped})"
    files = [item.file for item in result.items if isinstance(item, Panel)]
    return f"{result.title}: {len(files)} figure(s) in {result.seconds:.1f} s"
