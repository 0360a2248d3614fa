"""The op table is complete: every op carries what each consumer reads from it.

Enumerated from ``OPS`` and from the frontend's dispatch table, so a new op or a
new NumPy function is checked with no test edits: every op has a batching rule,
every elementwise op a SymPy definition, every NumPy function an op lists in
``implements`` traces to that op, and every function the frontend registers
computes something (an op, or a composite that computes what NumPy does).
"""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
import sympy as sp

import chainrule as cr
from chainrule.compiler.batch import batching_rule
from chainrule.errors import UnsupportedError
from chainrule.frontends import SUPPORTED, dispatch, inplace, numpy_api, numpy_shapes
from chainrule.ir import OPS

IMPLEMENTED = [(name, function) for name, op in sorted(OPS.items()) for function in op.implements]
UFUNCS = sorted((f for f in dispatch.HANDLERS if isinstance(f, np.ufunc)), key=dispatch.function_name)


def ops_traced(fn, *args) -> list:
    graph = cr.trace(fn, *args)
    return [graph[i].op for i in range(len(graph))]


def compiled(function, *arguments):
    """``function`` of traced arrays, compiled; ``arguments`` are passed to it after them."""
    return cr.jit(lambda *arrays: function(*arrays, *arguments))


# ---- what each op declares --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_a_batching_rule(name):
    op = OPS[name]
    if op.kind == "source":
        assert op.arity == 0  # no operand to batch: vectorize copies sources as they are
    elif op.kind == "fused":
        # fusion comes after vectorization in every pipeline: a fused node is never batched
        with pytest.raises(UnsupportedError, match="no batching rule"):
            batching_rule(op)
    else:
        assert callable(batching_rule(op))
        assert (op.batch is None) == op.is_elementwise  # elementwise ops share one rule


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.is_elementwise))
def test_every_elementwise_op_has_a_sympy_definition(name):
    op = OPS[name]
    symbols = sp.symbols(f"a0:{op.arity}", real=True)
    definition = op.sympy(*symbols)
    assert isinstance(definition, sp.Basic)
    assert definition.free_symbols <= set(symbols)


# ---- the frontend's table -------------------------------------------------------------------


@pytest.mark.parametrize("name,function", IMPLEMENTED, ids=[f"{n}-{dispatch.function_name(f)}" for n, f in IMPLEMENTED])
def test_every_implemented_numpy_function_traces_to_its_op(name, function):
    op = OPS[name]
    shape = (2, 2)  # square, so matmul fits too
    args = [np.linspace(0.2, 0.8, 4).reshape(shape) + i for i in range(op.arity)]
    assert dispatch.PRIMITIVES[function] == name
    assert name in ops_traced(lambda *xs: function(*xs), *args)


def test_every_function_in_the_table_maps_to_an_op_or_a_composite():
    # the frontend's modules of NumPy composites: numpy_api, numpy_shapes, numpy_layout, ..., scipy_linalg
    composites = {
        numpy_api.__name__,
        numpy_shapes.__name__,
        inplace.__name__,
        "chainrule.frontends.scipy_linalg",
        "chainrule.frontends.scipy_integrate",
        "chainrule.frontends.scipy_ndimage",
        "chainrule.frontends.scipy_signal",
        "chainrule.frontends.scipy_sparse",
        "chainrule.frontends.scipy_spatial",
        "chainrule.frontends.scipy_stats",
        "chainrule.frontends.complex_values",  # np.real, np.imag, np.angle of real traced values
    }
    for function, handler in dispatch.HANDLERS.items():
        described = dispatch.function_name(function)
        assert callable(handler), described
        if function in dispatch.PRIMITIVES:
            op_name = dispatch.PRIMITIVES[function]
            assert op_name in OPS and function in OPS[op_name].implements, described
        else:
            module = handler.__module__
            assert module in composites or module.startswith("chainrule.frontends.numpy_"), (
                f"{described} maps to {handler!r}"
            )
    assert SUPPORTED == sorted({dispatch.function_name(f) for f in dispatch.HANDLERS})
    assert len(set(SUPPORTED)) == len(dispatch.HANDLERS)  # no two functions under one name


def sample_operands(ufunc) -> list:
    """Operands on which NumPy computes ``ufunc`` without error: square float matrices (so matmul
    fits) in (0.3, 0.9) or else in (1.2, 1.8) (arccosh), or else booleans (invert)."""
    candidates = [
        [np.linspace(low, low + 0.6, 9).reshape(3, 3) + 0.05 * i for i in range(ufunc.nin)] for low in (0.3, 1.2)
    ]
    candidates.append([np.eye(3, dtype=bool) | np.eye(3, k=i + 1, dtype=bool) for i in range(ufunc.nin)])
    for operands in candidates:
        try:
            with np.errstate(all="raise"):
                ufunc(*operands)
            return operands
        except (TypeError, FloatingPointError):
            pass
    raise AssertionError(f"no sample operands for {ufunc}")


@pytest.mark.parametrize("ufunc", UFUNCS, ids=dispatch.function_name)
def test_every_ufunc_in_the_table_computes_what_numpy_does(ufunc):
    operands = sample_operands(ufunc)
    expected = ufunc(*operands)
    got = compiled(ufunc)(*operands)
    assert np.asarray(got).dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-14)


@pytest.mark.parametrize("function", [np.logical_and, np.logical_or], ids=lambda f: f.__name__)
def test_logical_functions_read_numbers_as_numpy_does(function):
    a, b = np.array([0.0, 2.0, -1.5, 0.0]), np.array([3.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(compiled(function)(a, b), function(a, b))
    np.testing.assert_array_equal(compiled(function, 1)(a), function(a, 1))
    np.testing.assert_array_equal(compiled(np.logical_not)(a), np.logical_not(a))


def test_numpy_functions_the_table_lacks_raise_a_chainrule_error_naming_them():
    with pytest.raises(UnsupportedError, match=r"np\.spacing is not supported on traced values"):
        cr.trace(lambda x: np.spacing(x), np.ones(3))
    with pytest.raises(UnsupportedError, match=r"np\.histogram is not supported"):
        cr.trace(lambda x: np.histogram(x), np.ones(3))
    with pytest.raises(UnsupportedError, match=r"np\.multiply\.reduce is not supported"):
        cr.trace(lambda x: np.multiply.reduce(x), np.ones(3))


@pytest.mark.parametrize(
    "ufunc,reduction", [(np.add, np.sum), (np.maximum, np.max), (np.minimum, np.min)], ids=["add", "maximum", "minimum"]
)
def test_ufunc_reduce_reduces_like_the_reduction_it_is(ufunc, reduction):
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(compiled(ufunc.reduce)(x), reduction(x, axis=0))
    np.testing.assert_array_equal(compiled(ufunc.reduce, 1)(x), reduction(x, axis=1))
    np.testing.assert_array_equal(compiled(ufunc.reduce, None)(x), reduction(x))
    assert ops_traced(lambda x: ufunc.reduce(x, axis=1), x)[-1] == reduction.__name__


def imported_by(module) -> set:
    """The modules ``module``'s source imports from (``from chainrule.x import y`` gives chainrule.x
    and chainrule.x.y)."""
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_tracer_looks_handlers_up_in_a_table_that_knows_no_tracer():
    from chainrule.frontends import tracer

    assert "chainrule.frontends.dispatch" in imported_by(tracer)
    assert not {"chainrule.frontends.numpy_api", "chainrule.frontends.numpy_shapes"} & imported_by(tracer)
    assert "chainrule.frontends.tracer" not in imported_by(dispatch)
