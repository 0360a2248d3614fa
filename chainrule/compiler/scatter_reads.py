"""Reads of a scatter into zeros: ``scatter_add(v, W)[R]`` for basic indices W and R is zero
outside W, ``v``'s elements inside it; the rule writes the read as that.

Reverse mode makes these reads wherever a program uses some parts of a packed value: the
gradient of ``np.linalg.qr(a)[1]`` is the scatter of R's cotangent into the packed [Q, R]
buffer, and the ``qr`` rule slices Q's cotangent back out of it. Rewritten, Q's cotangent is the
``zeros`` node, which the factorizations' rules see and leave out (``linalg.vanishes``), instead
of a slice of a scattered buffer that only constant folding of small values saw through.

The rule is exact: ``0 + v`` is ``v`` up to the sign of a zero, as ``x + 0 -> x`` is at
construction. It takes unit steps and integers (the slices reverse mode and ``linalg.unpack``
make); a strided or reversed slice, a ``None`` or an index array leaves the read as it is.
"""

from __future__ import annotations

from chainrule.compiler import patterns
from chainrule.ir.rewrite import RuleSet
from chainrule.ir.structural import index_result_shape
from chainrule.ir.types import TensorType

SCATTER_READS = RuleSet("scatter reads")


def _intervals(index: tuple, shape: tuple[int, ...]) -> list[tuple[int, int, bool]] | None:
    """Per axis of ``shape``, the interval ``[start, stop)`` a basic index takes and whether it
    drops the axis (an integer); None for an index other than unit-step slices and integers."""
    if len(index) > len(shape):
        return None
    intervals = []
    for item, size in zip(index, shape):
        if item[0] == "int":
            position = item[1] + size if item[1] < 0 else item[1]
            intervals.append((position, position + 1, True))
        elif item[0] == "slice":
            taken = range(*slice(*item[1:]).indices(size))
            if len(taken) > 1 and taken.step != 1:
                return None
            start = taken.start if len(taken) else 0
            intervals.append((start, start + len(taken), False))
        else:
            return None
    return intervals + [(0, size, False) for size in shape[len(index) :]]


@SCATTER_READS.rule("getitem", any_operand=["scatter_add"])
def read_of_a_scatter(g, node, args):
    """scatter_add(v, W)[R] -> zeros when R misses W; else the part of ``v`` that R reads, scattered
    into R's shape where R reaches outside W (v itself when R is W)."""
    scatter = g[args[0]]
    if scatter.op != "scatter_add" or len(args) != 1 or len(scatter.args) != 1:
        return None
    shape = scatter.type.shape
    written = _intervals(scatter.params["index"], shape)
    read = _intervals(node.params["index"], shape)
    if written is None or read is None:
        return None
    common = [(max(w[0], r[0]), min(w[1], r[1])) for w, r in zip(written, read)]
    if any(start >= stop for start, stop in common):
        return g.zeros(node.type)
    written_type = TensorType(index_result_shape(shape, scatter.params["index"], []), node.type.dtype)
    values = patterns.fit(g, scatter.args[0], written_type)  # scatter_add broadcasts its values
    if values is None:
        return None
    part, into = [], []  # the index into v's elements, and where they land in the read
    for (start, stop), (w_start, _, w_drops), (r_start, _, r_drops) in zip(common, written, read):
        if not w_drops:
            part.append(("int", start - w_start) if r_drops else ("slice", start - w_start, stop - w_start, None))
        if not r_drops:
            into.append(("int", start - r_start) if w_drops else ("slice", start - r_start, stop - r_start, None))
    if any(item != ("slice", 0, size, None) for item, size in zip(part, g.type(values).shape)):
        values = g.add("getitem", (values,), {"index": tuple(part)})
    if all(item == ("slice", 0, size, None) for item, size in zip(into, node.type.shape)):
        return values
    params = {"index": tuple(into), "shape": node.type.shape, "dtype": node.type.dtype, "unique": True}
    return g.add("scatter_add", (values,), params)
