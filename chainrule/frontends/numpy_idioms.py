"""NumPy idioms common in numerical programs, written with traced primitives and other NumPy functions.

- ``np.fill_diagonal`` is an index update: ``a[diagonal] = values``, rebinding ``a`` as ``a[idx] = v``
  does (``inplace.setitem``);
- ``np.linalg.multi_dot`` is ``np.dot`` of the operands in the order of least multiplications
  (the matrix-chain dynamic program, as NumPy orders it);
- ``np.polyfit`` is ``np.linalg.lstsq`` of NumPy's column-scaled Vandermonde matrix;
- ``ufunc.accumulate``: ``np.add`` and ``np.multiply`` are cumsum and cumprod; ``np.maximum`` and
  ``np.minimum`` are a doubling scan (Hillis-Steele) of ``np.maximum``/``np.minimum`` on shifted
  slices, so the gradient flows to the element holding the running maximum and on a tie splits as
  ``np.maximum`` splits it, at each of the log2(n) steps;
- ``ufunc.outer`` of every binary ufunc is the ufunc of ``a`` with ``b.ndim`` axes appended and ``b``;
- ``np.apply_along_axis`` calls the function on each traced 1-D slice and stacks the results;
- ``np.isclose`` and ``np.allclose`` are NumPy's formula with comparisons (booleans, no gradient).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from chainrule.errors import ShapeError, UnsupportedError
from chainrule.frontends.dispatch import HANDLERS, here, implements
from chainrule.frontends.numpy_api import axes_of, ndim_of, no_extras, shape_of

# ---- np.fill_diagonal -------------------------------------------------------------------------


@implements(np.fill_diagonal)
def _fill_diagonal(a: Any, val: Any, wrap: bool = False) -> None:
    """NumPy's ``a.flat[:end:step] = val``: every ``step``-th flat element (the main diagonal;
    with ``wrap``, a tall matrix's diagonal starts again below), ``val`` repeated cyclically."""
    shape = shape_of(a)
    if len(shape) < 2:
        raise ValueError("array must be at least 2-d")
    if len(shape) == 2:
        step, end = shape[1] + 1, (None if wrap else shape[1] * shape[1])
    else:
        if any(d != shape[0] for d in shape):
            raise ValueError("All dimensions of input must be of equal length")
        step, end = 1 + int(np.cumprod(shape[:-1]).sum()), None
    flat = np.arange(math.prod(shape))[:end:step]
    values = np.ravel(val)
    count = math.prod(shape_of(values))
    if flat.size == 0 or count == 0:
        return
    values = values[np.arange(flat.size) % count] if count != flat.size else values
    a[np.unravel_index(flat, shape)] = values


# ---- np.linalg.multi_dot ----------------------------------------------------------------------


def _chain_order(dims: list[int]) -> list[list[int]]:
    """The matrix-chain split points: ``split[i][j]`` is where the product of matrices i..j
    (``dims[i] x dims[i+1]`` each) splits for the fewest multiplications (NumPy's program)."""
    n = len(dims) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = math.inf  # type: ignore[call-overload]
            for k in range(i, j):
                here_cost = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if here_cost < cost[i][j]:
                    cost[i][j], split[i][j] = here_cost, k
    return split


def _chain_product(arrays: list, split: list[list[int]], i: int, j: int) -> Any:
    if i == j:
        return arrays[i]
    k = split[i][j]
    return np.dot(_chain_product(arrays, split, i, k), _chain_product(arrays, split, k + 1, j))


@implements(np.linalg.multi_dot)
def _multi_dot(arrays: Any, *, out: Any = None) -> Any:
    no_extras("np.linalg.multi_dot", out, {})
    arrays = list(arrays)
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    if len(arrays) == 2:
        return np.dot(arrays[0], arrays[1])
    first_vector, last_vector = ndim_of(arrays[0]) == 1, ndim_of(arrays[-1]) == 1
    if first_vector:
        arrays[0] = np.reshape(arrays[0], (1, -1))
    if last_vector:
        arrays[-1] = np.reshape(arrays[-1], (-1, 1))
    for array in arrays:
        if ndim_of(array) != 2:
            raise np.linalg.LinAlgError(f"{ndim_of(array)}-dimensional array given. Array must be two-dimensional")
    dims = [shape_of(array)[0] for array in arrays] + [shape_of(arrays[-1])[1]]
    result = _chain_product(arrays, _chain_order(dims), 0, len(arrays) - 1)
    if first_vector and last_vector:
        return result[0, 0]
    return np.ravel(result) if first_vector or last_vector else result


# ---- np.polyfit -------------------------------------------------------------------------------


@implements(np.polyfit)
def _polyfit(x: Any, y: Any, deg: Any, rcond: Any = None, full: bool = False, w: Any = None, cov: Any = False) -> Any:
    """NumPy's least squares: the Vandermonde matrix (weighted rows), its columns scaled to unit
    norm, ``np.linalg.lstsq``, the coefficients scaled back."""
    if full or cov:
        raise UnsupportedError(
            "np.polyfit with full=True or cov= is not supported on traced values (the coefficients are)", here()
        )
    order = int(deg) + 1
    x, y = x + 0.0, y + 0.0
    if int(deg) < 0:
        raise ValueError("expected deg >= 0")
    if ndim_of(x) != 1 or ndim_of(y) not in (1, 2) or shape_of(x)[0] != shape_of(y)[0]:
        raise TypeError("expected 1-D x and a 1-D or 2-D y of x's length")
    powers = [np.ones_like(x)]
    for _ in range(order - 1):
        powers.append(powers[-1] * x)
    lhs, rhs = np.stack(powers[::-1], axis=1), y
    if w is not None:
        w = w + 0.0
        lhs = lhs * np.reshape(w, (-1, 1))
        rhs = rhs * (np.reshape(w, (-1, 1)) if ndim_of(rhs) == 2 else w)
    rcond = shape_of(x)[0] * np.finfo(x.dtype).eps if rcond is None else rcond
    scale = np.sqrt(np.sum(lhs * lhs, axis=0))
    coefficients = np.linalg.lstsq(lhs / scale, rhs, rcond=rcond)[0]
    return coefficients / (np.reshape(scale, (-1, 1)) if ndim_of(rhs) == 2 else scale)


# ---- ufunc.accumulate ---------------------------------------------------------------------------


def _along(a: Any, axis: int, start: Any, stop: Any) -> Any:
    return a[(slice(None),) * axis + (slice(start, stop),)]


def _doubling_scan(ufunc: Any):
    def accumulate(array: Any, axis: int = 0, dtype: Any = None, out: Any = None) -> Any:
        no_extras(f"np.{ufunc.__name__}.accumulate", out, {})
        if ndim_of(array) == 0:
            raise TypeError("cannot accumulate on a scalar")
        axis = axes_of(axis, ndim_of(array))[0]
        result = array if dtype is None else array.astype(dtype)
        length, shift = shape_of(array)[axis], 1
        while shift < length:
            later = ufunc(_along(result, axis, shift, None), _along(result, axis, None, -shift))
            result = np.concatenate([_along(result, axis, None, shift), later], axis=axis)
            shift *= 2
        return result

    return accumulate


def _scan_of(numpy_scan: Any, name: str):
    def accumulate(array: Any, axis: int = 0, dtype: Any = None, out: Any = None) -> Any:
        no_extras(f"np.{name}.accumulate", out, {})
        if ndim_of(array) == 0:
            raise TypeError("cannot accumulate on a scalar")
        return numpy_scan(array, axis=axis, dtype=dtype)

    return accumulate


implements(np.add.accumulate)(_scan_of(np.cumsum, "add"))
implements(np.multiply.accumulate)(_scan_of(np.cumprod, "multiply"))
implements(np.maximum.accumulate)(_doubling_scan(np.maximum))
implements(np.minimum.accumulate)(_doubling_scan(np.minimum))


# ---- ufunc.outer --------------------------------------------------------------------------------


def _outer_of(ufunc: Any):
    def outer(a: Any, b: Any, /, **kwargs: Any) -> Any:
        spread = np.reshape(a, tuple(shape_of(a)) + (1,) * ndim_of(b))
        return ufunc(spread, b, **kwargs)

    return outer


def register_outer_methods() -> None:
    """``ufunc.outer`` for every binary ufunc with a handler (called once all handlers are in)."""
    for ufunc in [
        f for f in list(HANDLERS) if isinstance(f, np.ufunc) and f.nin == 2 and f.nout == 1 and f.signature is None
    ]:
        if ufunc.outer not in HANDLERS:
            implements(ufunc.outer)(_outer_of(ufunc))


# ---- np.apply_along_axis ------------------------------------------------------------------------


@implements(np.apply_along_axis)
def _apply_along_axis(func1d: Any, axis: int, arr: Any, *args: Any, **kwargs: Any) -> Any:
    """NumPy's loop: ``func1d`` of each 1-D slice along ``axis``; the results (all of one shape)
    stacked, their axes where ``axis`` was."""
    shape = shape_of(arr)
    axis = axes_of(axis, len(shape))[0]
    moved = np.moveaxis(arr, axis, -1)
    outer_shape = tuple(shape[:axis]) + tuple(shape[axis + 1 :])
    if math.prod(outer_shape) == 0:
        raise ValueError("Cannot apply_along_axis when any iteration dimensions are 0")
    results = [func1d(moved[index], *args, **kwargs) for index in np.ndindex(outer_shape)]
    result_shape = shape_of(results[0])
    if any(shape_of(r) != result_shape for r in results):
        raise ShapeError("np.apply_along_axis: func1d returned results of different shapes", here())
    stacked = np.reshape(np.stack(results), outer_shape + tuple(result_shape))
    outer_ndim, result_ndim = len(outer_shape), len(result_shape)
    order = list(range(axis)) + list(range(outer_ndim, outer_ndim + result_ndim)) + list(range(axis, outer_ndim))
    return np.transpose(stacked, order)


# ---- np.isclose, np.allclose --------------------------------------------------------------------


@implements(np.isclose)
def _isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Any:
    """NumPy's test: ``|a - b| <= atol + rtol |b|`` where ``b`` is finite, or ``a == b``
    (equal infinities); with ``equal_nan``, NaN is close to NaN."""
    dtype = getattr(b, "dtype", None)
    if dtype is not None and dtype.kind in "biu":  # NumPy compares with b as floats
        b = b.astype(np.result_type(dtype, 1.0))
    close = np.less_equal(np.absolute(a - b), atol + rtol * np.absolute(b)) & np.isfinite(b)
    close = close | np.equal(a, b)
    if equal_nan:
        close = close | (np.isnan(a) & np.isnan(b))
    return close


@implements(np.allclose)
def _allclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Any:
    return np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))
