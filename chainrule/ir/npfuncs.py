"""NumPy helpers that the ops' lowering templates call, and the namespace they run in.

Generated NumPy code and eager evaluation both run in ``NAMESPACE``, so an op
has exactly one NumPy spelling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.special

# A frozen index template: ("slice", start, stop, step), ("int", i), ("none",) or ("array", position)
# per indexed axis, as the frontend builds it.
IndexTemplate = tuple[tuple[Any, ...], ...]


def sigmoid(x: npt.ArrayLike) -> np.ndarray:
    """Logistic function, stable for large |x| (SciPy's expit)."""
    return scipy.special.expit(x)


def softplus(x: npt.ArrayLike) -> np.ndarray:
    """log(1 + exp(x)) without overflow."""
    return np.logaddexp(0, x)


def relu(x: npt.ArrayLike) -> np.ndarray:
    """max(x, 0), in x's dtype."""
    return np.maximum(x, 0)


def scatter_add(
    values: npt.ArrayLike,
    index: IndexTemplate,
    shape: tuple[int, ...],
    dtype: npt.DTypeLike,
    *index_arrays: np.ndarray,
    unique: bool,
) -> np.ndarray:
    """Zeros of ``shape`` with ``values`` added at ``index`` (the adjoint of indexing).

    ``index`` is a getitem template in which array positions are filled from
    ``index_arrays``. Basic indexing never repeats an element, so plain
    assignment is exact and much faster than ``np.add.at``.
    """
    out = np.zeros(shape, dtype=dtype)
    key = fill_index(index, index_arrays)
    if unique:
        out[key] = values
    else:
        np.add.at(out, key, values)
    return out


def index_update(
    a: np.ndarray, values: npt.ArrayLike, index: IndexTemplate, mode: str, *index_arrays: np.ndarray
) -> np.ndarray:
    """``index_update`` (``chainrule.ir.update``): a copy of ``a`` with ``values`` written (``"set"``) or accumulated (``"add"``) at ``index``."""
    out = np.array(a, copy=True)
    key = fill_index(index, index_arrays)
    if mode == "set":
        out[key] = values
    else:
        np.add.at(out, key, values)
    return out


# Lines shorter than this are sorted stably at once: there the stable sort costs what the default does.
STABLE_AT_ONCE = 2048


def stable_argsort(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.argsort(x, axis, kind="stable")``, computed by NumPy's default sort where it gives the
    same permutation: a line without equal values (NaNs count as equal) has one sorting permutation,
    and the default sort (SIMD introsort) finds it up to twice as fast as the stable one (timsort)
    on long lines. A line with ties is sorted again stably.

    >>> stable_argsort(np.array([2.0, 1.0, 2.0]), 0)
    array([1, 0, 2])
    """
    if x.shape[axis] < STABLE_AT_ONCE or x.dtype.kind not in "fiu":
        return np.argsort(x, axis=axis, kind="stable")
    order = np.argsort(x, axis=axis)
    ordered = np.take_along_axis(x, order, axis=axis)
    lead = (slice(None),) * axis
    later, earlier = ordered[lead + (slice(1, None),)], ordered[lead + (slice(None, -1),)]
    tied = later == earlier
    if x.dtype.kind == "f":
        tied |= np.isnan(later) & np.isnan(earlier)
    return np.argsort(x, axis=axis, kind="stable") if tied.any() else order


def order_statistics(x: np.ndarray, ranks: tuple[int, ...]) -> np.ndarray:
    """``np.sort(x, axis=-1)[..., ranks]`` by NumPy's partition (introselect: linear time).

    >>> order_statistics(np.array([3.0, 1.0, 2.0]), (0, 2))
    array([1., 3.])
    """
    return np.partition(x, ranks, axis=-1)[..., list(ranks)]


def rank_positions(x: np.ndarray, values: np.ndarray, ranks: tuple[int, ...]) -> np.ndarray:
    """``np.argsort(x, axis=-1, kind="stable")[..., ranks]`` given ``values``, what a sort puts at
    ``ranks`` (``order_statistics(x, ranks)``), in linear time per rank: the element at rank k is,
    among those equal to its value, the one with (k - the count of smaller ones) equal ones before
    it (NaN, sorted last, is smaller than nothing). A value found once is at its one match.

    >>> x = np.array([2.0, 1.0, 2.0])
    >>> rank_positions(x, order_statistics(x, (1, 2)), (1, 2))
    array([0, 2])
    """
    positions = np.empty(values.shape, dtype=np.intp)
    nan = x.dtype.kind == "f" and bool(np.isnan(values).any())
    missing = np.isnan(x) if nan else None
    for j in range(len(ranks)):
        value = values[..., j : j + 1]
        equal = x == value
        if missing is not None:
            equal |= missing & np.isnan(value)
        matches = np.sum(equal, axis=-1)
        positions[..., j] = np.argmax(equal, axis=-1)  # the first match
        if np.all(matches == 1):
            continue
        if missing is not None:
            smaller = np.where(np.isnan(value), ~missing, x < value)
        else:
            smaller = x < value
        before = ranks[j] - np.sum(smaller, axis=-1, keepdims=True)
        positions[..., j] = np.argmax(np.cumsum(equal, axis=-1) > before, axis=-1)
    return positions


def getitem(x: np.ndarray, index: IndexTemplate, *index_arrays: np.ndarray) -> np.ndarray:
    """``x[index]``, the index template's array positions filled from ``index_arrays``."""
    return x[fill_index(index, index_arrays)]


def fill_index(index: IndexTemplate, index_arrays: Sequence[np.ndarray]) -> tuple[Any, ...]:
    """Turn a frozen index template back into a NumPy index tuple."""
    parts: list[Any] = []  # slices, ints, None and index arrays
    for item in index:
        kind = item[0]
        if kind == "slice":
            parts.append(slice(*item[1:]))
        elif kind == "int":
            parts.append(item[1])
        elif kind == "none":
            parts.append(None)
        elif kind == "array":
            parts.append(index_arrays[item[1]])
        else:  # pragma: no cover - templates are built by the frontend only
            raise AssertionError(kind)
    return tuple(parts)


NAMESPACE: dict[str, Any] = {  # modules and functions, by the name templates use
    "np": np,
    "special": scipy.special,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "relu": relu,
    "scatter_add": scatter_add,
    "getitem": getitem,
    "index_update": index_update,
    "stable_argsort": stable_argsort,
    "order_statistics": order_statistics,
    "rank_positions": rank_positions,
}
