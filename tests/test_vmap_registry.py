"""Every primitive a user can reach batches: ``cr.vmap`` of a small program using it equals a
Python loop over the examples (NumPy computing each one), on both backends.

Enumerated from ``OPS``: a new op without a program here fails ``test_every_op_has_a_vmap_case``.
Elementwise ops are called through the NumPy/SciPy function they implement, once with every
operand mapped and once with the later operands shared by all examples (``in_axes=None``), which
exercises the lining up of a batched operand with an unbatched one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import scipy.special

import chainrule as cr
from chainrule import nn
from chainrule.frontends.numpy_statistics import SELECT_FROM
from chainrule.ir import OPS

# Sources have no operand to batch (vectorize copies them as they are); a fused node is made by
# fusion, which runs after vectorizing in every pipeline.
SKIPPED = {
    "input": "a source: the graph's arguments, never batched by a rule",
    "const": "a source: a constant is the same for every example",
    "zeros": "a source: zeros are the same for every example",
    "fused": "made by fusion, after vectorization, so never batched",
    "eigvalsh": "made by the values-only pass, after vectorization (its rule: test_values_only.py)",
    "svdvals": "made by the values-only pass, after vectorization (its rule: test_values_only.py)",
}
BATCH = 4
RNG = np.random.default_rng(20261204)


def uniform(low: float, high: float, *shape: int) -> np.ndarray:
    return RNG.uniform(low, high, size=shape)


@dataclass
class VmapCase:
    op: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]  # batched along in_axes
    in_axes: Any = 0
    reference: Callable[..., Any] | None = None  # one example by NumPy, when fn is not NumPy code
    id: str = ""


CASES: list[VmapCase] = []


def case(op: str, fn: Callable[..., Any], *args: Any, in_axes: Any = 0, reference: Any = None, id: str = "") -> None:
    CASES.append(VmapCase(op, fn, args, in_axes, reference, id or op))


# ---- elementwise ops: through the function they implement ---------------------------------------

DOMAINS = {  # (low, high) per operand where the default (0.2, 0.8) is outside the function's domain
    "arccosh": [(1.2, 3.0)],
    "zeta": [(1.5, 3.0), (0.5, 2.0)],
    "pow": [(0.5, 2.0), (-1.5, 1.5)],
    "betaln": [(0.5, 3.0), (0.5, 3.0)],
}
# elementwise ops no NumPy function is exactly: the spelling a user writes
SPELLED = {
    "softplus": lambda x: np.logaddexp(0.0, x),
    "relu": lambda x: np.maximum(x - 0.5, 0.0),
    "stop_gradient": lambda x: cr.stop_gradient(x) * x,
    "where": lambda c, a, b: np.where(c > 0.5, a, b),
    "clip": lambda x, low, high: np.clip(x, low - 0.3, high + 0.2),
    "cast": lambda x: (x * 10).astype(np.int32),
    "zeta": lambda x, q: scipy.special.zeta(x, q),
}
for _name, _op in OPS.items():
    if not _op.is_elementwise:
        continue
    _fn = SPELLED.get(_name) or _op.implements[0]
    _arity = _op.arity or 1
    _args = tuple(uniform(*DOMAINS.get(_name, [(0.2, 0.8)] * _arity)[k], BATCH, 3) for k in range(_arity))
    case(_name, _fn, *_args, id=f"{_name}-all-mapped")
    if _arity > 1:
        case(
            _name,
            _fn,
            *_args[:1],
            *(a[0] for a in _args[1:]),
            in_axes=(0,) + (None,) * (_arity - 1),
            id=f"{_name}-shared",
        )


# ---- the rest, one program each -----------------------------------------------------------------


def _spd(*shape: int) -> np.ndarray:
    a = RNG.normal(size=shape)
    return a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])


case("matmul", lambda a, b: a @ b, RNG.normal(size=(BATCH, 2, 3)), RNG.normal(size=(BATCH, 3, 2)))
case("matmul", lambda x, w: x @ w, RNG.normal(size=(BATCH, 3)), RNG.normal(size=(3, 2)), in_axes=(0, None), id="rows")
case(
    "matmul", lambda a, b: a[:, None] @ b[None, :], RNG.normal(size=(BATCH, 3)), RNG.normal(size=(BATCH, 2)), id="outer"
)
case(
    "matmul", lambda w, x: w @ x, RNG.normal(size=(2, 3)), RNG.normal(size=(BATCH, 3, 2)), in_axes=(None, 0), id="left"
)
case("transpose", lambda x: np.transpose(x, (2, 0, 1)), RNG.normal(size=(BATCH, 2, 3, 4)))
case("reshape", lambda x: np.reshape(x, (3, 2)), RNG.normal(size=(BATCH, 6)))
case("broadcast_to", lambda x: np.broadcast_to(x, (2, 3)), RNG.normal(size=(BATCH, 3)))
case(
    "concatenate",
    lambda a, b: np.concatenate([a, b], axis=1),
    RNG.normal(size=(BATCH, 2, 2)),
    RNG.normal(size=(2, 3)),
    in_axes=(0, None),
)
case("getitem", lambda x: x[1:, ::2], RNG.normal(size=(BATCH, 3, 4)), id="slices")
case(
    "getitem",
    lambda x, i: x[:, i],
    RNG.normal(size=(BATCH, 3, 5)),
    RNG.integers(0, 5, size=(BATCH, 2)),
    id="batched-index",
)
case(
    "getitem",
    lambda x, i, j: x[i, :, j],
    RNG.normal(size=(BATCH, 3, 2, 4)),
    RNG.integers(0, 3, size=(BATCH, 2)),
    RNG.integers(0, 4, size=(BATCH, 2)),
    id="separated-indices",
)
case(
    "getitem",
    lambda x, i: x[i],
    RNG.normal(size=(5, 2)),
    RNG.integers(0, 5, size=(BATCH, 3)),
    in_axes=(None, 0),
    id="shared-table",
)
case(
    "scatter_add",
    cr.grad(lambda x, i: np.sum(np.sin(x[i]))),
    RNG.normal(size=(BATCH, 5)),
    RNG.integers(0, 5, size=(BATCH, 7)),
    reference=lambda x, i: np.bincount(i, np.cos(x[i]), minlength=5),
)


def _written(x, i, v):
    y = x.copy()
    y[:, i] = v
    return y


def _added_at(x, i, v):
    y = np.zeros_like(x)
    np.add.at(y, i, v)
    return y


case(
    "index_update",
    _written,
    RNG.normal(size=(BATCH, 3, 5)),
    RNG.integers(0, 5, size=(BATCH, 2)),
    RNG.normal(size=(BATCH, 3, 2)),
    id="set",
)
case(
    "index_update",
    _added_at,
    RNG.normal(size=(BATCH, 5)),
    RNG.integers(0, 5, size=(BATCH, 6)),
    RNG.normal(size=(6,)),
    in_axes=(0, 0, None),
    id="add-at",
)
for _name, _fn in [("sum", np.sum), ("max", np.max), ("min", np.min), ("prod", np.prod)]:
    case(_name, lambda x, f=_fn: f(x, axis=0), uniform(0.5, 1.5, BATCH, 3, 2))
    case(_name, _fn, uniform(0.5, 1.5, BATCH, 3, 2), id=f"{_name}-all")
case("cumsum", lambda x: np.cumsum(x, axis=1), RNG.normal(size=(BATCH, 2, 3)))
case("cumprod", lambda x: np.cumprod(x, axis=0), uniform(0.5, 1.5, BATCH, 3, 2))
case("dft", lambda x: np.abs(np.fft.fft(x, axis=0, norm="ortho")), RNG.normal(size=(BATCH, 4, 3)))
case("rdft", lambda x: np.fft.rfft(x, axis=0).imag, RNG.normal(size=(BATCH, 5, 2)))
case("irdft", lambda x: np.fft.irfft(np.fft.rfft(x) * (1 - 2j), n=7), RNG.normal(size=(BATCH, 2, 6)))
case(
    "lfilter",
    lambda b, a, x: scipy.signal.lfilter(b, a, x, axis=0),
    RNG.normal(size=(3,)),
    np.array([1.0, -0.5, 0.2]),
    RNG.normal(size=(BATCH, 6, 2)),
    in_axes=(None, None, 0),
)
case(
    "lfilter",
    lambda b, a, x: scipy.signal.lfilter(b, a, x),
    RNG.normal(size=(BATCH, 2)),
    np.array([1.0, -0.5]) + uniform(-0.2, 0.2, BATCH, 2),
    RNG.normal(size=(5,)),
    in_axes=(0, 0, None),
    id="lfilter-coefficients",
)
case("argsort", lambda x: np.argsort(x, axis=-1), RNG.normal(size=(BATCH, 2, 5)))
case("sort", lambda x: np.sort(x, axis=0), RNG.normal(size=(BATCH, 4, 3)))
case("order_statistics", lambda x: np.median(x), RNG.normal(size=(BATCH, SELECT_FROM + 3)))
case("rank_positions", cr.grad(np.median), RNG.normal(size=(BATCH, SELECT_FROM + 1)))
case("argmax", lambda x: np.argmax(x, axis=0), RNG.normal(size=(BATCH, 3, 2)))
case("argmax", np.argmax, RNG.normal(size=(BATCH, 3, 2)), id="argmax-all")
case("argmin", lambda x: np.argmin(x, axis=1), RNG.normal(size=(BATCH, 3, 2)))
case("searchsorted", np.searchsorted, np.sort(RNG.normal(size=(BATCH, 6)), axis=1), RNG.normal(size=(BATCH, 3)))
case(
    "searchsorted",
    lambda a, v: np.searchsorted(a, v, side="right"),
    np.sort(RNG.normal(size=6)),
    RNG.normal(size=(BATCH, 3)),
    in_axes=(None, 0),
    id="shared-sorted",
)
case("solve", np.linalg.solve, _spd(BATCH, 3, 3), RNG.normal(size=(BATCH, 3, 2)))
case("solve", np.linalg.solve, _spd(3, 3), RNG.normal(size=(BATCH, 3)), in_axes=(None, 0), id="shared-matrix")
case(
    "triangular_solve",
    lambda a, b: scipy.linalg.solve_triangular(a, b, lower=True),
    np.tril(_spd(BATCH, 3, 3)),
    RNG.normal(size=(BATCH, 3)),
)
case("cholesky", np.linalg.cholesky, _spd(BATCH, 3, 3))
case("slogdet", lambda a: np.linalg.slogdet(a)[1], _spd(BATCH, 3, 3))
case("expm", scipy.linalg.expm, 0.3 * RNG.normal(size=(BATCH, 3, 3)))
# expm's derivative (the gradient of a loss through expm is an expm_frechet)
case("expm_frechet", cr.grad(lambda a: np.sum(np.sin(scipy.linalg.expm(a)))), 0.3 * RNG.normal(size=(BATCH, 3, 3)))
case("eigh", lambda a: np.linalg.eigh(a)[0], _spd(BATCH, 3, 3))
case("svd", lambda a: np.linalg.svd(a, compute_uv=False), RNG.normal(size=(BATCH, 3, 2)))
case("qr", lambda a: np.abs(np.linalg.qr(a)[1]), RNG.normal(size=(BATCH, 3, 3)))

# ---- control flow -------------------------------------------------------------------------------


def _scan_program(c, xs):
    final, ys = cr.scan(lambda carry, x: (carry * np.sin(x) + x, carry**2), c, xs)
    return np.sum(ys, axis=0) + final


def _scan_reference(c, xs):
    ys = []
    for x in xs:
        ys.append(c**2)
        c = c * np.sin(x) + x
    return np.sum(ys, axis=0) + c


case("loop", _scan_program, RNG.normal(size=(BATCH, 2)), RNG.normal(size=(BATCH, 5, 2)), reference=_scan_reference)
case(
    "loop",
    _scan_program,
    RNG.normal(size=2),
    RNG.normal(size=(BATCH, 5, 2)),
    in_axes=(None, 0),
    reference=_scan_reference,
    id="loop-carry-made-batched",
)


def _cond_program(p, x):
    return cr.cond(p > 0, lambda v: np.sin(v), lambda v: 2 * np.cos(v), x)


case(
    "switch",
    _cond_program,
    np.array([-1.0, 2.0, 0.5, -0.1]),
    RNG.normal(size=(BATCH, 3)),
    reference=lambda p, x: np.sin(x) if p > 0 else 2 * np.cos(x),
    id="cond-batched-predicate",
)
case(
    "switch",
    _cond_program,
    np.float64(1.0),
    RNG.normal(size=(BATCH, 3)),
    in_axes=(None, 0),
    reference=lambda p, x: np.sin(x) if p > 0 else 2 * np.cos(x),
    id="cond-shared-predicate",
)


def _switch_program(i, x):
    return cr.switch(i, [lambda v: v + 1, lambda v: v * 2, lambda v: -v], x)


case(
    "switch",
    _switch_program,
    np.array([0, 2, 7, -3]),
    RNG.normal(size=(BATCH, 2)),
    reference=lambda i, x: [x + 1, x * 2, -x][min(max(i, 0), 2)],
    id="switch-clamped",
)


def _while_program(x):
    return cr.while_loop(lambda s: s[0] < 10.0, lambda s: (2 * s[0] + x, s[1] + 1.0), (np.abs(x) + 0.5, 0.0))


def _while_reference(x):
    value, count = abs(x) + 0.5, 0.0
    while value < 10.0:
        value, count = 2 * value + x, count + 1.0
    return value, count


case("while", _while_program, uniform(0.1, 4.0, BATCH), reference=_while_reference)


def _while_grad_reference(x, h=1e-6):
    return (_while_reference(x + h)[0] - _while_reference(x - h)[0]) / (2 * h)


case("while_vjp", cr.grad(lambda x: _while_program(x)[0]), uniform(0.1, 4.0, BATCH), reference=_while_grad_reference)


def _checkpointed_scan(x):
    def step(carry, _):
        return np.sin(carry) + x, carry

    final, _ = cr.scan(step, x, None, length=8, snapshots=2)  # 2 snapshots for 8 steps: a reversal
    return final


def _checkpointed_reference(x, h=1e-6):
    def final(x0):
        carry = x0
        for _ in range(8):
            carry = np.sin(carry) + x0
        return carry

    return (final(x + h) - final(x - h)) / (2 * h)


case("loop_reversal", cr.grad(_checkpointed_scan), uniform(0.1, 1.0, BATCH), reference=_checkpointed_reference)


@cr.custom_vjp
def _clipped_square(x):
    return x * x


_clipped_square.defvjp(lambda x: (x * x, x), lambda x, g: (np.clip(2 * x * g, -1.0, 1.0),))
case("custom_vjp", _clipped_square, uniform(0.2, 0.8, BATCH, 3), reference=lambda x: x * x)


@cr.custom_jvp
def _softplus(x):
    return np.log1p(np.exp(x))


@_softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus(x), t / (1.0 + np.exp(-x))


case("custom_jvp", _softplus, uniform(-2.0, 2.0, BATCH, 3), reference=lambda x: np.log1p(np.exp(x)))


# convolution and pooling over NCHW images; their gradient ops come from the gradient programs


def _conv_loss(x, w):
    return np.sum(np.sin(nn.conv2d(x, w, padding=1)))


def _pool_loss(x):
    return np.sum(nn.max_pool2d(x, 2) ** 2)


case(
    "conv2d",
    lambda x, w: nn.conv2d(x, w, padding=1),
    RNG.normal(size=(BATCH, 2, 2, 5, 5)),
    RNG.normal(size=(3, 2, 3, 3)),
    in_axes=(0, None),
)
case(
    "conv2d",
    lambda x, w: nn.conv2d(x, w, stride=2, groups=2),
    RNG.normal(size=(BATCH, 1, 4, 5, 5)),
    RNG.normal(size=(BATCH, 2, 2, 3, 3)),
    id="conv2d-both-mapped",
)
case(
    "conv2d_input_grad",
    cr.grad(_conv_loss),
    RNG.normal(size=(BATCH, 2, 2, 5, 5)),
    RNG.normal(size=(3, 2, 3, 3)),
    in_axes=(0, None),
)
case(
    "conv2d_weight_grad",
    cr.grad(_conv_loss, argnums=1),
    RNG.normal(size=(2, 2, 5, 5)),
    RNG.normal(size=(BATCH, 3, 2, 3, 3)),
    in_axes=(None, 0),
)
case("max_pool2d", lambda x: nn.max_pool2d(x, 2), RNG.normal(size=(BATCH, 2, 2, 6, 6)))
case("max_pool2d_scatter", cr.grad(_pool_loss), RNG.normal(size=(BATCH, 2, 2, 6, 6)))
case(
    "max_pool2d_gather",
    cr.hvp(lambda x: np.sum(nn.max_pool2d(x, 2, stride=1) ** 3)),  # the gradient of the scatter
    RNG.normal(size=(BATCH, 1, 2, 5, 5)),
    RNG.normal(size=(BATCH, 1, 2, 5, 5)),
)


# ---- the checks ---------------------------------------------------------------------------------


def _examples(c: VmapCase) -> list[tuple[Any, ...]]:
    axes = c.in_axes if isinstance(c.in_axes, tuple) else (c.in_axes,) * len(c.args)
    size = next(np.shape(a)[axis] for a, axis in zip(c.args, axes) if axis is not None)
    return [
        tuple(a if axis is None else np.take(a, k, axis=axis) for a, axis in zip(c.args, axes)) for k in range(size)
    ]


def _stacked(results: list[Any]) -> list[np.ndarray]:
    if isinstance(results[0], tuple):
        return [np.stack([np.asarray(r[k]) for r in results]) for k in range(len(results[0]))]
    return [np.stack([np.asarray(r) for r in results])]


def test_every_op_has_a_vmap_case():
    covered = {c.op for c in CASES}
    assert sorted(set(OPS) - covered - set(SKIPPED)) == []


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_each_case_uses_its_op(c):
    graph_ops = {node.op for node in cr.trace(c.fn, *_examples(c)[0]).nodes}
    if c.op == "while_vjp":  # made by the gradient of a while loop, in the differentiated graph
        graph_ops = {node.op for node in cr.grad(lambda x: _while_program(x)[0]).graph(2.0, stage="grad").nodes}
    if c.op == "loop_reversal":  # made by the gradient of a checkpointed loop
        graph_ops = {node.op for node in c.fn.graph(0.5, stage="grad").nodes}
    made_by_gradients = ("scatter_add", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d_scatter", "expm_frechet")
    if c.op in made_by_gradients + ("rank_positions",):
        graph_ops = {node.op for node in c.fn.graph(*_examples(c)[0], stage="grad").nodes}
    if c.op == "max_pool2d_gather":  # made by forward mode over the reverse pass of an hvp
        graph_ops = {node.op for node in c.fn.graph(*_examples(c)[0], stage="jvp").nodes}
    assert c.op in graph_ops


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_vmap_equals_a_loop_over_the_examples(c, backend):
    reference = c.reference or c.fn
    with np.errstate(all="ignore"):
        expected = _stacked([reference(*example) for example in _examples(c)])
    vmapped = cr.vmap(c.fn, in_axes=c.in_axes, backend=backend)
    vmapped.graph(*c.args)  # vectorized: a missing batching rule raises here
    result = vmapped(*c.args)
    got = list(result) if isinstance(result, tuple) else [result]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g = np.asarray(g)
        assert g.shape == e.shape
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=1e-5 if c.op in ("while_vjp", "loop_reversal") else 1e-12, atol=1e-12)
