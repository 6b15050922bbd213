"""Property checks for your own convolution, transposed convolution, backward pass, max-pool and conv matrix.

Each check_* runs hypothesis over many drawn cases (minicnn.testing.strategies) and holds your
function to an identity, with minicnn's implementation as the reference. On the first failure,
hypothesis shrinks the case to a minimal one and the check raises a CaseFailure (an
AssertionError) whose message names that case, the quantity, the entry and both numbers.

Common options of every check:
    max_examples    how many cases to try (100)
    rtol            tolerance, relative to max(1, max |expected|): default 1e-10 in float64, 1e-5 in float32
    seed            an int makes the run repeat exactly (None: new cases each run)
    dtype, max_*    passed to the strategy (e.g. max_size=5, max_stride=2) to bound the cases
Your function gets stride, padding and output_padding as (h, w) pairs of ints.
"""
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from .. import matrix, ops
from ..checks import check_int_at_least, check_number
from .compare import CaseFailure, default_rtol, difference_text
from .strategies import conv_backward_cases, conv_cases, conv_transpose_cases, describe_case, pool_cases


# ----------------------------------------------------------------------------------------------
# running a property

# hypothesis's phases but "explain" (which re-runs the minimal case many times to say which parts of
# it matter: slow, and the message already shows the whole case)
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


def run_property(holds, cases, max_examples=100, seed=None):
    """Call holds(case) on max_examples cases drawn from the strategy `cases`; on a failure, raise the
    CaseFailure of the simplest failing case found (hypothesis shrinks it, then simplest_failure).

    No example database (nothing is written to disk) and no deadline (your function may be slow).
    """
    check_int_at_least(max_examples, "max_examples", 1)
    test = given(cases)(holds)
    test = settings(max_examples=max_examples, deadline=None, database=None, report_multiple_bugs=False,
                    phases=PHASES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(test)
    if seed is not None:
        test = hypothesis_seed(check_int_at_least(seed, "seed", 0))(test)
    failure = None
    try:
        test()
    except CaseFailure as error:
        failure = error
    if failure is not None:
        raise simplest_failure(holds, failure)


def simplest_failure(holds, failure):
    """Hypothesis shrinks the shapes, but not values it drew from a seed (strategies.values): set the
    case's array entries to 0, else to 1, one at a time, keeping each change under which it still fails.
    Returns the CaseFailure of the simplest case."""
    case = failure.case
    for field, array in zip(case._fields, case):
        if not isinstance(array, np.ndarray):
            continue
        for index in np.ndindex(array.shape):
            for simple in (0.0, 1.0):
                if array[index] == simple:
                    break
                trial = array.copy()
                trial[index] = simple
                candidate = case._replace(**{field: trial})
                try:
                    holds(candidate)
                except CaseFailure as error:
                    case, array, failure = candidate, trial, error
                    break
    return failure


def fail(check, what, case, detail, got=None, expected=None):
    raise CaseFailure(f"{check}: {detail}\non the case {describe_case(case)}", case, what, got, expected)


def call(check, fn, case, *arguments):
    """fn(*arguments) on copies of the arrays (the case stays as drawn, whatever fn writes into them),
    turning an exception it raises into a CaseFailure naming the case."""
    arguments = [a.copy() if isinstance(a, np.ndarray) else a for a in arguments]
    try:
        return fn(*arguments)
    except Exception as error:  # your function failed on this case: that is what the check reports
        raise CaseFailure(f"{check}: your function raised {type(error).__name__}: {error}\n"
                          f"on the case {describe_case(case)}", case, "exception") from error


def parts_of(check, case, got, names):
    """got, checked to be a tuple of len(names) results (e.g. ("dx", "dw", "db")); else fail()."""
    if not isinstance(got, tuple) or len(got) != len(names):
        fail(check, "result", case, f"fn must return a tuple ({', '.join(names)}), got {type(got).__name__}")
    return got


def compare(check, what, case, got, expected, rtol, about=""):
    """fail() unless got has expected's shape and equals it within rtol (default: by expected's dtype).
    `about` is added to the message (what `what` is)."""
    rtol = default_rtol(expected.dtype) if rtol is None else rtol
    got = np.asarray(got)
    message = difference_text(what, got, expected, rtol)
    if message:
        fail(check, what, case, message + about, got, expected)


def check_tolerance(rtol):
    return None if rtol is None else check_number(rtol, "rtol", low=0)


# ----------------------------------------------------------------------------------------------
# the checks


def check_conv2d(fn, max_examples=100, rtol=None, seed=None, **case_options):
    """fn(x, w, stride, padding) -> y must be the cross-correlation minicnn.ops.conv2d computes:

        y[n, f, i, j] = sum_{c, a, b} x_pad[n, c, i sh + a, j sw + b] w[f, c, a, b]

    with x_pad = x zero-padded by ph rows above and below, pw columns left and right, and
    y of shape (N, F, (H + 2ph - kh) // sh + 1, (W + 2pw - kw) // sw + 1). No bias.
    Cases from conv_cases(**case_options).
    """
    rtol = check_tolerance(rtol)

    def holds(case):
        got = call("check_conv2d", fn, case, case.x, case.w, case.stride, case.padding)
        expected = ops.conv2d(case.x, case.w, None, case.stride, case.padding)
        compare("check_conv2d", "y", case, got, expected, rtol)

    run_property(holds, conv_cases(**case_options), max_examples, seed)


def adjoint_gap(x, conv_x, y, x_back):
    """|<conv2d(x), y> - <x, x_back>| and the scale of its rounding error (sum of |terms| on both sides)."""
    left, right = float(np.vdot(conv_x, y)), float(np.vdot(x, x_back))
    scale = float(np.abs(conv_x * y).sum() + np.abs(x * x_back).sum())
    return left, right, scale


def check_conv_transpose2d(fn, max_examples=100, rtol=None, seed=None, **case_options):
    """fn(y, w, stride, padding, output_padding) -> x must be the adjoint (transpose) of conv2d with weights w:

        <conv2d(x', w, stride, padding), y> == <x', fn(y, w, ...)>   for every x' of x's shape

    (checked with one standard-normal x'), which makes it equal to minicnn.ops.conv_transpose2d
    (checked entrywise next). w (F, C, kh, kw) is the FORWARD conv's weight; y (N, F, Hy, Wy);
    x (N, C, H, W) with H = (Hy - 1) sh - 2 ph + kh + output_padding[0]. No bias.
    Cases from conv_transpose_cases(**case_options), every legal output_padding among them.
    """
    rtol = check_tolerance(rtol)
    name = "check_conv_transpose2d"

    def holds(case):
        got = np.asarray(call(name, fn, case, *case))
        expected = ops.conv_transpose2d(case.y, case.w, None, case.stride, case.padding, case.output_padding)
        if got.shape != expected.shape:
            fail(name, "x", case, f"x has shape {got.shape}, expected {expected.shape} "
                                  f"(H = (Hy - 1) sh - 2 ph + kh + output_padding)", got, expected)
        probe = np.random.default_rng(0).standard_normal(expected.shape).astype(expected.dtype)
        left, right, scale = adjoint_gap(probe, ops.conv2d(probe, case.w, None, case.stride, case.padding),
                                         case.y, got)
        tolerance = (default_rtol(expected.dtype) if rtol is None else rtol) * max(1.0, scale)
        if not abs(left - right) <= tolerance:
            fail(name, "adjoint", case,
                 f"not the adjoint of conv2d: <conv2d(x', w), y> = {left!r} but <x', fn(y, w)> = {right!r} "
                 f"(|difference| {abs(left - right):.3g} > tolerance {tolerance:.3g}; x' standard normal, "
                 f"seed 0, of x's shape)", got, expected)
        compare(name, "x", case, got, expected, rtol)

    run_property(holds, conv_transpose_cases(**case_options), max_examples, seed)


def check_conv2d_backward(fn, max_examples=100, rtol=None, seed=None, **case_options):
    """fn(dy, x, w, stride, padding) -> (dx, dw, db), the gradients of L = <conv2d(x, w, b, stride, padding), dy>:

        dx = conv_transpose2d(dy, w)                                   (N, C, H, W)
        dw[f, c, a, b] = sum_{n, i, j} dy[n, f, i, j] x_pad[n, c, i sh + a, j sw + b]   (F, C, kh, kw)
        db[f] = sum_{n, i, j} dy[n, f, i, j]                            (F,)

    compared entrywise with minicnn.ops.conv2d_backward (which minicnn's own tests hold to central
    differences and to PyTorch). Cases from conv_backward_cases(**case_options).
    """
    rtol = check_tolerance(rtol)
    name = "check_conv2d_backward"

    def holds(case):
        got = parts_of(name, case, call(name, fn, case, *case), ("dx", "dw", "db"))
        expected = ops.conv2d_backward(*case)
        for what, got_one, expected_one in zip(("dx", "dw", "db"), got, expected):
            compare(name, what, case, got_one, expected_one, rtol)

    run_property(holds, conv_backward_cases(**case_options), max_examples, seed)


def check_max_pool2d(fn, max_examples=100, rtol=None, seed=None, **case_options):
    """fn(x, kernel_size, stride, padding) -> (y, switches) must be minicnn.ops.max_pool2d's:

        y[n, c, i, j] = max of x[n, c] over window (i, j)   (padding counts as -inf)
        switches[n, c, i, j] = flat index h * W + w in x[n, c] of that maximum, the FIRST one in
        row-major order when several entries tie (PyTorch's return_indices), so that
        x[n, c].ravel()[switches[n, c]] == y[n, c].

    Values compared within rtol, switches exactly. The drawn values repeat often, so ties are tested.
    Cases from pool_cases(**case_options).
    """
    rtol = check_tolerance(rtol)
    name = "check_max_pool2d"

    def holds(case):
        got = parts_of(name, case, call(name, fn, case, *case), ("y", "switches"))
        expected_y, expected_switches = ops.max_pool2d(*case)
        compare(name, "y", case, got[0], expected_y, rtol)
        switches = np.asarray(got[1])
        if not np.issubdtype(switches.dtype, np.integer):
            fail(name, "switches", case, f"switches must be integers (flat indices), got dtype {switches.dtype}")
        compare(name, "switches", case, switches, expected_switches, 0.0)

    run_property(holds, pool_cases(**case_options), max_examples, seed)


def check_matrix_form(fn, max_examples=100, rtol=None, seed=None, **case_options):
    """fn(w, input_shape, stride, padding) -> W, the (F Ho Wo, C H W) matrix of conv2d on one image:

        W @ x.ravel() == conv2d(x[None], w, None, stride, padding).ravel()   for every x of input_shape

    (checked with one standard-normal x), which makes W equal to minicnn.matrix.conv2d_matrix
    (checked entrywise next): W[(f, i, j), (c, i sh + a - ph, j sw + b - pw)] = w[f, c, a, b].
    input_shape = (C, H, W). Cases from conv_cases(**case_options) with one image each, of which only
    x's shape is used.
    """
    rtol = check_tolerance(rtol)
    name = "check_matrix_form"

    def holds(case):
        input_shape = case.x.shape[1:]
        got = np.asarray(call(name, fn, case, case.w, input_shape, case.stride, case.padding))
        expected = matrix.conv2d_matrix(case.w, input_shape, case.stride, case.padding)
        if got.shape != expected.shape:
            fail(name, "W", case, f"W has shape {got.shape}, expected {expected.shape} (F*Ho*Wo, C*H*W)",
                 got, expected)
        probe = np.random.default_rng(0).standard_normal(input_shape).astype(case.w.dtype)
        conv = ops.conv2d(probe[None], case.w, None, case.stride, case.padding).ravel()
        compare(name, "W @ x'", case, got @ probe.ravel(), conv, rtol,
                about="\nwith x' standard normal (seed 0) of input_shape, expected = conv2d(x').ravel()")
        compare(name, "W", case, got, expected, rtol)

    run_property(holds, conv_cases(**dict(case_options, max_batch=1)), max_examples, seed)
