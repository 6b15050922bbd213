"""Can we trust the maps? Sanity checks, faithfulness and weak segmentation for the attribution methods.

    methods.py        the methods under evaluation: (net, x, targets) -> Maps(map, signed)
    pointing.py       the pointing game's tables (one map scored by minicnn.viz.pointing)
    faithfulness.py   deletion and insertion curves and their AUC (Petsiuk et al. 2018)
    randomization.py  the model-parameter randomization test (Adebayo et al. 2018): re-drawn copies,
                      Spearman and SSIM
    segmentation.py   threshold and seeded graph cut (PyMaxflow), IoU with the true mask
    switches.py       the backward rules with the image's max-pool switches or flat ones
    run.py            one run over held-out shapes images: evaluate(net, model, methods, metrics, settings)
    report.py         write_results: DIR/<metric>.csv, DIR/evaluation.md, figures

`minicnn evaluate --model shapes_vgg --n 50 --out eval/` runs it from the command line.
"""
from .methods import METHOD_NAMES, Maps, Options, method_maps
from .run import METRICS, Settings, evaluate
