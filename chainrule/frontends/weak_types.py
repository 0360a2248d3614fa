"""Weakly typed traced values: what Python ``int`` and ``float`` arguments become.

A Python float argument is traced as a 0-d float64 input (a new value reuses the kernel), but it
must combine with arrays as the Python float did: ``x32 * lr`` stays float32, as NumPy 2 and
JAX's weak types have it. So a trace remembers which of its values are weak (the inputs of Python
numbers, and what is computed from weak values and Python numbers alone) and the arguments they
come from. An elementwise op that mixes a weak value with a strong one first casts the weak one to
the dtype a Python number of its kind would take there (``chainrule.ir.builder.weak_dtype``);
other ops (an index, a matmul) take it as it is, and their result is strong.

A weak value that reaches Python control flow (``if n > 0``, ``range(n)``) names its argument in
the error, which says to declare that argument static.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chainrule.ir import Graph
from chainrule.ir.builder import weak_dtype
from chainrule.ir.ops import OPS

# node id -> the paths of the Python-number arguments a weak value was computed from (those not
# differentiated: declaring a differentiated one static is no way out)
WeakValues = dict[int, tuple[str, ...]]

# a Python number of each dtype kind, standing for a weak value when a dtype is worked out
_PYTHON_NUMBER: dict[str, bool | int | float] = {"b": True, "i": 1, "u": 1, "f": 1.0}


def settle_weak_operands(
    graph: Graph, op_name: str, ids: list[int], traced: Sequence[bool], weak: WeakValues, loc
) -> tuple[str, ...] | None:
    """Cast the weak operands of an elementwise op among strong ones, in ``ids``; the arguments the
    result comes from when every traced operand is weak (the result is weak too), else None."""
    weak_positions = [i for i, is_traced in enumerate(traced) if is_traced and ids[i] in weak]
    if not weak_positions:
        return None
    strong = [graph.type(ids[i]).dtype for i, is_traced in enumerate(traced) if is_traced and ids[i] not in weak]
    if not strong:
        return tuple(dict.fromkeys(name for i in weak_positions for name in weak[ids[i]]))
    if OPS[op_name].kind == "elementwise":
        for i in weak_positions:
            dtype = graph.type(ids[i]).dtype
            target = weak_dtype(strong, _PYTHON_NUMBER[np.dtype(dtype).kind])
            if target != dtype:
                ids[i] = graph.add("cast", [ids[i]], {"dtype": target}, loc=loc)
    return None


def static_advice(weak: WeakValues, node_id: int, what: str) -> str | None:
    """The first sentence of the error for ``what`` (Python control flow, ``int()``) on a weak
    value: which Python-number argument it comes from and how to declare it static; None when the
    value is not weak."""
    names = weak.get(node_id)
    if not names:
        return None
    listed = ", ".join(repr(n) for n in names)
    plural = "s" if len(names) > 1 else ""
    return (
        f"{what} on a value computed from the Python number argument{plural} {listed}, which chainrule "
        "traces as a 0-d value (as JAX does), so its value is not known while tracing. If the "
        f"code needs the value, declare the argument{plural} static: static_argnames=({listed},) (or "
        "static_argnums) on cr.jit, cr.grad and the other transformations compiles the value in, "
        "and each new value compiles again."
    )
