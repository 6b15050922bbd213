"""`minicnn tour`: the whole lecture as a gallery of figures, made by running every method for real.

    from minicnn import tour
    subject = tour.shapes_subject(cam_net, vgg_net, tour.SHAPES_BUDGET)   # nets from models.load_pretrained
    tour.run_tour(subject, "tour-out")                                    # PNG figures + index.html

A tour runs the sections of the lecture in order (run.SECTIONS). Each section is a short function
that calls the library (minicnn.matrix, minicnn.viz.*) and draws with minicnn.plot; it returns the
panels it made (a PNG and a one-line caption: what the method is, what to look at) or raises
Skipped with the reason it does not apply (CAM on a network without global average pooling,
dissection without ground-truth masks, a module that is not installed). index.html shows them all.

    subject.py                what the tour looks at, and how much work each section does (Budget)
    parts.py                  what a section hands back (Panel, Table, Skipped) and the Tour it receives
    sections_algebra.py       1-2   convolution as a matrix, first-layer filters
    sections_attribution.py   3-7   saliency, occlusion, CAM, guided backprop, the pointing game
    sections_evaluate.py      8     can we trust the maps? deletion / insertion, parameter randomization
    sections_units.py         9-15  gradient ascent, dataset search, neighbours, t-SNE, DeepDream, dissection
    run.py                    the sections in order, gallery.png; page.py: index.html

How much work each section does (images, steps, copies) is set by a Budget: the tour keeps the
library's defaults and only asks for less of it, so the whole gallery stays quick.
"""
from .run import SECTIONS, run_section, run_tour
from .subject import (IMAGENET_BUDGET, IMAGENET_FAST, SHAPES_BUDGET, SHAPES_FAST, Budget, Subject, imagenet_subject,
                      in_rgb_order, shapes_subject)

__all__ = ["SECTIONS", "run_section", "run_tour", "IMAGENET_BUDGET", "IMAGENET_FAST", "SHAPES_BUDGET", "SHAPES_FAST",
           "Budget", "Subject", "imagenet_subject", "in_rgb_order", "shapes_subject"]
