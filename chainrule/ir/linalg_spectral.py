"""Factorization primitives with several factors: eigh, svd, qr.

Each result packs its factors (see ``linalg_kernels``): ``eigh`` is ``[w, V]``, ``svd`` is
``[s, U, Vh]`` (reduced), ``qr`` is ``[Q, R]`` (reduced); the frontend unpacks them with
``linalg.unpack``. ``eigvalsh`` and ``svdvals`` are the values alone (LAPACK with jobz='N', as
NumPy's ``eigvalsh`` and ``svd(compute_uv=False)`` call it): the frontend never records them;
the ``values only`` pass (``compiler/values_only.py``) puts them where nothing reads the vectors. The rules are Giles (2008) for eigh, Townsend (2016) for the SVD and
Walter & Lehmann (2018) / Liao et al. (2019) for QR, written with primitives. Where
eigenvalues (or singular values) coincide the eigenvectors are not unique and the rules divide
by zero: ``docs/linalg.md`` states the caveat.
"""

from __future__ import annotations

import numpy as np

from chainrule.errors import ShapeError, UnsupportedError
from chainrule.ir.builder import F, Value
from chainrule.ir.linalg import (
    batch_stacked,
    column,
    cubic_flops,
    diag_matrix,
    diagonal,
    masked,
    only_tangent,
    pack,
    row,
    square_type,
    symmetric_part,
    unpack,
    vanishes,
)
from chainrule.ir.ops import Attrs, Op, register
from chainrule.ir.types import TensorType


def spectral_gaps(values: Value, squared: bool) -> Value:
    """F with F_ij = 1 / (λ_j - λ_i) off the diagonal, 0 on it and where λ_i = λ_j exactly
    (λ = values, or their squares): a function of the values alone then gets its exact
    gradient at a repeated value, where 1/0 would make it 0 · inf = NaN."""
    lam = values * values if squared else values
    gaps = row(lam) - column(lam)  # λ_j - λ_i
    tied = F.eq(gaps, 0.0)
    return F.where(tied, 0.0, 1.0 / F.where(tied, 1.0, gaps))


# ---- eigh: A = V diag(w) Vᵀ -----------------------------------------------------------------


def eigh_factors(packed: Value, n: int) -> list[Value]:
    return unpack(packed, [(n,), (n, n)])


def _infer_eigh(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    n = square_type(a, "eigh")
    return TensorType(a.shape[:-2] + (n + n * n,), a.dtype)


def _eigh_rule(g: Value, y: Value, a: Value, lower: bool) -> Value:
    # Ā = V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ, symmetrized (A is symmetric; one triangle is read)
    n = a.shape[-1]
    w, v = eigh_factors(y, n)
    gw, gv = eigh_factors(g, n)
    if vanishes(gv):  # only the values are used (linalg.vanishes): V diag(w̄) Vᵀ, symmetric as it is
        return (v * row(gw)) @ v.mT
    inner = diag_matrix(gw) + spectral_gaps(w, squared=False) * (v.mT @ gv)
    return symmetric_part(v @ inner @ v.mT)


def _eigh_jvp(tangents: list[Value | None], y: Value, a: Value, lower: bool) -> Value:
    # dw = diag(Vᵀ dA V), dV = V (F ∘ (Vᵀ dA V)), for the symmetric part of dA
    n = a.shape[-1]
    w, v = eigh_factors(y, n)
    m = v.mT @ symmetric_part(only_tangent(tangents)) @ v
    return pack([diagonal(m), v @ (spectral_gaps(w, squared=False) * m)], a.shape[:-2])


register(
    Op(
        "eigh",
        "linalg",
        1,
        _infer_eigh,
        "la.eigh({0}, {lower})",
        vjp=(_eigh_rule,),
        jvp=_eigh_jvp,
        flops=cubic_flops(9),
        batch=batch_stacked("eigh"),
    )
)


def _infer_eigvalsh(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    return TensorType(a.shape[:-2] + (square_type(a, "eigvalsh"),), a.dtype)


def _eigvalsh_rule(g: Value, y: Value, a: Value, lower: bool) -> Value:
    # w̄ -> Ā = V diag(w̄) Vᵀ: the vectors are computed again (the pass that records eigvalsh runs
    # after differentiation, so this rule serves only a graph differentiated once more)
    _, v = eigh_factors(F.eigh(a, lower=lower), a.shape[-1])
    return (v * row(g)) @ v.mT


def _eigvalsh_jvp(tangents: list[Value | None], y: Value, a: Value, lower: bool) -> Value:
    _, v = eigh_factors(F.eigh(a, lower=lower), a.shape[-1])
    return diagonal(v.mT @ symmetric_part(only_tangent(tangents)) @ v)


register(
    Op(
        "eigvalsh",
        "linalg",
        1,
        _infer_eigvalsh,
        "la.eigvalsh({0}, {lower})",
        vjp=(_eigvalsh_rule,),
        jvp=_eigvalsh_jvp,
        flops=cubic_flops(4 / 3),
        batch=batch_stacked("eigvalsh"),
    )
)

# ---- svd: A = U diag(s) Vh (reduced) -----------------------------------------------------------


def _matrix_type(x: TensorType, op_name: str) -> tuple[int, int]:
    if x.ndim < 2 or not x.is_float:
        raise ShapeError(f"{op_name} needs floating-point matrices (..., m, n), got {x}")
    return x.shape[-2], x.shape[-1]


def svd_factors(packed: Value, m: int, n: int) -> list[Value]:
    k = min(m, n)
    return unpack(packed, [(k,), (m, k), (k, n)])


def _infer_svd(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    m, n = _matrix_type(a, "svd")
    k = min(m, n)
    return TensorType(a.shape[:-2] + (k + m * k + k * n,), a.dtype)


def _skew(x: Value) -> Value:
    return x - x.mT


def _svd_rule(g: Value, y: Value, a: Value) -> Value:
    # Townsend (2016), with F_ij = 1 / (s_j² - s_i²):
    # Ā = U [F∘(UᵀŪ - ŪᵀU) S + diag(s̄) + S F∘(VᵀV̄ - V̄ᵀV)] Vᵀ
    #     + (I - UUᵀ) Ū S⁻¹ Vᵀ + U S⁻¹ V̄ᵀ (I - VVᵀ)
    m, n = a.shape[-2:]
    s, u, vh = svd_factors(y, m, n)
    gs, gu, gvh = svd_factors(g, m, n)
    # the terms of a factor the program does not use are left out (linalg.vanishes)
    if vanishes(gu) and vanishes(gvh):  # U diag(s̄) Vh
        return (u * row(gs)) @ vh
    v, gv = vh.mT, gvh.mT
    gaps = spectral_gaps(s, squared=True)
    inner = diag_matrix(gs)
    if not vanishes(gu):
        inner = (gaps * _skew(u.mT @ gu)) * row(s) + inner
    if not vanishes(gvh):
        inner = inner + column(s) * (gaps * _skew(vh @ gv))
    grad = u @ inner @ vh
    if m > s.shape[-1] and not vanishes(gu):  # U does not span the column space of Ū: its rest
        grad = grad + ((gu - u @ (u.mT @ gu)) / row(s)) @ vh
    if n > s.shape[-1] and not vanishes(gvh):
        grad = grad + (u / row(s)) @ (gv.mT - (gv.mT @ v) @ vh)
    return grad


def _svd_jvp(tangents: list[Value | None], y: Value, a: Value) -> Value:
    # dP = Uᵀ dA V; ds = diag(dP); dU = U F∘(dP S + S dPᵀ) + (I - UUᵀ) dA V S⁻¹;
    # dV = V F∘(S dP + dPᵀ S) + (I - VVᵀ) dAᵀ U S⁻¹
    m, n = a.shape[-2:]
    s, u, vh = svd_factors(y, m, n)
    v, da = vh.mT, only_tangent(tangents)
    dp = u.mT @ da @ v
    gaps = spectral_gaps(s, squared=True)
    du = u @ (gaps * (dp * row(s) + column(s) * dp.mT))
    dv = v @ (gaps * (column(s) * dp + dp.mT * row(s)))
    if m > s.shape[-1]:
        du = du + ((da @ v) - u @ (u.mT @ da @ v)) / row(s)
    if n > s.shape[-1]:
        dv = dv + ((da.mT @ u) - v @ (vh @ da.mT @ u)) / row(s)
    return pack([diagonal(dp), du, dv.mT], a.shape[:-2])


register(
    Op(
        "svd",
        "linalg",
        1,
        _infer_svd,
        "la.svd({0})",
        vjp=(_svd_rule,),
        jvp=_svd_jvp,
        flops=lambda ins, out, attrs: int(14 * ins[0].size * min(ins[0].shape[-2:])),
        batch=batch_stacked("svd"),
    )
)


def _infer_svdvals(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    return TensorType(a.shape[:-2] + (min(_matrix_type(a, "svdvals")),), a.dtype)


def _svdvals_rule(g: Value, y: Value, a: Value) -> Value:
    # s̄ -> Ā = U diag(s̄) Vh, the factors computed again (see _eigvalsh_rule)
    m, n = a.shape[-2:]
    _, u, vh = svd_factors(F.svd(a), m, n)
    return (u * row(g)) @ vh


def _svdvals_jvp(tangents: list[Value | None], y: Value, a: Value) -> Value:
    m, n = a.shape[-2:]
    _, u, vh = svd_factors(F.svd(a), m, n)
    return diagonal(u.mT @ only_tangent(tangents) @ vh.mT)


register(
    Op(
        "svdvals",
        "linalg",
        1,
        _infer_svdvals,
        "la.svdvals({0})",
        vjp=(_svdvals_rule,),
        jvp=_svdvals_jvp,
        flops=lambda ins, out, attrs: int(4 * ins[0].size * min(ins[0].shape[-2:])),
        batch=batch_stacked("svdvals"),
    )
)

# ---- qr: A = Q R (reduced) -------------------------------------------------------------------


def qr_factors(packed: Value, m: int, n: int) -> list[Value]:
    k = min(m, n)
    return unpack(packed, [(m, k), (k, n)])


def _infer_qr(types: list[TensorType], attrs: Attrs) -> TensorType:
    (a,) = types
    m, n = _matrix_type(a, "qr")
    k = min(m, n)
    return TensorType(a.shape[:-2] + (m * k + k * n,), a.dtype)


def _tall(a: Value) -> None:
    if a.shape[-2] < a.shape[-1]:
        raise UnsupportedError(
            f"the derivative of qr of a wide matrix (shape {list(a.shape)}, more columns than rows) "
            "is not supported: R's trailing columns are not determined by its square part"
        )


def _copyltu(x: Value) -> Value:
    """The lower triangle of ``x`` mirrored into the upper one."""
    n = x.shape[-1]
    strict = np.tri(n, k=-1)
    return masked(x, strict + np.eye(n)) + masked(x, strict).mT


def _qr_rule(g: Value, y: Value, a: Value) -> Value:
    # Liao et al. (2019), m ≥ n: M = R R̄ᵀ - Q̄ᵀ Q, Ā = (Q̄ + Q copyltu(M)) R⁻ᵀ
    _tall(a)
    m, n = a.shape[-2:]
    q, r = qr_factors(y, m, n)
    gq, gr = qr_factors(g, m, n)
    if vanishes(gq):  # only R is used (linalg.vanishes): no Q̄ᵀ Q, a product of zeros
        mm = r @ gr.mT
    elif vanishes(gr):
        mm = -(gq.mT @ q)
    else:
        mm = r @ gr.mT - gq.mT @ q
    rhs = gq + q @ _copyltu(mm)
    return F.triangular_solve(r, rhs.mT, lower=False).mT  # (·) R⁻ᵀ = (R⁻¹ (·)ᵀ)ᵀ


def _qr_jvp(tangents: list[Value | None], y: Value, a: Value) -> Value:
    # Walter & Lehmann (2018), as JAX writes it: with C = Qᵀ dA R⁻¹ and Ω = tril(C, -1) - tril(C, -1)ᵀ,
    # dQ = Q (Ω - C) + dA R⁻¹ and dR = (C - Ω) R
    _tall(a)
    m, n = a.shape[-2:]
    q, r = qr_factors(y, m, n)
    da_rinv = F.triangular_solve(r.mT, only_tangent(tangents).mT, lower=True).mT
    c = q.mT @ da_rinv
    lower_c = masked(c, np.tri(n, k=-1))
    omega = lower_c - lower_c.mT
    return pack([q @ (omega - c) + da_rinv, (c - omega) @ r], a.shape[:-2])


register(
    Op(
        "qr",
        "linalg",
        1,
        _infer_qr,
        "la.qr({0})",
        vjp=(_qr_rule,),
        jvp=_qr_jvp,
        flops=lambda ins, out, attrs: int(4 * ins[0].size * min(ins[0].shape[-2:])),
        batch=batch_stacked("qr"),
    )
)
