"""Algebraic identities and numerical-stability rewrites, applied until nothing changes.

Which identities, and why these:

- **Exact ones** give the same result for every input, inf and NaN included
  (up to the sign of a zero result, as ``x + 0 -> x`` already does at
  construction): double negation, ``x + -y -> x - y``, ``-x * -y -> x * y``,
  ``x * -1 -> -x``, ``0 - x -> -x``, ``x + x -> 2 * x``, division by a power
  of two as a multiplication, ``c1 * (c2 * x) -> (c1 c2) * x`` when either
  constant is a power of two, ``x**2 -> x*x`` (NumPy computes ``x**2`` as ``x*x`` too),
  ``x**0.5 -> sqrt(x)``, ``x**-1 -> 1/x``, transpose of transpose, reshape of
  reshape, broadcast of broadcast, shape ops of a symbolic zero,
  ``where(c, x, x) -> x``, a lossless round-trip cast, multiplication by a
  (broadcast) constant one, an elementwise op of broadcasts (none of full
  shape) as a broadcast of the op on the distinct values.
- **``x * 0 -> 0``, ``x @ 0 -> 0`` and ``x - x -> 0`` only when x is never inf or NaN** (a
  mask, an integer, a finite constant): for a float that may be inf or NaN
  they are wrong (``inf * 0`` is NaN), which is why compilers only do them
  under fast-math. NaN checking must see what the program computes.
- **Rounding-level ones**: the sum of a broadcast becomes a multiplication by
  the count (n copies summed differ from n*x by rounding only), ``(c * x) / c
  -> x`` (so the mean of a broadcast is its value, and std of a broadcast
  constant is a ``s - s`` with no derivative, not ``sqrt'(0) * 0``), and
  ``1 / (1 + exp(-z))`` is recognized as ``sigmoid(z)``.
- **Stability rewrites** change results only where the original overflows or
  underflows to a wrong inf/NaN: ``log(exp(x)) -> x``, ``log(sigmoid(z)) ->
  -softplus(-z)``, ``log(1 - sigmoid(z)) -> -softplus(z)``, ``log(exp(u) / t)
  -> u - log(t)`` (so ``log(softmax(z))`` becomes ``log_softmax``), ``log(sum(exp(u)))
  -> m + log(sum(exp(u - m)))`` with ``m = max(u)`` (unless u is already
  shifted), and ``log(maximum(x, c)) -> maximum(log(x), log(c))`` for a
  positive constant c (a clamped log, such as a BCE guarding against log 0,
  then reaches the sigmoid rewrites).

The rules are data in the one rewrite engine (``ir/rewrite.py``): ``compiler/algebra.py``
(exact and rounding-level, each rule tagged with its kind), ``compiler/scatter_reads.py`` (exact:
a slice of a scatter into zeros, as the gradient of one factor of a packed factorization makes),
``compiler/stability.py``, ``compiler/fold.py`` and ``compiler/cse.py``; ``SIMPLIFY`` is
fold, algebra, scatter reads, stability and CSE, in that order:
folding first (a folded constant often completes an identity's pattern), the commutative merge
last. The pipeline runs simplify on the forward graph before differentiating it, so
the gradient is derived from the stable forms; reverse mode installs the same rule set
(``simplify_rule``) on the graph it builds, so each backward node comes out simplified.
"""

from __future__ import annotations

from chainrule.compiler.algebra import ALGEBRA
from chainrule.compiler.cse import CSE
from chainrule.compiler.fold import FOLD
from chainrule.compiler.rewrite import rebuild
from chainrule.compiler.scatter_reads import SCATTER_READS
from chainrule.compiler.stability import STABILITY
from chainrule.ir import Graph
from chainrule.ir.rewrite import RuleSet

SIMPLIFY = RuleSet("simplify", [*FOLD.rules, *ALGEBRA.rules, *SCATTER_READS.rules, *STABILITY.rules, *CSE.rules])

# What the simplify pass applies, and what reverse mode installs on the backward graph it builds.
simplify_rule = SIMPLIFY


def simplify(graph: Graph) -> Graph:
    """``graph`` with constants folded, the identities and stability rewrites above applied and
    common subexpressions merged: one walk reaches the fixed point (see rewrite.py)."""
    return rebuild(graph, SIMPLIFY)[0]
