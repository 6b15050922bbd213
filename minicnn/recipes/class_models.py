"""Class models of the shipped shapes_vgg: is each one classified as its class, per objective and seed?

    python -m minicnn.recipes.class_models --out docs/results/class-models.md   # the docs page
    python -m minicnn.recipes.class_models --seeds 0 --steps 50                 # a quick look

For every class c, every jitter seed and both objectives of minicnn.viz.ascent.class_model ("score":
S_c, the lecture's; "log_probability": log p_c), the class model is made with the function's defaults
(plus the options given) and fed back to the network: the table gives p(c) of the final image and
whether c is its top class. --out writes the tables as a page that names this command.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from minicnn.data import CLASS_NAMES
from minicnn.models import load_pretrained
from minicnn.ops import softmax
from minicnn.viz.ascent import class_model

OBJECTIVES = ("score", "log_probability")
BAR = 0.9  # a class model "works" when the network gives its class at least this probability
READING = ("How to read it: the score objective S_c keeps rising as long as the image shows more of c. "
           "log p_c = S_c - log sum_k exp(S_k) flattens out near 0 once c wins, while a normalized step "
           "keeps its size, so the L2 pull, the decay and the blur take over there: p(c) falls, climbs "
           "again, and the last image can be anywhere on that cycle.")


def class_probabilities(net, objective, seed, steps):
    """p(c) of the class model of every class c: (K,) float64."""
    probabilities = []
    for target in range(len(CLASS_NAMES)):
        result = class_model(net, target, steps=steps, objective=objective, seed=seed, progress=False)
        probabilities.append(softmax(result.output[None].astype(np.float64))[0, target])
    return np.array(probabilities)


def table(results, seeds):
    """Markdown: one row per (objective, seed), p(c) per class, and the count at p >= BAR."""
    header = "| objective | jitter seed | " + " | ".join(CLASS_NAMES) + f" | classes at p >= {BAR} |"
    lines = [header, "|---|---:|" + "---:|" * (len(CLASS_NAMES) + 1)]
    for objective in OBJECTIVES:
        for seed in seeds:
            p = results[objective, seed]
            cells = " | ".join(f"{value:.3f}" for value in p)
            lines.append(f"| {objective} | {seed} | {cells} | {int((p >= BAR).sum())} of {len(p)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.recipes.class_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="jitter seeds (default 0-3)")
    parser.add_argument("--steps", type=int, default=200, help="ascent steps (class_model's default 200)")
    parser.add_argument("--out", type=Path, help="write the page here (Markdown)")
    args = parser.parse_args(argv)
    net = load_pretrained("shapes_vgg")
    started = time.perf_counter()
    results = {}
    for objective in OBJECTIVES:
        for seed in args.seeds:
            results[objective, seed] = class_probabilities(net, objective, seed, args.steps)
            print(f"{objective}, seed {seed}: {int((results[objective, seed] >= BAR).sum())} of "
                  f"{len(CLASS_NAMES)} at p >= {BAR}", file=sys.stderr)
    command = "python -m minicnn.recipes.class_models" + (f" --seeds {' '.join(map(str, args.seeds))}"
                                                          if args.seeds != [0, 1, 2, 3] else "")
    command += f" --steps {args.steps}" if args.steps != 200 else ""
    text = (f"# Class models of shapes_vgg\n\nWritten by `{command} --out docs/results/class-models.md` "
            f"({time.perf_counter() - started:.0f} s). p(c) of each class model fed back to the shipped "
            f"shapes_vgg, made by `minicnn.viz.ascent.class_model` with its defaults.\n\n"
            + table(results, args.seeds) + "\n\n" + READING + "\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
