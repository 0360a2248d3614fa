"""Scans, argmax/argmin, searchsorted and concatenate run as native loops on the llvm backend (native_ops.py):
no NumPy callback, NumPy's values to the bit (the same additions in the same order), gradients
against central differences."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def native(fn, *args):
    """fn compiled for llvm: its values (checked equal to NumPy's, bit for bit) and no callback."""
    compiled = cr.jit(fn, backend="llvm")
    got, expected = compiled(*args), fn(*args)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(got, expected)
    assert not kernel_of(compiled, *args).lowered.fallbacks


X = np.random.default_rng(0).standard_normal((3, 4, 5))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("scan", [np.cumsum, np.cumprod])
def test_scans_along_every_axis_of_a_transposed_operand(scan, axis):
    native(lambda x: scan(x.transpose(2, 0, 1), axis=axis), X)


@pytest.mark.parametrize("scan", [np.cumsum, np.cumprod])
def test_scans_of_64_bit_integers(scan):
    native(lambda x: scan(x, axis=1), np.arange(-6, 6, dtype=np.int64).reshape(3, 4))


def with_nan_and_ties():
    x = np.round(X, 1)
    x[0, 1, :] = 0.5  # a tie: the first wins
    x[1, 2, 3] = x[1, 0, 3] = np.nan  # NaN wins, at its first position
    return x


@pytest.mark.parametrize("op", [np.argmax, np.argmin])
@pytest.mark.parametrize("axis, keepdims", [(0, False), (1, True), (2, False), (None, False), (None, True)])
def test_argmax_and_argmin_as_numpy_with_ties_and_nans(op, axis, keepdims):
    native(lambda x: op(x, axis=axis, keepdims=keepdims), with_nan_and_ties())


def test_argmax_of_integers_and_of_a_strided_view():
    native(lambda x: np.argmax(x[:, ::2], axis=1), np.array([[3, 9, 9, 1], [-5, -5, -7, -2]], dtype=np.int64))
    native(lambda x: np.argmin(x[::-1, 1:], axis=0), X[0])


def test_concatenate_converts_dtypes_and_skips_empty_operands():
    native(
        lambda x, y: np.concatenate([x.T, y[:0], np.cos(y), y.astype(np.float32)], axis=0),
        X[0],
        X[1, :, :4].T.copy(),
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: weighted_sum(np.cumsum(np.sin(x), axis=1)),
        lambda x: weighted_sum(np.cumprod(1.0 + 0.1 * x, axis=0)),
        lambda x: weighted_sum(np.concatenate([x, x[:, :2] ** 2], axis=1)),
    ],
)
def test_gradients_through_native_scans_and_concatenate_match_central_differences(fn):
    x = X[0]
    grad = cr.grad(fn, backend="llvm")
    assert relative_error(grad(x), numerical_gradient(fn, (x,), 0)) < 1e-7
    assert not [f.op for f in kernel_of(grad, x).lowered.fallbacks if f.op in ("cumsum", "cumprod", "concatenate")]


def sorted_with_ties_and_nans(dtype=np.float64):
    a = np.sort(np.r_[np.random.default_rng(1).normal(size=12), [np.nan, np.nan]]).astype(dtype)
    a[3:6] = a[4]  # a run of ties: left and right differ across it
    return a


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_searchsorted_is_a_native_binary_search_with_numpys_ties_and_nans(side, dtype):
    a = sorted_with_ties_and_nans(dtype)
    values = np.r_[a[::2], [np.nan, -np.inf, np.inf, 100.0, -100.0]].astype(dtype).reshape(3, 4).T
    native(lambda a, v: np.searchsorted(a, v, side=side), a, values)
    native(lambda a, v: np.searchsorted(a[::3], v[1:, ::-1], side=side), a, values)  # strided views


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_of_integers_and_into_an_empty_array(side):
    a = np.array([-4, -4, 0, 2, 2, 2, 9], dtype=np.int64)
    native(lambda a, v: np.searchsorted(a, v, side=side), a, np.arange(-6, 11, dtype=np.int64))
    native(lambda a, v: np.searchsorted(a[:0], v, side=side), a, np.arange(3, dtype=np.int64))


def test_interpolation_gradient_through_a_native_searchsorted_matches_central_differences():
    xp = np.linspace(0.0, 3.0, 7)

    def fn(fp, x):
        return weighted_sum(np.interp(x, xp, np.sin(fp)))

    fp, x = np.cos(np.arange(7.0)), np.array([0.1, 0.7, 1.45, 2.2, 2.95])
    grad = cr.grad(fn, backend="llvm")
    assert relative_error(grad(fp, x), numerical_gradient(fn, (fp, x), 0)) < 1e-7
    assert not [f.op for f in kernel_of(grad, fp, x).lowered.fallbacks if f.op == "searchsorted"]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8])
def test_integer_remainder_is_native_with_numpys_signs_and_zero_divisor(dtype):
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    a = np.array([7, -7, 7, -7, 0, 5, low, high, low, 3, -3], dtype=dtype)
    b = np.array([3, 3, -3, -3, 3, 0, -1, -1, 7, 0, 2], dtype=dtype)  # 0 and -1: srem's undefined cases
    with np.errstate(divide="ignore"):  # NumPy warns for the zero divisors; native code cannot
        native(np.mod, a, b)
