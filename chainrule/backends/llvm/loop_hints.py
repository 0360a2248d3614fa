"""What an elementwise loop's metadata asks of LLVM's loop vectorizer (``!llvm.loop`` properties).

The vectorizer's compile time, not the code's speed, decides most of this: on the nested gradient
at depth 1000 (24 loops of ~400 steps streaming ~130 arrays each) it was 80% of the compile.

- A loop of fewer than 16 elements is not vectorized (nothing to gain; a long graph on small arrays
  is many long bodies to analyze).
- A vectorized loop's loads and stores are in an access group listed in
  ``llvm.loop.parallel_accesses`` (codegen.py adds it): no element is written where another
  iteration reads, since a loop's outputs never share arena memory with its operands, so the
  vectorizer skips its dependence analysis and runtime checks, quadratic in the body's arrays.
- The vector width is fixed to the vector math's lanes when the body's values are all of one float
  dtype: the vectorizer then costs one width instead of each.
- Long bodies reading and writing few arrays are interleaved 4 times: their chains of math calls
  are bound by the calls' latency (depth 30: 2 arrays, ~2x faster interleaved). Bodies of many
  arrays have independent chains enough (depth 100-1000: ~130 arrays, as fast not interleaved),
  and interleaving would copy them 4 times over (compile 2.9 -> 1.1 s CPU at depth 1000).
- Such a long body of many arrays, fixed width and not interleaved, chainrule widens itself when it
  can (widen.py) and marks its loops ``NOT_VECTORIZED``: the vectorizer then skips them.
"""

from __future__ import annotations

import math

from chainrule.backends.llvm import mathlib

INTERLEAVE = 4
MIN_VECTOR_ELEMENTS = 16
INTERLEAVE_MAX_STREAMS = 16  # arrays a loop body reads or writes
NOT_VECTORIZED = ('!{!"llvm.loop.vectorize.enable", i1 false}', '!{!"llvm.loop.unroll.disable"}')


def vectorized(shape: tuple[int, ...]) -> bool:
    """Is a loop over ``shape`` left to the vectorizer?"""
    return math.prod(shape) >= MIN_VECTOR_ELEMENTS


def hints(shape: tuple[int, ...], steps: int, streams: int, dtypes: set[str]) -> tuple[str, ...]:
    """The ``!llvm.loop`` properties of a loop over ``shape`` of ``steps`` steps a element, reading
    and writing ``streams`` arrays, computing values of ``dtypes``."""
    if not vectorized(shape):
        return NOT_VECTORIZED
    width = vector_width(dtypes)
    fixed = (f'!{{!"llvm.loop.vectorize.width", i32 {width}}}',) if width else ()
    if steps < 8 or math.prod(shape) < MIN_VECTOR_ELEMENTS * INTERLEAVE:
        return fixed
    return (f'!{{!"llvm.loop.interleave.count", i32 {interleave_count(streams)}}}', *fixed)


def interleave_count(streams: int) -> int:
    """How many vector steps a long body reading and writing ``streams`` arrays runs at once."""
    return INTERLEAVE if streams <= INTERLEAVE_MAX_STREAMS else 1


def explicit_width(shape: tuple[int, ...], steps: int, streams: int, dtypes: set[str]) -> int:
    """The lanes of the vector body chainrule writes itself for this loop (widen.py), or 0 when the
    loop is left to LLVM's vectorizer: a short body (cheap to vectorize, and the vectorizer may
    interleave it), one of many dtypes, or one to be interleaved."""
    long_body = steps >= 8 and math.prod(shape) >= MIN_VECTOR_ELEMENTS * INTERLEAVE
    return vector_width(dtypes) if long_body and interleave_count(streams) == 1 else 0


def vector_width(dtypes: set[str]) -> int:
    """The vector math's lanes for values all of one float dtype, else 0 (the vectorizer chooses)."""
    isa = mathlib.vector_isa()
    if len(dtypes) != 1 or not isa.bits:
        return 0
    (dtype,) = dtypes
    return isa.lanes(dtype) if dtype in ("float64", "float32") else 0
