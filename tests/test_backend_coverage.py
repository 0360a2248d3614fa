"""Every op of the table runs on both backends, and the two compute the same elements.

Adding a primitive is one entry in the op table: these tests enumerate ``OPS``, so a new op is
checked here without being named (a NumPy lowering; an LLVM scalar lowering or strategy; the
same values as NumPy at edge values, 0, -0.0, infinities and NaN included).
"""

import itertools

import numpy as np
import pytest
import sympy as sp

from chainrule.backends import numpy as numpy_backend
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.backends.llvm import scalar_ops, strategies
from chainrule.ir import OPS, Graph, Op, TensorType
from chainrule.ir.ops import elementwise_flops, infer_elementwise

EDGE_VALUES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 0.75, 2.0, -3.0, 1e-300, 700.0, -745.0]
# elementwise ops native code computes (those declared FALLBACK run their NumPy lowering: zeta)
ELEMENTWISE = sorted(
    name for name, op in OPS.items() if op.is_elementwise and strategies.strategy_of(name).kind != strategies.FALLBACK
)
# cast is checked to the dtypes NumPy defines for every float (to an integer, NaN and inf are undefined)
ATTRIBUTES = {"cast": [{"dtype": "float32"}, {"dtype": "float64"}, {"dtype": "bool"}]}


def test_every_op_has_a_numpy_lowering():
    for name, op in OPS.items():
        assert isinstance(op.numpy, str) or callable(op.numpy), f"{name} has no NumPy lowering"


def test_every_op_has_an_llvm_lowering_or_strategy():
    for name, op in OPS.items():
        strategy = strategies.strategy_of(name)  # raises for an op nothing declares
        if op.is_elementwise and strategy.kind != strategies.FALLBACK:
            assert scalar_ops.lowerable(name, "float64"), f"{name} has no LLVM scalar lowering"
        if op.view:
            assert strategy.kind == strategies.VIEW and strategy.view is not None, f"{name} has no view"
        if op.is_reduction:
            assert strategy.kind == strategies.REDUCE and strategy.identity and strategy.combine, name
        if op.kind not in ("elementwise", "source", "fused"):
            assert strategy.kind in (
                strategies.VIEW,
                strategies.REDUCE,
                strategies.GEMM,
                strategies.LAPACK,
                strategies.NATIVE,
                strategies.FALLBACK,
            )


def operand_dtype(name: str, dtype: str, attrs: dict) -> str:
    """``dtype``, or bool for an op NumPy defines on booleans only (logical_and's ``&``)."""
    try:
        OPS[name].infer([TensorType((1,), dtype)] * OPS[name].arity, attrs)
    except TypeError:
        return "bool"
    return dtype


def single_op_graph(name: str, dtype: str, attrs: dict) -> tuple[Graph, list]:
    """A graph computing ``name`` on inputs holding every combination of the edge values (as
    booleans where the op takes booleans: the nonzero ones, NaN included, are true)."""
    arity = OPS[name].arity
    columns = np.array(list(itertools.product(EDGE_VALUES, repeat=arity)), dtype=dtype).T
    dtype = operand_dtype(name, dtype, attrs)
    columns = columns.astype(dtype)
    graph = Graph(f"single_{name}")
    inputs = [graph.add_input(TensorType(column.shape, dtype), f"x{i}") for i, column in enumerate(columns)]
    graph.set_outputs([graph.add(name, tuple(inputs), attrs)])
    return graph, list(columns)


def assert_same_elements(got: np.ndarray, expected: np.ndarray, rtol: float, where: str) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape, where
    if expected.dtype.kind != "f":
        np.testing.assert_array_equal(got, expected, err_msg=where)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{where}: NaN")
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, equal_nan=True, err_msg=where)
    zeros = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(expected[zeros]), err_msg=f"{where}: sign of 0")


def assert_backends_agree(name: str, dtype: str, attrs: dict) -> None:
    graph, columns = single_op_graph(name, dtype, attrs)
    kernel = llvm_kernel.compile_graph(graph)
    assert not kernel.lowered.fallbacks, f"{name} on {dtype} runs through NumPy"
    with np.errstate(all="ignore"):
        (expected,) = numpy_backend.compile_graph(graph).fn(*columns)
        (got,) = kernel.fn(*columns)
    rows = list(itertools.product(EDGE_VALUES, repeat=len(columns)))
    mismatched = [
        (rows[i], got[i], expected[i])
        for i in range(len(rows))
        if not (got[i] == expected[i] or (np.isnan(got[i]) and np.isnan(expected[i])))
    ][:5]
    assert_same_elements(
        np.asarray(got),
        np.asarray(expected),
        1e-13 if dtype == "float64" else 2e-6,
        f"{name} on {dtype}, first differences (operands, llvm, numpy): {mismatched}",
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_the_llvm_scalar_lowering_computes_what_numpy_does_at_edge_values(name, dtype):
    for attrs in ATTRIBUTES.get(name, [{}]):
        assert_backends_agree(name, dtype, attrs)


@pytest.fixture
def log2_defined_by_sympy_only():
    """An elementwise op declared with nothing but its SymPy definition and NumPy spelling."""
    name = "test_log2_by_definition"
    op = Op(
        name,
        "elementwise",
        1,
        infer_elementwise(name),
        "np.log({0}) / np.log(2)",
        vjp=(None,),
        flops=elementwise_flops(2),
        sympy=lambda x: sp.log(x) / sp.log(2),
    )
    OPS[name] = op
    yield name
    del OPS[name]


def test_an_op_with_only_a_sympy_definition_lowers_from_it_on_llvm(log2_defined_by_sympy_only):
    name = log2_defined_by_sympy_only
    assert scalar_ops.lowerable(name, "float64") and name not in scalar_ops.EMITTERS and OPS[name].libm is None
    kernel = llvm_kernel.compile_graph(single_op_graph(name, "float64", {})[0])
    assert "@llvm.log.f64" in kernel.source  # log(x) / log(2): libm's log, divided by a literal
    for dtype in ("float64", "float32"):
        assert_backends_agree(name, dtype, {})
    x = np.array([1.0, 2.0, 8.0, 0.5, 1024.0])
    graph = Graph("log2")
    graph.set_outputs([graph.add(name, (graph.add_input(TensorType((5,), "float64"), "x"),))])
    np.testing.assert_allclose(llvm_kernel.compile_graph(graph).fn(x)[0], [0.0, 1.0, 3.0, -1.0, 10.0], rtol=1e-15)
