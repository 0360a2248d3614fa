"""NumPy's layout functions on traced values: padding, tiling, repeating, splitting, flipping,
rolling, rotating, triangles, grids, stacking, blocks, insertion and deletion, sliding windows,
convolution and correlation, ramps and fills.

Every case is checked four ways, each against something independent of chainrule: the traced
value against NumPy's own function on the same arrays (both backends), the reverse-mode gradient
of a weighted sum against fourth-order central differences (relative error < 1e-7), the LLVM
backend's gradient against the NumPy backend's, and forward mode (``cr.jvp``) against the
gradient's inner product with a random tangent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

window_view = np.lib.stride_tricks.sliding_window_view


def data(*shape, seed=0):
    """Distinct values spread out, so maxima, minima and kinks are never tied."""
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    return (rng.permutation(size) * 0.37 + rng.uniform(0.0, 0.1, size) - size * 0.15).reshape(shape)


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    args: tuple


def case(name, fn, *shapes):
    return pytest.param(Case(name, fn, tuple(data(*s, seed=i) for i, s in enumerate(shapes))), id=name)


CASES = [
    # np.pad: every pad_width form, every mode chainrule traces
    case("pad-int", lambda x: np.pad(x, 2), (3, 4)),
    case("pad-pair", lambda x: np.pad(x, (1, 3)), (3, 4)),
    case("pad-per-axis", lambda x: np.pad(x, ((0, 2), (3, 1))), (3, 4)),
    case("pad-dict", lambda x: np.pad(x, {-1: (1, 2), 0: 3}, mode="symmetric"), (3, 4)),
    case("pad-single-pair", lambda x: np.pad(x, ((2, 1),)), (3, 4)),
    case("pad-constant-values", lambda x: np.pad(x, ((1, 2), (2, 1)), constant_values=((1, 2), (3, 4))), (3, 4)),
    case("pad-traced-constant", lambda x, c: np.pad(x, 2, constant_values=c[0]), (3, 4), (1,)),
    case("pad-edge", lambda x: np.pad(x, ((2, 3), (1, 0)), mode="edge"), (3, 4)),
    case("pad-wrap-wider-than-axis", lambda x: np.pad(x, ((5, 2), (1, 9)), mode="wrap"), (3, 4)),
    case("pad-reflect", lambda x: np.pad(x, 2, mode="reflect"), (3, 4)),
    case("pad-reflect-repeatedly", lambda x: np.pad(x, ((7, 4),), mode="reflect"), (3,)),
    case("pad-symmetric", lambda x: np.pad(x, ((1, 2), (4, 3)), mode="symmetric"), (3, 4)),
    case("pad-reflect-odd", lambda x: np.pad(x, 5, mode="reflect", reflect_type="odd"), (3, 4)),
    case("pad-symmetric-odd", lambda x: np.pad(x, (2, 3), mode="symmetric", reflect_type="odd"), (4,)),
    case("pad-mean", lambda x: np.pad(x, ((1, 2), (0, 2)), mode="mean", stat_length=2), (3, 4)),
    case("pad-mean-whole-axis", lambda x: np.pad(x, 2, mode="mean"), (3, 4)),
    case("pad-linear-ramp", lambda x: np.pad(x, 3, mode="linear_ramp", end_values=(1.5, -2.0)), (3, 4)),
    case("pad-maximum", lambda x: np.pad(x, ((1, 2), (2, 0)), mode="maximum"), (3, 4)),
    case("pad-minimum-stat-length", lambda x: np.pad(x, 2, mode="minimum", stat_length=((1, 2), (3, 2))), (3, 4)),
    case("pad-3d", lambda x: np.pad(x, ((0, 1), (2, 0), (1, 1)), mode="reflect"), (2, 3, 4)),
    # np.tile and np.repeat
    case("tile-int", lambda x: np.tile(x, 3), (2, 3)),
    case("tile-more-reps-than-axes", lambda x: np.tile(x, (2, 1, 3)), (2, 3)),
    case("tile-fewer-reps-than-axes", lambda x: np.tile(x, (2,)), (2, 3, 2)),
    case("repeat-flat", lambda x: np.repeat(x, 2), (2, 3)),
    case("repeat-axis", lambda x: np.repeat(x, 3, axis=1), (2, 3)),
    case("repeat-negative-axis", lambda x: np.repeat(x, 2, axis=-3), (2, 3, 2)),
    case("repeat-array", lambda x: np.repeat(x, [2, 0, 3], axis=-1), (2, 3)),
    case("repeat-array-flat", lambda x: np.repeat(x, [1, 2, 1, 0, 2, 3]), (2, 3)),
    # splitting
    case("split-sections", lambda x: np.split(x, 3, axis=1), (2, 6)),
    case("split-indices", lambda x: np.split(x, [1, -2, 8], axis=-1), (2, 6)),
    case("array-split-uneven", lambda x: np.array_split(x, 4), (7, 2)),
    case("hsplit-1d", lambda x: np.hsplit(x, 2), (6,)),
    case("hsplit", lambda x: np.hsplit(x, [1, 3]), (2, 5)),
    case("vsplit", lambda x: np.vsplit(x, 2), (4, 3)),
    case("dsplit", lambda x: np.dsplit(x, [1]), (2, 2, 3)),
    # flipping, rolling, rotating, triangles
    case("flip-all", lambda x: np.flip(x), (2, 3, 4)),
    case("flip-0d", lambda x: np.flip(x[1, 2]) * x, (2, 3)),
    case("empty-index-of-0d", lambda x: x[0][()] * x, (2,)),
    case("flip-axis", lambda x: np.flip(x, -1), (2, 3, 4)),
    case("flip-axes", lambda x: np.flip(x, (0, 2)), (2, 3, 4)),
    case("fliplr", np.fliplr, (3, 4)),
    case("flipud", np.flipud, (3, 4)),
    case("roll-flat", lambda x: np.roll(x, 5), (3, 4)),
    case("roll-axis", lambda x: np.roll(x, -1, axis=1), (3, 4)),
    case("roll-tuples", lambda x: np.roll(x, (1, 7), axis=(0, -1)), (3, 4)),
    case("roll-same-axis-twice", lambda x: np.roll(x, (1, 1), axis=(1, 1)), (3, 4)),
    case("rot90", np.rot90, (3, 4)),
    case("rot90-k2", lambda x: np.rot90(x, 2), (3, 4)),
    case("rot90-k3-axes", lambda x: np.rot90(x, -1, axes=(2, 0)), (2, 3, 4)),
    case("triu", np.triu, (4, 4)),
    case("triu-k", lambda x: np.triu(x, 1), (3, 5)),
    case("tril-negative-k", lambda x: np.tril(x, -1), (2, 4, 3)),
    case("tril-1d", np.tril, (4,)),
    # grids
    case("meshgrid-xy", lambda x, y: np.meshgrid(x, y), (3,), (4,)),
    case("meshgrid-ij-3", lambda x, y, z: np.meshgrid(x, y, z, indexing="ij"), (3,), (2,), (4,)),
    case("meshgrid-sparse", lambda x, y: np.meshgrid(x, y, sparse=True), (3,), (4,)),
    # stacking and joining
    case("column-stack", lambda x, y: np.column_stack([x, y, x]), (3,), (3, 2)),
    case("row-stack", lambda x, y: np.row_stack([x, y]), (3,), (2, 3)),
    case("vstack", lambda x, y: np.vstack([x, y]), (3,), (2, 3)),
    case("hstack", lambda x, y: np.hstack([x, y]), (2, 3), (2, 1)),
    case("dstack", lambda x, y, z: np.dstack([x, y, z]), (2,), (1, 2), (1, 2, 2)),
    case("append-flat", lambda x, y: np.append(x, y), (2, 3), (2,)),
    case("append-axis", lambda x, y: np.append(x, y, axis=0), (2, 3), (1, 3)),
    case("block-2d", lambda a, b, c: np.block([[a, b], [c]]), (2, 2), (2, 3), (1, 5)),
    case("block-1d", lambda a, b: np.block([a, b, 2.0]), (2,), (3,)),
    case("block-promotes", lambda a, b: np.block([[a], [b]]), (3,), (2, 3)),
    case("block-3d", lambda a, b: np.block([[[a, b]], [[b, a]]]), (1, 2, 2), (1, 2, 2)),
    # inserting and deleting
    case("delete-flat", lambda x: np.delete(x, [0, 4, -1]), (2, 3)),
    case("delete-axis", lambda x: np.delete(x, 1, axis=-1), (2, 3)),
    case("delete-slice", lambda x: np.delete(x, slice(0, 3, 2), axis=0), (4, 2)),
    case("insert-scalar", lambda x: np.insert(x, 2, 7.5), (2, 3)),
    case("insert-traced", lambda x, v: np.insert(x, [1, 1, 3], v), (4,), (3,)),
    case("insert-axis-broadcast", lambda x, v: np.insert(x, 1, v, axis=1), (3, 2), (3,)),
    case("insert-axis-block", lambda x, v: np.insert(x, [2], v, axis=0), (3, 2), (2, 2)),
    # sliding windows
    case("window-1d", lambda x: window_view(x, 3), (6,)),
    case("window-2d", lambda x: window_view(x, (2, 3)), (4, 5)),
    case("window-axis", lambda x: window_view(x, 2, axis=-1), (3, 4)),
    case("window-same-axis-twice", lambda x: window_view(x, (2, 3), axis=(0, 0)), (6, 2)),
    # convolution and correlation, both operands differentiable
    *[
        case(f"{name}-{mode}-{n}-{m}", lambda a, v, f=f, mode=mode: f(a, v, mode), (n,), (m,))
        for name, f in [("convolve", np.convolve), ("correlate", np.correlate)]
        for mode in ("full", "same", "valid")
        for n, m in [(6, 3), (5, 4), (2, 5), (3, 6), (4, 1)]
    ],
    # ramps and fills
    case("linspace", lambda a, b: np.linspace(a[0], b[0], 7), (1,), (1,)),
    case("linspace-arrays-axis", lambda a, b: np.linspace(a, b, 4, axis=-1), (2, 3), (3,)),
    case(
        "linspace-no-endpoint-retstep", lambda a, b: np.linspace(a, b[0], 5, endpoint=False, retstep=True), (3,), (1,)
    ),
    case("linspace-int-dtype", lambda a, b: np.linspace(a, b, 6, dtype=np.int64) * a, (3,), (3,)),
    case("linspace-one-sample", lambda a, b: np.linspace(a, b, 1), (2,), (2,)),
    case("linspace-constant-start", lambda b: np.linspace(0.5, b, 6, axis=1), (2, 2)),
    case("full-like-traced-fill", lambda x, c: np.full_like(x, c[1]) * x, (2, 3), (2,)),
    case("full-like-row", lambda x, c: np.full_like(x, c), (2, 3), (3,)),
    case("full-like-traced", lambda x: np.full_like(x, 3.0) + x, (2, 3)),
    case("full-like-keyword", lambda x, c: np.full((2, 3), c[0], like=c) + x, (2, 3), (1,)),
    case("constants-in-traced-code", lambda x: x @ np.eye(4, k=1) + np.arange(4.0) * np.identity(4) * x, (4, 4)),
]


def total(result):
    """A scalar of a result that may be a tuple or list of arrays (a split, a grid) or (array, step)."""
    parts = result if isinstance(result, (tuple, list)) else [result]
    return sum(weighted_sum(np.asarray(p) if not hasattr(p, "dtype") else p) for p in parts)


def assert_same_result(got, expected, rtol=1e-12):
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same_result(g, e, rtol)
        return
    assert np.shape(got) == np.shape(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("c", CASES)
def test_traced_values_are_numpys(c: Case, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # np.row_stack
        assert_same_result(cr.jit(c.fn, backend=backend)(*c.args), c.fn(*c.args))


@pytest.mark.parametrize("c", CASES)
def test_gradient_matches_finite_differences_on_both_backends_and_forward_mode(c: Case):
    def loss(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return total(c.fn(*args))

    argnums = tuple(range(len(c.args)))
    gradients = cr.grad(loss, argnums)(*c.args)
    for argnum, gradient in zip(argnums, gradients):
        numeric = numerical_gradient(loss, c.args, argnum)
        error = relative_error(gradient, numeric)
        assert error < 1e-7, f"argument {argnum}: relative error {error:.1e}\n{gradient}\n{numeric}"
    for native, reference in zip(cr.grad(loss, argnums, backend="llvm")(*c.args), gradients):
        np.testing.assert_allclose(native, reference, rtol=1e-12, atol=1e-13)
    tangents = tuple(np.random.default_rng(5).uniform(-1, 1, np.shape(a)) for a in c.args)
    value, tangent = cr.jvp(loss, c.args, tangents)
    np.testing.assert_allclose(value, loss(*c.args), rtol=1e-12)
    expected = sum(float(np.sum(g * t)) for g, t in zip(gradients, tangents))
    np.testing.assert_allclose(tangent, expected, rtol=1e-10, atol=1e-12)


FLOAT32_CASES = [
    "pad-constant-values",
    "pad-reflect-odd",
    "pad-mean",
    "pad-linear-ramp",
    "pad-maximum",
    "tile-int",
    "repeat-array",
    "roll-tuples",
    "triu-k",
    "insert-traced",
    "window-2d",
    "convolve-same-2-5",
    "correlate-full-5-4",
    "linspace-arrays-axis",
    "full-like-traced-fill",
]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("c", [p for p in CASES if p.id in FLOAT32_CASES])
def test_float32_stays_float32_in_values_and_gradients(c: Case, backend):
    args = tuple(a.astype(np.float32) for a in c.args)
    got, expected = cr.jit(c.fn, backend=backend)(*args), c.fn(*args)
    assert np.asarray(got).dtype == np.asarray(expected).dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    argnums = tuple(range(len(args)))
    gradients = cr.grad(lambda *a: total(c.fn(*a)), argnums, backend=backend)(*args)
    reference = cr.grad(lambda *a: total(c.fn(*a)), argnums)(*c.args)
    for gradient, exact in zip(gradients, reference):
        assert gradient.dtype == np.float32
        np.testing.assert_allclose(gradient, exact, rtol=1e-5, atol=1e-4)


# ---- what is not traced, and why ---------------------------------------------------------


@pytest.mark.parametrize(
    "fn, error, words",
    [
        (lambda x: np.pad(x, 1, mode="median"), cr.UnsupportedError, "np.pad with mode='median'"),
        (lambda x: np.pad(x, 1, mode=lambda *a: None), cr.UnsupportedError, "np.pad"),
        (lambda x: np.pad(x, -1), cr.ShapeError, "np.pad"),
        (lambda x: np.pad(x.astype(int), 1, mode="mean"), cr.UnsupportedError, "np.pad(mode='mean')"),
        (lambda x: np.pad(x, 1, constant_values=x), cr.UnsupportedError, "np.pad"),
        (lambda x: np.roll(x, x[0]), cr.TraceError, "np.roll"),
        (lambda x: np.tile(x, x[0]), cr.TraceError, "np.tile"),
        (lambda x: np.repeat(x, x), cr.TraceError, "np.repeat"),
        (lambda x: np.repeat(x, -1), cr.ShapeError, "np.repeat: repeats may not be negative"),
        (lambda x: np.split(x, 4), cr.ShapeError, "np.split"),
        (lambda x: np.vsplit(x, 2), cr.ShapeError, "np.vsplit"),
        (lambda x: np.fliplr(x), cr.ShapeError, "np.fliplr"),
        (lambda x: np.rot90(x.reshape(2, 3), axes=(1, 1)), cr.ShapeError, "np.rot90"),
        (lambda x: np.convolve(x, x, mode="middle"), cr.UnsupportedError, "mode='middle'"),
        (lambda x: np.correlate(x.reshape(2, 3), x), cr.ShapeError, "np.correlate"),
        (lambda x: window_view(x, 7), cr.ShapeError, "window shape cannot be larger"),
        (lambda x: np.delete(x, x[0]), cr.TraceError, "np.delete"),
        # NumPy dispatches linspace on start and stop only: a traced num is read as a number
        (lambda x: np.linspace(0.0, 1.0, x[0]), cr.TraceError, "not known while tracing"),
        (lambda x: np.linspace(0.0, x, x[0]), cr.TraceError, "np.linspace: num must be known"),
        (lambda x: np.arange(x[0]), cr.TraceError, "not known while tracing"),
        (lambda x: np.block([[x], x]), cr.ShapeError, "depths are mismatched"),
    ],
)
def test_what_cannot_be_traced_is_an_error_naming_the_function(fn, error, words):
    with pytest.raises(error, match=None) as raised:
        cr.jit(fn)(np.arange(6.0))
    assert words in raised.value.bare_message  # not merely in the quoted source line


def test_an_edge_pad_sends_each_edge_cotangent_back_to_the_edge_element():
    # d/dx sum(pad(x, (2, 1), edge)) = 1 everywhere, plus 2 at the first and 1 at the last element
    gradient = cr.grad(lambda x: np.sum(np.pad(x, (2, 1), mode="edge")))(np.arange(4.0))
    np.testing.assert_array_equal(gradient, [3.0, 1.0, 1.0, 2.0])


def test_a_sliding_window_gradient_counts_the_windows_covering_each_element():
    # windows of 3 over 5 elements: element i lies in min(i + 1, 3, 5 - i) of the 3 windows
    gradient = cr.grad(lambda x: np.sum(window_view(x, 3)))(np.arange(5.0))
    np.testing.assert_array_equal(gradient, [1.0, 2.0, 3.0, 2.0, 1.0])


@pytest.mark.parametrize("c", [p for p in CASES if p.id in ("pad-reflect", "window-2d", "insert-traced", "linspace")])
def test_jacobian_by_batched_passes_matches_central_differences(c: Case):
    # cr.jacobian vectorizes the backward pass over output rows: the batching rules of the gathers
    first = c.args[0]
    jacobian = cr.jacobian(lambda x: c.fn(x, *c.args[1:]))(first)
    step = 1e-6
    for index in np.ndindex(first.shape):
        shifted_up, shifted_down = first.copy(), first.copy()
        shifted_up[index] += step
        shifted_down[index] -= step
        column = (c.fn(shifted_up, *c.args[1:]) - c.fn(shifted_down, *c.args[1:])) / (2 * step)
        np.testing.assert_allclose(jacobian[(...,) + index], column, atol=1e-7)
