"""Reads of a scatter into zeros: ``scatter_add(v, W)[R]`` for basic indices W and R is zero
outside W, ``v``'s elements inside it; the rule writes the read as that.

Reverse mode makes these reads wherever a program uses some parts of a packed value: the
gradient of ``np.linalg.qr(a)[1]`` is the scatter of R's cotangent into the packed [Q, R]
buffer, and the ``qr`` rule slices Q's cotangent back out of it. Rewritten, Q's cotangent is the
``zeros`` node, which the factorizations' rules see and leave out (``linalg.vanishes``), instead
of a slice of a scattered buffer that only constant folding of small values saw through.

The rule is exact: ``0 + v`` is ``v`` up to the sign of a zero, as ``x + 0 -> x`` is at
construction. It takes unit steps and integers (the slices reverse mode and ``linalg.unpack``
make; ``ir/index_regions.py``); a strided or reversed slice, a ``None`` or an index array leaves
the read as it is.
"""

from __future__ import annotations

from chainrule.compiler import patterns
from chainrule.ir import index_regions
from chainrule.ir.rewrite import RuleSet
from chainrule.ir.structural import index_result_shape
from chainrule.ir.types import TensorType

SCATTER_READS = RuleSet("scatter reads")


@SCATTER_READS.rule("getitem", any_operand=["scatter_add"])
def read_of_a_scatter(g, node, args):
    """scatter_add(v, W)[R] -> zeros when R misses W; else the part of ``v`` that R reads, scattered
    into R's shape where R reaches outside W (v itself when R is W)."""
    regions = index_regions.scattered_and_read(g, node)
    if regions is None:
        return None
    written, read = regions
    if index_regions.misses(written, read):
        return g.zeros(node.type)
    scatter = g[args[0]]
    shape = scatter.type.shape
    common = [(max(w[0], r[0]), min(w[1], r[1])) for w, r in zip(written, read)]
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
