"""NumPy helpers that the ops' lowering templates call, and the namespace they run in.

Generated NumPy code and eager evaluation both run in ``NAMESPACE``, so an op
has exactly one NumPy spelling.
"""

from __future__ import annotations

import numpy as np
import scipy.special


def sigmoid(x):
    """Logistic function, stable for large |x| (SciPy's expit)."""
    return scipy.special.expit(x)


def softplus(x):
    """log(1 + exp(x)) without overflow."""
    return np.logaddexp(0, x)


def relu(x):
    return np.maximum(x, 0)


def scatter_add(values, index, shape, dtype, *index_arrays, unique):
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


def getitem(x, index, *index_arrays):
    return x[fill_index(index, index_arrays)]


def fill_index(index, index_arrays):
    """Turn a frozen index template back into a NumPy index tuple."""
    parts = []
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


NAMESPACE = {
    "np": np,
    "special": scipy.special,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "relu": relu,
    "scatter_add": scatter_add,
    "getitem": getitem,
}
