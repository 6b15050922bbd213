"""The checkerboard of transposed convolutions (Odena, Dumoulin & Olah 2016), counted and measured.

    python -m minicnn.recipes.checkerboard                      # figure to a temp folder, page to docs/results
    python -m minicnn.recipes.checkerboard --out /tmp/cb --images 200 --seeds 10

Three ways to double a map's side: a transposed convolution of kernel 3 at stride 2 (padding 1,
output_padding 1), one of kernel 4 at stride 2 (padding 1), and "resize, then convolve" (nearest 2x
upsampling, then a 3x3 convolution). Lesson 3 splits a transposed convolution into stride^2 small
convolutions, one per output phase (row mod 2, column mod 2), each with its own parity class of the
weights. With kernel 3 the classes have 4, 2, 2 and 1 weights, so the four phases of the output sum
different numbers of weights: a built-in checkerboard. With kernel 4 they have 4 each; after a resize
every output pixel sums all 9.

Measured here, in the interior of the output (a border of 2 pixels cut off):
1. the counts (minicnn.matrix.taps_per_phase), and the output of all-ones weights on an all-ones input;
2. untrained layers (He-normal weights, --seeds draws) applied to real feature maps, shapes_cam's relu4
   on held-out images: the mean squared output of each phase, relative to their mean;
3. the trained decoder of shapes_seg (kernel 4, stride 2), if its weights are there: the same number
   for its up1 output (before the ReLU).
Writes <out>/checkerboard.png and the page --doc (docs/results/checkerboard.md), which names this command.
"""
import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

from minicnn import data, models, plot
from minicnn.layers import Conv2d, ConvTranspose2d, Upsample
from minicnn.matrix import taps_per_phase
from minicnn.network import Network

BORDER = 2  # output rows / columns cut off at each side: the borders see fewer inputs whatever the phase


def upsamplers(channels, rng):
    """name -> Network that doubles the side of a (N, channels, h, w) map, newly drawn from rng."""
    return {
        "transposed k3 s2": Network([("up", ConvTranspose2d(channels, channels, 3, stride=2, padding=1,
                                                            output_padding=1, rng=rng))]),
        "transposed k4 s2": Network([("up", ConvTranspose2d(channels, channels, 4, stride=2, padding=1, rng=rng))]),
        "resize + conv k3": Network([("resize", Upsample(2, "nearest")),
                                     ("conv", Conv2d(channels, channels, 3, padding=1, rng=rng))]),
    }


def weights_per_phase(name):
    """(2, 2) counts of filter weights each output phase sums, per input channel."""
    if name.startswith("resize"):
        return np.full((2, 2), 9)   # a stride-1 conv: every output pixel sums all 3 x 3 weights
    kernel, padding = (3, 1) if "k3" in name else (4, 1)
    rows = taps_per_phase(kernel, 2, padding)
    return np.outer(rows, rows)


def phase_energy(maps):
    """(2, 2): the mean of maps**2 over images, channels and interior pixels of each phase (row % 2, col % 2)."""
    inner = maps[:, :, BORDER:-BORDER, BORDER:-BORDER]  # BORDER is even: phases keep their parity
    return np.array([[np.mean(inner[:, :, a::2, b::2].astype(np.float64) ** 2) for b in range(2)] for a in range(2)])


def contrast(per_phase):
    """(max - min) / mean of the four phase values: 0 for an even output, > 0 for a checkerboard."""
    return float((per_phase.max() - per_phase.min()) / per_phase.mean())


def ones_response(name):
    """The output of the upsampler with every weight 1 (no bias) on an all-ones 1-channel input, interior."""
    net = upsamplers(1, np.random.default_rng(0))[name].astype(np.float64)
    for key, value in net.named_parameters().items():
        value[...] = 0.0 if key.endswith("bias") else 1.0
    out = net.forward(np.ones((1, 1, 8, 8)))
    return out[0, 0, BORDER:-BORDER, BORDER:-BORDER]


def measure_untrained(maps, seeds):
    """name -> {"weights": counts per phase, "ones": all-ones response, "untrained": phase energies of
    He-normal upsamplers on maps (N, C, h, w), averaged over the weight draws 0 .. seeds - 1}."""
    results = {}
    for name in upsamplers(1, np.random.default_rng(0)):
        energies = [phase_energy(upsamplers(maps.shape[1], np.random.default_rng(seed))[name].forward(maps))
                    for seed in range(seeds)]
        results[name] = {"weights": weights_per_phase(name), "ones": ones_response(name),
                         "untrained": np.mean(energies, axis=0)}
    return results


def measure(images, seeds, weights_dir):
    """Every number of the page: counts, all-ones responses, untrained phase energies on shapes_cam's relu4
    maps of the images, and the trained phase energies of shapes_seg's up1 (None without its weights)."""
    features = models.load_pretrained("shapes_cam", weights_dir).forward(images, upto="relu4")
    results = measure_untrained(features, seeds)
    trained = None
    try:
        seg = models.load_pretrained("shapes_seg", weights_dir)
    except FileNotFoundError:
        seg = None
    if seg is not None:
        trained = phase_energy(seg.forward(images, upto="up1"))
    return results, trained


def figure(results, trained=None):
    """The checkerboard figure (a matplotlib Figure): all-ones responses on top, phase energies below."""
    from matplotlib.figure import Figure

    columns = len(results) + (trained is not None)
    fig = Figure(figsize=(3.2 * columns, 6.4))
    axes = fig.subplots(2, columns, squeeze=False)
    for col, (name, result) in enumerate(results.items()):
        axes[0, col].imshow(result["ones"], cmap="gray", vmin=0, vmax=9)
        values = ", ".join(f"{v:g}" for v in np.unique(result["ones"]))
        axes[0, col].set_title(f"{name}\nall-ones weights and input: {values}", fontsize=9)
        tiled = np.tile(result["untrained"] / result["untrained"].mean(), (3, 3))
        axes[1, col].imshow(tiled, cmap="magma", vmin=0, vmax=2)
        axes[1, col].set_title(f"untrained, mean output^2 by phase\ncontrast {contrast(result['untrained']):.2f}",
                               fontsize=9)
    if trained is not None:
        axes[0, -1].axis("off")
        axes[0, -1].text(0.5, 0.5, "shapes_seg's up1\n(kernel 4, stride 2),\ntrained", ha="center", va="center")
        axes[1, -1].imshow(np.tile(trained / trained.mean(), (3, 3)), cmap="magma", vmin=0, vmax=2)
        axes[1, -1].set_title(f"trained, mean output^2 by phase\ncontrast {contrast(trained):.2f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def page(results, trained, command, images, seeds):
    def cells(array):
        return " ".join(f"{v:g}" for v in np.ravel(array))

    rows = [f"| {name} | {cells(r['weights'])} | {cells(np.unique(np.round(r['ones'], 6)))} | "
            f"{cells(np.round(r['untrained'] / r['untrained'].mean(), 3))} | {contrast(r['untrained']):.3f} |"
            for name, r in results.items()]
    untrained_k4 = contrast(results["transposed k4 s2"]["untrained"])
    trained_text = ("shapes_seg's weights were not found: no trained decoder was measured." if trained is None else
                    f"shapes_seg's trained up1 (kernel 4, stride 2), same images: energy by phase "
                    f"{cells(np.round(trained / trained.mean(), 3))}, contrast {contrast(trained):.3f}, against "
                    f"{untrained_k4:.3f} for untrained kernel-4 layers: its learned weights make a phase pattern of "
                    f"their own, {contrast(trained) / contrast(results['transposed k3 s2']['untrained']):.2f} "
                    "times the one kernel 3 has built in.")
    return "\n".join([
        "# The checkerboard of transposed convolutions",
        "",
        f"Produced by `{command}` ({images} held-out images, seed {data.HELD_OUT_SEED}, shapes_cam's relu4 as the "
        f"input; {seeds} weight draws per untrained layer). The figure goes to the command's --out folder.",
        "",
        "Phases are (row mod 2, column mod 2) of the output, listed (0,0) (0,1) (1,0) (1,1); interior pixels only "
        f"(a border of {BORDER} cut off). 'weights' counts the filter weights each phase sums per input channel "
        "(`minicnn.matrix.taps_per_phase`: the parity classes of lesson 3); 'all-ones' is the output value(s) of "
        "all-ones weights on an all-ones input; 'untrained' is the mean squared output per phase of He-normal "
        "layers on real feature maps, divided by its mean; contrast = (max - min) / mean.",
        "",
        "| upsampler | weights per phase | all-ones output | untrained energy per phase | contrast |",
        "|---|---|---|---|---|",
        *rows,
        "",
        trained_text,
        "",
        "Reading: with kernel 3 at stride 2 the phases sum 4, 2, 2 and 1 weights, so even random weights put",
        "about four times the energy in one phase as in another (the variance of a sum of independent terms",
        "grows with their number); with kernel 4, or a resize before a stride-1 convolution, every phase sums",
        "as many weights and only the weights themselves could make a pattern.",
        "",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="held-out images whose features are upsampled")
    parser.add_argument("--seeds", type=int, default=8, help="weight draws per untrained upsampler")
    parser.add_argument("--weights", type=Path, default=None, help="folder of shapes_cam / shapes_seg weights")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "minicnn-checkerboard")
    parser.add_argument("--doc", type=Path, default=Path("docs/results/checkerboard.md"))
    args = parser.parse_args(argv)
    images = data.make_shapes(args.images, seed=data.HELD_OUT_SEED, distractor=0.5).images
    results, trained = measure(images, args.seeds, args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    plot.save_figure(figure(results, trained), args.out / "checkerboard.png", dpi=110)
    command = "python -m minicnn.recipes.checkerboard" + "".join(
        f" --{key} {shlex.quote(str(value))}" for key, value in (("images", args.images), ("seeds", args.seeds))
        if value != parser.get_default(key))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page(results, trained, command, args.images, args.seeds))
    for name, result in results.items():
        print(f"{name}: weights per phase {result['weights'].ravel().tolist()}, "
              f"untrained contrast {contrast(result['untrained']):.3f}")
    if trained is not None:
        print(f"shapes_seg trained up1: contrast {contrast(trained):.3f}")
    print(f"wrote {args.out / 'checkerboard.png'} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
