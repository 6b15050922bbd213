"""minicnn.testing's checks: each passes on minicnn's own ops and fails, naming the case, on a buggy version.

(PyTorch's ops, wrapped to the same signatures, are checked in test_testing_torch.py.)
"""
import subprocess
import sys

import numpy as np
import pytest

from minicnn import matrix, ops
from minicnn.testing import (CaseFailure, ConvCase, assert_close, check_conv2d, check_conv2d_backward,
                             check_conv_transpose2d, check_matrix_form, check_max_pool2d, gradcheck, numerical_gradient)

# ----------------------------------------------------------------------------------------------
# minicnn's own ops, wrapped to the checks' signatures


def conv2d(x, w, stride, padding):
    return ops.conv2d(x, w, None, stride, padding)


def conv_transpose2d(y, w, stride, padding, output_padding):
    return ops.conv_transpose2d(y, w, None, stride, padding, output_padding)


def flipped(w):
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


@pytest.mark.parametrize("check,fn", [
    (check_conv2d, conv2d),
    (check_conv_transpose2d, conv_transpose2d),
    (check_conv2d_backward, ops.conv2d_backward),
    (check_max_pool2d, ops.max_pool2d),
    (check_matrix_form, matrix.conv2d_matrix),
], ids=["conv2d", "conv_transpose2d", "conv2d_backward", "max_pool2d", "matrix_form"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_check_passes_on_minicnn(check, fn, dtype):
    check(fn, max_examples=50, dtype=dtype)


def test_the_transposed_forms_of_the_lecture_pass_the_adjoint_check():
    for form in (matrix.matrix_conv_transpose2d, matrix.subpixel_conv_transpose2d, matrix.polyphase_conv_transpose2d):
        check_conv_transpose2d(lambda y, w, s, p, op: form(y, w, None, s, p, op), max_examples=30)


# ----------------------------------------------------------------------------------------------
# buggy versions: each caught, the message naming the quantity, the entry and the case


def one_sided_padding(x, w, stride, padding):
    (ph, pw) = padding
    return ops.conv2d(np.pad(x, ((0, 0), (0, 0), (2 * ph, 0), (2 * pw, 0))), w, None, stride, 0)


def last_row_dropped(x, w, stride, padding):
    """Keeps (positions at stride 1) // stride rows: one too few when the stride does not divide them."""
    rows = (x.shape[2] + 2 * padding[0] - w.shape[2] + 1) // stride[0]
    return conv2d(x, w, stride, padding)[:, :, :rows]


@pytest.mark.parametrize("bug,message", [
    (lambda x, w, s, p: conv2d(x, flipped(w), s, p), r"check_conv2d: y\[0, 0, 0, 0\] is .*, expected "),
    (one_sided_padding, r"check_conv2d: y(\[| has shape)"),
    (last_row_dropped, r"check_conv2d: y has shape \(1, 1, 0, 1\), expected \(1, 1, 1, 1\)"),
], ids=["kernel_flipped", "padding_on_one_side", "last_row_dropped"])
def test_check_conv2d_catches(bug, message):
    with pytest.raises(CaseFailure, match=message + r"(.|\n)*on the case ConvCase\(x \(") as caught:
        check_conv2d(bug, seed=0)
    case = caught.value.case
    with pytest.raises(AssertionError):  # the reported case fails on its own
        assert_close(bug(*case), conv2d(*case))


def test_the_last_row_bug_is_reported_on_a_stride_that_does_not_divide():
    with pytest.raises(CaseFailure) as caught:
        check_conv2d(last_row_dropped, seed=0)
    x, w, stride, padding = caught.value.case
    assert (x.shape[2] + 2 * padding[0] - w.shape[2] + 1) % stride[0] != 0


def test_check_conv_transpose2d_catches_an_ignored_output_padding():
    def ignores_output_padding(y, w, stride, padding, output_padding):
        return conv_transpose2d(y, w, stride, padding, 0)

    with pytest.raises(AssertionError, match=r"check_conv_transpose2d: x has shape .*, expected .*"
                                             r"output_padding(.|\n)*on the case ConvTransposeCase\(y \(") as caught:
        check_conv_transpose2d(ignores_output_padding, seed=0)
    assert max(caught.value.case.output_padding) > 0


def test_check_conv_transpose2d_catches_a_transpose_that_is_not_the_adjoint():
    def not_adjoint(y, w, stride, padding, output_padding):
        return conv_transpose2d(y, flipped(w), stride, padding, output_padding)

    with pytest.raises(AssertionError, match=r"not the adjoint of conv2d: <conv2d\(x', w\), y> = .* but "
                                             r"<x', fn\(y, w\)> = (.|\n)*on the case ConvTransposeCase"):
        check_conv_transpose2d(not_adjoint, seed=0)


@pytest.mark.parametrize("bug,quantity", [
    (lambda dy, x, w, s, p: (lambda dx, dw, db: (dx * s[0], dw, db))(*ops.conv2d_backward(dy, x, w, s, p)), "dx"),
    (lambda dy, x, w, s, p: (lambda dx, dw, db: (dx, flipped(dw), db))(*ops.conv2d_backward(dy, x, w, s, p)), "dw"),
    (lambda dy, x, w, s, p: (lambda dx, dw, db: (dx, dw, dy[0].sum(axis=(1, 2))))(*ops.conv2d_backward(dy, x, w, s, p)),
     "db"),
], ids=["dx_times_the_stride", "dw_flipped", "db_of_the_first_image_only"])
def test_check_conv2d_backward_catches(bug, quantity):
    with pytest.raises(AssertionError, match=rf"check_conv2d_backward: {quantity}\[(.|\n)*on the case ConvBackwardCase"
                                             rf"\(dy \("):
        check_conv2d_backward(bug, seed=0)


def test_check_conv2d_backward_wants_three_gradients():
    with pytest.raises(AssertionError, match=r"fn must return a tuple \(dx, dw, db\), got ndarray"):
        check_conv2d_backward(lambda dy, x, w, s, p: ops.conv2d_backward(dy, x, w, s, p)[0], seed=0)


def switches_in_the_padded_plane(x, kernel_size, stride, padding):
    y, switches = ops.max_pool2d(x, kernel_size, stride, padding)
    rows, cols = np.divmod(switches, x.shape[3])
    return y, (rows + padding[0]) * (x.shape[3] + 2 * padding[1]) + cols + padding[1]


def last_maximum_wins(x, kernel_size, stride, padding):
    """Ties to the last maximum: pool the 180-degree-rotated input and map the indices back."""
    h, w = x.shape[2:]
    y, switches = ops.max_pool2d(np.ascontiguousarray(x[:, :, ::-1, ::-1]), kernel_size, stride, padding)
    return y, h * w - 1 - switches


@pytest.mark.parametrize("bug,message", [
    (switches_in_the_padded_plane, r"check_max_pool2d: switches\["),
    (lambda x, k, s, p: (ops.max_pool2d(x, k, s, p)[0], ops.max_pool2d(x, k, s, p)[1].astype(np.float64)),
     r"switches must be integers \(flat indices\), got dtype float64"),
    (lambda x, k, s, p: ops.max_pool2d(-x, k, s, p), r"check_max_pool2d: y\["),
], ids=["switches_in_the_padded_plane", "float_switches", "min_pool"])
def test_check_max_pool2d_catches(bug, message):
    with pytest.raises(AssertionError, match=message + r"(.|\n)*on the case PoolCase\(x \("):
        check_max_pool2d(bug, seed=0)


def test_check_max_pool2d_catches_ties_going_to_the_last_maximum():
    # only ties tell the two rules apart: on a rotated input the windows differ too, so compare on the
    # kernel == stride, no padding cases, where rotating the input rotates the windows
    with pytest.raises(AssertionError, match=r"check_max_pool2d: (switches|y)\["):
        check_max_pool2d(last_maximum_wins, seed=0)


def test_check_matrix_form_catches_a_flipped_and_a_transposed_matrix():
    with pytest.raises(AssertionError, match=r"check_matrix_form: W @ x'\[.*\nwith x' standard normal"):
        check_matrix_form(lambda w, shape, s, p: matrix.conv2d_matrix(flipped(w), shape, s, p), seed=0)
    with pytest.raises(AssertionError, match=r"check_matrix_form: W has shape .*, expected .* \(F\*Ho\*Wo, C\*H\*W\)"):
        check_matrix_form(lambda w, shape, s, p: matrix.conv2d_matrix(w, shape, s, p).T, seed=0)


def test_an_exception_in_your_function_is_reported_with_the_case():
    def crashes_on_padding(x, w, stride, padding):
        if padding != (0, 0):
            raise IndexError("index 5 is out of bounds")
        return conv2d(x, w, stride, padding)

    with pytest.raises(CaseFailure, match=r"check_conv2d: your function raised IndexError: index 5 is out of bounds"
                                          r"\non the case ConvCase") as caught:
        check_conv2d(crashes_on_padding, seed=0)
    assert isinstance(caught.value.__cause__, IndexError)
    assert caught.value.case.padding != (0, 0)


def test_the_reported_case_is_simplified_to_zeros_and_ones():
    with pytest.raises(CaseFailure) as caught:
        check_conv2d(lambda x, w, s, p: conv2d(x, flipped(w), s, p), seed=0)
    case = caught.value.case
    assert isinstance(case, ConvCase)
    assert set(np.unique(case.x)) <= {0.0, 1.0} and set(np.unique(case.w)) <= {0.0, 1.0}
    assert case.x.size <= 4 and case.w.size <= 4  # a few entries: the smallest case that shows the bug


def test_a_seed_repeats_the_run_exactly():
    def run():
        with pytest.raises(CaseFailure) as caught:
            check_conv2d(one_sided_padding, seed=3)
        return str(caught.value)

    assert run() == run()


@pytest.mark.parametrize("call,error,message", [
    (lambda: check_conv2d(conv2d, max_examples=0), ValueError, r"max_examples must be an int >= 1, got 0"),
    (lambda: check_conv2d(conv2d, rtol=-1.0), ValueError, r"rtol must be a finite number >= 0, got -1.0"),
    (lambda: check_conv2d(conv2d, seed=1.5), TypeError, r"seed must be an int >= 0, got float 1.5"),
    (lambda: check_conv2d(conv2d, max_size=0), ValueError, r"max_size must be an int >= 1, got 0"),
    (lambda: check_conv2d(conv2d, dtype=np.int64), ValueError, r"dtype must be float32 or float64, got int64"),
    (lambda: check_conv2d(conv2d, max_sise=4), TypeError, r"max_sise"),
])
def test_bad_options_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# gradcheck, numerical_gradient, assert_close


def cubic(x):
    return float(np.sum(x**3 * np.arange(x.size).reshape(x.shape)))


def cubic_gradient(x):
    return 3 * x**2 * np.arange(x.size).reshape(x.shape)


def test_gradcheck_passes_on_the_true_gradient_and_returns_the_worst_error():
    x = np.random.default_rng(0).standard_normal((3, 4))
    error = gradcheck(cubic, x, cubic_gradient(x))
    assert 0 <= error <= 1e-8


def test_gradcheck_names_the_worst_entry_of_a_wrong_gradient():
    x = np.random.default_rng(0).standard_normal((3, 4))
    wrong = cubic_gradient(x)
    wrong[1, 2] += 0.5
    with pytest.raises(AssertionError, match=r"gradient check failed: worst relative error .* > rtol 1e-06, "
                                             r"at x\[1, 2\]: grad gives .*, central differences \(eps 1e-06\) give"):
        gradcheck(cubic, x, wrong)


def test_gradcheck_checks_conv2d_backward_in_float64():
    x, w = np.random.default_rng(1).standard_normal((2, 2, 5, 4)), np.random.default_rng(2).standard_normal((3, 2, 2, 3))
    dy = np.random.default_rng(3).standard_normal(conv2d(x, w, (2, 1), (1, 1)).shape)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, (2, 1), (1, 1))
    assert gradcheck(lambda x_: np.vdot(conv2d(x_, w, (2, 1), (1, 1)), dy), x, dx, rtol=1e-8) <= 1e-8
    assert gradcheck(lambda w_: np.vdot(conv2d(x, w_, (2, 1), (1, 1)), dy), w, dw, rtol=1e-8) <= 1e-8


def test_numerical_gradient_restores_x_and_lets_f_read_it_through_a_closure():
    x = np.random.default_rng(0).standard_normal((2, 3))
    before = x.copy()
    through_closure = numerical_gradient(lambda _: cubic(x), x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(through_closure, cubic_gradient(x), rtol=1e-7, atol=1e-8)


def test_gradcheck_refuses_float32_and_mismatched_shapes():
    x = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"x must be float64 for a gradient check .* got float32"):
        gradcheck(cubic, x, x)
    with pytest.raises(ValueError, match=r"grad must have shape \(2, 2\), got \(4,\)"):
        gradcheck(cubic, np.ones((2, 2)), np.ones(4))
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got 0.0"):
        gradcheck(cubic, np.ones((2, 2)), np.ones((2, 2)), eps=0.0)


def test_assert_close_names_the_worst_entry_and_the_shapes():
    expected = np.arange(6.0).reshape(2, 3)
    got = expected.copy()
    got[1, 0] += 1e-3
    assert_close(got, expected, rtol=1e-3)
    with pytest.raises(AssertionError, match=r"y\[1, 0\] is 3.001, expected 3.0 \(\|difference\| 0.001 > tolerance "
                                             r"5e-10; 1 of 6 entries differ\)"):
        assert_close(got, expected, name="y")
    with pytest.raises(AssertionError, match=r"actual has shape \(3, 2\), expected \(2, 3\)"):
        assert_close(expected.T, expected)
    with pytest.raises(AssertionError, match="is nan"):
        assert_close(np.full(2, np.nan), np.zeros(2))
    assert_close(np.array([np.nan]), np.array([np.nan]))  # NaN where NaN is expected


# ----------------------------------------------------------------------------------------------
# the optional dependency


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_minicnn_does_not_import_hypothesis():
    result = run_python("import sys, minicnn, minicnn.ops, minicnn.matrix; print('hypothesis' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_hypothesis_the_import_error_says_what_to_install():
    result = run_python("import sys; sys.modules['hypothesis'] = None; import minicnn.testing")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == """ImportError: minicnn.testing needs hypothesis: pip install "minicnn[testing]\""""


def test_a_function_that_writes_into_its_arguments_does_not_change_the_case():
    def scribbles(x, w, stride, padding):
        y = conv2d(x, w, stride, padding)
        x[...], w[...] = 7.0, 7.0
        return y

    check_conv2d(scribbles, max_examples=20)
