"""The linear recursive filter ``lfilter`` (``scipy.signal.lfilter``), along the last axis:

    y[n] = Σ_{k=0..M} b[k] x[n-k] - Σ_{k=1..N} a[k] y[n-k]          (a[0] = 1; x[<0] = y[<0] = 0)

Operands ``(b, a_tail, x)``: the M+1 numerator coefficients, the N denominator coefficients after
the leading 1, and the signal, any array filtered along its last axis. SciPy's lfilter runs it (the
LLVM backend calls it back). ``frontends/scipy_signal.py`` divides by ``a[0]`` and moves the axis.

Written with matrices, ``y = A⁻¹ B x`` for the lower-triangular Toeplitz matrices A and B of the
coefficients, which commute. Transposing a Toeplitz matrix is reversing time (``J T J = Tᵀ``), so the
adjoint of the filter is the same filter run backwards, and every derivative is this op again:

- x̄ = Bᵀ A⁻ᵀ ȳ = flip(lfilter(b, a, flip(ȳ)));
- with w = A⁻ᵀ ȳ = flip(lfilter(1, a, flip(ȳ))): b̄[k] = Σ_n w[n] x[n-k] and ā[k] = -Σ_n w[n] y[n-k]
  (differentiating ``A y = B x``: A dy = dB x + B dx - dA y);
- ẏ = lfilter(ḃ, a, x) + lfilter(b, a, ẋ) - lfilter((0, ȧ), a, y).

The lagged sums ``Σ_n w[n] s[n-k]`` are one product of slices per coefficient: filters have few.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from chainrule.errors import ShapeError
from chainrule.ir import npfuncs
from chainrule.ir.builder import F, Value, apply
from chainrule.ir.ops import Attrs, Op, register
from chainrule.ir.types import TensorType


def lfilter_last_axis(b: np.ndarray, a_tail: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The ``lfilter`` op on concrete arrays: SciPy's lfilter with denominator ``(1, *a_tail)``."""
    a = np.concatenate([np.ones(1, a_tail.dtype), a_tail])
    return np.asarray(scipy.signal.lfilter(b, a, x, axis=-1), dtype=np.result_type(b, a_tail, x))


npfuncs.NAMESPACE.setdefault("lfilter_last_axis", lfilter_last_axis)


def _infer_lfilter(types: list[TensorType], attrs: Attrs) -> TensorType:
    b, a_tail, x = types
    if b.ndim != 1 or a_tail.ndim != 1 or x.ndim < 1 or 0 in (b.size, a_tail.size):
        raise ShapeError(
            f"lfilter takes 1-D coefficients and a signal along its last axis, got "
            f"{list(b.shape)}, {list(a_tail.shape)}, {list(x.shape)}"
        )
    dtype = np.result_type(b.dtype, a_tail.dtype, x.dtype)
    if dtype.kind != "f" or len({b.dtype, a_tail.dtype, x.dtype}) != 1:
        raise ShapeError(f"lfilter takes operands of one float dtype, got {b.dtype}, {a_tail.dtype}, {x.dtype}")
    return TensorType(x.shape, x.dtype)


def _flip(value: Value) -> Value:
    index = tuple(("slice", None, None, -1 if i == value.ndim - 1 else None) for i in range(value.ndim))
    return F.getitem(value, index=index)


def _backwards(b: Value | np.ndarray, a_tail: Value, g: Value) -> Value:
    """The filter run from the end of the signal to its start: the adjoint of running it forwards."""
    return _flip(F.lfilter(b, a_tail, _flip(g)))


def _lagged_sums(w: Value, s: Value, first_lag: int, count: int) -> Value:
    """``[Σ_n w[..., n] s[..., n - k] for k in first_lag, ..., first_lag + count - 1]`` (over every axis)."""
    n = w.shape[-1]
    lead = tuple(("slice", None, None, None) for _ in range(w.ndim - 1))
    sums = []
    for lag in range(first_lag, first_lag + count):
        if lag >= n:  # the signal is shorter than the lag: the coefficient meets no sample
            sums.append(Value(w.graph, w.graph.add("zeros", (), {"shape": (1,), "dtype": w.dtype})))
            continue
        late = F.getitem(w, index=(*lead, ("slice", lag, None, None)))
        early = F.getitem(s, index=(*lead, ("slice", None, n - lag, None)))
        sums.append(F.reshape(F.sum(late * early, axis=tuple(range(w.ndim)), keepdims=False), shape=(1,)))
    return apply("concatenate", *sums, axis=0)


def _weights(g: Value, a_tail: Value) -> Value:
    """w = A⁻ᵀ ȳ: the cotangent through the recursive part alone, run backwards."""
    return _backwards(np.ones(1, dtype=g.dtype), a_tail, g)


def _b_vjp(g: Value, y: Value, b: Value, a_tail: Value, x: Value) -> Value:
    return _lagged_sums(_weights(g, a_tail), x, 0, b.shape[0])


def _a_vjp(g: Value, y: Value, b: Value, a_tail: Value, x: Value) -> Value:
    return -_lagged_sums(_weights(g, a_tail), y, 1, a_tail.shape[0])


def _x_vjp(g: Value, y: Value, b: Value, a_tail: Value, x: Value) -> Value:
    return _backwards(b, a_tail, g)


def _lfilter_jvp(tangents: list, y: Value, b: Value, a_tail: Value, x: Value) -> Value:
    b_dot, a_dot, x_dot = tangents
    terms = []
    if b_dot is not None:
        terms.append(F.lfilter(b_dot, a_tail, x))
    if x_dot is not None:
        terms.append(F.lfilter(b, a_tail, x_dot))
    if a_dot is not None:  # the recursion's change: A⁻¹ of -(dA y), dA's first coefficient 0
        delayed = apply("concatenate", np.zeros(1, dtype=y.dtype), a_dot, axis=0)
        terms.append(-F.lfilter(delayed, a_tail, y))
    total = terms[0]  # forward mode asks only where some operand has a tangent
    for term in terms[1:]:
        total = total + term
    return total


def _batch_lfilter(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    b, a_tail, x = operands
    if not (batched[0] or batched[1]):  # the signal alone: its batch axis leads, the filter runs along the last
        return F.lfilter(b, a_tail, x)
    # coefficients that differ per example: one filter per example (filters are cheap, vmaps of them rare)
    results = []
    for example in range(size):
        picked = [F.getitem(v, index=(("int", example),)) if flag else v for v, flag in zip(operands, batched)]
        filtered = F.lfilter(*picked)
        results.append(F.reshape(filtered, shape=(1, *filtered.shape)))
    return apply("concatenate", *results, axis=0)


register(
    Op(
        "lfilter",
        "scan",
        3,
        _infer_lfilter,
        "lfilter_last_axis({0}, {1}, {2})",
        vjp=(_b_vjp, _a_vjp, _x_vjp),
        jvp=_lfilter_jvp,
        flops=lambda ins, out, attrs: 2 * (ins[0].size + ins[1].size) * out.size,
        batch=_batch_lfilter,
    )
)
