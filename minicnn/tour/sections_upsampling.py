"""Tour section: learned upsampling, and the checkerboard a transposed convolution of kernel 3 at stride 2
draws (the numbers and the figure are minicnn.recipes.checkerboard's)."""
from ..recipes.checkerboard import contrast, figure, measure_untrained

WEIGHT_DRAWS = 2  # untrained layers drawn per upsampler


def upsampling_section(tour):
    """Three ways to double the side of the subject's images, untrained: the counts, and where the energy goes."""
    images = tour.subject.images[: tour.budget.shown]
    results = measure_untrained(images, WEIGHT_DRAWS)
    numbers = ", ".join(f"{name} {contrast(result['untrained']):.2f}" for name, result in results.items())
    return [tour.panel(
        figure(results), "checkerboard",
        "Learned upsampling (a segmentation net's decoder, a GAN's generator) is a transposed convolution whose "
        "weights train. Top: all-ones weights on an all-ones input; with kernel 3 at stride 2 the four output "
        "phases sum 1, 2, 2 and 4 weights (lesson 3's parity classes): a built-in checkerboard. Bottom: "
        f"random He-normal layers on these images, mean squared output by phase; contrast (max - min) / mean: "
        f"{numbers}. Kernel 4, or a resize before a stride-1 convolution, sums as many weights everywhere.")]
