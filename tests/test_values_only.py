"""Eigenvalues and singular values alone: where nothing reads the vectors, the compiled graph calls
``eigvalsh``/``svdvals`` (LAPACK jobz='N', as NumPy does) instead of the full factorization.

Forward-only functions take the cheap route; a gradient or a JVP through the values reads the
vectors and keeps the full factorization. Values are NumPy's on both backends; the values-only
ops' own derivative and batching rules (for a graph built with them) match central differences
and one call per example.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.compiler import pipeline
from chainrule.compiler.batch import vectorize
from chainrule.compiler.forward import forward
from chainrule.ir import F, Graph, TensorType, Value
from chainrule.transforms.compiled import compile_kernel

RNG = np.random.default_rng(16)
SYMMETRIC = RNG.standard_normal((2, 5, 5))
SYMMETRIC = SYMMETRIC + np.swapaxes(SYMMETRIC, -1, -2)
WIDE = RNG.standard_normal((3, 4, 6))
WEIGHTS = RNG.uniform(0.5, 1.5, 5)


def final_ops(compiled, *args) -> set[str]:
    return {node.op for node in compiled.graph(*args).nodes}


def close(got, expected, rtol):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * float(np.max(np.abs(expected))))


VALUES = [
    ("np.linalg.eigvalsh", lambda a: np.linalg.eigvalsh(a), SYMMETRIC, "eigvalsh", "dsyevd"),
    ("eigvalsh upper", lambda a: np.linalg.eigvalsh(a, UPLO="U"), np.triu(SYMMETRIC), "eigvalsh", "dsyevd"),
    ("eigh, vectors unused", lambda a: np.linalg.eigh(a)[0] * 2.0, SYMMETRIC, "eigvalsh", "dsyevd"),
    ("scipy.linalg.eigvalsh", lambda a: scipy.linalg.eigvalsh(a[0]), SYMMETRIC, "eigvalsh", "dsyevd"),
    ("svd compute_uv=False", lambda a: np.linalg.svd(a, compute_uv=False), WIDE, "svdvals", "dgesdd"),
    ("np.linalg.svdvals tall", lambda a: np.linalg.svdvals(np.swapaxes(a, -1, -2)), WIDE, "svdvals", "dgesdd"),
    ("scipy.linalg.svdvals", lambda a: scipy.linalg.svdvals(a[1]), WIDE, "svdvals", "dgesdd"),
    ("svd, U and Vh unused", lambda a: np.linalg.svd(a, full_matrices=False)[1][..., :2], WIDE, "svdvals", "dgesdd"),
]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, fn, x, op, routine", VALUES, ids=[v[0] for v in VALUES])
def test_forward_only_functions_compute_the_values_alone(name, fn, x, op, routine, dtype, backend):
    x = x.astype(dtype)
    compiled = cr.jit(fn, backend=backend)
    close(compiled(x), fn(x), rtol=1e-12 if dtype == np.float64 else 1e-5)
    ops = final_ops(compiled, x)
    assert op in ops and not ops & {"eigh", "svd"}
    if backend == "llvm":
        kernel = compiled._specialize((x,))[0].kernel
        prefix = "d" if dtype == np.float64 else "s"
        assert f"@chainrule_lapack_{prefix}{routine[1:]}(" in kernel.source
        assert not kernel.lowered.fallbacks


def test_the_values_only_call_asks_lapack_for_no_vectors():
    kernel = cr.jit(np.linalg.eigvalsh, backend="llvm")._specialize((SYMMETRIC,))[0].kernel
    syevd = [line for line in kernel.source.splitlines() if "call void @chainrule_lapack_dsyevd(" in line]
    assert syevd and all("%char.N" in line and "%char.V" not in line for line in syevd)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_gradient_through_the_values_keeps_the_factorization_it_needs(backend):
    def loss(a):
        return np.sum(WEIGHTS * np.linalg.eigvalsh(a + a.T))

    a = SYMMETRIC[0]
    grad = cr.grad(loss, backend=backend)
    ops = final_ops(grad, a)
    assert "eigh" in ops and "eigvalsh" not in ops  # one factorization, its vectors read by the gradient
    _, v = np.linalg.eigh(a + a.T)
    close(grad(a), 2 * (v * WEIGHTS) @ v.T, rtol=1e-10)  # V diag(w) Vᵀ, through a + aᵀ
    assert relative_error(grad(a), numerical_gradient(loss, (a,), 0)) < 1e-7


def test_a_gradient_with_respect_to_another_input_computes_the_values_alone():
    def loss(a, scale):
        return np.sum(np.linalg.svd(a, compute_uv=False)) * np.sum(scale**2)

    a, scale = WIDE[0], np.array([0.5, 2.0])
    grad = cr.grad(loss, argnums=1, backend="llvm")
    assert "svdvals" in final_ops(grad, a, scale) and "svd" not in final_ops(grad, a, scale)
    close(grad(a, scale), 2 * scale * np.sum(np.linalg.svd(a, compute_uv=False)), rtol=1e-12)


def test_forward_mode_through_the_values_keeps_the_vectors():
    def values(a):
        return np.linalg.eigvalsh(a)

    a, tangent = SYMMETRIC[1], SYMMETRIC[0]
    value, directional = cr.jvp(values, (a,), (tangent,))
    _, v = np.linalg.eigh(a)
    close(value, np.linalg.eigvalsh(a), rtol=1e-12)
    close(directional, np.einsum("ij,ik,kj->j", v, tangent, v), rtol=1e-10)  # diag(Vᵀ dA V)


# ---- the values-only ops' own rules, on graphs built with them ------------------------------------


def built(op: str, shape: tuple[int, ...], **attrs) -> Graph:
    """sum(weights ∘ op(a)) as a graph of its own."""
    graph = Graph(op)
    a = Value(graph, graph.add_input(TensorType(shape, "float64"), "a"))
    values = getattr(F, op)(a, **attrs)
    weighted = values * RNG.uniform(0.5, 1.5, values.shape)
    graph.set_outputs([F.sum(weighted, axis=(0,), keepdims=False).id])
    return graph


def run(graph: Graph, wrt=None, backend="numpy"):
    return compile_kernel(pipeline.run(graph, wrt).final, graph.name, backend).fn


CASES = [("eigvalsh", SYMMETRIC[0], {"lower": True}), ("eigvalsh", SYMMETRIC[1], {"lower": False})]
CASES += [("svdvals", WIDE[0], {}), ("svdvals", WIDE[1].T.copy(), {})]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("op, a, attrs", CASES)
def test_the_values_only_rules_match_central_differences(op, a, attrs, backend):
    graph = built(op, a.shape, **attrs)
    value = run(graph, backend=backend)
    gradient = run(graph, [0], backend=backend)(a)[1]

    def loss(x):
        if op == "eigvalsh" and attrs["lower"] is False:  # the upper triangle is the one read
            x = np.triu(x) + np.triu(x, 1).T
        elif op == "eigvalsh":
            x = np.tril(x) + np.tril(x, -1).T
        return value(x)[0]

    numeric = numerical_gradient(loss, (a,), 0)
    symmetric_numeric = (numeric + numeric.T) / 2 if op == "eigvalsh" else numeric
    assert relative_error(gradient, symmetric_numeric) < 1e-7
    tangent = RNG.standard_normal(a.shape)
    jvp_graph = forward(graph, [0])
    directional = compile_kernel(pipeline.run(jvp_graph).final, "jvp", backend).fn(a, tangent)[1]
    assert relative_error(directional, np.sum(gradient * tangent)) < 1e-8


@pytest.mark.parametrize("op, stack", [("eigvalsh", SYMMETRIC), ("svdvals", WIDE)])
def test_the_values_only_batching_rule_is_one_call_per_example(op, stack):
    attrs = {"lower": True} if op == "eigvalsh" else {}
    graph = Graph(op)
    a = Value(graph, graph.add_input(TensorType(stack.shape[1:], "float64"), "a"))
    graph.set_outputs([getattr(F, op)(a, **attrs).id])
    batched = run(vectorize(graph, [0], len(stack)))(stack)[0]
    one_by_one = [run(graph)(x)[0] for x in stack]
    close(batched, np.stack(one_by_one), rtol=1e-13)
