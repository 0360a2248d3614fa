"""Rewrites applied as a node is built, so that no graph ever holds the trivial forms.

Only rewrites that are exact for every input, NaN and inf included, belong here:
scalar constant folding and the identities x*1, x/1, x+0, x-0 when they do not
change the result's type. Rewrites that need judgement (x*0, reassociation,
stability rewrites) are the simplify pass's business.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from chainrule.ir.ops import OPS

_IDENTITY_OPERAND = {
    # op: {operand position of the neutral constant: (neutral value, position of the kept operand)}
    "mul": {0: (1, 1), 1: (1, 0)},
    "div": {1: (1, 0)},
    "add": {0: (0, 1), 1: (0, 0)},
    "sub": {1: (0, 0)},
    "pow": {1: (1, 0)},
}

# Shape ops that are the identity when the type is unchanged (a transpose only if its axes are in order).
_NO_OP_WHEN_TYPE_KEPT = {"reshape", "broadcast_to", "transpose", "sum", "max", "min"}

_FOLD_MAX_SIZE = 1  # folding big constants is the fold pass's job, not construction's


def rewrite(graph, op: str, args: tuple, attrs: dict, out_type) -> Optional[int]:
    """An existing or simpler node equal to ``op(args)``, or None to build it as asked."""
    definition = OPS[op]
    if op in _NO_OP_WHEN_TYPE_KEPT and graph.type(args[0]) == out_type \
            and (op != "transpose" or tuple(attrs["axes"]) == tuple(range(out_type.ndim))):
        return args[0]
    if not definition.is_elementwise or not args:
        return None
    constants = [graph.const_value(a) if graph.type(a).size <= _FOLD_MAX_SIZE else None for a in args]
    if all(c is not None for c in constants) and out_type.size <= _FOLD_MAX_SIZE:
        with np.errstate(all="ignore"):
            value = np.asarray(definition.eager(*constants, **attrs), dtype=out_type.dtype)
        return graph.const(value.reshape(out_type.shape))
    for position, (neutral, kept) in _IDENTITY_OPERAND.get(op, {}).items():
        c = constants[position]
        is_neutral = (c is not None and np.all(c == neutral)) or \
            (neutral == 0 and graph[args[position]].op == "zeros")
        if is_neutral and graph.type(args[kept]) == out_type:
            return args[kept]
    return None
