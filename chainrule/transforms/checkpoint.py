"""``chainrule.checkpoint(fn)``: recompute what ``fn`` computes in the backward pass, as ``jax.checkpoint``.

    def layer(W, b, h):
        return np.tanh(h @ W + b)

    def loss(params, x):
        h = x
        for W, b in params:
            h = cr.checkpoint(layer)(W, b, h)    # keeps each layer's input, recomputes its inside
        return np.sum(h ** 2)

Called on traced values, the wrapper marks the nodes ``fn`` adds to the graph
(their source line becomes a ``SegmentLoc``, which every pass carries along);
the checkpoint pass then recomputes the marked values the backward pass reads,
from the segment's inputs. Called on plain arrays, it is ``fn`` itself.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from chainrule.compiler.checkpoint import SegmentLoc
from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import flatten
from chainrule.frontends.tracer import Tracer

_SEGMENTS = itertools.count(1)
_NOT_MARKED = ("input", "const", "zeros")

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def checkpoint(fn: Callable[_Params, _Result]) -> Callable[_Params, _Result]:
    """``fn``, whose intermediates the backward pass recomputes instead of keeping.

    >>> import numpy as np, chainrule as cr
    >>> f = cr.grad(lambda x: np.sum(cr.checkpoint(np.sin)(x) ** 2))
    >>> bool(np.isclose(f(np.array([0.5]))[0], np.sin(1.0)))  # d/dx sin(x)**2 = sin(2x)
    True
    """
    if not callable(fn):
        raise ArgumentError(f"checkpoint needs a function, got {type(fn).__name__}")

    @functools.wraps(fn)
    def segment(*args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        leaves = flatten((list(args), kwargs))[0]
        tracer = next((leaf for leaf in leaves if isinstance(leaf, Tracer)), None)
        if tracer is None:
            return fn(*args, **kwargs)
        graph = tracer._value.graph
        start = len(graph)
        result = fn(*args, **kwargs)
        number = next(_SEGMENTS)
        for node in graph.nodes[start:]:
            if node.op not in _NOT_MARKED and not isinstance(node.loc, SegmentLoc):
                loc = node.loc
                node.loc = (
                    SegmentLoc(loc.filename, loc.lineno, loc.function, number)
                    if loc is not None
                    else SegmentLoc("<unknown>", 0, "", number)
                )
        return result

    return segment
