"""Finite differences and test losses shared by the gradient tests, independent of chainrule."""

import functools
from collections.abc import Callable

import numpy as np


def numerical_gradient(fn: Callable, args: tuple, argnum: int, step: float = 1e-4) -> np.ndarray:
    """d fn / d args[argnum] by the fourth-order central difference, evaluated eagerly in float64."""
    args = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args]
    base = args[argnum]
    gradient = np.zeros(base.shape)

    def value_at(index, offset):
        shifted = base.copy()
        shifted[index] += offset
        return float(fn(*args[:argnum], shifted, *args[argnum + 1 :]))

    for index in np.ndindex(base.shape):
        h = step * max(1.0, abs(float(base[index])))
        gradient[index] = (
            8 * (value_at(index, h) - value_at(index, -h)) - (value_at(index, 2 * h) - value_at(index, -2 * h))
        ) / (12 * h)
    return gradient


def relative_error(analytic, numeric) -> float:
    """Seed 002's gradient check: ||g - n|| / (||g|| + ||n|| + 1e-8)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    return float(np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric) + 1e-8))


def weights(shape, dtype=np.float64) -> np.ndarray:
    """Fixed, non-uniform weights, so a transposed or mis-summed cotangent cannot pass (read-only:
    one array per shape and dtype, as finite differences ask for the same ones thousands of times)."""
    return _weights(tuple(int(n) for n in shape), np.dtype(dtype).name)


@functools.lru_cache(maxsize=1024)
def _weights(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    array = np.random.default_rng(7).uniform(0.5, 1.5, size=shape).astype(dtype)
    array.setflags(write=False)
    return array


def weighted_sum(y):
    """A scalar of any array (traced or not): sum(w * y) with ``weights`` of y's shape and dtype."""
    return np.sum(weights(np.shape(y), y.dtype) * y)
