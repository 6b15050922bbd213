"""The checkerboard counts (minicnn.matrix.taps_per_phase) against the transposed convolution itself, and
the recipe's page."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ops
from minicnn.matrix import parity_classes, taps_per_phase
from minicnn.recipes import checkerboard


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 7), st.integers(1, 4), st.integers(0, 3))
def test_each_output_phase_sums_as_many_weights_as_the_count_says(kernel, stride, padding):
    """All-ones weights on an all-ones input: away from the borders, output o is the number of weights it
    sums, which must be taps_per_phase(...)[o % stride]; and the counts are the parity classes' sizes."""
    y = np.ones((1, 1, 1, 12))
    if (12 - 1) * stride - 2 * padding + kernel < 1:
        return
    x = ops.conv_transpose2d(y, np.ones((1, 1, 1, kernel)), stride=(1, stride), padding=(0, padding))[0, 0, 0]
    counts = taps_per_phase(kernel, stride, padding)
    margin = kernel + padding  # outputs this far from either end see a full set of inputs
    for o in range(margin, len(x) - margin):
        assert x[o] == counts[o % stride]
    sizes = sorted(c.size for c in parity_classes(np.ones((1, 1, 1, kernel)), (1, stride)).values())
    assert sorted(counts) == sizes
    assert (len(set(counts)) == 1) == (kernel % stride == 0)


def test_kernel_three_at_stride_two_is_uneven_and_four_is_even():
    assert taps_per_phase(3, 2, 1) == (1, 2) and taps_per_phase(3, 2, 0) == (2, 1)
    assert taps_per_phase(4, 2, 1) == (2, 2)
    np.testing.assert_array_equal(checkerboard.weights_per_phase("transposed k3 s2"), [[1, 2], [2, 4]])


def test_the_recipe_measures_a_checkerboard_for_kernel_three_only(tmp_path):
    doc = tmp_path / "checkerboard.md"
    assert checkerboard.main(["--images", "6", "--seeds", "3", "--out", str(tmp_path), "--doc", str(doc)]) == 0
    assert (tmp_path / "checkerboard.png").stat().st_size > 0
    text = doc.read_text()
    assert "`python -m minicnn.recipes.checkerboard --images 6 --seeds 3`" in text
    rows = {line.split("|")[1].strip(): float(line.split("|")[5]) for line in text.splitlines()
            if line.startswith("| transposed") or line.startswith("| resize")}
    assert rows["transposed k3 s2"] > 0.8   # energies about 1 : 2 : 2 : 4
    assert rows["transposed k4 s2"] < 0.3 and rows["resize + conv k3"] < 0.3
