"""check_nans=True: the first op producing a NaN or an infinity is named, with its line, rule and values."""

import inspect
import re

import numpy as np
import pytest
from golden_functions import CASES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuse import programs, run_program

import chainrule as cr
from chainrule.backends.numpy import compile_graph
from chainrule.frontends.pytree import flatten


def sqrt_model(x):
    return np.sum(np.sqrt(x) * 3.0)


def log_model(x):
    return np.sum(np.log(x))


def ratio(x, y):
    return np.sum(x / y)


def difference(x, y):
    return np.sum(x - y)


def masked_log(x):
    return np.sum(np.where(x > 0, np.log(x), 0.0))


def line_of(fn, text):
    """``file.py:N``, N being the line of ``fn``'s source that contains ``text``."""
    lines, start = inspect.getsourcelines(fn)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return f"test_check_nans.py:{start + offset}"


def raised(compiled, *args) -> str:
    with pytest.raises(cr.NonFiniteError) as info:
        compiled(*args)
    return str(info.value)


def test_sqrt_at_zero_names_the_derivative_rule_its_line_and_the_element(backend):
    message = raised(cr.grad(sqrt_model, check_nans=True, backend=backend), np.array([4.0, 1.0, 2.0, 0.0, 9.0]))
    where = line_of(sqrt_model, "np.sqrt")
    # the design's shape: sqrt' at model.py:12 got x=0
    assert message.startswith(f"{where} in sqrt_model(): sqrt' got x=0.0 (element [3] of f64[5])")
    assert f"in its derivative rule (d sqrt at {where}) produced inf" in message
    assert "Hint:" in message and "np.sqrt(x + eps)" in message
    assert "return np.sum(np.sqrt(x) * 3.0)" in message  # the user's line, quoted


def test_log_of_zero_in_the_forward_pass_is_minus_inf(backend):
    message = raised(cr.jit(log_model, check_nans=True, backend=backend), np.array([1.0, 2.0, 0.0]))
    assert message.startswith(
        f"{line_of(log_model, 'np.log')} in log_model(): log got x=0.0 (element [2] of f64[3]) and produced -inf"
    )


def test_zero_over_zero_and_inf_minus_inf_are_nan(backend):
    message = raised(cr.jit(ratio, check_nans=True, backend=backend), np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    assert "div got x=0.0, y=0.0 (element [1] of f64[2]) and produced NaN" in message
    # infinite arguments are the caller's business; what they produce is not
    infinite = np.array([1.0, np.inf])
    message = raised(cr.value_and_grad(difference, check_nans=True, backend=backend), infinite, infinite)
    assert "sub got x=inf, y=inf (element [1] of f64[2]) and produced NaN" in message


def test_an_infinite_constant_flows_on_but_what_ops_make_of_it_counts():
    x = np.array([1.0, 2.0])
    assert cr.jit(lambda x: np.sum(x + np.inf), check_nans=True)(x) == np.inf
    message = raised(cr.jit(lambda x: np.sum((x + np.inf) * 0.0), check_nans=True), x)
    assert re.search(r"mul got \w+=inf, 0\.0 \(element \[0\] of f64\[2\]\) and produced NaN", message)
    message = raised(cr.jit(lambda x: np.sum(x.astype(np.float32)), check_nans=True), np.array([1.0, 1e300]))
    assert "cast got x=1e+300 (element [1] of f32[2]) and produced inf" in message


def test_a_nan_argument_is_reported_as_coming_from_the_input(backend):
    message = raised(cr.grad(sqrt_model, check_nans=True, backend=backend), np.array([1.0, np.nan, 2.0]))
    assert message.startswith("the argument x holds a NaN (element [1] of f64[3]): it was passed in")


def test_a_nan_in_a_discarded_where_branch_is_reported_as_in_jax(backend):
    # np.where computes both branches: log(-1) is NaN even though the mask drops it (and the llvm
    # kernel never stores it: its probe output sees it)
    message = raised(cr.grad(masked_log, check_nans=True, backend=backend), np.array([1.0, -1.0]))
    assert message.startswith(
        f"{line_of(masked_log, 'np.log')} in masked_log(): log got x=-1.0 (element [1] of f64[2]) and produced NaN"
    )
    assert "np.log(np.where(x > 0, x, 1))" in message  # the fix, in the hint


def test_overflow_of_a_sum_is_an_inf_produced_by_the_reduction():
    huge = np.full(4, 1e308)
    message = raised(cr.jit(lambda x: np.sum(x) * 1.0, check_nans=True), huge)
    assert "sum got x=<f64[4]> (f64[]) and produced inf" in message


def test_a_clean_run_with_infinite_inputs_and_constants_raises_nothing(backend):
    def masked_softmax(x, mask):
        logits = np.where(mask, x, -np.inf)  # -inf as a constant, not produced
        shifted = logits - np.max(logits)
        return np.sum(np.exp(shifted) * x)

    x = np.array([0.5, -1.0, 2.0, 0.25])
    mask = np.array([True, False, True, True])
    checked = cr.value_and_grad(masked_softmax, check_nans=True, backend=backend)(x, mask)
    plain = cr.value_and_grad(masked_softmax)(x, mask)
    np.testing.assert_allclose(checked[0], plain[0], rtol=1e-12)
    np.testing.assert_allclose(checked[1], plain[1], rtol=1e-12)
    assert np.isfinite(plain[1]).all()
    np.testing.assert_allclose(cr.grad(sqrt_model, check_nans=True, backend=backend)(np.array([4.0])), [0.75])
    np.testing.assert_allclose(
        cr.jit(lambda x: np.exp(-x), check_nans=True, backend=backend)(np.array([np.inf])), [0.0]
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_checked_kernel_computes_what_the_plain_one_does(case):
    fn, args, argnums = CASES[case]
    plain_value, plain_grads = cr.value_and_grad(fn, argnums)(*args)
    value, grads = cr.value_and_grad(fn, argnums, check_nans=True)(*args)
    assert value == pytest.approx(plain_value, rel=1e-12)
    checked_leaves, plain_leaves = flatten(grads)[0], flatten(plain_grads)[0]
    assert len(checked_leaves) == len(plain_leaves) > 0
    for checked, plain in zip(checked_leaves, plain_leaves):
        np.testing.assert_allclose(checked, plain, rtol=1e-12, atol=1e-15)


def test_big_relu_backward_with_its_bit_mask_form_is_checked_and_exact():
    x = np.linspace(-1.0, 1.0, 20001)  # large enough for where_else_zero; x = 0 exactly in the middle
    relu_squared = lambda x: np.sum(np.maximum(x, 0.0) ** 2)
    np.testing.assert_array_equal(cr.grad(relu_squared, check_nans=True)(x), cr.grad(relu_squared)(x))


def outcome(compiled, *args):
    """What a checked call gives: its results, or the message of its NonFiniteError."""
    try:
        return compiled(*args)
    except cr.NonFiniteError as error:
        return str(error)


@settings(max_examples=40, deadline=None)
@given(programs(), st.sampled_from([(7,), (40, 60)]), st.integers(0, 2**16), st.booleans())
def test_both_backends_report_the_same_op_on_random_programs(program, shape, seed, huge):
    rng = np.random.default_rng(seed)
    x, y, s = rng.uniform(-2, 2, shape), rng.uniform(-2, 2, shape), rng.uniform(-2, 2, shape[-1:])
    if huge:  # then exp and products overflow, and inf - inf or 0 * inf may follow
        x.flat[rng.integers(x.size)] = 1e200
        y.flat[rng.integers(y.size)] = -1e200
    fn = lambda x, y, s: run_program(program, x, y, s)
    with np.errstate(all="ignore"):
        scalar = np.ndim(fn(x, y, s)) == 0

    def compiled(**options):
        return cr.value_and_grad(fn, (0, 1, 2), **options) if scalar else cr.jit(fn, **options)

    on_numpy = outcome(compiled(check_nans=True), x, y, s)
    on_llvm = outcome(compiled(check_nans=True, backend="llvm"), x, y, s)
    if isinstance(on_numpy, str) or isinstance(on_llvm, str):
        assert on_llvm == on_numpy
        return
    if huge:  # 1e200 - 1e200 in a sum cancels differently in each summation order
        return
    expected = flatten(compiled()(x, y, s))[0]
    for checked in (on_numpy, on_llvm):
        for got, want in zip(flatten(checked)[0], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_large_fused_regions_are_checked_step_by_step():
    x = np.linspace(0.0, 1.0, 5000)  # above the size where fused steps write in place
    message = raised(cr.grad(sqrt_model, check_nans=True), x)
    assert "sqrt' got x=0.0 (element [0] of f64[5000])" in message


@pytest.mark.parametrize(
    "options", [{"optimize": False}, {"checkpoint": "sqrt"}, {"checkpoint": lambda node: "recompute"}]
)
def test_options_that_change_the_graph_keep_the_report(options):
    def chain(x):
        for _ in range(4):
            x = np.tanh(x) * 2.0
        return np.sum(np.sqrt(x * x))

    message = raised(cr.grad(chain, check_nans=True, **options), np.array([0.3, 0.0]))
    # the forward sqrt's operand is named when it is unambiguous (not when a recomputed copy exists)
    assert re.search(r"sqrt'( got \w+=0\.0)? \(element \[1\] of f64\[2\]\)", message)
    assert f"(d sqrt at {line_of(chain, 'np.sqrt')}) produced inf" in message


def test_check_nans_false_leaves_the_generated_code_as_it_was():
    x = np.array([1.0, 2.0])
    before = cr.grad(sqrt_model).source(x)
    checked = cr.grad(sqrt_model, check_nans=True).source(x)
    plain = cr.grad(sqrt_model)
    graph = plain.graph(x)  # grad's kernel returns None for the value it never reads (specialization.make_kernel)
    assert plain.source(x) == before == compile_graph(graph, "sqrt_model_grad", [None, *graph.outputs[1:]]).source
    assert "all_finite" not in before and "nonfinite" not in before
    # one statement per op or fused step, each followed by its check
    statements = [line for line in checked.splitlines()[1:-1] if not line.lstrip().startswith("if ")]
    checks = [line for line in checked.splitlines() if "nonfinite(" in line]
    assert len(checks) == len(statements) == 5
    assert re.search(r"dx = 3\.0 / \w+ +# d sqrt at", checked)


def test_the_llvm_source_carries_the_checked_kernel_it_falls_back_to():
    source = cr.grad(sqrt_model, check_nans=True, backend="llvm").source(np.array([1.0]))
    assert "define" in source and "; def sqrt_model_grad(x):" in source


def test_non_finite_error_is_a_chainrule_error():
    assert issubclass(cr.NonFiniteError, cr.ChainruleError)
