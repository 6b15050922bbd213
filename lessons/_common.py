"""Shared by the lessons: where figures go, how they are saved, how small arrays are printed.

Figures go to the folder given by `--out DIR`, else by the MINICNN_OUT environment variable, else to
a folder under the system's temporary directory -- never into the repository.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: the lessons also run on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# `python lessons/NN_name.py` from a fresh checkout: make the package importable without installing
_REPO = Path(__file__).resolve().parents[1]
if (_REPO / "minicnn" / "__init__.py").exists() and str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def options():
    """The lesson's command line: --out DIR, --weights DIR; --help prints the lesson's docstring and these."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None,
                        help="folder for the figures (default: $MINICNN_OUT, else a folder in the temp directory)")
    parser.add_argument("--weights", default=None,
                        help="folder holding shapes_cam/shapes_vgg .npz files and their model cards "
                             "(default: the shipped weights); used by the lessons on trained models")
    known, _ = parser.parse_known_args()  # ignore arguments a notebook kernel may add
    return known


def weights_dir():
    """The --weights folder, or None for the shipped weights (minicnn.models.load_pretrained's default)."""
    return options().weights


def output_dir(lesson):
    """The folder for this lesson's figures (created if needed), from --out, MINICNN_OUT or the temp dir."""
    folder = options().out or os.environ.get("MINICNN_OUT") or os.path.join(tempfile.gettempdir(), "minicnn-lessons")
    folder = Path(folder) / lesson
    folder.mkdir(parents=True, exist_ok=True)
    print(f"figures go to {folder}\n")
    return folder


def save(fig, folder, name):
    """Save a matplotlib figure as folder/name.png, close it, and say where it went."""
    path = Path(folder) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"  [figure] {path}")
    return path


def title(text):
    """A visible section header in the printed output."""
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)))


def show(name, array, digits=3):
    """Print a small array with its name and shape, without numpy's long float noise."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        array = np.round(array, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    body = np.array2string(array, suppress_small=True, max_line_width=110)
    print(f"{name} {array.shape}:\n{body}")


def grid(ax, values, fmt="{:g}", cmap="RdBu_r", colors=None, title_text=None, vmax=None):
    """Draw a 2D array as coloured cells with its numbers written in them.

    The colour map is centred on zero (blue negative, red positive) unless `colors`, an (H, W, 3)
    array of cell colours, is given. fmt="" writes no numbers.
    """
    values = np.asarray(values, dtype=float)
    if colors is None:
        limit = vmax if vmax is not None else max(float(np.abs(values).max()), 1e-12)
        image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit)
        rgb = image.cmap(image.norm(values))[..., :3]
    else:
        rgb = np.asarray(colors, dtype=float)[..., :3]
        ax.imshow(rgb)
    dark = rgb @ np.array([0.3, 0.59, 0.11]) < 0.45  # luminance: white text on dark cells
    for (i, j), v in np.ndenumerate(values):
        if fmt:
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="white" if dark[i, j] else "black")
    ax.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if title_text:
        ax.set_title(title_text, fontsize=10)
