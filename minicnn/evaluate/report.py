"""Writing an evaluation: DIR/<metric>.csv (a header row, one row per method or per method and step),
DIR/evaluation.md (the tables) and the figures (PNG)."""
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..plot import attribution_figure, display_image, save_figure
from .randomization import unit_scaled
from .run import write_csv
from .pointing import rule_line


def write_results(results, settings, out, command=None):
    """Write every metric's CSV, evaluation.md and the figures into the folder `out`; returns the
    Markdown text."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for metric, rows in results.rows.items():
        write_csv(out / f"{metric}.csv", rows)
    text = markdown(results, settings, command)
    (out / "evaluation.md").write_text(text)
    figures(results, out)
    return text


# ----------------------------------------------------------------------------------------------
# Markdown


def _table(header, rows):
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)] + \
        ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def markdown(results, settings, command=None):
    s = settings
    lines = [f"# Evaluation of {results.model}", ""]
    if command:
        lines += [f"Produced by `{command}`.", ""]
    lines += [f"{s.n} held-out shapes images (make_shapes seed {s.seed}); {results.model} classifies "
              f"{100 * results.accuracy:.1f}% of them correctly. Maps explain each image's TRUE class."]
    if results.skipped:
        lines += ["Skipped: " + "; ".join(f"{m} ({why})" for m, why in results.skipped.items()) + "."]
    rows = results.rows
    if "pointing" in rows:
        lines += ["", "## Pointing game", "", rule_line() + "; centre = the image centre, random = a noise map.", ""]
        lines += _table(["method", "pointing accuracy", "95% interval", "hits", "constant maps", "seconds (maps)"],
                        [(r["method"], f"{100 * r['accuracy']:.1f}%", f"{100 * r['low']:.1f}-{100 * r['high']:.1f}%",
                          f"{r['hits']}/{r['n']}", r["constant_maps"], f"{r['seconds']:.1f}") for r in rows["pointing"]])
    faithful = [kind for kind in ("deletion", "insertion") if kind in rows]
    if faithful:
        lines += ["", "## Deletion and insertion", "",
                  f"p(true class) as the map's pixels are replaced by the fill image ({s.fill}) highest first "
                  f"(deletion: lower AUC is better) or put back into it (insertion: higher is better), "
                  f"{s.steps} steps; AUC over the fraction of pixels, mean over images +- its standard error.", ""]
        by_method = {}
        for kind in faithful:
            for r in rows[kind]:
                by_method.setdefault(r["method"], []).extend(
                    [f"{r['auc']:.3f} +- {r['auc_sem']:.3f}", f"{r['start']:.3f} -> {r['end']:.3f}"])
        header = ["method"] + [f"{kind} {what}" for kind in faithful for what in ("AUC", "p start -> end")]
        lines += _table(header, [[m] + cells for m, cells in by_method.items()])
    if "segmentation" in rows:
        lines += ["", "## Weak segmentation", "",
                  f"IoU with the object's mask: the map above its {s.quantile} quantile, and a graph cut seeded by its "
                  f"{s.cut_low} and {s.cut_high} quantiles (minicnn.evaluate.segmentation).", ""]
        lines += _table(["method", "threshold IoU", "graph-cut IoU"],
                        [(r["method"], f"{r['threshold_iou']:.3f}", f"{r['graph_cut_iou']:.3f}") for r in rows["segmentation"]])
    if "randomization" in rows:
        lines += randomization_lines(rows["randomization"], settings)
    if "switches" in rows:
        lines += ["", "## The max-pool switches", "",
                  "The backward rules un-pooling with the image's own switches or with flat ones (the first "
                  "position of every window, the same for every image); on the trained network, with the layers "
                  "above the last max-pool re-drawn, and fully re-drawn. Pointing accuracy; Spearman correlation "
                  "with the image's edges and with the trained network's map (own switches).", ""]
        lines += _table(["network", "method", "switches", "pointing", "spearman edges", "spearman trained"],
                        [(r["network"], r["method"], r["switches"], f"{100 * r['pointing']:.1f}%",
                          f"{r['spearman_edges']:.2f}", f"{r['spearman_trained']:.2f}") for r in rows["switches"]])
    return "\n".join(lines) + "\n"


def randomization_lines(rows, settings):
    lines = ["", "## Model-parameter randomization", "",
             f"Each step re-draws the named layers (their reset_parameters, seed {settings.randomization_seed}); "
             f"similarity of each method's map on {settings.n} images to the trained network's map (mean over images). "
             "Accuracy on max(n, 500) held-out images; chance is 10%."]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    titles = {"cascade": "Cascade (re-drawn from the top down)", "independent": "Independent (each layer re-drawn alone)",
              "data": "Data randomization (the same architecture trained on permuted labels)"}
    for mode, title in titles.items():
        steps = list(dict.fromkeys((r["step"], r["layers"], r["accuracy"]) for r in rows if r["mode"] == mode))
        if not steps:
            continue
        lines += ["", f"### {title}", ""]
        lines += _table(["step", "layers re-drawn", "accuracy"],
                        [(k, layers.replace("+", ", "), f"{100 * acc:.1f}%") for k, layers, acc in steps])
        for similarity in ("spearman_abs", "spearman_signed", "ssim"):
            lines += ["", f"{similarity} ({mode}), columns = step:", ""]
            table = {(r["method"], r["step"]): r[similarity] for r in rows if r["mode"] == mode}
            lines += _table(["method"] + [str(k) for k, _, _ in steps],
                            [[m] + [f"{table[m, k]:.2f}" for k, _, _ in steps] for m in methods])
    return lines


# ----------------------------------------------------------------------------------------------
# figures


def figures(results, out):
    """maps.png (the example maps), curves.png (deletion and insertion), randomization.png (rows
    methods, columns cascade steps, like Adebayo et al.'s figure) and randomization_similarity.png."""
    if results.examples:
        attribution_figure(results.images, {row: maps for row, maps in results.examples.items()}, out / "maps.png")
    faithful = [kind for kind in ("deletion", "insertion") if kind in results.rows]
    if faithful:
        curves_figure(results.rows, faithful, out / "curves.png")
    if "randomization" in results.rows:
        cascade_figure(results.images[0], results.randomization_examples, out / "randomization.png")
        similarity_figure(results.rows["randomization"], out / "randomization_similarity.png")


def curves_figure(rows, kinds, path):
    fig = Figure(figsize=(5 * len(kinds), 3.6))
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        for r in rows[kind]:
            curve = np.array(r["curve"].split(), dtype=float)
            ax.plot(np.linspace(0, 1, len(curve)), curve, label=f"{r['method']} ({r['auc']:.2f})",
                    linestyle="--" if r["method"] in ("centre", "random") else "-")
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "inserted"))
        ax.set_ylabel("mean p(true class)")
        ax.set_title(f"{kind} (AUC)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def cascade_figure(image, examples, path):
    """Rows: methods; columns: the image's map on the trained network, then each cascade step;
    each map |map| scaled to [0, 1] (grey), as in Adebayo et al. 2018, figure 2."""
    columns = list(examples)
    methods = list(examples[columns[0]])
    fig = Figure(figsize=(1.2 * (len(columns) + 1), 1.25 * len(methods) + 0.6))
    axes = fig.subplots(len(methods), len(columns) + 1, squeeze=False)
    for i, method in enumerate(methods):
        axes[i, 0].imshow(display_image(image), interpolation="nearest")
        axes[i, 0].set_ylabel(method, fontsize=7)
        for j, column in enumerate(columns, start=1):
            axes[i, j].imshow(unit_scaled(np.abs(examples[column][method][0])), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(column, fontsize=6, rotation=30)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def similarity_figure(rows, path):
    """Spearman (|map|) and SSIM against the cascade step, one line per method, and the accuracy."""
    cascade = [r for r in rows if r["mode"] in ("trained", "cascade")]  # the data test is a row of its own
    methods = list(dict.fromkeys(r["method"] for r in cascade))
    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3)
    for ax, similarity in zip(axes, ("spearman_abs", "ssim")):
        for method in methods:
            points = [(r["step"], r[similarity]) for r in cascade if r["method"] == method]
            ax.plot(*zip(*points), marker="o", label=method)
        ax.set_title(f"{similarity} to the trained map (cascade)", fontsize=9)
        ax.set_xlabel("layers re-drawn from the top")
        ax.set_ylim(-0.2, 1.05)
    axes[0].legend(fontsize=7)
    accuracy = sorted({(r["step"], r["accuracy"]) for r in cascade})
    axes[2].plot(*zip(*accuracy), marker="o", color="black")
    axes[2].axhline(0.1, linestyle="--", color="grey")
    axes[2].set_title("accuracy (chance 10%)", fontsize=9)
    axes[2].set_xlabel("layers re-drawn from the top")
    fig.tight_layout()
    return save_figure(fig, path)
