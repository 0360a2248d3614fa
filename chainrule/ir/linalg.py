"""Linear-algebra primitives: solve, triangular_solve, cholesky, slogdet, expm, expm_frechet.

Each acts on stacked matrices (``(..., n, n)``, the batch axes leading), with operands of equal
batch shape (the frontend broadcasts them first). Their VJP and JVP rules are the matrix
calculus of Giles (2008) and, for the Cholesky factor, Murray (2016), written with primitives
only (solves, matmuls, masks), so second derivatives work. ``docs/linalg.md`` states each rule
and its caveats. Factorizations with several factors are in ``linalg_spectral``; the NumPy and
SciPy calls are in ``linalg_kernels``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir import index_regions, linalg_kernels, npfuncs
from chainrule.ir.builder import F, Value
from chainrule.ir.ops import Attrs, FlopsRule, Op, register, size_of
from chainrule.ir.types import TensorType

npfuncs.NAMESPACE.setdefault("la", linalg_kernels)

# ---- helpers shared by the rules (and by linalg_spectral) ----------------------------------


def square_type(x: TensorType, op_name: str) -> int:
    """The order n of the stacked square matrices ``x``; a ShapeError if they are not square."""
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"{op_name} needs square matrices (..., n, n), got shape {list(x.shape)}")
    if not x.is_float:
        raise ShapeError(f"{op_name} needs floating-point matrices, got {x.dtype}")
    return x.shape[-1]


def const_like(like: Value, array: np.ndarray) -> Value:
    """A constant of ``like``'s graph and dtype."""
    return Value(like.graph, like.graph.const(np.asarray(array, dtype=like.dtype)))


def masked(x: Value, mask: np.ndarray) -> Value:
    """``x * mask`` (a constant 0/1 or weight matrix, broadcast over the batch)."""
    return x * const_like(x, mask)


def symmetric_part(x: Value) -> Value:
    return (x + x.mT) * 0.5


def diagonal(x: Value) -> Value:
    """The diagonals of stacked square matrices, shape (..., n)."""
    return F.sum(masked(x, np.eye(x.shape[-1])), axis=(x.ndim - 1,), keepdims=False)


def diag_matrix(v: Value) -> Value:
    """Stacked diagonal matrices with the vectors ``v`` (..., n) on their diagonals."""
    n = v.shape[-1]
    return masked(F.reshape(v, shape=v.shape[:-1] + (1, n)), np.eye(n))


def row(v: Value) -> Value:
    """Vectors (..., n) as rows (..., 1, n), to broadcast down the columns."""
    return F.reshape(v, shape=v.shape[:-1] + (1, v.shape[-1]))


def column(v: Value) -> Value:
    """Vectors (..., n) as columns (..., n, 1)."""
    return F.reshape(v, shape=v.shape + (1,))


def identity_like(x: Value) -> Value:
    """Identity matrices of x's batch shape and order."""
    n = x.shape[-1]
    return F.broadcast_to(const_like(x, np.eye(n)), shape=x.shape[:-2] + (n, n))


def unpack(packed: Value, shapes: Sequence[tuple[int, ...]]) -> list[Value]:
    """The factors a packed result holds, each of shape batch + its shape (see ``linalg_kernels``)."""
    batch = packed.shape[:-1]
    lead = (("slice", None, None, None),) * len(batch)
    parts, start = [], 0
    for shape in shapes:
        stop = start + size_of(shape)
        part = F.getitem(packed, index=lead + (("slice", start, stop, None),))
        parts.append(F.reshape(part, shape=batch + tuple(shape)))
        start = stop
    return parts


def pack(parts: Sequence[Value], batch: tuple[int, ...]) -> Value:
    """The inverse of ``unpack``: factors flattened past the batch axes, side by side."""
    flat = [F.reshape(p, shape=batch + (size_of(p.shape[len(batch) :]),)) for p in parts]
    return F.concatenate(*flat, axis=len(batch))


def vanishes(cotangent: Value) -> bool:
    """Whether a factor's cotangent is the symbolic zero: the program does not use that factor
    (the simplify rules make a slice of a packed cotangent outside what reverse mode scattered into
    it the ``zeros`` node, ``compiler/scatter_reads.py``). The factorizations' rules then leave out
    the terms linear in it, as JAX's symbolic zeros do, rather than multiply the other factors by 0.

    Why that is right although 0 · inf is NaN (the simplify pass keeps ``x * 0`` and ``0 @ x``
    unless x is never inf or NaN): those products are no part of what the program computes, only
    of one formula for its derivative, and the derivative has no such term. For a finite input
    the factors are finite (Q, U, V orthonormal; w, s, R bounded by the input's norm), so the term
    is exactly 0 and the gradient is the same bit for bit (``x - 0`` and ``x + 0`` are exact). For
    an input with inf or NaN LAPACK's factors carry NaN, the derivative is undefined, and the
    terms left hold the same factors: the gradient is NaN still (tests/test_unused_factors.py),
    and NaN checking finds the factorization's own output non-finite first.

    Without the simplify rules (the backward of a loop body, ``optimize=False``) the slice is
    recognized as it is: ``reshape(getitem(scatter_add(...)))`` reading outside the scatter."""
    graph = cotangent.graph
    node = graph.nodes[cotangent.id]
    if node.op == "reshape":  # linalg.unpack reshapes each slice to its factor's shape
        node = graph.nodes[node.args[0]]
    regions = index_regions.scattered_and_read(graph, node)
    return node.op == "zeros" or (regions is not None and index_regions.misses(*regions))


def only_tangent(tangents: list[Value | None]) -> Value:
    """The tangent of a unary op's operand (forward mode calls its rule only when there is one)."""
    (tangent,) = tangents
    assert tangent is not None
    return tangent


def batch_stacked(op_name: str) -> Callable[..., Value]:
    """The batching rule of an op on stacked matrices: the batch axis is one more stacking axis."""

    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        lined = [v if b else F.broadcast_to(v, shape=(size,) + t.shape) for v, b, t in zip(operands, batched, logical)]
        return getattr(F, op_name)(*lined, **attrs)

    return batch


def cubic_flops(factor: float) -> FlopsRule:
    """``factor · n³`` per matrix of the first operand (a factorization's leading cost)."""
    return lambda ins, out, attrs: int(factor * ins[0].size * ins[0].shape[-1])


# ---- solve: X = A⁻¹ B ----------------------------------------------------------------------


def _infer_solve(types: list[TensorType], attrs: Attrs) -> TensorType:
    a, b = types
    n = square_type(a, "solve")
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != n:
        raise ShapeError(f"solve of shapes {list(a.shape)} and {list(b.shape)}: right-hand sides do not fit")
    return TensorType(b.shape, np.result_type(a.dtype, b.dtype).name)


def _solve_rule_b(g: Value, x: Value, a: Value, b: Value) -> Value:
    return F.solve(a.mT, g)  # B̄ = A⁻ᵀ X̄


def _solve_rule_a(g: Value, x: Value, a: Value, b: Value) -> Value:
    return -(F.solve(a.mT, g) @ x.mT)  # Ā = -B̄ Xᵀ


def _solve_jvp(tangents: list[Value | None], x: Value, a: Value, b: Value) -> Value:
    ta, tb = tangents
    rhs = tb if ta is None else (-(ta @ x) if tb is None else tb - ta @ x)
    return F.solve(a, rhs)  # dX = A⁻¹ (dB - dA X)


register(
    Op(
        "solve",
        "linalg",
        2,
        _infer_solve,
        "np.linalg.solve({0}, {1})",
        vjp=(_solve_rule_a, _solve_rule_b),
        jvp=_solve_jvp,
        flops=lambda ins, out, attrs: int(ins[0].size * ins[0].shape[-1] * 2 / 3 + 2 * ins[0].shape[-1] * out.size),
        batch=batch_stacked("solve"),
    )
)

# ---- triangular_solve: X = A⁻¹ B reading one triangle of A -----------------------------------


def _infer_triangular_solve(types: list[TensorType], attrs: Attrs) -> TensorType:
    a, b = types
    n = square_type(a, "triangular_solve")
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != n:
        raise ShapeError(f"triangular_solve of shapes {list(a.shape)} and {list(b.shape)}: right-hand sides do not fit")
    return TensorType(b.shape, np.result_type(a.dtype, b.dtype).name)


def triangle(n: int, lower: bool) -> np.ndarray:
    """The 0/1 mask of the lower (or upper) triangle, diagonal included."""
    return np.tri(n) if lower else np.tri(n).T


def _triangular_rule_b(g: Value, x: Value, a: Value, b: Value, lower: bool) -> Value:
    return F.triangular_solve(a.mT, g, lower=not lower)  # B̄ = A⁻ᵀ X̄


def _triangular_rule_a(g: Value, x: Value, a: Value, b: Value, lower: bool) -> Value:
    # Ā = -B̄ Xᵀ on the triangle the solve reads; the other triangle has no influence
    return -masked(F.triangular_solve(a.mT, g, lower=not lower) @ x.mT, triangle(a.shape[-1], lower))


def _triangular_jvp(tangents: list[Value | None], x: Value, a: Value, b: Value, lower: bool) -> Value:
    ta, tb = tangents
    da_x = None if ta is None else masked(ta, triangle(a.shape[-1], lower)) @ x
    rhs = tb if da_x is None else (-da_x if tb is None else tb - da_x)
    return F.triangular_solve(a, rhs, lower=lower)


register(
    Op(
        "triangular_solve",
        "linalg",
        2,
        _infer_triangular_solve,
        "la.triangular_solve({0}, {1}, {lower})",
        vjp=(_triangular_rule_a, _triangular_rule_b),
        jvp=_triangular_jvp,
        flops=lambda ins, out, attrs: ins[0].shape[-1] * out.size,
        batch=batch_stacked("triangular_solve"),
    )
)

# ---- cholesky: A = L Lᵀ, L lower ------------------------------------------------------------


def _infer_cholesky(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    square_type(a, "cholesky")
    return a


def phi(n: int) -> np.ndarray:
    """Murray's Φ as a mask: the lower triangle, the diagonal halved."""
    return np.tri(n) - 0.5 * np.eye(n)


def _cholesky_rule(g: Value, chol: Value, a: Value) -> Value:
    # Murray (2016): Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹); NumPy reads the lower triangle of a symmetric A,
    # and the gradient is the symmetric one (a perturbation of A keeps it symmetric).
    p = masked(chol.mT @ g, phi(a.shape[-1]))
    left = F.triangular_solve(chol.mT, p, lower=False)  # L⁻ᵀ P
    s = F.triangular_solve(chol.mT, left.mT, lower=False).mT  # L⁻ᵀ P L⁻¹
    return symmetric_part(s)


def _cholesky_jvp(tangents: list[Value | None], chol: Value, a: Value) -> Value:
    # dL = L Φ(L⁻¹ dA L⁻ᵀ), dA symmetrized as the VJP's convention is
    da = symmetric_part(only_tangent(tangents))
    left = F.triangular_solve(chol, da, lower=True)  # L⁻¹ dA
    inner = F.triangular_solve(chol, left.mT, lower=True)  # L⁻¹ dAᵀ L⁻ᵀ = L⁻¹ dA L⁻ᵀ
    return chol @ masked(inner, phi(a.shape[-1]))


register(
    Op(
        "cholesky",
        "linalg",
        1,
        _infer_cholesky,
        "np.linalg.cholesky({0})",
        vjp=(_cholesky_rule,),
        jvp=_cholesky_jvp,
        flops=cubic_flops(1 / 3),
        batch=batch_stacked("cholesky"),
    )
)

# ---- slogdet: [sign, log|det A|] --------------------------------------------------------------


def _infer_slogdet(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    square_type(a, "slogdet")
    return TensorType(a.shape[:-2] + (2,), a.dtype)


def _slogdet_rule(g: Value, y: Value, a: Value) -> Value:
    # d log|det A| = tr(A⁻¹ dA), so Ā = ḡ A⁻ᵀ; the sign is piecewise constant: no gradient
    (_, g_log) = unpack(g, [(), ()])
    return F.solve(a.mT, identity_like(a)) * column(column(g_log))


def _slogdet_jvp(tangents: list[Value | None], y: Value, a: Value) -> Value:
    d_log = diagonal(F.solve(a, only_tangent(tangents)))
    d_log = F.sum(d_log, axis=(d_log.ndim - 1,), keepdims=False)
    return pack([d_log * 0.0, d_log], a.shape[:-2])


register(
    Op(
        "slogdet",
        "linalg",
        1,
        _infer_slogdet,
        "la.slogdet({0})",
        vjp=(_slogdet_rule,),
        jvp=_slogdet_jvp,
        flops=cubic_flops(2 / 3),
        batch=batch_stacked("slogdet"),
    )
)

# ---- expm: the matrix exponential --------------------------------------------------------------


def _infer_expm(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    square_type(a, "expm")
    return a


def _upper_blocks(diagonal: Value, corner: Value) -> Value:
    """The block matrix [[diagonal, corner], [0, diagonal]] of each matrix of the stacks."""
    axis = diagonal.ndim - 1
    top = F.concatenate(diagonal, corner, axis=axis)
    bottom = F.concatenate(diagonal * 0.0, diagonal, axis=axis)
    return F.concatenate(top, bottom, axis=axis - 1)


def _block(whole: Value, n: int, rows: int, columns: int) -> Value:
    """Block (rows, columns) ∈ {0, 1}² of the n×n blocks of each 2n×2n matrix of ``whole``."""
    lead = (("slice", None, None, None),) * (whole.ndim - 2)
    at = (("slice", rows * n, (rows + 1) * n, None), ("slice", columns * n, (columns + 1) * n, None))
    return F.getitem(whole, index=lead + at)


# The Fréchet derivative L(A, E) is the top-right block of expm([[A, E], [0, A]]) (Mathias 1996), so
# its own derivatives are Fréchet derivatives of order 2n: in A and E together, L(B, [[Ȧ, Ė], [0, Ȧ]])
# at B = [[A, E], [0, A]]; its adjoint is the one at Bᵀ, and A sits in both diagonal blocks.


def _frechet_rule_a(g: Value, y: Value, a: Value, e: Value) -> Value:
    n = a.shape[-1]
    whole = F.expm_frechet(_upper_blocks(a, e).mT, _upper_blocks(g * 0.0, g))
    return _block(whole, n, 0, 0) + _block(whole, n, 1, 1)


def _frechet_jvp(tangents: list[Value | None], y: Value, a: Value, e: Value) -> Value:
    ta, te = tangents
    if ta is None:
        assert te is not None
        return F.expm_frechet(a, te)
    direction = _upper_blocks(ta, ta * 0.0 if te is None else te)
    return _block(F.expm_frechet(_upper_blocks(a, e), direction), a.shape[-1], 0, 1)


def _infer_expm_frechet(types: list[TensorType], attrs: Attrs) -> TensorType:
    a, e = types
    square_type(a, "expm_frechet")
    if e.shape != a.shape or e.dtype != a.dtype:
        raise ShapeError(f"expm_frechet needs a direction shaped as its matrix: {list(a.shape)} and {list(e.shape)}")
    return a


register(
    Op(
        "expm_frechet",
        "linalg",
        2,
        _infer_expm_frechet,
        "la.expm_frechet({0}, {1})",
        # ⟨Ḡ, L(A, E)⟩ = ⟨L(Aᵀ, Ḡ), E⟩: the adjoint of the Fréchet derivative is the one at Aᵀ
        vjp=(_frechet_rule_a, lambda g, y, a, e: F.expm_frechet(a.mT, g)),
        jvp=_frechet_jvp,
        flops=cubic_flops(50),
        batch=batch_stacked("expm_frechet"),
    )
)


register(
    Op(
        "expm",
        "linalg",
        1,
        _infer_expm,
        "la.expm({0})",
        # the derivative is the Fréchet derivative L(A, ·); its adjoint is L(Aᵀ, ·)
        vjp=(lambda g, y, a: F.expm_frechet(a.mT, g),),
        jvp=lambda tangents, y, a: F.expm_frechet(a, only_tangent(tangents)),
        flops=cubic_flops(20),
        batch=batch_stacked("expm"),
    )
)
