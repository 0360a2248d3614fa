"""``check_grad``: seed 002's gradient check, chainrule's gradient against a numerical one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.transforms.compiled import argnum_tuple, grad
from chainrule.transforms.options import checked_options


@checked_options
def check_grad(fn: Callable[..., Any], *args: Any, argnums: int | Sequence[int] = 0, step: float = 1e-4) -> float:
    """Seed 002's gradient check: ||g - n|| / (||g|| + ||n|| + 1e-8) for chainrule's gradient g
    and a numerical gradient n.

    n is a fourth-order central difference (f(x-2h), f(x-h), f(x+h), f(x+2h))
    evaluated in float64, whose error is ~1e-12 for smooth functions where the
    seed's two-point formula gives ~1e-8. Below 1e-7 is a pass.
    """
    analytic = grad(fn, argnums)(*args)
    analytic_leaves = flatten(analytic if not isinstance(argnums, int) else (analytic,))[0]
    numeric_leaves: list[np.ndarray] = []
    args64 = [_to_float64(a) for a in args]
    for argnum in argnum_tuple(argnums):
        leaves, _, treedef = flatten(args64[argnum])
        for index in range(len(leaves)):
            numeric_leaves.append(_numeric_gradient(fn, args64, argnum, leaves, treedef, index, step))
    g = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in analytic_leaves])
    n = np.concatenate([np.ravel(v) for v in numeric_leaves])
    return float(np.linalg.norm(g - n) / (np.linalg.norm(g) + np.linalg.norm(n) + 1e-8))


def _to_float64(tree: Any) -> Any:
    """``tree`` with its float arrays and NumPy float scalars as float64 arrays."""

    def convert(leaf: Any) -> Any:
        if isinstance(leaf, (np.ndarray, np.generic)) and np.asarray(leaf).dtype.kind == "f":
            return np.asarray(leaf, dtype=np.float64)
        return leaf

    leaves, _, treedef = flatten(tree)
    return unflatten(treedef, [convert(leaf) for leaf in leaves])


def _numeric_gradient(
    fn: Callable[..., Any], args: list[Any], argnum: int, leaves: list[Any], treedef: TreeDef, index: int, step: float
) -> np.ndarray:
    """The central-difference gradient of ``fn`` with respect to leaf ``index`` of argument ``argnum``."""
    base = np.array(leaves[index], dtype=np.float64)
    result = np.zeros(base.shape)
    flat_base = base.reshape(-1)

    def value_at(offset: float, element: int) -> float:
        shifted = flat_base.copy()
        shifted[element] += offset
        new_leaves = list(leaves)
        new_leaves[index] = float(shifted[0]) if isinstance(leaves[index], float) else shifted.reshape(base.shape)
        new_args = list(args)
        new_args[argnum] = unflatten(treedef, new_leaves)
        return float(np.asarray(fn(*new_args), dtype=np.float64).reshape(()))

    flat_result = result.reshape(-1)
    for element in range(flat_base.size):
        h = step * max(1.0, abs(flat_base[element]))
        flat_result[element] = (
            value_at(-2 * h, element) - 8 * value_at(-h, element) + 8 * value_at(h, element) - value_at(2 * h, element)
        ) / (12 * h)
    return result
