"""The regions basic indices take: per axis, an interval and whether the index drops the axis.

What a read of a scatter into zeros is follows from them (``compiler/scatter_reads.py``): zero
where the read's region misses the scatter's, the scattered values where it meets it. The
factorizations' rules ask the first question too (``linalg.vanishes``), where no rewrite rule
runs (the backward of a loop body is built without the simplify rules).
"""

from __future__ import annotations

from chainrule.ir.graph import Graph
from chainrule.ir.node import Node

# (start, stop, dropped): [start, stop) along one axis, dropped for an integer index
Interval = tuple[int, int, bool]


def intervals(index: tuple, shape: tuple[int, ...]) -> list[Interval] | None:
    """Per axis of ``shape``, the interval ``[start, stop)`` a basic index takes and whether it
    drops the axis; None for an index other than unit-step slices and integers (a strided or
    reversed slice, ``None``, an index array)."""
    if len(index) > len(shape):
        return None
    taken_intervals = []
    for item, size in zip(index, shape):
        if item[0] == "int":
            position = item[1] + size if item[1] < 0 else item[1]
            taken_intervals.append((position, position + 1, True))
        elif item[0] == "slice":
            taken = range(*slice(*item[1:]).indices(size))
            if len(taken) > 1 and taken.step != 1:
                return None
            start = taken.start if len(taken) else 0
            taken_intervals.append((start, start + len(taken), False))
        else:
            return None
    return taken_intervals + [(0, size, False) for size in shape[len(index) :]]


def scattered_and_read(graph: Graph, read: Node) -> tuple[list[Interval], list[Interval]] | None:
    """For ``read`` a getitem of a scatter_add (into zeros), both with basic indices of unit steps:
    the intervals the scatter writes and those the read takes; else None."""
    if read.op != "getitem" or len(read.args) != 1:
        return None
    scatter = graph.nodes[read.args[0]]
    if scatter.op != "scatter_add" or len(scatter.args) != 1:
        return None
    written = intervals(scatter.params["index"], scatter.type.shape)
    taken = intervals(read.params["index"], scatter.type.shape)
    return None if written is None or taken is None else (written, taken)


def misses(written: list[Interval], taken: list[Interval]) -> bool:
    """Whether the region ``taken`` has no element in the region ``written``."""
    return any(max(w[0], t[0]) >= min(w[1], t[1]) for w, t in zip(written, taken))
