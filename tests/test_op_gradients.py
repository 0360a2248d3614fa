"""Every primitive of the op table, differentiated and checked against central finite differences.

The cases are driven by the op table: ``CASES`` credits each case to the
primitive it exercises, and ``test_every_differentiable_op_has_a_gradient_case``
fails when a non-elementwise op with VJP rules has none (each elementwise op is
checked from its entry alone in test_table_elementwise.py; the cases here add
broadcasting, Python scalars and the NumPy spellings). Each case is checked in float64
(relative error < 1e-7, seed 002's threshold, against a fourth-order central
difference computed here, independently of chainrule) and in float32 (the
gradient stays float32 and is close to the float64 finite difference).

Expected values come from finite differences, from formulas written out in the
test, or from NumPy/SciPy -- never from chainrule's own output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.signal
from gradient_helpers import numerical_gradient, relative_error, weighted_sum, weights

import chainrule as cr
import chainrule.nn as nn
from chainrule.ir import OPS

# ---- inputs ------------------------------------------------------------------------------


def uniform(low, high, shape, seed=0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def away_from_zero(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 2.0, size=shape)


def on_grid(shape, seed=0, offset=0.0):
    """Distinct values k/10 + offset (k a permutation), so ties and kinks are >= 0.05 away."""
    size = int(np.prod(shape))
    k = np.random.default_rng(seed).permutation(np.arange(size) - size // 2)
    return (k * 0.1 + offset).reshape(shape)


def grid_pair(shape_a, shape_b, seed=0):
    """Two operands whose broadcast elements never tie: a on the grid k/10, b on k/10 + 0.05."""
    return on_grid(shape_a, seed), on_grid(shape_b, seed + 1, offset=0.05)


# ---- the case table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    covers: str | None  # the primitive this case is credited to (None: a NumPy composite)
    fn: Callable
    args: tuple
    argnums: tuple = (0,)
    # When set, the gradient (one array per argnum) written out; used where finite
    # differences do not apply (stop_gradient, casts).
    expected: Callable | None = None


CASES: list[Case] = []


def case(id, covers, fn, *args, argnums=(0,), expected=None):
    CASES.append(Case(id, covers, fn, tuple(args), tuple(argnums), expected))


# Elementwise unary ops are checked from the table, at points drawn from their domains, in
# test_table_elementwise.py; here, the NumPy and chainrule.nn spellings that reach them, on arrays of
# several shapes.
for _shape in [(), (4,), (2, 1, 3)]:
    case(f"relu-nn.relu-{_shape}", "relu", lambda x: weighted_sum(nn.relu(x)), away_from_zero(_shape))
    case(f"sin-np.sin-{_shape}", "sin", lambda x: weighted_sum(np.sin(x)), uniform(-2, 2, _shape))
    case(f"tanh-np.tanh-{_shape}", "tanh", lambda x: weighted_sum(np.tanh(x)), uniform(-2, 2, _shape))
case("relu-np.maximum(0,x)", "relu", lambda x: weighted_sum(np.maximum(0, x)), away_from_zero((2, 3)))
case("erf-nn.erf", "erf", lambda x: weighted_sum(nn.erf(x)), uniform(-2, 2, (3,)))
case("sigmoid-nn.sigmoid", "sigmoid", lambda x: weighted_sum(nn.sigmoid(x)), uniform(-4, 4, (3,)))

# Elementwise binary, both operands differentiated, under broadcasting and size-1 dims.
BROADCAST_PAIRS = [
    ((2, 3), (2, 3)),
    ((3, 1), (1, 4)),
    ((2, 3), (3,)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((2, 1, 3), (4, 1)),
    ((1,), (3,)),
]
for _shape_a, _shape_b in BROADCAST_PAIRS:
    _pair = f"{_shape_a},{_shape_b}"
    _a, _b = uniform(-2, 2, _shape_a, 1), uniform(-2, 2, _shape_b, 2)
    case(f"add-{_pair}", "add", lambda a, b: weighted_sum(a + b), _a, _b, argnums=(0, 1))
    case(f"sub-{_pair}", "sub", lambda a, b: weighted_sum(a - b), _a, _b, argnums=(0, 1))
    case(f"mul-{_pair}", "mul", lambda a, b: weighted_sum(a * b), _a, _b, argnums=(0, 1))
    case(f"div-{_pair}", "div", lambda a, b: weighted_sum(a / b), _a, away_from_zero(_shape_b, 3), argnums=(0, 1))
    case(
        f"pow-{_pair}",
        "pow",
        lambda a, b: weighted_sum(a**b),
        uniform(0.5, 2, _shape_a, 4),
        uniform(-1.5, 2.5, _shape_b, 5),
        argnums=(0, 1),
    )
    _a, _b = grid_pair(_shape_a, _shape_b)
    case(f"maximum-{_pair}", "maximum", lambda a, b: weighted_sum(np.maximum(a, b)), _a, _b, argnums=(0, 1))
    case(f"minimum-{_pair}", "minimum", lambda a, b: weighted_sum(np.minimum(a, b)), _a, _b, argnums=(0, 1))

# With a Python number on one side (NumPy's weak scalars).
case("mul-python-scalar", "mul", lambda x: weighted_sum(2.5 * x), uniform(-2, 2, (2, 3)))
case("sub-python-scalar-first", "sub", lambda x: weighted_sum(1.5 - x), uniform(-2, 2, (2, 3)))
case("div-python-numerator", "div", lambda x: weighted_sum(2.0 / x), away_from_zero((2, 3)))
case("pow-integer-exponent-negative-base", "pow", lambda x: weighted_sum(x**3), uniform(-2, 2, (2, 3)))
case("pow-half-exponent", "pow", lambda x: weighted_sum(x**0.5), uniform(0.3, 2, (2, 3)))
case("pow-constant-base", "pow", lambda x: weighted_sum(2.0**x), uniform(-2, 2, (2, 3)))

# where and clip (ternary).
_a, _b = grid_pair((3, 1), (1, 4))
case(
    "where-comparison-broadcast", "where", lambda a, b: weighted_sum(np.where(a > b, a * a, b)), _a, _b, argnums=(0, 1)
)
case(
    "where-constant-mask-broadcast",
    "where",
    lambda a, b: weighted_sum(np.where(np.array([[True], [False], [True]]), a, b)),
    uniform(-2, 2, (1, 4)),
    uniform(-2, 2, (3, 4), 1),
    argnums=(0, 1),
)
case("where-leaky", "where", lambda x: weighted_sum(np.where(x > 0, x, 0.1 * x)), away_from_zero((2, 3)))
case("clip-scalar-bounds", "clip", lambda x: weighted_sum(np.clip(x, -0.47, 0.53)), on_grid((2, 5)))
case(
    "clip-array-bounds-broadcast",
    "clip",
    lambda x, lo, hi: weighted_sum(np.clip(x, lo, hi)),
    on_grid((2, 5)),
    np.array([-0.47, -0.23, -0.63, 0.03, -0.87]),
    np.array([[0.33], [0.57]]),
    argnums=(0, 1, 2),
)
case("clip-method", "clip", lambda x: weighted_sum(x.clip(-0.47, 0.53)), on_grid((7,)))

# cast: finite differences through a float32 round trip are too coarse for 1e-7, so the
# gradient is written out: the cotangent passes through, converted to the input's dtype.
case(
    "cast-float64-to-float32",
    "cast",
    lambda x: weighted_sum(np.sin(x).astype(np.float32)),
    uniform(-2, 2, (2, 3)),
    expected=lambda x: [weights((2, 3), np.float32).astype(np.float64) * np.cos(x)],
)
case(
    "cast-float-to-int-has-zero-gradient",
    "cast",
    lambda x: np.sum(x.astype(np.int64) * 2.5 + x),
    uniform(-3, 3, (2, 3)),
    expected=lambda x: [np.ones((2, 3))],
)
case("cast-bool-mask-to-float", "cast", lambda x: weighted_sum((x > 0).astype(x.dtype) * x), away_from_zero((2, 3)))

# stop_gradient: x * stop_gradient(x) differentiates like x * c with c = x, so the gradient is w * x.
case(
    "stop_gradient",
    "stop_gradient",
    lambda x: weighted_sum(x * cr.stop_gradient(x)),
    uniform(-2, 2, (2, 3)),
    expected=lambda x: [weights((2, 3)) * x],
)

# Reductions: axis None / int / negative / tuple, keepdims both ways; distinct values for max/min.
for _axis in [None, 0, 1, -1, (0, 2), (-1, 0)]:
    for _keepdims in [False, True]:
        _tag = f"axis={_axis}-keepdims={_keepdims}"
        for _name, _fn in [("sum", np.sum), ("max", np.max), ("min", np.min)]:
            case(
                f"{_name}-{_tag}",
                _name,
                lambda x, fn=_fn, axis=_axis, keepdims=_keepdims: weighted_sum(fn(x, axis=axis, keepdims=keepdims)),
                on_grid((2, 3, 4)),
            )
case("sum-over-size-1-axis", "sum", lambda x: weighted_sum(np.sum(x, axis=1)), uniform(-2, 2, (3, 1, 2)))
case("sum-method", "sum", lambda x: weighted_sum(x.sum(axis=0)), uniform(-2, 2, (3, 2)))
case("max-np.amax", "max", lambda x: weighted_sum(np.amax(x, axis=1)), on_grid((3, 4)))
case("min-method", "min", lambda x: weighted_sum(x.min(axis=0, keepdims=True)), on_grid((3, 4)))

# matmul: every combination of 1-D, 2-D and batched operands, both differentiated.
for _shape_a, _shape_b in [
    ((4,), (4,)),
    ((4,), (4, 3)),
    ((3, 4), (4,)),
    ((3, 4), (4, 2)),
    ((2, 3, 4), (4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((1, 4), (4, 1)),
]:
    case(
        f"matmul-{_shape_a}@{_shape_b}",
        "matmul",
        lambda a, b: weighted_sum(a @ b),
        uniform(-1, 1, _shape_a, 1),
        uniform(-1, 1, _shape_b, 2),
        argnums=(0, 1),
    )
case(
    "matmul-np.dot",
    "matmul",
    lambda a, b: weighted_sum(np.dot(a, b)),
    uniform(-1, 1, (3, 4), 1),
    uniform(-1, 1, (4, 2), 2),
    argnums=(0, 1),
)
case(
    "matmul-np.matmul-with-constant",
    "matmul",
    lambda a: weighted_sum(np.matmul(a, np.arange(8.0).reshape(4, 2))),
    uniform(-1, 1, (3, 4)),
)

# Shape ops.
case("transpose-.T", "transpose", lambda x: weighted_sum(x.T), uniform(-2, 2, (2, 3)))
case("transpose-3d-axes", "transpose", lambda x: weighted_sum(np.transpose(x, (1, 2, 0))), uniform(-2, 2, (2, 3, 4)))
case("transpose-3d-method", "transpose", lambda x: weighted_sum(x.transpose(2, 0, 1)), uniform(-2, 2, (2, 3, 4)))
case(
    "transpose-negative-axes",
    "transpose",
    lambda x: weighted_sum(np.transpose(x, (-1, 0, 1))),
    uniform(-2, 2, (2, 3, 4)),
)
case("transpose-swapaxes", "transpose", lambda x: weighted_sum(np.swapaxes(x, 0, 2)), uniform(-2, 2, (2, 3, 4)))
case("transpose-mT", "transpose", lambda x: weighted_sum(x.mT), uniform(-2, 2, (2, 3, 4)))
case("reshape-with-minus-one", "reshape", lambda x: weighted_sum(np.reshape(x, (3, -1))), uniform(-2, 2, (2, 3, 2)))
case("reshape-method-varargs", "reshape", lambda x: weighted_sum(x.reshape(4, 1, 3)), uniform(-2, 2, (2, 6)))
case("reshape-ravel", "reshape", lambda x: weighted_sum(np.ravel(x)), uniform(-2, 2, (2, 3)))
case("reshape-squeeze-all", "reshape", lambda x: weighted_sum(np.squeeze(x)), uniform(-2, 2, (1, 3, 1)))
case("reshape-squeeze-axis", "reshape", lambda x: weighted_sum(np.squeeze(x, axis=-1)), uniform(-2, 2, (1, 3, 1)))
case(
    "reshape-expand_dims-int",
    "reshape",
    lambda x: weighted_sum(np.expand_dims(x, 1) * np.ones((3, 2, 4))),
    uniform(-2, 2, (3, 4)),
)
case("reshape-expand_dims-tuple", "reshape", lambda x: weighted_sum(np.expand_dims(x, (0, -1))), uniform(-2, 2, (3, 4)))
case(
    "broadcast_to-size-1-dims",
    "broadcast_to",
    lambda x: weighted_sum(np.broadcast_to(x, (2, 3, 4))),
    uniform(-2, 2, (3, 1)),
)
case("broadcast_to-scalar", "broadcast_to", lambda x: weighted_sum(np.broadcast_to(x, (3, 4))), np.asarray(0.7))
case(
    "broadcast_to-new-leading-axes",
    "broadcast_to",
    lambda x: weighted_sum(np.broadcast_to(x, (2, 3, 4))),
    uniform(-2, 2, (4,)),
)
case(
    "broadcast_to-np.broadcast_arrays",
    "broadcast_to",
    lambda a, b: weighted_sum(np.stack(np.broadcast_arrays(a, b, 2.0))),
    uniform(-2, 2, (3, 1)),
    uniform(-2, 2, (4,)),
    argnums=(0, 1),
)
_three = (uniform(-2, 2, (2, 3), 1), uniform(-2, 2, (1, 3), 2), uniform(-2, 2, (3, 3), 3))
case(
    "concatenate-axis-0",
    "concatenate",
    lambda a, b, c: weighted_sum(np.concatenate([a, b, c], axis=0)),
    *_three,
    argnums=(0, 1, 2),
)
case(
    "concatenate-axis-1",
    "concatenate",
    lambda a, b, c: weighted_sum(np.concatenate([a.T, b.T, c.T], axis=1)),
    *_three,
    argnums=(0, 1, 2),
)
case(
    "concatenate-axis--1",
    "concatenate",
    lambda a, b: weighted_sum(np.concatenate((a, b), axis=-1)),
    uniform(-2, 2, (2, 2, 1), 1),
    uniform(-2, 2, (2, 2, 3), 2),
    argnums=(0, 1),
)
case(
    "concatenate-with-constant",
    "concatenate",
    lambda a: weighted_sum(np.concatenate([a, np.ones((1, 3))])),
    uniform(-2, 2, (2, 3)),
)
_same = (uniform(-2, 2, (2, 3), 1), uniform(-2, 2, (2, 3), 2), uniform(-2, 2, (2, 3), 3))
for _axis in [0, 1, -1]:
    case(
        f"concatenate-np.stack-axis={_axis}",
        "concatenate",
        lambda a, b, c, axis=_axis: weighted_sum(np.stack([a, b, c], axis=axis)),
        *_same,
        argnums=(0, 1, 2),
    )
case(
    "concatenate-hstack",
    "concatenate",
    lambda a, b: weighted_sum(np.hstack([a, b])),
    uniform(-2, 2, (3,), 1),
    uniform(-2, 2, (2,), 2),
    argnums=(0, 1),
)
case(
    "concatenate-vstack",
    "concatenate",
    lambda a, b: weighted_sum(np.vstack([a, b])),
    uniform(-2, 2, (3,), 1),
    uniform(-2, 2, (2, 3), 2),
    argnums=(0, 1),
)

# Indexing: basic (slices with steps and negatives, None, ints, Ellipsis) and integer arrays.
_vector, _matrix, _cube = uniform(-2, 2, (7,)), uniform(-2, 2, (3, 4)), uniform(-2, 2, (2, 3, 4))
for _id, _index in [
    ("x[1:5:2]", lambda x: x[1:5:2]),
    ("x[::-1]", lambda x: x[::-1]),
    ("x[-3:]", lambda x: x[-3:]),
    ("x[::-2]", lambda x: x[::-2]),
    ("x[5:1:-2]", lambda x: x[5:1:-2]),
    ("x[-1]", lambda x: x[-1]),
    ("x[[0,2,0,0]]-repeated", lambda x: x[[0, 2, 0, 0]]),
    ("x[2-D-index-array]-repeated", lambda x: x[np.array([[0, 6], [6, 6]])]),
    ("x[negative-index-array]", lambda x: x[np.array([-1, -7, 3])]),
]:
    case(f"getitem-{_id}", "getitem", lambda x, index=_index: weighted_sum(index(x)), _vector)
for _id, _index in [
    ("x[1]", lambda x: x[1]),
    ("x[1,-2]", lambda x: x[1, -2]),
    ("x[None,1,:]", lambda x: x[None, 1, :]),
    ("x[:,None,::2]", lambda x: x[:, None, ::2]),
    ("x[::-1,1:]", lambda x: x[::-1, 1:]),
    ("x[...,0]", lambda x: x[..., 0]),
    ("x[[0,2,0],:]-repeated", lambda x: x[[0, 2, 0], :]),
    ("x[:,[3,0,3]]-repeated", lambda x: x[:, [3, 0, 3]]),
    ("x[[0,1,1],[2,2,2]]-pairs", lambda x: x[[0, 1, 1], [2, 2, 2]]),
]:
    case(f"getitem-{_id}", "getitem", lambda x, index=_index: weighted_sum(index(x)), _matrix)
for _id, _index in [
    ("x[0,...,None]", lambda x: x[0, ..., None]),
    ("x[...,1:3,::-1]", lambda x: x[..., 1:3, ::-1]),
    ("x[:,[2,0],1]", lambda x: x[:, [2, 0], 1]),
    ("x[None,...]", lambda x: x[None, ...]),
]:
    case(f"getitem-{_id}", "getitem", lambda x, index=_index: weighted_sum(index(x)), _cube)
_labels = np.array([2, 0, 2, 1])
case(
    "getitem-cross-entropy-pattern-constant-labels",
    "getitem",
    lambda logp: -np.mean(logp[np.arange(4), _labels]),
    uniform(-3, -0.1, (4, 3)),
)
case(
    "getitem-cross-entropy-pattern-traced-labels",
    "getitem",
    lambda logp, labels: -np.mean(logp[np.arange(4), labels]),
    uniform(-3, -0.1, (4, 3)),
    _labels,
)

# scatter_add is what indexing differentiates to; differentiating a gradient differentiates it.
_first_gradient_of_gather = cr.grad(lambda z: weighted_sum(z[[0, 2, 0, 4]] ** 3))
case(
    "scatter_add-grad-of-gather-with-repeats",
    "scatter_add",
    lambda x: weighted_sum(_first_gradient_of_gather(x)),
    uniform(-2, 2, (5,)),
)
_first_gradient_of_slice = cr.grad(lambda z: weighted_sum(z[::2, 1:] ** 3))
case(
    "scatter_add-grad-of-slice",
    "scatter_add",
    lambda x: weighted_sum(_first_gradient_of_slice(x)),
    uniform(-2, 2, (3, 3)),
)

# index_update: writes into arrays (a[i] = v, a[i] += v, np.add.at), traced functionally.


def _written(x, v, write):
    a = x * 1.0  # a new array, so the eager run leaves the argument as it was
    write(a, v)
    return weighted_sum(a * a)


for _id, _write, _v in [
    ("a[1:3]=v", lambda a, v: a.__setitem__(slice(1, 3), np.sin(v)), uniform(-2, 2, (2,), 3)),
    ("a[[0,2,0]]=v-last-write-wins", lambda a, v: a.__setitem__([0, 2, 0], v), uniform(-2, 2, (3,), 3)),
    (
        "a[[0,1,0],:]+=v-broadcast",
        lambda a, v: a.__setitem__(([0, 1, 0], slice(None)), a[[0, 1, 0], :] + v),
        uniform(-2, 2, (4,), 3),
    ),
    ("np.add.at(a,[0,2,0],v)", lambda a, v: np.add.at(a, [0, 2, 0], v), uniform(-2, 2, (3, 4), 3)),
    ("a[mask]=v", lambda a, v: a.__setitem__(np.array([True, False, True]), v), uniform(-2, 2, (2, 4), 3)),
    ("a[1][2:]=v-through-a-view", lambda a, v: a[1].__setitem__(slice(2, None), v * v), uniform(-2, 2, (2,), 3)),
    ("a.T[0]=v-through-a-transpose", lambda a, v: a.T.__setitem__(0, v), uniform(-2, 2, (3,), 3)),
]:
    case(
        f"index_update-{_id}",
        "index_update",
        lambda x, v, write=_write: _written(x, v, write),
        _matrix if _v.ndim == 2 or _id.startswith(("a[[0,1", "a[1]", "a.T")) else _vector,
        _v,
        argnums=(0, 1),
    )

# NumPy functions written as composites of primitives (credited to no single op).
for _id, _fn, _x in [
    ("np.square", np.square, uniform(-2, 2, (2, 3))),
    ("np.reciprocal", np.reciprocal, away_from_zero((2, 3))),
    ("np.log2", np.log2, uniform(0.2, 3, (2, 3))),
    ("np.log10", np.log10, uniform(0.2, 3, (2, 3))),
    ("np.exp2", np.exp2, uniform(-2, 2, (2, 3))),
    ("np.positive", np.positive, uniform(-2, 2, (2, 3))),
    ("np.fabs", np.fabs, away_from_zero((2, 3))),
    ("np.mean", np.mean, uniform(-2, 2, (2, 3, 4))),
    ("np.mean-axis-keepdims", lambda x: np.mean(x, axis=(0, 2), keepdims=True), uniform(-2, 2, (2, 3, 4))),
    ("x.mean-axis--1", lambda x: x.mean(axis=-1), uniform(-2, 2, (2, 3, 4))),
    ("np.var", np.var, uniform(-2, 2, (2, 3, 4))),
    ("np.var-axis-ddof", lambda x: np.var(x, axis=1, ddof=1), uniform(-2, 2, (2, 3, 4))),
    ("np.var-axis-tuple-keepdims", lambda x: np.var(x, axis=(0, -1), keepdims=True), uniform(-2, 2, (2, 3, 4))),
    ("np.std", np.std, uniform(-2, 2, (2, 3, 4))),
    ("np.std-axis-0", lambda x: np.std(x, axis=0), uniform(-2, 2, (3, 4))),
    ("np.linalg.norm-vector", np.linalg.norm, uniform(-2, 2, (5,))),
    ("np.linalg.norm-frobenius", np.linalg.norm, uniform(-2, 2, (3, 4))),
    ("np.linalg.norm-axis-1", lambda x: np.linalg.norm(x, axis=1), uniform(-2, 2, (3, 4))),
    (
        "np.linalg.norm-ord-2-keepdims",
        lambda x: np.linalg.norm(x, ord=2, axis=0, keepdims=True),
        uniform(-2, 2, (3, 4)),
    ),
]:
    case(_id, None, lambda x, fn=_fn: weighted_sum(fn(x)), _x)
case(
    "np.outer",
    None,
    lambda a, b: weighted_sum(np.outer(a, b)),
    uniform(-2, 2, (3,), 1),
    uniform(-2, 2, (4,), 2),
    argnums=(0, 1),
)
_a, _b = grid_pair((3, 1), (1, 4))
case("np.logaddexp-broadcast", None, lambda a, b: weighted_sum(np.logaddexp(a, b)), _a, _b, argnums=(0, 1))
case(
    "np.logaddexp-large",
    None,
    lambda a, b: weighted_sum(np.logaddexp(a, b)),
    np.array([500.0, -300.0, 2.0]),
    np.array([499.0, -301.5, 700.0]),
    argnums=(0, 1),
)

# Scans and products (chainrule/ir/scans.py); zeros, sorting and the NumPy spellings in test_scans.py.
case("cumsum-axis1", "cumsum", lambda x: weighted_sum(np.cumsum(x, axis=1)), uniform(-2, 2, (2, 3)))
case("cumprod-axis0", "cumprod", lambda x: weighted_sum(np.cumprod(x, axis=0)), away_from_zero((3, 2)))
case("prod-axis1", "prod", lambda x: weighted_sum(np.prod(x, axis=1)), away_from_zero((2, 3)))
case("prod-all", "prod", lambda x: np.prod(x), away_from_zero((2, 3)))

# The Fourier transform (chainrule/ir/fft.py), through np.fft's complex values; every transform in test_fft.py.
case("dft-fft-axis0", "dft", lambda x: weighted_sum(np.abs(np.fft.fft(x, axis=0)) ** 2), uniform(-2, 2, (3, 2)))
case("rdft-rfft-n5", "rdft", lambda x: weighted_sum(np.abs(np.fft.rfft(x, n=5)) ** 2), uniform(-2, 2, (2, 4)))
case("irdft-irfft", "irdft", lambda x: weighted_sum(np.fft.irfft(np.fft.fft(x) * (1 + 2j), n=6)), uniform(-2, 2, (4,)))

# The recursive filter (chainrule/ir/filters.py), through scipy.signal.lfilter; its spellings in test_scipy_signal.py.
case(
    "lfilter-all-operands",
    "lfilter",
    lambda b, a, x: weighted_sum(scipy.signal.lfilter(b, a, x, axis=0)),
    uniform(-1, 1, (3,)),
    np.array([1.2, -0.4, 0.3]),
    uniform(-2, 2, (7, 2)),
    argnums=(0, 1, 2),
)

# ---- the table covers the table -------------------------------------------------------------

DIFFERENTIABLE_KINDS = {"elementwise", "reduction", "matmul", "shape", "index", "scan", "spectral"}
# Comparisons and logical ops have no gradient by definition.
NO_GRADIENT_OPS = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not"}


def test_every_differentiable_non_elementwise_op_has_a_gradient_case():
    required = {
        name
        for name, op in OPS.items()
        if op.vjp is not None and op.kind in DIFFERENTIABLE_KINDS and not op.is_elementwise
    }
    covered = {c.covers for c in CASES}
    missing = sorted(required - covered)
    assert not missing, f"ops with VJP rules but no gradient case in tests/test_op_gradients.py: {missing}"


def test_ops_without_vjp_rules_are_sources_and_comparisons_give_no_gradient():
    for name, op in OPS.items():
        if op.vjp is None:
            # fused nodes exist only after differentiation (grad of grad inlines the unfused graph)
            assert op.kind in ("source", "fused"), f"{name} has no VJP rules but is not a source op"
    for name in NO_GRADIENT_OPS:
        op = OPS[name]
        assert all(op.vjp_rule(i) is None for i in range(op.arity)), f"{name} should give no gradient"


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# ---- every case, float64 and float32 ------------------------------------------------------------


def ops_traced(fn, *args) -> set:
    """The names of the ops in the graph of ``fn`` traced on ``args``."""
    graph = cr.trace(fn, *args)
    return {graph[i].op for i in range(len(graph))}


def gradients_of(c: Case, args, backend: str = "numpy") -> tuple:
    """chainrule's gradient of ``c.fn`` at ``args``, one array per argnum."""
    gradients = cr.grad(c.fn, argnums=c.argnums if len(c.argnums) > 1 else c.argnums[0], backend=backend)(*args)
    return gradients if len(c.argnums) > 1 else (gradients,)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_gradient_matches_central_differences_in_float64(c: Case, backend):
    if c.covers is not None:
        assert c.covers in ops_traced(c.fn, *c.args), f"case {c.id} does not exercise op {c.covers}"
    gradients = gradients_of(c, c.args, backend)
    expected = c.expected(*c.args) if c.expected else None
    for position, (argnum, gradient) in enumerate(zip(c.argnums, gradients)):
        argument = c.args[argnum]
        assert np.shape(gradient) == np.shape(argument)
        assert np.asarray(gradient).dtype == np.float64
        if expected is not None:
            np.testing.assert_allclose(gradient, expected[position], rtol=1e-12, atol=1e-14)
        else:
            numeric = numerical_gradient(c.fn, c.args, argnum)
            error = relative_error(gradient, numeric)
            assert error < 1e-7, (
                f"d/d arg{argnum}: relative error {error:.2e}\nchainrule: {gradient}\nfinite differences: {numeric}"
            )


def _float32(arg):
    return arg.astype(np.float32) if np.asarray(arg).dtype.kind == "f" else arg


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_float32_inputs_give_float32_gradients_close_to_float64(c: Case, backend):
    args32 = tuple(_float32(a) for a in c.args)
    args64 = tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in args32)  # the same point
    gradients = gradients_of(c, args32, backend)
    expected = c.expected(*args64) if c.expected else None
    for position, (argnum, gradient) in enumerate(zip(c.argnums, gradients)):
        assert np.asarray(gradient).dtype == np.float32, f"d/d arg{argnum} is {np.asarray(gradient).dtype}"
        assert np.shape(gradient) == np.shape(args32[argnum])
        reference = expected[position] if expected is not None else numerical_gradient(c.fn, args64, argnum)
        scale = max(1.0, float(np.max(np.abs(reference))))
        np.testing.assert_allclose(gradient, reference, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_the_llvm_backend_agrees_with_the_numpy_backend(c: Case, dtype):
    args = tuple(_float32(a) for a in c.args) if dtype == np.float32 else c.args
    argnums = c.argnums if len(c.argnums) > 1 else c.argnums[0]
    value, gradients = cr.value_and_grad(c.fn, argnums, backend="numpy")(*args)
    llvm_value, llvm_gradients = cr.value_and_grad(c.fn, argnums, backend="llvm")(*args)
    for expected, got in [(value, llvm_value)] + list(
        zip(*[g if len(c.argnums) > 1 else (g,) for g in (gradients, llvm_gradients)])
    ):
        assert type(got) is type(expected) and np.shape(got) == np.shape(expected)
        assert np.asarray(got).dtype == np.asarray(expected).dtype
        rtol = 1e-12 if np.asarray(got).dtype == np.float64 else 1e-5  # a float32 result is float32
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


# ---- conventions at kinks, written out (the others, with SymPy's view, in test_sympy_rules.py) --


def test_numpy_maximum_with_zero_is_relu_with_zero_gradient_at_zero():
    x = np.array([-1.5, 0.0, 2.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.maximum(0, x)))(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.maximum(x, 0.0)))(x), [0.0, 0.0, 1.0])
    assert "relu" in ops_traced(lambda x: np.sum(np.maximum(0, x)), x)


def test_max_reduction_ties_split_the_gradient_evenly():
    np.testing.assert_array_equal(cr.grad(lambda x: np.max(x))(np.array([1.0, 3.0, 3.0])), [0.0, 0.5, 0.5])
    x = np.array([[2.0, 2.0, 1.0], [0.0, 4.0, 4.0], [7.0, 7.0, 7.0]])
    third = 1.0 / 3.0
    np.testing.assert_allclose(
        cr.grad(lambda x: np.sum(np.max(x, axis=1)))(x),
        [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [third, third, third]],
        rtol=1e-15,
    )
    np.testing.assert_array_equal(cr.grad(lambda x: np.min(x))(np.array([4.0, -1.0, 2.0, -1.0])), [0.0, 0.5, 0.0, 0.5])


# ---- comparisons and logical ops carry no gradient -------------------------------------------


def test_gradient_through_where_flows_only_to_the_chosen_branch():
    x = np.array([-1.0, 0.2, 0.7, 3.0])
    g = cr.grad(lambda x: np.sum(np.where(x > 0.5, x * x, 3.0 * x)))(x)
    np.testing.assert_allclose(g, np.where(x > 0.5, 2 * x, 3.0), rtol=1e-15)


def test_where_condition_gets_no_gradient_even_when_it_depends_on_the_input():
    # The condition x*x > 1 depends on x, but a comparison has no gradient: only the "+ x" term counts.
    x = np.array([-2.0, -0.5, 0.5, 2.0])
    g = cr.grad(lambda x: np.sum(np.where(x * x > 1.0, 1.0, 0.0) + x))(x)
    np.testing.assert_array_equal(g, np.ones(4))


@pytest.mark.parametrize(
    "compare", [np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal], ids=lambda f: f.__name__
)
def test_comparison_cast_to_float_has_zero_gradient(compare):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])
    grad_a, grad_b = cr.grad(lambda a, b: np.sum(compare(a, b).astype(np.float64) * 5.0 + a * b), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(grad_a, b)
    np.testing.assert_array_equal(grad_b, a)


def test_logical_masks_select_the_gradient_and_carry_none_themselves():
    x = np.array([-3.0, -1.5, -0.5, 0.5, 1.5, 3.0])
    mask = ((x > -1) & ~(x > 1)) | (x < -2)

    def f(x):
        return np.sum(np.where(((x > -1) & ~(x > 1)) | (x < -2), x * x, 0.0))

    np.testing.assert_array_equal(cr.grad(f)(x), np.where(mask, 2 * x, 0.0))


def test_input_that_only_feeds_a_comparison_gets_a_zero_gradient():
    x, y = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    g = cr.grad(lambda x, y: np.sum(np.where(x > 0, y, 2.0 * y)), argnums=0)(x, y)
    np.testing.assert_array_equal(g, np.zeros(2))


# ---- gradients accumulate ------------------------------------------------------------------


def test_repeated_integer_indices_accumulate_the_gradient():
    g = cr.grad(lambda x: np.sum(x[[0, 2, 0, 0]] * np.array([1.0, 10.0, 100.0, 1000.0])))(np.zeros(3))
    np.testing.assert_array_equal(g, [1101.0, 0.0, 10.0])


def test_value_used_several_times_sums_its_cotangents():
    x = np.array([0.3, -1.2])
    np.testing.assert_allclose(
        cr.grad(lambda x: np.sum(x * x * x + np.sin(x) * x))(x), 3 * x**2 + np.cos(x) * x + np.sin(x), rtol=1e-14
    )


def test_hessian_of_a_gather_with_repeats_counts_each_repeat():
    # g(z) = sum(z[idx]**3): its Hessian is diag(6 z_i * count_i), so d/dx sum(v * grad g) = 6 x count v.
    idx, v = [0, 2, 0, 4, 0], np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    first = cr.grad(lambda z: np.sum(z[idx] ** 3))
    x = np.array([0.5, -1.0, 1.5, 2.0, -0.25])
    counts = np.array([3.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(v * first(x)))(x), 6 * x * counts * v, rtol=1e-14)


# ---- second derivatives ------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


SECOND_DERIVATIVES = [
    ("sin", np.sin, lambda x: -np.sin(x)),
    ("exp", np.exp, np.exp),
    ("tanh", np.tanh, lambda x: -2.0 * np.tanh(x) * (1.0 - np.tanh(x) ** 2)),
    ("cube", lambda x: x**3, lambda x: 6.0 * x),
    ("sigmoid", nn.sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)) * (1 - 2 * _sigmoid(x))),
    ("log", np.log, lambda x: -1.0 / x**2),
    ("sqrt", np.sqrt, lambda x: -0.25 * x**-1.5),
]


@pytest.mark.parametrize("name, f, second", SECOND_DERIVATIVES, ids=[s[0] for s in SECOND_DERIVATIVES])
def test_grad_of_grad_is_the_second_derivative(name, f, second):
    second_derivative = cr.grad(cr.grad(f))
    for x in [0.7, 1.3, 2.1]:
        np.testing.assert_allclose(second_derivative(x), second(x), rtol=1e-12)


@pytest.mark.parametrize("name, f, second", SECOND_DERIVATIVES, ids=[s[0] for s in SECOND_DERIVATIVES])
def test_grad_of_a_function_calling_grad_is_the_second_derivative(name, f, second):
    first = cr.grad(f)
    second_derivative = cr.grad(lambda x: first(x))
    for x in [0.7, 1.3, 2.1]:
        np.testing.assert_allclose(second_derivative(x), second(x), rtol=1e-12)
    elementwise_first = cr.grad(lambda x: np.sum(f(x)))  # f'(x) elementwise, since f is elementwise
    x = np.array([0.7, 1.3, 2.1])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(elementwise_first(x)))(x), second(x), rtol=1e-12)
