"""NumPy's contractions on traced values: np.einsum in every subscript form, tensordot, inner, vdot,
kron, outer, trace, diagonal, diag, cross, dot and matmul.

Each case is checked on both backends: its value against NumPy's own function on the same arrays,
its gradient (of a weighted sum of the result, so a transposed or mis-summed cotangent cannot pass)
against a fourth-order central difference, and its forward-mode derivative along a random tangent
against the same difference along that tangent. Hessians are checked against closed forms written
out here. How einsum is lowered (one matmul per pairwise contraction, the path np.einsum_path
chooses) is checked on the traced graph.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum
from test_forward_mode import directional_difference
from test_op_gradients import ops_traced

import chainrule as cr
from chainrule.errors import ShapeError, TraceError

# NumPy 2 deprecates cross products with 2-vectors and warns (as chainrule does: tested below)
pytestmark = pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")

EINSUM_CASES = [
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(4, 4)]),
    ("iii->i", [(3, 3, 3)]),
    ("ijj->ij", [(2, 3, 3)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ba", [(2, 3)]),  # implicit output: sorted, so the transpose
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij,kj->ik", [(2, 3), (4, 3)]),
    ("ji,jk->ki", [(3, 2), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (3, 3, 4)]),  # ellipses of different ranks broadcast
    ("...ij,...jk", [(2, 2, 3), (3, 2)]),
    ("i...->...", [(2, 3)]),
    ("...", [(2, 3)]),
    ("ij...,jk...->ik...", [(2, 3, 2), (3, 2, 1)]),
    ("i,i->", [(3,), (3,)]),
    ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,j", [(3,), (2,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,ij->", [(2, 3), (2, 3)]),
    ("ij,ij->i", [(2, 3), (2, 3)]),
    ("ij,ij->ij", [(2, 1), (2, 3)]),  # a size-1 axis broadcasts
    ("ij,jk", [(2, 1), (3, 4)]),  # ... also a summed one
    ("ij,j->i", [(2, 3), (3,)]),
    ("i,ij->j", [(2,), (2, 3)]),
    ("i,->i", [(3,), ()]),
    (",->", [(), ()]),
    ("ii,i->i", [(3, 3), (3,)]),
    ("ijj,jk", [(2, 3, 3), (3, 2)]),
    ("ijk,ikl,ilm->jm", [(2, 3, 4), (2, 4, 3), (2, 3, 2)]),
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)]),  # a 4-operand chain
    ("ab,bc,cd,de", [(2, 3), (3, 4), (4, 5), (5, 2)]),
    ("i,j,k->ijk", [(2,), (3,), (2,)]),
    ("bn,nm,bm->b", [(3, 4), (4, 4), (3, 4)]),  # a batch of quadratic forms
    ("ij,jk,ki->", [(2, 3), (3, 4), (4, 2)]),  # the trace of a product
    ("Ab,bA->A", [(2, 3), (3, 2)]),
]


def _einsum_case(subscripts, shapes):
    return pytest.param(lambda *operands: np.einsum(subscripts, *operands), shapes, id=f"einsum[{subscripts}]")


def _case(name, fn, *shapes):
    return pytest.param(fn, list(shapes), id=name)


CASES = [_einsum_case(s, shapes) for s, shapes in EINSUM_CASES] + [
    _case("einsum-sublists", lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [2, 0]), (2, 3), (3, 4)),
    _case("einsum-sublists-implicit", lambda a, b: np.einsum(a, [Ellipsis, 27], b, [27, 0]), (2, 3), (3, 4)),
    _case(
        "einsum-optimal", lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c, optimize="optimal"), (5, 2), (2, 5), (5, 3)
    ),
    _case("tensordot-2", lambda a, b: np.tensordot(a, b), (2, 3, 4), (3, 4, 2)),
    _case("tensordot-0", lambda a, b: np.tensordot(a, b, axes=0), (2, 3), (2,)),
    _case("tensordot-1", lambda a, b: np.tensordot(a, b, 1), (2, 3), (3, 2)),
    _case("tensordot-pair", lambda a, b: np.tensordot(a, b, axes=(1, 0)), (2, 3), (3, 2)),
    _case("tensordot-lists", lambda a, b: np.tensordot(a, b, axes=([1, 2], [1, 0])), (2, 3, 4), (4, 3, 2)),
    _case("tensordot-negative", lambda a, b: np.tensordot(a, b, axes=([-1], [-2])), (2, 3), (2, 3, 2)),
    _case("inner", lambda a, b: np.inner(a, b), (2, 3), (4, 3)),
    _case("inner-vectors", lambda a, b: np.inner(a, b), (3,), (3,)),
    _case("inner-scalar", lambda a, b: np.inner(a, b), (), (3,)),
    _case("vdot", lambda a, b: np.vdot(a, b), (2, 3), (3, 2)),
    _case("kron", lambda a, b: np.kron(a, b), (2, 3), (2, 2)),
    _case("kron-ranks", lambda a, b: np.kron(a, b), (2,), (3, 2)),
    _case("outer", lambda a, b: np.outer(a, b), (2, 2), (3,)),
    _case("trace", lambda a: np.trace(a), (3, 3)),
    _case("trace-offset", lambda a: np.trace(a, offset=1), (3, 4)),
    _case("trace-axes", lambda a: np.trace(a, offset=-1, axis1=2, axis2=0), (3, 2, 4)),
    _case("diagonal", lambda a: np.diagonal(a), (3, 4)),
    _case("diagonal-axes", lambda a: np.diagonal(a, offset=1, axis1=-1, axis2=0), (3, 2, 4)),
    _case("diag-of-vector", lambda v: np.diag(v), (3,)),
    _case("diag-of-vector-k", lambda v: np.diag(v, k=2), (3,)),
    _case("diag-of-vector-negative-k", lambda v: np.diag(v, -1), (2,)),
    _case("diag-of-matrix", lambda a: np.diag(a), (3, 4)),
    _case("diag-of-matrix-k", lambda a: np.diag(a, k=-1), (3, 4)),
    _case("cross", lambda a, b: np.cross(a, b), (4, 3), (4, 3)),
    _case("cross-3-by-2", lambda a, b: np.cross(a, b), (2, 3), (2,)),
    _case("cross-2-by-3", lambda a, b: np.cross(a, b), (2,), (3,)),
    _case("cross-axes", lambda a, b: np.cross(a, b, axisa=0, axisb=1, axisc=0), (3, 2), (2, 3)),
    _case("cross-axis", lambda a, b: np.cross(a, b, axis=0), (3, 2), (3, 2)),
    _case("matmul-vector-vector", lambda a, b: a @ b, (3,), (3,)),
    _case("matmul-vector-batch", lambda a, b: a @ b, (3,), (2, 3, 2)),
    _case("matmul-batch-vector", lambda a, b: np.matmul(a, b), (2, 2, 3), (3,)),
    _case("matmul-broadcast", lambda a, b: a @ b, (2, 1, 2, 3), (4, 3, 2)),
    _case("dot-n-d", lambda a, b: np.dot(a, b), (2, 2, 3), (2, 3, 2)),
    _case("dot-n-d-vector", lambda a, b: np.dot(a, b), (2, 2, 3), (3,)),
]


def arguments(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, size=shape) for shape in shapes]


@pytest.mark.parametrize("fn,shapes", CASES)
def test_value_is_numpys(fn, shapes, backend):
    args = arguments(shapes)
    value = cr.jit(fn, backend=backend)(*args)
    expected = fn(*args)
    assert np.shape(value) == np.shape(expected)
    assert np.asarray(value).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)


def _scalar_loss(fn):
    # sin makes the loss nonlinear in the result, so the cotangent is not a constant
    return lambda *args: weighted_sum(np.sin(fn(*args)))


@pytest.mark.parametrize("fn,shapes", CASES)
def test_gradient_matches_finite_differences(fn, shapes, backend):
    args, loss = arguments(shapes), _scalar_loss(fn)
    argnums = tuple(range(len(args)))
    gradients = cr.grad(loss, argnums=argnums, backend=backend)(*args)
    for argnum, gradient in zip(argnums, gradients):
        assert gradient.shape == args[argnum].shape
        assert relative_error(gradient, numerical_gradient(loss, args, argnum)) < 1e-7


@pytest.mark.parametrize("fn,shapes", CASES)
def test_forward_mode_matches_finite_differences(fn, shapes, backend):
    args, loss = arguments(shapes), _scalar_loss(fn)
    tangents = arguments(shapes, seed=1)
    value, derivative = cr.jvp(loss, tuple(args), tuple(tangents), backend=backend)
    expected = directional_difference(loss, args, range(len(args)), tangents)
    assert abs(derivative - expected) <= 1e-7 * max(1.0, abs(expected))
    np.testing.assert_allclose(value, loss(*args), rtol=1e-12)


# ---- second order, against closed forms ----------------------------------------------------

A = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0], [0.25, 1.5, -2.0]])
B = np.array([0.5, -1.0, 2.0])


def _transpose_permutation(n):
    """d²/dX² of sum_ij X_ij X_ji: 2 where (i, j) meets (j, i)."""
    hessian = np.zeros((n, n, n, n))
    for i in range(n):
        for j in range(n):
            hessian[i, j, j, i] = 2.0
    return hessian


HESSIANS = [
    # x^T A x: A + A^T
    pytest.param(lambda x: np.einsum("i,ij,j->", x, A, x), (3,), A + A.T, id="quadratic-form"),
    # trace(X X) = sum_ij X_ij X_ji
    pytest.param(lambda x: np.einsum("ij,ji->", x, x), (3, 3), _transpose_permutation(3), id="trace-of-square"),
    # sum of diag(x) * diag(x) on the diagonal: sum x^2
    pytest.param(lambda x: np.einsum("ii,ii->", np.diag(x), np.diag(x)), (3,), 2 * np.eye(3), id="diag-einsum"),
    # sum(kron(x, x)) = (sum x)^2
    pytest.param(lambda x: np.sum(np.kron(x, x)), (3,), 2 * np.ones((3, 3)), id="kron"),
    # |x × b|^2 = |x|^2 |b|^2 - (x . b)^2
    pytest.param(
        lambda x: np.sum(np.cross(x, B) ** 2), (3,), 2 * (B @ B * np.eye(3) - np.outer(B, B)), id="cross-squared"
    ),
    # (tensordot(x, A, 1) . x) = x^T A x again, by another path
    pytest.param(lambda x: np.inner(np.tensordot(x, A, 1), x), (3,), A + A.T, id="tensordot-inner"),
]


@pytest.mark.parametrize("fn,shape,expected", HESSIANS)
def test_hessian_is_the_closed_form(fn, shape, expected, backend):
    x = arguments([shape], seed=2)[0]
    hessian = cr.hessian(fn, backend=backend)(x)
    np.testing.assert_allclose(hessian, expected.reshape(hessian.shape), atol=1e-12)


def test_third_derivative_of_a_cubic_contraction():
    # f(x) = sum_i (A x)_i x_i x_i: d³f/dx_j dx_k dx_l is a finite sum of A's entries; check one
    # directional third derivative, d³/dt³ f(x + t v) = 6 sum_i (A v)_i v_i v_i, through grad(grad(grad))
    v = np.array([0.3, -0.7, 1.1])

    def cubic(x):
        return np.einsum("ij,j,i,i->", A, x, x, x)

    def along(t):
        return cubic(t * v)

    third = cr.grad(cr.grad(cr.grad(along)))(0.5)
    assert abs(third - 6 * np.sum((A @ v) * v * v)) < 1e-10


# ---- how einsum is lowered -----------------------------------------------------------------


def graph_of(fn, *shapes):
    return cr.trace(fn, *arguments(shapes))


def matmul_shapes(graph) -> list:
    return [graph[i].type.shape for i in range(len(graph)) if graph[i].op == "matmul"]


def test_a_matrix_product_is_one_matmul_and_nothing_else():
    assert ops_traced(lambda a, b: np.einsum("ij,jk->ik", a, b), *arguments([(2, 3), (3, 4)])) == {"input", "matmul"}


def test_attention_scores_are_a_transpose_and_a_batched_matmul():
    ops = ops_traced(lambda q, k: np.einsum("bhqd,bhkd->bhqk", q, k), *arguments([(2, 2, 3, 4), (2, 2, 5, 4)]))
    assert ops == {"input", "transpose", "matmul"}


def test_a_chain_is_contracted_in_einsum_paths_order():
    # (2x50)(50x3) first costs 300 products; (50x2)(2x50) first costs 5000 and makes a 50x50
    shapes = [(50, 2), (2, 50), (50, 3)]
    for optimize in ["greedy", "optimal", True, False]:
        graph = graph_of(lambda a, b, c, how=optimize: np.einsum("ij,jk,kl->il", a, b, c, optimize=how), *shapes)
        assert matmul_shapes(graph) == [(2, 3), (50, 3)]


def test_an_explicit_path_is_followed():
    shapes = [(50, 2), (2, 50), (50, 3)]
    path = ["einsum_path", (0, 1), (0, 1)]
    graph = graph_of(lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c, optimize=path), *shapes)
    assert matmul_shapes(graph) == [(50, 50), (50, 3)]
    assert graph[graph.outputs[0]].op == "matmul"  # the product's operands were ordered to need no transpose


def test_einsum_path_on_traced_values_is_numpys():
    args = arguments([(50, 2), (2, 50), (50, 3)])
    seen = []

    def fn(a, b, c):
        seen.append(np.einsum_path("ij,jk,kl->il", a, b, c, optimize="optimal"))
        return np.einsum("ij,jk,kl->il", a, b, c, optimize=seen[-1][0])

    np.testing.assert_allclose(cr.jit(fn)(*args), np.einsum("ij,jk,kl->il", *args))
    assert seen[0][0] == np.einsum_path("ij,jk,kl->il", *args, optimize="optimal")[0]


def test_a_diagonal_is_a_strided_slice_whose_gradient_scatters():
    x = arguments([(4, 4)])[0]
    assert ops_traced(lambda x: np.einsum("ii->i", x), x) == {"input", "reshape", "getitem"}
    graph = cr.grad(lambda x: np.sum(np.sin(np.einsum("ii->i", x)))).graph(x, stage="grad")
    scatters = [graph[i] for i in range(len(graph)) if graph[i].op == "scatter_add"]
    assert len(scatters) == 1 and scatters[0].params["unique"]


def test_einsums_dtype_casts_the_operands(backend):
    a, b = arguments([(2, 3), (3, 4)])
    value = cr.jit(lambda a, b: np.einsum("ij,jk", a, b, dtype=np.float32, casting="same_kind"), backend=backend)(a, b)
    assert value.dtype == np.float32
    np.testing.assert_allclose(value, np.einsum("ij,jk", a, b, dtype=np.float32, casting="same_kind"), rtol=1e-6)
    with pytest.raises(TraceError, match="cannot cast operands of float64 to float32 with casting='safe'"):
        cr.trace(lambda a, b: np.einsum("ij,jk", a, b, dtype=np.float32), a, b)


def test_a_row_vector_broadcast_against_a_summed_axis_is_summed_once():
    # 'ij,jk' with j of size 1 in a: a is constant along j, so it multiplies the column sums of b
    a, b = arguments([(2, 1), (3, 4)])
    np.testing.assert_allclose(cr.jit(lambda a, b: np.einsum("ij,jk", a, b))(a, b), a * b.sum(axis=0))


# ---- what is not einsum -------------------------------------------------------------------


@pytest.mark.parametrize(
    "subscripts,shapes,message",
    [
        ("ij,jk", [(2, 3)], "name 2 operands, but 1"),
        ("ij", [(2, 3, 4)], "operand 0 has 3 axes"),
        ("i$", [(2, 3)], "only letters"),
        ("ij,jk", [(2, 3), (4, 5)], "subscript 'j' has size 4"),
        ("ii", [(2, 3)], "repeated in operand 0"),
        ("ij->ii", [(2, 3)], "'i' appears more than once"),
        ("ij->k", [(2, 3)], "'k' names no input axis"),
        ("...ij->ij", [(2, 2, 3)], "put '...' in the output"),
        ("i->i->i", [(2,)], "'->' must appear once"),
    ],
)
def test_bad_subscripts_raise_a_shape_error_at_the_users_line(subscripts, shapes, message):
    with pytest.raises(ShapeError, match=message) as caught:
        cr.trace(lambda *operands: np.einsum(subscripts, *operands), *arguments(shapes))
    assert caught.value.loc is not None and caught.value.loc.filename == __file__


def test_bad_contraction_arguments_raise_shape_errors():
    a = arguments([(2, 3)])[0]
    with pytest.raises(ShapeError, match="summed axes"):
        cr.trace(lambda a: np.tensordot(a, a, axes=([0], [1])), a)
    with pytest.raises(ShapeError, match="2 or 3"):
        cr.trace(lambda a: np.cross(a, a), np.ones((2, 4)))
    with pytest.raises(ShapeError, match="1-D or 2-D"):
        cr.trace(lambda a: np.diag(np.reshape(a, (1, 2, 3))), a)
    with pytest.raises(ShapeError, match="axis1 and axis2"):
        cr.trace(lambda a: np.trace(a, axis1=1, axis2=-1), a)
    for optimize in [3, "fastest", ("greedy", "big")]:
        with pytest.raises(ShapeError, match="cannot read optimize"):
            cr.trace(lambda a, how=optimize: np.einsum("ij,jk", a, a.T, optimize=how), a)
    with pytest.raises(ShapeError, match=r"path step \(0, 2\) does not pick"):
        cr.trace(lambda a: np.einsum("ij,jk", a, a.T, optimize=["einsum_path", (0, 2)]), a)


def test_the_cross_product_of_2_vectors_is_numpys_deprecated_scalar():
    a, b = arguments([(4, 2), (4, 2)])
    with pytest.warns(DeprecationWarning, match="2-dimensional vectors"):
        value = cr.jit(lambda a, b: np.cross(a, b))(a, b)
    np.testing.assert_allclose(value, a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
