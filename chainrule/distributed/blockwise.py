"""A compiled function applied block by block to dask arrays: ``chainrule.distributed.map``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import chainrule.transforms.compiled as cr
from chainrule.distributed.dask_import import dask_modules
from chainrule.transforms.dense import Hessian, Jacobian


def map(
    fn: Callable[..., Any], *arrays: Any, backend: str = "numpy", dtype: Any = None, **map_blocks_options: Any
) -> Any:
    """``fn`` applied to each block of the dask ``arrays`` (blocks aligned as ``dask.array.map_blocks``
    aligns them), as a dask array. ``fn`` is a chainrule function (``cr.grad(f)``, ``cr.jit(f)``,
    ...) or a plain one, which is compiled with ``cr.jit(fn, backend=backend)``; each worker compiles
    it once. The result has the blocks of the first array unless ``chunks=``/``drop_axis=``/
    ``new_axis=`` say otherwise (passed to ``map_blocks``), and ``dtype`` defaults to the arrays'.

        >>> dx = chainrule.distributed.map(cr.grad(lambda x: np.sum(np.sin(x))), x)  # doctest: +SKIP
        >>> dx.compute()                                                              # doctest: +SKIP
    """
    _, array, _, _ = dask_modules()
    compiled = fn if isinstance(fn, (cr.Compiled, Jacobian, Hessian)) else cr.jit(fn, backend=backend)
    arrays = tuple(a if isinstance(a, array.Array) else array.from_array(np.asarray(a)) for a in arrays)
    out_dtype = np.dtype(dtype) if dtype is not None else np.result_type(*[a.dtype for a in arrays])
    dropped, added = (np.atleast_1d(map_blocks_options.get(key, ())).size for key in ("drop_axis", "new_axis"))
    ndim = max(a.ndim for a in arrays) - dropped + added
    meta = np.empty((0,) * ndim, dtype=out_dtype)  # so Dask never calls (and compiles) fn on an empty block
    return array.map_blocks(compiled, *arrays, dtype=out_dtype, meta=meta, **map_blocks_options)
