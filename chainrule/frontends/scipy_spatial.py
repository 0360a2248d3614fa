"""``scipy.spatial.distance`` on traced points: ``cdist``, ``pdist`` and ``squareform``.

Each metric is a function of the two operands' rows lined up elementwise: ``cdist`` lines every row
of ``XA`` up with every row of ``XB`` by broadcasting (an ``(mA, mB, n)`` difference, as a kernel
written in NumPy does), ``pdist`` the pairs ``i < j`` in SciPy's order by gathering at
``np.triu_indices`` (a constant index, so the gradient is a scatter-add). ``squareform`` is a gather
at a constant index matrix either way. The euclidean metric is ``np.linalg.norm`` of the difference,
so coincident points (the diagonal of ``cdist(X, X)``) give NaN gradients, as the norm's do;
``sqeuclidean`` has none there. The metric names are SciPy's, aliases included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.spatial.distance

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable


def _cosine_distance(u, v):
    # SciPy's: 1 - u.v / sqrt(u.u v.v), clipped to [0, 2] against rounding
    uv, uu, vv = (np.sum(a * b, axis=-1) for a, b in ((u, v), (u, u), (v, v)))
    return np.clip(1.0 - uv / np.sqrt(uu * vv), 0.0, 2.0)


METRICS: dict[str, Callable[..., Any]] = {
    "euclidean": lambda u, v: np.linalg.norm(u - v, axis=-1),
    "sqeuclidean": lambda u, v: np.sum((u - v) ** 2, axis=-1),
    "cityblock": lambda u, v: np.sum(np.abs(u - v), axis=-1),
    "chebyshev": lambda u, v: np.max(np.abs(u - v), axis=-1),
    "minkowski": lambda u, v, p=2.0: np.sum(np.abs(u - v) ** p, axis=-1) ** (1.0 / p),
    "cosine": _cosine_distance,
    "correlation": lambda u, v: _cosine_distance(
        u - np.mean(u, axis=-1, keepdims=True), v - np.mean(v, axis=-1, keepdims=True)
    ),
}


def _metric(name: str, metric, kwargs: dict):
    """The metric's function of lined-up rows, with its keywords (minkowski's ``p``) bound."""
    if not isinstance(metric, str):
        unsupported(f"scipy.spatial.distance.{name} with a callable metric")
    aliases = getattr(scipy.spatial.distance, "_METRIC_ALIAS", {})
    canonical = aliases[metric.lower()].canonical_name if metric.lower() in aliases else metric.lower()
    if canonical not in METRICS:
        unsupported(f"scipy.spatial.distance.{name} with metric={metric!r}")
    keywords = {key: value for key, value in kwargs.items() if value is not None}
    if set(keywords) - ({"p"} if canonical == "minkowski" else set()):
        unsupported(f"scipy.spatial.distance.{name}(metric={metric!r}) with {', '.join(sorted(keywords))}=")
    function = METRICS[canonical]
    return lambda u, v: function(u, v, **keywords)


def _two_dimensional(name: str, *arrays) -> None:
    if any(ndim_of(a) != 2 for a in arrays):
        raise ShapeError(f"scipy.spatial.distance.{name}: the points must be a 2-D array", here())


@implements(traceable(scipy.spatial.distance, "cdist", "scipy.spatial.distance.cdist"))
def _cdist(XA, XB, metric="euclidean", *, out=None, **kwargs):
    _two_dimensional("cdist", XA, XB)
    if shape_of(XA)[1] != shape_of(XB)[1]:
        raise ShapeError("scipy.spatial.distance.cdist: XA and XB must have the same number of columns", here())
    if out is not None:
        unsupported("scipy.spatial.distance.cdist with out=")
    return _metric("cdist", metric, kwargs)(XA[:, None, :], XB[None, :, :])


@implements(traceable(scipy.spatial.distance, "pdist", "scipy.spatial.distance.pdist"))
def _pdist(X, metric="euclidean", *, out=None, **kwargs):
    _two_dimensional("pdist", X)
    if out is not None:
        unsupported("scipy.spatial.distance.pdist with out=")
    first, second = np.triu_indices(shape_of(X)[0], k=1)  # SciPy's order: (0, 1), (0, 2), ..., (1, 2), ...
    return _metric("pdist", metric, kwargs)(X[first], X[second])


@implements(traceable(scipy.spatial.distance, "squareform", "scipy.spatial.distance.squareform"))
def _squareform(X, force="no", checks=True):
    if ndim_of(X) == 1 and force != "tovector":
        return _to_matrix(X)
    if ndim_of(X) == 2 and force != "tomatrix":
        rows, columns = shape_of(X)
        if rows != columns:
            raise ShapeError("scipy.spatial.distance.squareform: the distance matrix must be square", here())
        return X[np.triu_indices(rows, k=1)]
    raise ShapeError(
        f"scipy.spatial.distance.squareform: a {ndim_of(X)}-D array cannot be made a "
        f"{'vector' if force == 'tovector' else 'matrix'}",
        here(),
    )


def _to_matrix(vector):
    """The symmetric matrix with zero diagonal whose upper triangle, row by row, is the vector."""
    size = shape_of(vector)[0]
    order = math.ceil(math.sqrt(size * 2))
    if order * (order - 1) != size * 2:
        raise ShapeError(
            "scipy.spatial.distance.squareform: incompatible vector size. It must be a binomial "
            "coefficient n choose 2 for some integer n >= 2.",
            here(),
        )
    index = np.zeros((order, order), dtype=np.intp)  # position 0 holds the diagonal's zero
    first, second = np.triu_indices(order, k=1)
    index[first, second] = index[second, first] = np.arange(1, size + 1)
    return np.concatenate([np.zeros(1), vector])[index]
